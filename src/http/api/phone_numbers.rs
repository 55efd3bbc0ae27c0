//! `/apps/{app_id}/phone-numbers` and `/phone-numbers/{id}`: phone services. Creating one buys
//! or attaches the number at Twilio; removing one restores or releases it.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::agent::{greeting, speech};
use crate::domain::agent::AgentSpec;
use crate::domain::ids::{AgentId, AppId, OrgId, PhoneNumberId, PhoneProviderId};
use crate::domain::languages;
use crate::domain::phone_number::{AreaCode, Backup, E164, PhoneNumber, ServiceMode, ServiceStatus};
use crate::domain::provider;
use crate::domain::recording::RecordingSettings;
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{ListResponse, PageParams};
use crate::models::SpeechReadiness;
use crate::storage::phone_numbers::{self as store, CallActivity, PhoneNumberChanges};
use crate::storage::{agents, apps, phone_providers};
use crate::telephony::twilio::provisioning::{self, NumberSource, ServiceRequest};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePhoneNumber {
    pub(crate) agent_id: Option<AgentId>,
    pub(crate) expand_languages: Option<bool>,
    pub(crate) languages: Option<Vec<String>>,
    pub(crate) generate_first_message: Option<bool>,
    pub(crate) mode: Option<ServiceMode>,
    /// `active` or `disabled`.
    pub(crate) status: Option<ServiceStatus>,
    /// Recording and consent settings, replaced as a whole.
    pub(crate) recording: Option<RecordingSettings>,
    /// Where calls go when this server cannot answer them (set as the number's fallback at
    /// Twilio); `null` sends them back to this server's own fallback.
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<Backup>)]
    pub(crate) backup: Option<Option<Backup>>,
}

fn storage_error(e: crate::storage::StorageError) -> ApiError {
    ApiError::from_storage(e, "phone number")
}

/// A new phone service. Give exactly one of `area_code` (buy any number there), `phone_number`
/// (attach it if the account owns it, else buy it) or `twilio_sid` (attach that number).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePhoneNumber {
    #[schema(value_type = String, format = Uuid)]
    pub(crate) provider_id: PhoneProviderId,
    pub(crate) agent_id: AgentId,
    /// Buy any number in this area code (one of the three number sources).
    #[schema(pattern = "^[0-9]{3}$")]
    pub(crate) area_code: Option<String>,
    /// Attach (if the account owns it) or buy this number (one of the three number sources).
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    pub(crate) phone_number: Option<String>,
    /// Attach the account's number with this SID (one of the three number sources).
    #[schema(pattern = "^PN[0-9a-fA-F]{32}$")]
    pub(crate) twilio_sid: Option<String>,
    #[serde(default)]
    pub(crate) expand_languages: bool,
    #[serde(default)]
    pub(crate) languages: Vec<String>,
    #[serde(default)]
    pub(crate) generate_first_message: bool,
    #[serde(default = "default_mode")]
    pub(crate) mode: ServiceMode,
    /// Recording and consent settings (default: not recorded).
    #[serde(default)]
    pub(crate) recording: RecordingSettings,
    /// Where calls go when this server cannot answer them (set as the number's fallback at Twilio).
    pub(crate) backup: Option<Backup>,
}

fn default_mode() -> ServiceMode {
    ServiceMode::ConversationRelay
}

impl CreatePhoneNumber {
    fn source(&self) -> Result<NumberSource, Invalid> {
        match (&self.area_code, &self.phone_number, &self.twilio_sid) {
            (Some(code), None, None) => Ok(NumberSource::Buy(AreaCode::parse(code)?)),
            (None, Some(number), None) => Ok(NumberSource::Number(E164::parse("phone_number", number)?)),
            (None, None, Some(sid)) => Ok(NumberSource::Sid(provider::twilio_sid("twilio_sid", "PN", sid)?)),
            _ => Err(Invalid::new("area_code", "give exactly one of area_code, phone_number or twilio_sid")),
        }
    }
}

/// A phone service with its agent's name and its recent calls.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PhoneNumberListing {
    #[serde(flatten)]
    pub(crate) number: PhoneNumber,
    pub(crate) agent_name: Option<String>,
    #[serde(flatten)]
    pub(crate) activity: CallActivity,
}

