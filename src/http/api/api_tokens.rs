//! `/api-tokens`: the organisation's API tokens. A token is shown once, when created.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::domain::ids::TokenId;
use crate::domain::org::{self, ApiToken, Role};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{ListResponse, PageParams};
use crate::storage::tokens;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiToken {
    #[serde(default)]
    #[schema(required = true)]
    pub(crate) name: String,
    /// `admin` (default: may change things) or `member` (may only read).
    pub(crate) role: Option<Role>,
}

/// A new token: the only response that ever contains it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedApiToken {
    #[serde(flatten)]
    pub(crate) record: ApiToken,
    /// Use as `Authorization: Bearer <token>`. Store it now; it is not shown again.
    pub(crate) token: String,
}

fn storage_error(e: crate::storage::StorageError) -> ApiError {
    ApiError::from_storage(e, "API token")
}

/// List API tokens (never the tokens themselves), newest first.
#[utoipa::path(get, path = "/api-tokens", tag = "api-tokens", params(PageParams), responses((status = 200, body = ListResponse<ApiToken>)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<ApiToken>>, ApiError> {
    Ok(Json(tokens::list(&s.db, caller.org, page.to_request()?).await.map_err(storage_error)?.into()))
}

/// Create an API token for the organisation.
#[utoipa::path(post, path = "/api-tokens", tag = "api-tokens", request_body = CreateApiToken, responses(
    (status = 201, body = CreatedApiToken), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateApiToken>,
) -> Result<(StatusCode, Json<CreatedApiToken>), ApiError> {
    let name = org::token_name(&body.name)?;
    let role = org::token_role(body.role.unwrap_or(Role::Admin))?;
    let (record, token) = tokens::create(&s.db, caller.org, &name, role, caller.actor).await.map_err(storage_error)?;
    Ok((StatusCode::CREATED, Json(CreatedApiToken { record, token: token.to_string() })))
}

/// Revoke an API token; it stops working at once.
#[utoipa::path(delete, path = "/api-tokens/{id}", tag = "api-tokens", params(("id" = TokenId, Path)), responses(
    (status = 200, body = ApiToken), (status = 404, body = Problem)))]
pub async fn revoke(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<TokenId>) -> Result<Json<ApiToken>, ApiError> {
    Ok(Json(tokens::revoke(&s.db, caller.org, id, caller.actor).await.map_err(storage_error)?))
}
