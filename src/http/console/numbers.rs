//! App Details → Phone Numbers: the list, "Add Phone Number" (buy one by area code, with the
//! numbers for sale shown as you type, or attach one the Twilio account owns), edit, and remove
//! with a confirmation that says the number stays in the Twilio account unless released.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Submitted, Viewer, redirect_with_notice};
use super::{ConsoleError, Cursor, FormErrors, Layout, first_page};
use crate::domain::agent::Agent;
use crate::domain::app::App;
use crate::domain::ids::{AgentId, AppId, PhoneNumberId, PhoneProviderId};
use crate::domain::languages::{self, Language};
use crate::domain::phone_number::{Backup, E164, NumberOffer, OwnedNumber, PhoneNumber, ServiceMode, ServiceStatus};
use crate::domain::provider::PhoneProvider;
use crate::domain::recording::{self, RecordingSettings};
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::api::apps as apps_api;
use crate::http::api::phone_numbers::{self as api, CreatePhoneNumber, PhoneNumberListing, UpdatePhoneNumber};
use crate::http::api::phone_providers::{self as providers_api, IncomingQuery, NumberSearch};
use crate::http::input::{ApiJson, ApiPath, ApiQuery};

#[derive(Template)]
#[template(path = "apps/numbers.html")]
struct NumbersPage {
    layout: Layout,
    app: App,
    tab: &'static str,
    numbers: Vec<PhoneNumberListing>,
    next_cursor: Option<String>,
}

/// `GET /apps/{id}/numbers`: the Phone Numbers tab.
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<AppId>,
    viewer: Viewer,
    Query(q): Query<Cursor>,
) -> Result<Response, ConsoleError> {
    let app = apps_api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
    let list = api::list(State(state), viewer.caller(), ApiPath(id), first_page(q.cursor)).await?.0;
    let layout = viewer.layout(format!("{} · Phone Numbers", app.name), "apps");
    Ok(viewer.render(&NumbersPage { layout, app, tab: "numbers", numbers: list.data, next_cursor: list.next_cursor }))
}

/// The languages besides English, for the picker.
fn optional_languages() -> Vec<&'static Language> {
    languages::all().iter().filter(|l| !l.always_on).collect()
}

#[derive(Template)]
#[template(path = "numbers/add.html")]
struct AddPage {
    layout: Layout,
    app: App,
    providers: Vec<PhoneProvider>,
    agents: Vec<Agent>,
    languages: Vec<&'static Language>,
    /// The search and choices so far.
    search: AddSearch,
    form: AddForm,
    offers: Vec<NumberOffer>,
    owned: Vec<OwnedNumber>,
    /// Why the carrier's lists could not be shown.
    lookup_error: Option<String>,
    errors: FormErrors,
}

#[derive(Deserialize, Default)]
pub struct AddSearch {
    provider_id: Option<PhoneProviderId>,
    area_code: Option<String>,
}

/// The "Add Phone Number" form. `number` is the choice: `area:415` (any number there),
/// `buy:+14155550100` (that number for sale) or `own:PN…` (a number the account owns).
#[derive(Deserialize, Default)]
pub struct AddForm {
    provider_id: Option<PhoneProviderId>,
    agent_id: Option<AgentId>,
    number: Option<String>,
    #[serde(default)]
    expand_languages: bool,
    #[serde(default)]
    languages: Vec<String>,
    #[serde(default)]
    generate_first_message: bool,
}

async fn add_page(
    state: AppState,
    viewer: &Viewer,
    app: AppId,
    search: AddSearch,
    form: AddForm,
    errors: FormErrors,
) -> Result<Response, ConsoleError> {
    let app = apps_api::get(State(state.clone()), viewer.caller(), ApiPath(app)).await?.0;
    let providers = providers_api::list(State(state.clone()), viewer.caller(), first_page(None)).await?.0.data;
    let agents = super::app_agents(&state, viewer, app.id).await?;
    let provider = search.provider_id.or(form.provider_id).or_else(|| (providers.len() == 1).then(|| providers[0].id));
    let (mut offers, mut owned, mut lookup_error) = (Vec::new(), Vec::new(), None);
    if let Some(provider) = provider {
        let incoming = IncomingQuery { limit: Some(50), cursor: None };
        match providers_api::incoming_numbers(State(state.clone()), viewer.caller(), ApiPath(provider), ApiQuery(incoming)).await {
            Ok(list) => owned = list.0.data,
            Err(e) => lookup_error = Some(super::sentence(&e.to_string())),
        }
        if let Some(area_code) = search.area_code.clone().filter(|c| !c.trim().is_empty()) {
            let query = NumberSearch { area_code: Some(area_code), country: None };
            match providers_api::available_numbers(State(state.clone()), viewer.caller(), ApiPath(provider), ApiQuery(query)).await {
                Ok(list) => offers = list.0.data,
                Err(e) => lookup_error = Some(super::sentence(&e.to_string())),
            }
        }
    }
    let status = if errors.any() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let search = AddSearch { provider_id: provider, area_code: search.area_code };
    let page = AddPage {
        layout: viewer.layout(format!("{} · Add Phone Number", app.name), "apps"),
        app,
        providers,
        agents,
        languages: optional_languages(),
        search,
        form,
        offers,
        owned,
        lookup_error,
        errors,
    };
    Ok((status, viewer.render(&page)).into_response())
}

