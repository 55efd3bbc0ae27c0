//! Bearer-token authentication as an extractor: a handler that takes [`Caller`] only runs for a
//! valid, unrevoked token, and everything it does is scoped to the token's organisation. Roles
//! are enforced here, for every route at once: a `member` token may read (GET), never change.

use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::domain::audit::Actor;
use crate::domain::ids::OrgId;
use crate::domain::org::Role;
use crate::storage::tokens;

/// The authenticated caller of an API request.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub org: OrgId,
    pub actor: Actor,
    pub role: Role,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or(ApiError::Unauthorized)?;
        let token =
            header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).map(str::trim).ok_or(ApiError::Unauthorized)?;
        let owner =
            tokens::authenticate(&state.db, token).await.map_err(|e| ApiError::from_storage(e, "token"))?.ok_or(ApiError::Unauthorized)?;
        state.rate_limits.admit_token(owner.token_id)?;
        let reads = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !reads && !owner.role.can_change() {
            return Err(ApiError::Forbidden(format!(
                "this API token has the `{}` role, which can read but not change anything; use an admin token",
                owner.role
            )));
        }
        Ok(Caller { org: owner.org_id, actor: Actor::Token(owner.token_id), role: owner.role })
    }
}
