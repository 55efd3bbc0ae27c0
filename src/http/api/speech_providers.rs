//! `/speech-providers`: the vendors `media_stream` calls hear and speak through. Every save is
//! verified against the vendor (a short transcription and a spoken word) before it is stored,
//! so an agent never starts a call with a provider that cannot work. The API key is write-only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::{nullable, reachable_url};
use crate::domain::ids::SpeechProviderId;
use crate::domain::provider::{self, SpeechProvider, SpeechProviderKind};
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{ListResponse, PageParams};
use crate::providers::speech::{self, Ability, SpeechAccount, SpeechError};
use crate::storage::speech_providers::{self as store, SpeechSettings};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSpeechProvider {
    #[serde(default)]
    #[schema(required = true)]
    pub(crate) name: String,
    /// The vendor's API: `openai` (the default; also self-hosted OpenAI-compatible servers),
    /// `deepgram` (recognition only) or `elevenlabs` (synthesis only).
    #[serde(default = "openai")]
    pub(crate) kind: SpeechProviderKind,
    /// e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`; required for `openai`,
    /// Deepgram's and ElevenLabs' own APIs otherwise.
    pub(crate) base_url: Option<String>,
    /// The vendor's API key; optional for local servers. Never returned.
    pub(crate) api_key: Option<String>,
    /// Set to recognise callers with this provider, e.g. `whisper-1` or `nova-3`.
    pub(crate) transcription_model: Option<String>,
    /// Set to speak with this provider, e.g. `gpt-4o-mini-tts` or `eleven_flash_v2_5`.
    pub(crate) speech_model: Option<String>,
    /// Required with `speech_model`, e.g. `alloy` or an ElevenLabs voice id.
    pub(crate) default_voice: Option<String>,
}

fn openai() -> SpeechProviderKind {
    SpeechProviderKind::OpenAi
}

/// Changes; absent fields stay as they are, `null` clears an optional one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSpeechProvider {
    name: Option<String>,
    base_url: Option<String>,
    /// A new key, or `null` to remove the key.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    api_key: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    transcription_model: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    speech_model: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    default_voice: Option<Option<String>>,
}

fn storage_error(e: crate::storage::StorageError) -> ApiError {
    ApiError::from_storage(e, "speech provider")
}

/// Checks the settings, then asks the vendor to do what the provider is for; the failure names
/// the field to fix (the URL, the key, or the model that was refused).
async fn verified(s: &AppState, kind: SpeechProviderKind, settings: &SpeechSettings, api_key: Option<String>) -> Result<(), ApiError> {
    let voice = settings.default_voice.as_deref();
    provider::speech_capabilities(kind, settings.transcription_model.as_deref(), settings.speech_model.as_deref(), voice)?;
    reachable_url(&s.egress, "base_url", &settings.base_url).await?;
    let account = SpeechAccount {
        kind,
        base_url: settings.base_url.clone(),
        api_key,
        transcription_model: settings.transcription_model.clone(),
        speech_model: settings.speech_model.clone(),
    };
    speech::check(&s.egress, &account, voice).await.map_err(|failed| {
        let field = match (&failed.error, failed.ability) {
            (SpeechError::Unreachable(_) | SpeechError::Timeout | SpeechError::NotAllowed(_), _) => "base_url",
            (SpeechError::Refused { status: 401 | 403, .. }, _) => "api_key",
            (_, Ability::Transcribe) => "transcription_model",
            (_, Ability::Speak) => "speech_model",
        };
        let doing = match failed.ability {
            Ability::Transcribe => "transcribing a test utterance",
            Ability::Speak => "speaking a test word",
        };
        ApiError::from(Invalid::new(field, format!("the provider failed {doing}: {}", failed.error)))
    })
}

fn optional_model(field: &str, value: Option<String>) -> Result<Option<String>, Invalid> {
    value.as_deref().map(|m| provider::model_name(field, m)).transpose()
}

fn optional_voice(value: Option<String>) -> Result<Option<String>, Invalid> {
    value.as_deref().map(|v| provider::model_name("default_voice", v)).transpose()
}

fn api_key(value: &str) -> Result<String, Invalid> {
    provider::credential("api_key", value)
}

