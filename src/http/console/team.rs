//! Organization Settings → Users (add with a role, change roles, remove), API tokens (created and
//! shown once, revoked) and the audit log (filtered by action and actor).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Submitted, Viewer, redirect_with_notice};
use super::{ConsoleError, Cursor, Empty, FormErrors, Layout, first_page};
use crate::domain::audit::AuditEntry;
use crate::domain::ids::{TokenId, UserId};
use crate::domain::org::{ApiToken, Role, User};
use crate::http::AppState;
use crate::http::api::api_tokens::{self as tokens_api, CreateApiToken};
use crate::http::api::audit_log::{self as audit_api, AuditQuery};
use crate::http::api::users::{self as users_api, AddUser, ChangeRole};
use crate::http::input::{ApiJson, ApiPath, ApiQuery};

#[derive(Template)]
#[template(path = "settings/users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<User>,
    roles: &'static [Role],
    me: UserId,
    email: String,
    /// Someone just added with a new account, and their one-time password.
    added: Option<(String, String)>,
    errors: FormErrors,
}

async fn users_page(
    state: AppState,
    viewer: &Viewer,
    email: String,
    added: Option<(String, String)>,
    errors: FormErrors,
) -> Result<Response, ConsoleError> {
    let users = users_api::list(State(state), viewer.caller()).await?.0.data;
    let status = if errors.any() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page =
        UsersPage { layout: viewer.layout("Users", "settings"), users, roles: Role::ALL, me: viewer.owner.user_id, email, added, errors };
    Ok((status, viewer.render(&page)).into_response())
}

/// `GET /settings/users`.
pub async fn users(State(state): State<AppState>, viewer: Viewer) -> Result<Response, ConsoleError> {
    users_page(state, &viewer, String::new(), None, FormErrors::default()).await
}

/// `POST /settings/users`: adds a person; a new account's one-time password is shown once, on
/// this answer only.
pub async fn add_user(State(state): State<AppState>, Submitted { viewer, form }: Submitted<AddUser>) -> Result<Response, ConsoleError> {
    let email = form.email.clone();
    match users_api::add(State(state.clone()), viewer.caller(), ApiJson(form)).await {
        Ok((_, added)) => match added.0.initial_password {
            Some(password) => {
                users_page(state, &viewer, String::new(), Some((added.0.user.email.as_str().to_owned(), password)), FormErrors::default())
                    .await
            }
            None => Ok(redirect_with_notice(
                &viewer,
                "/settings/users",
                &format!("{} already had an account and is now a member.", added.0.user.email.as_str()),
            )),
        },
        Err(e) => users_page(state, &viewer, email, None, FormErrors::from_api(e)?).await,
    }
}

/// `POST /settings/users/{id}/role`.
pub async fn change_role(
    State(state): State<AppState>,
    Path(id): Path<UserId>,
    Submitted { viewer, form }: Submitted<ChangeRole>,
) -> Result<Response, ConsoleError> {
    match users_api::change_role(State(state.clone()), viewer.caller(), ApiPath(id), ApiJson(form)).await {
        Ok(user) => Ok(redirect_with_notice(&viewer, "/settings/users", &format!("{} is now {}.", user.email.as_str(), user.role))),
        Err(e) => users_page(state, &viewer, String::new(), None, FormErrors::from_api(e)?).await,
    }
}

#[derive(Template)]
#[template(path = "settings/remove_user.html")]
struct RemoveUserPage {
    layout: Layout,
    user: User,
}

/// `GET /settings/users/{id}/remove`: asks for confirmation.
pub async fn confirm_remove_user(State(state): State<AppState>, Path(id): Path<UserId>, viewer: Viewer) -> Result<Response, ConsoleError> {
    let users = users_api::list(State(state), viewer.caller()).await?.0.data;
    let user = users.into_iter().find(|u| u.id == id).ok_or(crate::http::error::ApiError::NotFound("user"))?;
    Ok(viewer.render(&RemoveUserPage { layout: viewer.layout("Remove user", "settings"), user }))
}

