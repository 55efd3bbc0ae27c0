//! `/users`: the people of the organisation and their roles. Adding someone new creates their
//! account with a one-time password, shown once, which they change after signing in. Only owners
//! grant or take away the owner role; the last owner always stays.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::domain::ids::UserId;
use crate::domain::org::{Email, Role, User};
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiJson, ApiPath};
use crate::http::pagination::ListResponse;
use crate::http::{AppState, off_runtime};
use crate::storage::{StorageError, users};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddUser {
    #[serde(default)]
    #[schema(required = true)]
    pub(crate) email: String,
    /// `owner`, `admin` or `member` (default).
    pub(crate) role: Option<Role>,
}

/// A member as added: for a new account, its one-time password.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AddedUser {
    #[serde(flatten)]
    pub(crate) user: User,
    /// Set when the person had no account yet: give it to them to sign in. Not shown again.
    pub(crate) initial_password: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    pub(crate) role: Role,
}

fn storage_error(e: StorageError) -> ApiError {
    ApiError::from_storage(e, "user")
}

/// Only owners hand out or take away the owner role.
fn may_touch_owners(caller: &Caller, roles: &[Role]) -> Result<(), ApiError> {
    if roles.contains(&Role::Owner) && caller.role != Role::Owner {
        return Err(ApiError::Forbidden("only an owner can make someone an owner or change an owner".into()));
    }
    Ok(())
}

/// List the organisation's members in the order they joined.
#[utoipa::path(get, path = "/users", tag = "users", responses((status = 200, body = ListResponse<User>)))]
pub async fn list(State(s): State<AppState>, caller: Caller) -> Result<Json<ListResponse<User>>, ApiError> {
    Ok(Json(ListResponse { data: users::list(&s.db, caller.org).await.map_err(storage_error)?, next_cursor: None }))
}

/// Add a person to the organisation with a role. Someone without an account gets one, with a
/// one-time password in the answer.
#[utoipa::path(post, path = "/users", tag = "users", request_body = AddUser, responses(
    (status = 201, body = AddedUser), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn add(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<AddUser>,
) -> Result<(StatusCode, Json<AddedUser>), ApiError> {
    let email = Email::parse(&body.email)?;
    let role = body.role.unwrap_or(Role::Member);
    may_touch_owners(&caller, &[role])?;
    match users::add_existing(&s.db, caller.org, &email, role, caller.actor).await {
        Ok(user) => return Ok((StatusCode::CREATED, Json(AddedUser { user, initial_password: None }))),
        Err(StorageError::NotFound) => {}
        Err(e) => return Err(storage_error(e)),
    }
    let password = crate::storage::users::generate_password();
    let hash = {
        let password = password.clone();
        off_runtime(move || users::hash_password(&password)).await?
    };
    let user = users::create(&s.db, caller.org, &email, &hash, role, caller.actor).await.map_err(storage_error)?;
    Ok((StatusCode::CREATED, Json(AddedUser { user, initial_password: Some(password) })))
}

/// Change a member's role.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", params(("id" = UserId, Path)), request_body = ChangeRole, responses(
    (status = 200, body = User), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn change_role(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(body): ApiJson<ChangeRole>,
) -> Result<Json<User>, ApiError> {
    let current = users::get(&s.db, caller.org, id).await.map_err(storage_error)?;
    may_touch_owners(&caller, &[current.role, body.role])?;
    Ok(Json(users::change_role(&s.db, caller.org, id, body.role, caller.actor).await.map_err(storage_error)?))
}

/// Remove a member from the organisation; their console sessions here end at once.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = UserId, Path)), responses(
    (status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn remove(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<UserId>) -> Result<StatusCode, ApiError> {
    let current = users::get(&s.db, caller.org, id).await.map_err(storage_error)?;
    may_touch_owners(&caller, &[current.role])?;
    users::remove(&s.db, caller.org, id, caller.actor).await.map_err(storage_error)?;
    Ok(StatusCode::NO_CONTENT)
}