/// List an app's phone numbers with their agents, status and call activity, newest first.
#[utoipa::path(get, path = "/apps/{app_id}/phone-numbers", tag = "phone-numbers", params(("app_id" = AppId, Path), PageParams), responses(
    (status = 200, body = ListResponse<PhoneNumberListing>), (status = 404, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<AppId>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<PhoneNumberListing>>, ApiError> {
    let page = store::list(&s.db, caller.org, app, page.to_request()?).await.map_err(|e| ApiError::from_storage(e, "app"))?;
    let mut activity = store::call_activity(&s.db, caller.org, app).await.map_err(storage_error)?;
    let mut agent_names: HashMap<AgentId, String> = HashMap::new();
    for number in &page.items {
        if !agent_names.contains_key(&number.agent_id) {
            let agent = agents::get(&s.db, caller.org, number.agent_id).await.map_err(storage_error)?;
            agent_names.insert(agent.id, agent.spec.name);
        }
    }
    Ok(Json(
        page.map(|number| PhoneNumberListing {
            agent_name: agent_names.get(&number.agent_id).cloned(),
            activity: activity.remove(&number.id).unwrap_or_default(),
            number,
        })
        .into(),
    ))
}

/// Give an agent a phone number: buy one by area code, buy or attach a given number, or attach
/// one of the account's numbers by SID. Its calls then come to the agent.
#[utoipa::path(post, path = "/apps/{app_id}/phone-numbers", tag = "phone-numbers", params(("app_id" = AppId, Path)), request_body = CreatePhoneNumber, responses(
    (status = 201, body = PhoneNumber), (status = 404, body = Problem), (status = 409, body = Problem),
    (status = 422, body = Problem), (status = 502, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<AppId>,
    ApiJson(body): ApiJson<CreatePhoneNumber>,
) -> Result<(StatusCode, Json<PhoneNumber>), ApiError> {
    let request = ServiceRequest {
        app_id: app,
        provider_id: body.provider_id,
        agent_id: body.agent_id,
        expand_languages: body.expand_languages,
        languages: languages::validate_codes(&body.languages)?,
        generate_first_message: body.generate_first_message,
        mode: body.mode,
        recording: body.recording.clone().validate()?,
        backup: body.backup.clone().map(|b| b.validate(&s.config.public_base_url())).transpose()?,
        source: body.source()?,
    };
    // Check the app, agent and provider before spending money at Twilio.
    apps::get(&s.db, caller.org, app).await.map_err(|e| ApiError::from_storage(e, "app"))?;
    let agent = agents::get(&s.db, caller.org, body.agent_id)
        .await
        .map_err(|_| Invalid::new("agent_id", format!("no agent {} in this app", body.agent_id)))?;
    if agent.app_id != app {
        return Err(Invalid::new("agent_id", format!("no agent {} in this app", body.agent_id)).into());
    }
    phone_providers::get(&s.db, caller.org, body.provider_id)
        .await
        .map_err(|_| Invalid::new("provider_id", format!("no phone provider {} in this organisation", body.provider_id)))?;
    can_serve(&s, caller.org, body.mode, &agent.spec).await?;
    let created = provisioning::create_service(&s.db, &s.twilio, &s.config.public_base_url(), caller.org, request, caller.actor)
        .await
        .map_err(|e| ApiError::from_provisioning(e, "phone number"))?;
    greeting::refresh_in_background(s.db.clone(), s.egress.clone(), s.models.clone(), s.speech_cache.clone(), caller.org, vec![created.id]);
    Ok((StatusCode::CREATED, Json(created)))
}

/// Refuses `media_stream` for an agent nobody can hear and speak for: Switchboard does the speech
/// there, through the organisation's speech providers or the embedded engines. Engines being
/// installed in the background (started here if need be) will serve the number's calls.
async fn can_serve(s: &AppState, org: OrgId, mode: ServiceMode, agent: &AgentSpec) -> Result<(), ApiError> {
    if mode != ServiceMode::MediaStream {
        return Ok(());
    }
    let sources = speech::sources_for(&s.db, org, agent).await.map_err(storage_error)?;
    if speech::readiness(&sources, &s.models) == SpeechReadiness::Missing {
        return Err(Invalid::new(
            "mode",
            "`media_stream` needs a speech provider that transcribes and one that speaks (add them under /speech-providers), \
             or the embedded engines (`switchboard models install`), or use `conversation_relay`",
        )
        .into());
    }
    Ok(())
}

/// Read a phone number.
#[utoipa::path(get, path = "/phone-numbers/{id}", tag = "phone-numbers", params(("id" = PhoneNumberId, Path)), responses(
    (status = 200, body = PhoneNumber), (status = 404, body = Problem)))]
pub async fn get(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<PhoneNumberId>) -> Result<Json<PhoneNumber>, ApiError> {
    Ok(Json(store::get(&s.db, caller.org, id).await.map_err(storage_error)?))
}

