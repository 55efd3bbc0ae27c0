//! `/retention`: how long the organisation keeps transcripts and call records.

use axum::Json;
use axum::extract::State;

use crate::domain::org::RetentionPolicy;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::ApiJson;
use crate::storage::retention;

/// The organisation's retention policy (`null` keeps forever).
#[utoipa::path(get, path = "/retention", tag = "retention", responses((status = 200, body = RetentionPolicy)))]
pub async fn get(State(s): State<AppState>, caller: Caller) -> Result<Json<RetentionPolicy>, ApiError> {
    Ok(Json(retention::policy(&s.db, caller.org).await.map_err(|e| ApiError::from_storage(e, "organisation"))?))
}

/// Replace the retention policy. The background purge applies it within `retention_interval_secs`.
#[utoipa::path(put, path = "/retention", tag = "retention", request_body = RetentionPolicy, responses(
    (status = 200, body = RetentionPolicy), (status = 422, body = Problem)))]
pub async fn put(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RetentionPolicy>,
) -> Result<Json<RetentionPolicy>, ApiError> {
    let policy = body.validate()?;
    retention::set_policy(&s.db, caller.org, &policy, caller.actor).await.map_err(|e| ApiError::from_storage(e, "organisation"))?;
    Ok(Json(policy))
}