/// `POST /settings/users/{id}/remove`.
pub async fn remove_user(
    State(state): State<AppState>,
    Path(id): Path<UserId>,
    Submitted { viewer, .. }: Submitted<Empty>,
) -> Result<Response, ConsoleError> {
    match users_api::remove(State(state.clone()), viewer.caller(), ApiPath(id)).await {
        Ok(_) => Ok(redirect_with_notice(&viewer, "/settings/users", "The person was removed from the organisation.")),
        Err(e) => users_page(state, &viewer, String::new(), None, FormErrors::from_api(e)?).await,
    }
}

#[derive(Template)]
#[template(path = "settings/api_tokens.html")]
struct TokensPage {
    layout: Layout,
    tokens: Vec<ApiToken>,
    next_cursor: Option<String>,
    name: String,
    /// A token just created: shown once.
    created: Option<String>,
    errors: FormErrors,
}

async fn tokens_page(
    state: AppState,
    viewer: &Viewer,
    cursor: Option<String>,
    name: String,
    created: Option<String>,
    errors: FormErrors,
) -> Result<Response, ConsoleError> {
    let list = tokens_api::list(State(state), viewer.caller(), first_page(cursor)).await?.0;
    let status = if errors.any() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = TokensPage {
        layout: viewer.layout("API tokens", "settings"),
        tokens: list.data,
        next_cursor: list.next_cursor,
        name,
        created,
        errors,
    };
    Ok((status, viewer.render(&page)).into_response())
}

/// `GET /settings/api-tokens`.
pub async fn api_tokens(State(state): State<AppState>, viewer: Viewer, Query(q): Query<Cursor>) -> Result<Response, ConsoleError> {
    tokens_page(state, &viewer, q.cursor, String::new(), None, FormErrors::default()).await
}

/// `POST /settings/api-tokens`: the new token is shown once, on this answer only.
pub async fn create_api_token(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<CreateApiToken>,
) -> Result<Response, ConsoleError> {
    let name = form.name.clone();
    match tokens_api::create(State(state.clone()), viewer.caller(), ApiJson(form)).await {
        Ok((_, created)) => tokens_page(state, &viewer, None, String::new(), Some(created.0.token), FormErrors::default()).await,
        Err(e) => tokens_page(state, &viewer, None, name, None, FormErrors::from_api(e)?).await,
    }
}

/// `POST /settings/api-tokens/{id}/revoke`.
pub async fn revoke_api_token(
    State(state): State<AppState>,
    Path(id): Path<TokenId>,
    Submitted { viewer, .. }: Submitted<Empty>,
) -> Result<Response, ConsoleError> {
    let token = tokens_api::revoke(State(state), viewer.caller(), ApiPath(id)).await?.0;
    Ok(redirect_with_notice(&viewer, "/settings/api-tokens", &format!("“{}” was revoked; it stops working at once.", token.name)))
}

#[derive(Template)]
#[template(path = "settings/audit_log.html")]
struct AuditPage {
    layout: Layout,
    entries: Vec<AuditEntry>,
    next_cursor: Option<String>,
    action: String,
    actor: String,
}

impl AuditPage {
    fn details(&self, entry: &AuditEntry) -> String {
        serde_json::to_string(&entry.details).unwrap_or_default()
    }

    fn filters_query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new()).append_pair("action", &self.action).append_pair("actor", &self.actor).finish()
    }
}

#[derive(Deserialize)]
pub struct AuditFilters {
    action: Option<String>,
    actor: Option<String>,
    cursor: Option<String>,
}

/// `GET /settings/audit-log`.
pub async fn audit_log(State(state): State<AppState>, viewer: Viewer, Query(q): Query<AuditFilters>) -> Result<Response, ConsoleError> {
    let query = AuditQuery { action: q.action.clone(), actor: q.actor.clone(), limit: Some(50), cursor: q.cursor };
    let list = audit_api::list(State(state), viewer.caller(), ApiQuery(query)).await?.0;
    let page = AuditPage {
        layout: viewer.layout("Audit log", "settings"),
        entries: list.data,
        next_cursor: list.next_cursor,
        action: q.action.unwrap_or_default(),
        actor: q.actor.unwrap_or_default(),
    };
    Ok(viewer.render(&page))
}
