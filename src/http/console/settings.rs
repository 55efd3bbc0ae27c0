//! Organization Settings: phone providers (Twilio accounts, verified at once and shown with their
//! status), LLM providers (with a connection test) and the retention policy.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{Submitted, Viewer, redirect_with_notice};
use super::{ConsoleError, Cursor, Empty, FormErrors, Layout, first_page};
use crate::domain::ids::{LlmProviderId, PhoneProviderId};
use crate::domain::org::RetentionPolicy;
use crate::domain::provider::{LlmProvider, PhoneProvider, PhoneProviderStatus};
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::api::llm_providers::{self as llm_api, ConnectionTest, CreateLlmProvider};
use crate::http::api::phone_providers::{self as api, CreatePhoneProvider, UpdatePhoneProvider};
use crate::http::api::retention as retention_api;
use crate::http::error::ApiError;
use crate::http::input::{ApiJson, ApiPath};

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
#[template(path = "settings/edit_phone_provider.html")]
struct EditPhoneProviderPage {
    layout: Layout,
    provider: PhoneProvider,
    errors: FormErrors,
}

/// `GET /settings/phone-providers/{id}/edit`.
pub async fn edit_phone_provider(
    State(state): State<AppState>,
    Path(id): Path<PhoneProviderId>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    let provider = api::get(State(state), viewer.caller(), ApiPath(id)).await?.0;
    let layout = viewer.layout(format!("Edit {}", provider.name), "settings");
    Ok(viewer.render(&EditPhoneProviderPage { layout, provider, errors: FormErrors::default() }))
}

/// The edit form: empty credentials stay as they are.
#[derive(Deserialize)]
pub struct EditPhoneProviderForm {
    #[serde(default)]
    name: String,
    auth_token: Option<String>,
    api_key_sid: Option<String>,
    api_key_secret: Option<String>,
    #[serde(default)]
    remove_api_key: bool,
}

