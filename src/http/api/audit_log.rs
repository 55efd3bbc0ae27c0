//! `/audit-log`: who changed what in the organisation, newest first.

use axum::Json;
use axum::extract::State;

use crate::domain::audit::AuditEntry;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::input::ApiQuery;
use crate::http::pagination::{ListResponse, PageParams};
use crate::storage::audit;

/// The organisation's audit log, newest first.
#[utoipa::path(get, path = "/audit-log", tag = "audit-log", params(PageParams), responses((status = 200, body = ListResponse<AuditEntry>)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<AuditEntry>>, ApiError> {
    let page = audit::list(&s.db, caller.org, page.to_request()?).await.map_err(|e| ApiError::from_storage(e, "audit entry"))?;
    Ok(Json(page.into()))
}
