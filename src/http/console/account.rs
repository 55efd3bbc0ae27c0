//! The signed-in user's own account: where they are signed in (and signing other browsers out),
//! and their password. Every role may change its own account.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{OwnAccount, Viewer, redirect_with_notice};
use super::{ConsoleError, Empty, FormErrors, Layout};
use crate::domain::ids::ConsoleSessionId;
use crate::domain::org::{ConsoleSession, new_password};
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::off_runtime;
use crate::storage::{console_sessions, users};

#[derive(Template)]
#[template(path = "settings/sessions.html")]
struct SessionsPage {
    layout: Layout,
    sessions: Vec<ConsoleSession>,
    current: ConsoleSessionId,
}

/// `GET /settings/sessions`: the browsers signed in as this user.
pub async fn sessions(State(state): State<AppState>, viewer: Viewer) -> Result<Response, ConsoleError> {
    let sessions = console_sessions::list(&state.db, viewer.owner.user_id).await.map_err(|e| ApiError::from_storage(e, "session"))?;
    let current = viewer.owner.session_id;
    Ok(viewer.render(&SessionsPage { layout: viewer.layout("Sessions", "settings"), sessions, current }))
}

/// `POST /settings/sessions/{id}/end`: signs that browser out.
pub async fn end_session(
    State(state): State<AppState>,
    Path(id): Path<ConsoleSessionId>,
    OwnAccount { viewer, .. }: OwnAccount<Empty>,
) -> Result<Response, ConsoleError> {
    console_sessions::revoke(&state.db, viewer.owner.org_id, viewer.owner.user_id, id)
        .await
        .map_err(|e| ApiError::from_storage(e, "session"))?;
    Ok(redirect_with_notice(&viewer, "/settings/sessions", "That session was signed out."))
}

#[derive(Template)]
#[template(path = "settings/password.html")]
struct PasswordPage {
    layout: Layout,
    errors: FormErrors,
}

/// `GET /settings/password`.
pub async fn password(viewer: Viewer) -> Response {
    viewer.render(&PasswordPage { layout: viewer.layout("Password", "settings"), errors: FormErrors::default() })
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

/// `POST /settings/password`: checks the current password, sets the new one and signs out every
/// other session of the user.
pub async fn change_password(
    State(state): State<AppState>,
    OwnAccount { viewer, form }: OwnAccount<PasswordForm>,
) -> Result<Response, ConsoleError> {
    let invalid = |e: Invalid| {
        let template = PasswordPage { layout: viewer.layout("Password", "settings"), errors: FormErrors::from_api(e.into())? };
        Ok((StatusCode::UNPROCESSABLE_ENTITY, viewer.render(&template)).into_response())
    };
    let candidate = console_sessions::sign_in_candidate(&state.db, &viewer.owner.email)
        .await
        .map_err(|e| ApiError::from_storage(e, "user"))?
        .ok_or(ApiError::NotFound("user"))?;
    let current = form.current_password;
    if !off_runtime(move || users::verify_password(&candidate.password_hash, &current)).await? {
        return invalid(Invalid::new("current_password", "is not your current password"));
    }
    let chosen = match new_password("new_password", &form.new_password) {
        Ok(chosen) => chosen,
        Err(e) => return invalid(e),
    };
    if chosen != form.confirm_password {
        return invalid(Invalid::new("confirm_password", "does not match the new password"));
    }
    let hash = off_runtime(move || users::hash_password(&chosen)).await?;
    let owner = &viewer.owner;
    users::set_password_hash(&state.db, owner.user_id, &hash, Some(owner.session_id), crate::domain::audit::Actor::User(owner.user_id))
        .await
        .map_err(|e| ApiError::from_storage(e, "user"))?;
    Ok(redirect_with_notice(&viewer, "/settings/password", "Password changed. Your other sessions were signed out."))
}
