//! `/calls`: call records, newest first, and one call with its transcript.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::automation::AutomationRun;
use crate::domain::call::{Call, CallStatus, EndReason, Turn};
use crate::domain::event::CallEvent;
use crate::domain::ids::{AgentId, AppId, CallId, PhoneNumberId};
use crate::domain::recording::Recording;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiPath, ApiQuery};
use crate::http::pagination::{ListResponse, PageParams};
use crate::storage::calls::{self as store, CallFilter};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CallQuery {
    pub(crate) app_id: Option<AppId>,
    pub(crate) agent_id: Option<AgentId>,
    pub(crate) phone_number_id: Option<PhoneNumberId>,
    pub(crate) status: Option<CallStatus>,
    /// Calls that started at or after this time (RFC 3339).
    pub(crate) from: Option<DateTime<Utc>>,
    /// Calls that started before this time (RFC 3339).
    pub(crate) to: Option<DateTime<Utc>>,
    /// Calls that ended for this reason (e.g. `caller_hangup`, `agent_ended`).
    pub(crate) ended_reason: Option<EndReason>,
    /// How many calls to return, 1 to 200 (default 50).
    pub(crate) limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// A call record with its transcript.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CallDetail {
    #[serde(flatten)]
    pub(crate) call: Call,
    /// The voice transcript, turn by turn, with timestamps.
    pub(crate) transcript: Vec<Turn>,
    /// The call's recording, when it was recorded (its audio is at `/calls/{id}/recording/audio`).
    pub(crate) recording: Option<Recording>,
}

/// List calls, newest first, optionally filtered.
#[utoipa::path(get, path = "/calls", tag = "calls", params(CallQuery), responses(
    (status = 200, body = ListResponse<Call>), (status = 400, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CallQuery>,
) -> Result<Json<ListResponse<Call>>, ApiError> {
    if let (Some(from), Some(to)) = (q.from, q.to)
        && from >= to
    {
        return Err(ApiError::BadRequest("`from` must be earlier than `to`".into()));
    }
    let page = PageParams { limit: q.limit, cursor: q.cursor }.to_request()?;
    let filter = CallFilter {
        app_id: q.app_id,
        agent_id: q.agent_id,
        phone_number_id: q.phone_number_id,
        status: q.status,
        started_from: q.from,
        started_to: q.to,
        ended_reason: q.ended_reason,
    };
    let page = store::list(&s.db, caller.org, &filter, page).await.map_err(|e| ApiError::from_storage(e, "call"))?;
    Ok(Json(page.into()))
}

/// An event of a call, as delivered, with when automations received it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub(crate) event: CallEvent,
    pub(crate) dispatched_at: Option<DateTime<Utc>>,
}

/// The call's post-call events (`call.ended`, `call.analyzed`), oldest first.
#[utoipa::path(get, path = "/calls/{id}/events", tag = "calls", params(("id" = CallId, Path)), responses(
    (status = 200, body = Vec<EventDetail>), (status = 404, body = Problem)))]
pub async fn events(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<CallId>) -> Result<Json<Vec<EventDetail>>, ApiError> {
    let not_found = |e| ApiError::from_storage(e, "call");
    store::get(&s.db, caller.org, id).await.map_err(not_found)?;
    let stored = crate::storage::events::for_call(&s.db, caller.org, id).await.map_err(not_found)?;
    Ok(Json(stored.into_iter().map(|e| EventDetail { event: e.event, dispatched_at: e.dispatched_at }).collect()))
}

/// The automation runs the call's events started, oldest first.
#[utoipa::path(get, path = "/calls/{id}/automation-runs", tag = "calls", params(("id" = CallId, Path)), responses(
    (status = 200, body = Vec<AutomationRun>), (status = 404, body = Problem)))]
pub async fn automation_runs(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<CallId>,
) -> Result<Json<Vec<AutomationRun>>, ApiError> {
    let not_found = |e| ApiError::from_storage(e, "call");
    store::get(&s.db, caller.org, id).await.map_err(not_found)?;
    Ok(Json(crate::storage::automations::runs_for_call(&s.db, caller.org, id).await.map_err(not_found)?))
}

/// Erase a call: its record, transcript, recording, events and their automation runs (right to
/// erasure). Tickets stay, unlinked. The erasure is audited.
#[utoipa::path(delete, path = "/calls/{id}", tag = "calls", params(("id" = CallId, Path)), responses(
    (status = 204), (status = 404, body = Problem)))]
pub async fn delete(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<CallId>) -> Result<axum::http::StatusCode, ApiError> {
    let call = store::get(&s.db, caller.org, id).await.map_err(|e| ApiError::from_storage(e, "call"))?;
    if call.has_live_session(crate::domain::time::now()) {
        return Err(ApiError::Conflict(
            "this call is still going on, and its agent is still talking; erase it once it has ended (hang up, or wait for the agent to end it)".into(),
        ));
    }
    super::recordings::erase_with_call(&s, &caller, id).await?;
    store::delete(&s.db, caller.org, id, caller.actor).await.map_err(|e| ApiError::from_storage(e, "call"))?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Read a call record with its transcript.
#[utoipa::path(get, path = "/calls/{id}", tag = "calls", params(("id" = CallId, Path)), responses(
    (status = 200, body = CallDetail), (status = 404, body = Problem)))]
pub async fn get(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<CallId>) -> Result<Json<CallDetail>, ApiError> {
    let not_found = |e| ApiError::from_storage(e, "call");
    let call = store::get(&s.db, caller.org, id).await.map_err(not_found)?;
    let transcript = store::transcript(&s.db, caller.org, id).await.map_err(not_found)?;
    let recording = crate::storage::recordings::for_call(&s.db, caller.org, id).await.map_err(not_found)?;
    Ok(Json(CallDetail { call, transcript, recording }))
}
