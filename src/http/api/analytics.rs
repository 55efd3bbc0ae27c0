//! `/apps/{app_id}/analytics`: call volume, durations, response times, resolution, sentiment,
//! ended reasons, costs, and per-agent and per-number tables over a time range, bucketed in a
//! time zone.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::domain::analytics::{BucketSize, Report, buckets};
use crate::domain::ids::{AgentId, AppId};
use crate::domain::time;
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiPath, ApiQuery};
use crate::storage::analytics::{self as store, Scope};
use crate::storage::costs;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsQuery {
    /// Start of the range (RFC 3339); default 30 days before `to`.
    pub(crate) from: Option<DateTime<Utc>>,
    /// End of the range, exclusive (RFC 3339); default now.
    pub(crate) to: Option<DateTime<Utc>>,
    /// `day` (default), `week` (from Monday) or `month`.
    pub(crate) bucket: Option<BucketSize>,
    /// IANA time zone of the bucket edges, e.g. `Europe/Paris` (default `UTC`).
    pub(crate) time_zone: Option<String>,
    /// Only this agent's calls.
    pub(crate) agent_id: Option<AgentId>,
    /// Count test calls made from the console too (default false).
    #[serde(default)]
    pub(crate) include_test_calls: bool,
}

/// An app's call analytics.
#[utoipa::path(get, path = "/apps/{app_id}/analytics", tag = "analytics", params(("app_id" = AppId, Path), AnalyticsQuery), responses(
    (status = 200, body = Report), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn report(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<AppId>,
    ApiQuery(q): ApiQuery<AnalyticsQuery>,
) -> Result<Json<Report>, ApiError> {
    crate::storage::apps::get(&s.db, caller.org, app).await.map_err(|e| ApiError::from_storage(e, "app"))?;
    let to = q.to.unwrap_or_else(time::now);
    let from = q.from.unwrap_or_else(|| to.checked_sub_days(chrono::Days::new(30)).unwrap_or(to));
    let zone_name = q.time_zone.unwrap_or_else(|| "UTC".to_owned());
    let zone: Tz = zone_name
        .parse()
        .map_err(|_| Invalid::new("time_zone", format!("`{zone_name}` is not an IANA time zone such as `Europe/Paris`")))?;
    let size = q.bucket.unwrap_or(BucketSize::Day);
    let steps = buckets(from, to, size, zone)?;
    let scope = Scope { org: caller.org, app, agent: q.agent_id, from, to, include_test_calls: q.include_test_calls };
    let figures = store::figures(&s.db, &scope, &steps).await.map_err(|e| ApiError::from_storage(e, "app"))?;
    let currency = costs::settings(&s.db, caller.org).await.map_err(|e| ApiError::from_storage(e, "organisation"))?.currency;
    Ok(Json(Report {
        from,
        to,
        bucket: size,
        time_zone: zone_name,
        totals: figures.totals,
        sentiment: figures.sentiment,
        ended_reasons: figures.ended_reasons,
        series: figures.series,
        agents: figures.agents,
        numbers: figures.numbers,
        currency,
    }))
}