/// List speech providers, newest first.
#[utoipa::path(get, path = "/speech-providers", tag = "speech-providers", params(PageParams), responses((status = 200, body = ListResponse<SpeechProvider>)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<SpeechProvider>>, ApiError> {
    Ok(Json(store::list(&s.db, caller.org, page.to_request()?).await.map_err(storage_error)?.into()))
}

/// Add a speech provider; it is verified against the vendor first.
#[utoipa::path(post, path = "/speech-providers", tag = "speech-providers", request_body = CreateSpeechProvider, responses(
    (status = 201, body = SpeechProvider), (status = 422, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateSpeechProvider>,
) -> Result<(StatusCode, Json<SpeechProvider>), ApiError> {
    let base_url = match (body.base_url.as_deref(), body.kind.default_base_url()) {
        (Some(url), _) | (None, Some(url)) => provider::api_base_url(url)?,
        (None, None) => return Err(Invalid::new("base_url", "is required for an OpenAI-compatible server").into()),
    };
    let settings = SpeechSettings {
        name: provider::provider_name(&body.name)?,
        base_url,
        transcription_model: optional_model("transcription_model", body.transcription_model)?,
        speech_model: optional_model("speech_model", body.speech_model)?,
        default_voice: optional_voice(body.default_voice)?,
    };
    let key = body.api_key.as_deref().map(api_key).transpose()?;
    verified(&s, body.kind, &settings, key.clone()).await?;
    let created = store::create(&s.db, caller.org, body.kind, settings, key.as_deref(), caller.actor).await.map_err(storage_error)?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Read a speech provider (never its key).
#[utoipa::path(get, path = "/speech-providers/{id}", tag = "speech-providers", params(("id" = SpeechProviderId, Path)), responses(
    (status = 200, body = SpeechProvider), (status = 404, body = Problem)))]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<SpeechProviderId>,
) -> Result<Json<SpeechProvider>, ApiError> {
    Ok(Json(store::get(&s.db, caller.org, id).await.map_err(storage_error)?))
}

/// Change a speech provider; unless only the name changes, it is verified again first.
#[utoipa::path(patch, path = "/speech-providers/{id}", tag = "speech-providers", params(("id" = SpeechProviderId, Path)), request_body = UpdateSpeechProvider, responses(
    (status = 200, body = SpeechProvider), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<SpeechProviderId>,
    ApiJson(body): ApiJson<UpdateSpeechProvider>,
) -> Result<Json<SpeechProvider>, ApiError> {
    let current = store::get(&s.db, caller.org, id).await.map_err(storage_error)?;
    let mut settings = SpeechSettings::of(&current);
    if let Some(name) = &body.name {
        settings.name = provider::provider_name(name)?;
    }
    if let Some(base_url) = &body.base_url {
        settings.base_url = provider::api_base_url(base_url)?;
    }
    if let Some(model) = body.transcription_model {
        settings.transcription_model = optional_model("transcription_model", model)?;
    }
    if let Some(model) = body.speech_model {
        settings.speech_model = optional_model("speech_model", model)?;
    }
    if let Some(voice) = body.default_voice {
        settings.default_voice = optional_voice(voice)?;
    }
    let new_key = body.api_key.map(|key| key.as_deref().map(api_key).transpose()).transpose()?;
    let only_renamed =
        new_key.is_none() && SpeechSettings { name: current.name.clone(), ..settings.clone() } == SpeechSettings::of(&current);
    if !only_renamed {
        let key = match &new_key {
            Some(key) => key.clone(),
            None => store::api_key(&s.db, caller.org, id).await.map_err(storage_error)?.map(|k| k.to_string()),
        };
        verified(&s, current.kind, &settings, key).await?;
    }
    let updated = store::update(&s.db, caller.org, id, settings, new_key.as_ref().map(Option::as_deref), caller.actor).await;
    Ok(Json(updated.map_err(storage_error)?))
}

/// Delete a speech provider no agent uses.
#[utoipa::path(delete, path = "/speech-providers/{id}", tag = "speech-providers", params(("id" = SpeechProviderId, Path)), responses(
    (status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<SpeechProviderId>) -> Result<StatusCode, ApiError> {
    store::delete(&s.db, caller.org, id, caller.actor).await.map_err(storage_error)?;
    Ok(StatusCode::NO_CONTENT)
}