/// `GET /apps/{id}/numbers/new`: the form, with the numbers for sale in `area_code` and those
/// the chosen provider's account owns.
pub async fn add(
    State(state): State<AppState>,
    Path(app): Path<AppId>,
    viewer: Viewer,
    Query(search): Query<AddSearch>,
) -> Result<Response, ConsoleError> {
    add_page(state, &viewer, app, search, AddForm::default(), FormErrors::default()).await
}

/// `POST /apps/{id}/numbers`: buys or attaches the number and binds it to the agent.
pub async fn create(
    State(state): State<AppState>,
    Path(app): Path<AppId>,
    Submitted { viewer, form }: Submitted<AddForm>,
) -> Result<Response, ConsoleError> {
    let choice = form.number.as_deref().unwrap_or_default();
    let (area_code, phone_number, twilio_sid) = match choice.split_once(':') {
        Some(("area", code)) => (Some(code.to_owned()), None, None),
        Some(("buy", number)) => (None, Some(number.to_owned()), None),
        Some(("own", sid)) => (None, None, Some(sid.to_owned())),
        _ => (None, None, None),
    };
    let missing = match (form.provider_id, form.agent_id) {
        (None, _) => Some(crate::domain::validation::Invalid::new("provider_id", "choose the phone provider")),
        (_, None) => Some(crate::domain::validation::Invalid::new("agent_id", "choose the agent who answers")),
        _ if choice.is_empty() => Some(crate::domain::validation::Invalid::new("number", "choose a number to buy or one the account owns")),
        _ => None,
    };
    let search = AddSearch { provider_id: form.provider_id, area_code: area_code.clone() };
    if let Some(missing) = missing {
        return add_page(state, &viewer, app, search, form, FormErrors::from_api(missing.into())?).await;
    }
    let body = CreatePhoneNumber {
        provider_id: form.provider_id.expect("checked above"),
        agent_id: form.agent_id.expect("checked above"),
        area_code,
        phone_number,
        twilio_sid,
        expand_languages: form.expand_languages,
        languages: form.languages.clone(),
        generate_first_message: form.generate_first_message,
        mode: ServiceMode::ConversationRelay,
        recording: RecordingSettings::default(),
        backup: None,
    };
    match api::create(State(state.clone()), viewer.caller(), ApiPath(app), ApiJson(body)).await {
        Ok((_, created)) => {
            let notice = format!("{} is ready: calls to it now reach the agent.", created.number.as_str());
            Ok(redirect_with_notice(&viewer, &format!("/apps/{app}/numbers"), &notice))
        }
        Err(e) => add_page(state, &viewer, app, search, form, FormErrors::from_api(e)?).await,
    }
}

#[derive(Template)]
#[template(path = "numbers/edit.html")]
struct EditPage {
    layout: Layout,
    app: App,
    number: PhoneNumber,
    agents: Vec<Agent>,
    languages: Vec<&'static Language>,
    default_announcement: &'static str,
    errors: FormErrors,
}

async fn edit_page(state: AppState, viewer: &Viewer, number: PhoneNumber, errors: FormErrors) -> Result<Response, ConsoleError> {
    let app = apps_api::get(State(state.clone()), viewer.caller(), ApiPath(number.app_id)).await?.0;
    let agents = super::app_agents(&state, viewer, app.id).await?;
    let status = if errors.any() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let layout = viewer.layout(format!("Edit {}", number.number.as_str()), "apps");
    Ok((
        status,
        viewer.render(&EditPage {
            layout,
            app,
            number,
            agents,
            languages: optional_languages(),
            default_announcement: recording::DEFAULT_ANNOUNCEMENT,
            errors,
        }),
    )
        .into_response())
}