/// `POST /settings/phone-providers/{id}/edit`: new credentials are checked with Twilio at once.
pub async fn update_phone_provider(
    State(state): State<AppState>,
    Path(id): Path<PhoneProviderId>,
    Submitted { viewer, form }: Submitted<EditPhoneProviderForm>,
) -> Result<Response, ConsoleError> {
    let body = UpdatePhoneProvider {
        name: Some(form.name),
        auth_token: form.auth_token,
        api_key_sid: if form.remove_api_key { Some(None) } else { form.api_key_sid.map(Some) },
        api_key_secret: form.api_key_secret,
    };
    match api::update(State(state.clone()), viewer.caller(), ApiPath(id), ApiJson(body)).await {
        Ok(saved) => {
            let (label, _) = status_badge(&saved.status);
            Ok(redirect_with_notice(&viewer, "/settings/phone-providers", &format!("“{}” saved. Twilio's check: {label}.", saved.name)))
        }
        Err(e) => {
            let errors = FormErrors::from_api(e)?;
            let provider = api::get(State(state), viewer.caller(), ApiPath(id)).await?.0;
            let layout = viewer.layout(format!("Edit {}", provider.name), "settings");
            Ok((StatusCode::UNPROCESSABLE_ENTITY, viewer.render(&EditPhoneProviderPage { layout, provider, errors })).into_response())
        }
    }
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

#[derive(Template)]
#[template(path = "settings/llm_providers.html")]
struct LlmProvidersPage {
    layout: Layout,
    providers: Vec<LlmProvider>,
    next_cursor: Option<String>,
    form: (String, String, String),
    /// The last connection test, by provider.
    tested: Option<(LlmProviderId, ConnectionTest)>,
    errors: FormErrors,
    /// The embedded model's state, when it is installed.
    embedded: Option<crate::models::llm::EngineStats>,
}

async fn llm_providers_page(
    state: AppState,
    viewer: &Viewer,
    cursor: Option<String>,
    form: (String, String, String),
    tested: Option<(LlmProviderId, ConnectionTest)>,
    errors: FormErrors,
) -> Result<Response, ConsoleError> {
    let embedded = state.models.language_model().map(|engine| engine.stats());
    let list = llm_api::list(State(state), viewer.caller(), first_page(cursor)).await?.0;
    let status = if errors.any() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = LlmProvidersPage {
        layout: viewer.layout("LLM providers", "settings"),
        providers: list.data,
        next_cursor: list.next_cursor,
        form,
        tested,
        errors,
        embedded,
    };
    Ok((status, viewer.render(&page)).into_response())
}

/// `GET /settings/llm-providers`.
pub async fn llm_providers(State(state): State<AppState>, viewer: Viewer, Query(q): Query<Cursor>) -> Result<Response, ConsoleError> {
    llm_providers_page(state, &viewer, q.cursor, Default::default(), None, FormErrors::default()).await
}

/// `POST /settings/llm-providers`.
pub async fn add_llm_provider(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<CreateLlmProvider>,
) -> Result<Response, ConsoleError> {
    let typed = (form.name.clone(), form.base_url.clone(), form.default_model.clone());
    match llm_api::create(State(state.clone()), viewer.caller(), ApiJson(form)).await {
        Ok((_, created)) => Ok(redirect_with_notice(
            &viewer,
            "/settings/llm-providers",
            &format!("“{}” added. Test the connection to be sure it answers.", created.name),
        )),
        Err(e) => llm_providers_page(state, &viewer, None, typed, None, FormErrors::from_api(e)?).await,
    }
}

/// `POST /settings/llm-providers/{id}/test`: asks the model for one word and shows what happened.
pub async fn test_llm_provider(
    State(state): State<AppState>,
    Path(id): Path<LlmProviderId>,
    Submitted { viewer, .. }: Submitted<Empty>,
) -> Result<Response, ConsoleError> {
    let tested = llm_api::test(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
    llm_providers_page(state, &viewer, None, Default::default(), Some((id, tested)), FormErrors::default()).await
}

/// `POST /settings/llm-providers/{id}/remove`.
pub async fn remove_llm_provider(
    State(state): State<AppState>,
    Path(id): Path<LlmProviderId>,
    Submitted { viewer, .. }: Submitted<Empty>,
) -> Result<Response, ConsoleError> {
    match llm_api::delete(State(state), viewer.caller(), ApiPath(id)).await {
        Ok(_) => Ok(redirect_with_notice(&viewer, "/settings/llm-providers", "The LLM provider was removed.")),
        Err(ApiError::Conflict(why)) => Ok(redirect_with_notice(&viewer, "/settings/llm-providers", &super::sentence(&why))),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "settings/retention.html")]
struct RetentionPage {
    layout: Layout,
    policy: RetentionPolicy,
    errors: FormErrors,
}

/// `GET /settings/retention`.
pub async fn retention(State(state): State<AppState>, viewer: Viewer) -> Result<Response, ConsoleError> {
    let policy = retention_api::get(State(state), viewer.caller()).await?.0;
    Ok(viewer.render(&RetentionPage { layout: viewer.layout("Retention", "settings"), policy, errors: FormErrors::default() }))
}

/// The retention form: empty keeps forever.
#[derive(Deserialize)]
pub struct RetentionForm {
    transcript_days: Option<String>,
    record_days: Option<String>,
    recording_days: Option<String>,
}

fn days(field: &str, text: Option<&str>) -> Result<Option<i64>, Invalid> {
    text.map(|t| t.trim().parse().map_err(|_| Invalid::new(field, "must be a whole number of days, or empty to keep forever"))).transpose()
}

/// `POST /settings/retention`.
pub async fn set_retention(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<RetentionForm>,
) -> Result<Response, ConsoleError> {
    let typed = days("transcript_days", form.transcript_days.as_deref()).and_then(|transcript_days| {
        Ok(RetentionPolicy {
            transcript_days,
            record_days: days("record_days", form.record_days.as_deref())?,
            recording_days: days("recording_days", form.recording_days.as_deref())?,
        })
    });
    let result = match typed {
        Ok(policy) => retention_api::put(State(state.clone()), viewer.caller(), ApiJson(policy)).await.map(|_| ()),
        Err(invalid) => Err(ApiError::Invalid(invalid)),
    };
    match result {
        Ok(()) => Ok(redirect_with_notice(&viewer, "/settings/retention", "Retention policy saved. The next purge applies it.")),
        Err(e) => {
            let policy = retention_api::get(State(state), viewer.caller()).await?.0;
            let page = RetentionPage { layout: viewer.layout("Retention", "settings"), policy, errors: FormErrors::from_api(e)? };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, viewer.render(&page)).into_response())
        }
    }
}
