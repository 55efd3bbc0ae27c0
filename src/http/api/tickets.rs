//! `/apps/{app_id}/tickets`, `/tickets/{id}`: follow-ups that automations create.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::domain::ids::{AppId, CallId, TicketId};
use crate::domain::ticket::{Ticket, TicketPriority, TicketStatus, ticket_text};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{ListResponse, PageParams};
use crate::storage::tickets::{self as store, TicketChanges};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TicketQuery {
    /// Only the tickets of this call.
    pub(crate) call_id: Option<CallId>,
    pub(crate) limit: Option<u32>,
    pub(crate) cursor: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTicket {
    pub(crate) title: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) priority: Option<TicketPriority>,
    pub(crate) status: Option<TicketStatus>,
}

fn storage_error(e: crate::storage::StorageError) -> ApiError {
    ApiError::from_storage(e, "ticket")
}

/// List an app's tickets, newest first.
#[utoipa::path(get, path = "/apps/{app_id}/tickets", tag = "tickets", params(("app_id" = AppId, Path), TicketQuery), responses(
    (status = 200, body = ListResponse<Ticket>), (status = 404, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<AppId>,
    ApiQuery(q): ApiQuery<TicketQuery>,
) -> Result<Json<ListResponse<Ticket>>, ApiError> {
    crate::storage::apps::get(&s.db, caller.org, app).await.map_err(|e| ApiError::from_storage(e, "app"))?;
    let page = PageParams { limit: q.limit, cursor: q.cursor }.to_request()?;
    Ok(Json(store::list(&s.db, caller.org, app, q.call_id, page).await.map_err(storage_error)?.into()))
}

/// Read a ticket.
#[utoipa::path(get, path = "/tickets/{id}", tag = "tickets", params(("id" = TicketId, Path)), responses(
    (status = 200, body = Ticket), (status = 404, body = Problem)))]
pub async fn get(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<TicketId>) -> Result<Json<Ticket>, ApiError> {
    Ok(Json(store::get(&s.db, caller.org, id).await.map_err(storage_error)?))
}

/// Change a ticket's title, description, priority or status.
#[utoipa::path(patch, path = "/tickets/{id}", tag = "tickets", params(("id" = TicketId, Path)), request_body = UpdateTicket, responses(
    (status = 200, body = Ticket), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<TicketId>,
    ApiJson(body): ApiJson<UpdateTicket>,
) -> Result<Json<Ticket>, ApiError> {
    let current = store::get(&s.db, caller.org, id).await.map_err(storage_error)?;
    let (title, description) =
        ticket_text(body.title.as_deref().unwrap_or(&current.title), body.description.as_deref().unwrap_or(&current.description))?;
    let changes = TicketChanges { title: Some(title), description: Some(description), priority: body.priority, status: body.status };
    Ok(Json(store::update(&s.db, caller.org, id, &changes, caller.actor).await.map_err(storage_error)?))
}
