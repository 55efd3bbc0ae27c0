//! `/audit-log`: who changed what in the organisation, newest first, by action and actor.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::domain::audit::AuditEntry;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::input::ApiQuery;
use crate::http::pagination::{ListResponse, PageParams};
use crate::storage::audit::{self, AuditFilter};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// An action (`user.created`) or a resource's actions (`user`).
    pub(crate) action: Option<String>,
    /// Who acted: `user:<id>`, `token:<id>` or `system`.
    pub(crate) actor: Option<String>,
    /// How many entries to return, 1 to 200 (default 50).
    pub(crate) limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// The organisation's audit log, newest first, optionally filtered.
#[utoipa::path(get, path = "/audit-log", tag = "audit-log", params(AuditQuery), responses((status = 200, body = ListResponse<AuditEntry>)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<ListResponse<AuditEntry>>, ApiError> {
    let page = PageParams { limit: q.limit, cursor: q.cursor }.to_request()?;
    let filter = AuditFilter { action: q.action.filter(|a| !a.trim().is_empty()), actor: q.actor.filter(|a| !a.trim().is_empty()) };
    let page = audit::list(&s.db, caller.org, &filter, page).await.map_err(|e| ApiError::from_storage(e, "audit entry"))?;
    Ok(Json(page.into()))
}
