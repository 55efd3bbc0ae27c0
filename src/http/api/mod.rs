//! REST handlers under `/api/v1`, one module per resource. Handlers validate input into domain
//! types, call storage, and map failures to problem+json; they hold no SQL and no pool.

pub mod agents;
pub mod analytics;
pub mod api_tokens;
pub mod apps;
pub mod audit_log;
pub mod automations;
pub mod calls;
pub mod costs;
pub mod languages;
pub mod llm_providers;
pub mod phone_numbers;
pub mod phone_providers;
pub mod recordings;
pub mod retention;
pub mod speech_engines;
pub mod speech_providers;
pub mod tickets;
pub mod users;

use serde::{Deserialize, Deserializer};

use crate::domain::validation::Invalid;
use crate::providers::egress::Egress;

/// Refuses a (valid) URL the egress policy will not let requests reach, naming the field and
/// the setting that would admit it.
pub(crate) async fn reachable_url(egress: &Egress, field: &str, url: &str) -> Result<(), Invalid> {
    let Ok(parsed) = url::Url::parse(url) else { return Ok(()) };
    egress.check(&parsed).await.map_err(|refused| Invalid::new(field, refused.to_string()))
}

/// For PATCH bodies: tells an absent field (`None`, leave as is) from an explicit `null`
/// (`Some(None)`, clear it). Use with `#[serde(default, deserialize_with = "nullable")]`.
pub(crate) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
