//! Organization Settings: phone providers (Twilio accounts, verified at once and shown with their
//! status), and the signed-in user's own account (password, sessions).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{OwnAccount, Submitted, Viewer, redirect_with_notice};
use super::{ConsoleError, Cursor, FormErrors, Layout, first_page, off_runtime};
use crate::domain::ids::{ConsoleSessionId, PhoneProviderId};
use crate::domain::org::{ConsoleSession, new_password};
use crate::domain::provider::{PhoneProvider, PhoneProviderStatus};
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::api::phone_providers::{self as api, CreatePhoneProvider};
use crate::http::error::ApiError;
use crate::http::input::{ApiJson, ApiPath};
use crate::storage::{console_sessions, users};

/// `GET /settings`.
pub async fn index() -> Redirect {
    Redirect::to("/settings/phone-providers")
}

/// How a provider's status reads on its badge, and the badge's colour class.
pub fn status_badge(status: &PhoneProviderStatus) -> (&'static str, &'static str) {
    match *status {
        PhoneProviderStatus::Active => ("Active", "good"),
        PhoneProviderStatus::Unverified => ("Not checked yet", "neutral"),
        PhoneProviderStatus::InvalidCredentials => ("Invalid credentials", "bad"),
        PhoneProviderStatus::Suspended => ("Suspended", "bad"),
        PhoneProviderStatus::Closed => ("Closed", "bad"),
        PhoneProviderStatus::Unreachable => ("Unreachable", "warn"),
    }
}

#[derive(Template)]
#[template(path = "settings/phone_providers.html")]
struct PhoneProvidersPage {
    layout: Layout,
    providers: Vec<PhoneProvider>,
    next_cursor: Option<String>,
    /// What the add form shows again after an error.
    name: String,
    account_sid: String,
    errors: FormErrors,
}

async fn phone_providers_page(
    state: AppState,
    viewer: &Viewer,
    cursor: Option<String>,
    (name, account_sid, errors): (String, String, FormErrors),
) -> Result<Response, ConsoleError> {
    let list = api::list(State(state), viewer.caller(), first_page(cursor)).await?.0;
    let status = if errors.any() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let template = PhoneProvidersPage {
        layout: viewer.layout("Phone providers", "settings"),
        providers: list.data,
        next_cursor: list.next_cursor,
        name,
        account_sid,
        errors,
    };
    Ok((status, viewer.render(&template)).into_response())
}

/// `GET /settings/phone-providers`.
pub async fn phone_providers(State(state): State<AppState>, viewer: Viewer, Query(q): Query<Cursor>) -> Result<Response, ConsoleError> {
    phone_providers_page(state, &viewer, q.cursor, Default::default()).await
}

/// `POST /settings/phone-providers`: connects a Twilio account and checks it at once.
pub async fn add_phone_provider(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<CreatePhoneProvider>,
) -> Result<Response, ConsoleError> {
    let (name, account_sid) = (form.name.clone(), form.account_sid.clone());
    match api::create(State(state.clone()), viewer.caller(), ApiJson(form)).await {
        Ok((_, created)) => {
            let (label, _) = status_badge(&created.status);
            let notice = match created.status {
                PhoneProviderStatus::Active => format!("“{}” is connected and Active.", created.name),
                _ => format!("“{}” was added, but Twilio's check says: {label}. Check the Account SID and auth token.", created.name),
            };
            Ok(redirect_with_notice(&viewer, "/settings/phone-providers", &notice))
        }
        Err(e) => phone_providers_page(state, &viewer, None, (name, account_sid, FormErrors::from_api(e)?)).await,
    }
}

/// `POST /settings/phone-providers/{id}/verify`: checks the credentials with Twilio again.
pub async fn verify_phone_provider(
    State(state): State<AppState>,
    Path(id): Path<PhoneProviderId>,
    Submitted { viewer, .. }: Submitted<Empty>,
) -> Result<Response, ConsoleError> {
    let checked = api::verify(State(state), viewer.caller(), ApiPath(id)).await?.0;
    let (label, _) = status_badge(&checked.status);
    Ok(redirect_with_notice(&viewer, "/settings/phone-providers", &format!("Checked “{}” with Twilio: {label}.", checked.name)))
}

#[derive(Template)]
#[template(path = "settings/remove_phone_provider.html")]
struct RemovePhoneProviderPage {
    layout: Layout,
    provider: PhoneProvider,
}

/// `GET /settings/phone-providers/{id}/remove`: asks for confirmation.
pub async fn confirm_remove_phone_provider(
    State(state): State<AppState>,
    Path(id): Path<PhoneProviderId>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    let provider = api::get(State(state), viewer.caller(), ApiPath(id)).await?.0;
    Ok(viewer.render(&RemovePhoneProviderPage { layout: viewer.layout(format!("Remove {}", provider.name), "settings"), provider }))
}

/// `POST /settings/phone-providers/{id}/remove`.
pub async fn remove_phone_provider(
    State(state): State<AppState>,
    Path(id): Path<PhoneProviderId>,
    Submitted { viewer, .. }: Submitted<Empty>,
) -> Result<Response, ConsoleError> {
    match api::delete(State(state), viewer.caller(), ApiPath(id)).await {
        Ok(_) => Ok(redirect_with_notice(&viewer, "/settings/phone-providers", "The phone provider was removed.")),
        Err(ApiError::Conflict(why)) => Ok(redirect_with_notice(&viewer, "/settings/phone-providers", &super::sentence(&why))),
        Err(e) => Err(e.into()),
    }
}

/// A form with nothing in it but its CSRF token.
#[derive(Deserialize)]
pub struct Empty {}

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