/// Change which agent answers, the language and greeting toggles, the mode or the status.
/// Changes apply from the next call.
#[utoipa::path(patch, path = "/phone-numbers/{id}", tag = "phone-numbers", params(("id" = PhoneNumberId, Path)), request_body = UpdatePhoneNumber, responses(
    (status = 200, body = PhoneNumber), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<PhoneNumberId>,
    ApiJson(body): ApiJson<UpdatePhoneNumber>,
) -> Result<Json<PhoneNumber>, ApiError> {
    if body.status == Some(ServiceStatus::Error) {
        return Err(Invalid::new("status", "can be set to `active` or `disabled`; `error` is set by the platform").into());
    }
    if body.mode.is_some() || body.agent_id.is_some() {
        let current = store::get(&s.db, caller.org, id).await.map_err(storage_error)?;
        let agent = agents::get(&s.db, caller.org, body.agent_id.unwrap_or(current.agent_id)).await;
        let agent = agent.map_err(|_| Invalid::new("agent_id", "no such agent in this app"))?;
        can_serve(&s, caller.org, body.mode.unwrap_or(current.mode), &agent.spec).await?;
    }
    let changes = PhoneNumberChanges {
        agent_id: body.agent_id,
        expand_languages: body.expand_languages,
        languages: body.languages.as_deref().map(languages::validate_codes).transpose()?,
        generate_first_message: body.generate_first_message,
        mode: body.mode,
        status: body.status,
        recording: body.recording.map(RecordingSettings::validate).transpose()?,
        backup: body.backup.map(|backup| backup.map(|b| b.validate(&s.config.public_base_url())).transpose()).transpose()?,
    };
    if let Some(backup) = &changes.backup {
        let current = store::get(&s.db, caller.org, id).await.map_err(storage_error)?;
        provisioning::set_backup(&s.db, &s.twilio, &s.config.public_base_url(), &current, backup.as_ref())
            .await
            .map_err(|e| ApiError::from_provisioning(e, "phone number"))?;
    }
    let updated = store::update(&s.db, caller.org, id, changes, caller.actor).await.map_err(storage_error)?;
    greeting::refresh_in_background(s.db.clone(), s.egress.clone(), s.models.clone(), s.speech_cache.clone(), caller.org, vec![updated.id]);
    Ok(Json(updated))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoveOptions {
    /// Also release the number from the Twilio account (it stops being yours).
    #[serde(default)]
    pub(crate) release: bool,
}

/// A removal that Twilio did not fully follow: the service is gone, some settings stayed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PartialRemoval {
    pub(crate) removed: bool,
    /// The number's settings still as this platform set them, by Twilio's field name.
    pub(crate) left_at_twilio: BTreeMap<String, String>,
    pub(crate) detail: String,
}

/// Remove a phone number from the platform. The number stays in the Twilio account with the
/// voice settings it had before it was attached, unless `release=true`. Answers 204 when Twilio
/// is back as it was; 200 with what was left when Twilio refused to clear some settings (the
/// service is removed all the same).
#[utoipa::path(delete, path = "/phone-numbers/{id}", tag = "phone-numbers", params(("id" = PhoneNumberId, Path), RemoveOptions), responses(
    (status = 204), (status = 200, body = PartialRemoval), (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)))]
pub async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<PhoneNumberId>,
    ApiQuery(options): ApiQuery<RemoveOptions>,
) -> Result<Response, ApiError> {
    Ok(match remove(&s, caller, id, options.release).await? {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(partial) => Json(partial).into_response(),
    })
}

/// Removes a phone service; `Some` with what Twilio kept when it refused to clear some settings.
pub(crate) async fn remove(s: &AppState, caller: Caller, id: PhoneNumberId, release: bool) -> Result<Option<PartialRemoval>, ApiError> {
    let left = provisioning::remove_service(&s.db, &s.twilio, caller.org, id, release, caller.actor)
        .await
        .map_err(|e| ApiError::from_provisioning(e, "phone number"))?;
    if left.fields.is_empty() {
        return Ok(None);
    }
    let names = left.fields.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", ");
    let detail = format!(
        "The phone service is removed, but Twilio kept {names} pointing at this server ({}). Calls to the number are answered with \"not in service\" until you change them in the Twilio console.",
        left.refusal.as_deref().unwrap_or("no reason given")
    );
    Ok(Some(PartialRemoval { removed: true, left_at_twilio: left.fields.into_iter().collect(), detail }))
}