/// `GET /numbers/{id}/edit`.
pub async fn edit(State(state): State<AppState>, Path(id): Path<PhoneNumberId>, viewer: Viewer) -> Result<Response, ConsoleError> {
    let number = api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
    edit_page(state, &viewer, number, FormErrors::default()).await
}

/// The edit form: every field is sent, so an unticked box means "off" and no language ticked
/// means none.
#[derive(Deserialize)]
pub struct EditForm {
    agent_id: Option<AgentId>,
    #[serde(default)]
    expand_languages: bool,
    #[serde(default)]
    languages: Vec<String>,
    #[serde(default)]
    generate_first_message: bool,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    record_calls: bool,
    #[serde(default)]
    recording_announcement: String,
    #[serde(default)]
    recording_opt_out: bool,
    #[serde(default)]
    keep_carrier_copy: bool,
    #[serde(default)]
    backup_forward_to: String,
    #[serde(default)]
    backup_deployment: String,
}

impl EditForm {
    /// The backup the form asks for: a number to forward to, or another deployment, or none.
    fn backup(&self) -> Result<Option<Backup>, Invalid> {
        match (self.backup_forward_to.trim(), self.backup_deployment.trim()) {
            ("", "") => Ok(None),
            (number, "") => Ok(Some(Backup::ForwardTo(E164::parse("backup.forward_to", number)?))),
            ("", url) => Ok(Some(Backup::Deployment(url.to_owned()))),
            _ => Err(Invalid::new("backup.forward_to", "give a number to forward to or another deployment, not both")),
        }
    }
}

/// `POST /numbers/{id}/edit`.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<PhoneNumberId>,
    Submitted { viewer, form }: Submitted<EditForm>,
) -> Result<Response, ConsoleError> {
    let current = api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
    let backup = match form.backup() {
        Ok(backup) => backup,
        Err(invalid) => return edit_page(state, &viewer, current, FormErrors::from_api(invalid.into())?).await,
    };
    // The form edits the English announcement; those of other languages (set through the API) stay.
    let mut recording = current.recording;
    match form.recording_announcement.trim() {
        "" => recording.announcement.remove("en"),
        text => recording.announcement.insert("en".to_owned(), text.to_owned()),
    };
    recording.enabled = form.record_calls;
    recording.caller_may_opt_out = form.recording_opt_out;
    recording.keep_carrier_copy = form.keep_carrier_copy;
    let body = UpdatePhoneNumber {
        agent_id: form.agent_id,
        expand_languages: Some(form.expand_languages),
        languages: Some(form.languages),
        generate_first_message: Some(form.generate_first_message),
        mode: None,
        status: Some(if form.disabled { ServiceStatus::Disabled } else { ServiceStatus::Active }),
        recording: Some(recording),
        // Twilio is only told when the backup changes.
        backup: (backup != current.backup).then_some(backup),
    };
    match api::update(State(state.clone()), viewer.caller(), ApiPath(id), ApiJson(body)).await {
        Ok(updated) => {
            Ok(redirect_with_notice(&viewer, &format!("/apps/{}/numbers", updated.app_id), &format!("{} saved.", updated.number.as_str())))
        }
        Err(e) => {
            let errors = FormErrors::from_api(e)?;
            let number = api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
            edit_page(state, &viewer, number, errors).await
        }
    }
}

#[derive(Template)]
#[template(path = "numbers/remove.html")]
struct RemovePage {
    layout: Layout,
    number: PhoneNumber,
}

/// `GET /numbers/{id}/remove`: asks for confirmation.
pub async fn confirm_remove(
    State(state): State<AppState>,
    Path(id): Path<PhoneNumberId>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    let number = api::get(State(state), viewer.caller(), ApiPath(id)).await?.0;
    let layout = viewer.layout(format!("Remove {}", number.number.as_str()), "apps");
    Ok(viewer.render(&RemovePage { layout, number }))
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    release: bool,
}

/// `POST /numbers/{id}/remove`.
pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<PhoneNumberId>,
    Submitted { viewer, form }: Submitted<RemoveForm>,
) -> Result<Response, ConsoleError> {
    let number = api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
    let partial = api::remove(&state, viewer.caller(), id, form.release).await?;
    let notice = match (partial, form.release) {
        (Some(partial), _) => partial.detail,
        (None, true) => format!("{} was removed and released from the Twilio account.", number.number.as_str()),
        (None, false) => format!("{} was removed. It stays in your Twilio account with its earlier settings.", number.number.as_str()),
    };
    Ok(redirect_with_notice(&viewer, &format!("/apps/{}/numbers", number.app_id), &notice))
}
