//! `/apps/{app_id}/agents` and `/agents/{id}`: agents, with every change kept as a version.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::nullable;
use crate::agent::prompt::{self, CallContext};
use crate::agent::{greeting, tools};
use crate::domain::agent::{Agent, AgentSpec, AgentSpeech, AgentTool, AgentVersion};
use crate::domain::ids::{AgentId, AppId, LlmProviderId};
use crate::domain::phone_number::E164;
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{ListResponse, PageParams};
use crate::storage::{agents, phone_numbers};

/// Agent settings in a request. On create, absent fields take the defaults; on update, absent
/// fields stay as they are and `null` clears an optional one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentFields {
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) instructions: Option<String>,
    pub(crate) phone_instructions: Option<String>,
    pub(crate) first_message: Option<String>,
    /// Seconds of caller silence before the agent checks in (5–600, default 30).
    pub(crate) conversation_timeout_secs: Option<i64>,
    /// Longest call in seconds (30–14400, default 1800).
    pub(crate) max_call_duration_secs: Option<i64>,
    pub(crate) end_call_instructions: Option<String>,
    /// Words that end the call when a reply ends with them, e.g. `["Goodbye"]` (at most 20).
    pub(crate) end_call_phrases: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub(crate) llm_provider_id: Option<Option<LlmProviderId>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub(crate) model: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>)]
    pub(crate) temperature: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub(crate) voice: Option<Option<String>>,
    /// Tools besides `endConversation`, which is always on.
    pub(crate) tools: Option<Vec<AgentTool>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub(crate) transfer_number: Option<Option<String>>,
    /// How the agent hears and speaks on `media_stream` numbers; replaced as a whole, absent
    /// fields inside take their defaults.
    pub(crate) speech: Option<AgentSpeech>,
}

impl AgentFields {
    /// Every field set to `spec`'s value (restoring a version is an update to all of it).
    pub(crate) fn from_spec(spec: AgentSpec) -> Self {
        AgentFields {
            name: Some(spec.name),
            description: Some(spec.description),
            instructions: Some(spec.instructions),
            phone_instructions: Some(spec.phone_instructions),
            first_message: Some(spec.first_message),
            conversation_timeout_secs: Some(spec.conversation_timeout_secs),
            max_call_duration_secs: Some(spec.max_call_duration_secs),
            end_call_instructions: Some(spec.end_call_instructions),
            end_call_phrases: Some(spec.end_call_phrases),
            llm_provider_id: Some(spec.llm_provider_id),
            model: Some(spec.model),
            temperature: Some(spec.temperature),
            voice: Some(spec.voice),
            tools: Some(spec.tools),
            transfer_number: Some(spec.transfer_number.map(|n| n.as_str().to_owned())),
            speech: Some(spec.speech),
        }
    }

    /// Applies the given fields onto `spec` and validates the result.
    fn apply(self, mut spec: AgentSpec) -> Result<AgentSpec, Invalid> {
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = self.$field { spec.$field = v; })* };
        }
        set!(
            name,
            description,
            instructions,
            phone_instructions,
            first_message,
            conversation_timeout_secs,
            max_call_duration_secs,
            end_call_instructions,
            end_call_phrases,
            llm_provider_id,
            model,
            temperature,
            voice,
            tools,
            speech
        );
        if let Some(number) = self.transfer_number {
            spec.transfer_number = number.as_deref().map(|n| E164::parse("transfer_number", n)).transpose()?;
        }
        spec.validate()
    }
}

fn storage_error(e: crate::storage::StorageError) -> ApiError {
    ApiError::from_storage(e, "agent")
}

/// List an app's agents, newest first.
#[utoipa::path(get, path = "/apps/{app_id}/agents", tag = "agents", params(("app_id" = AppId, Path), PageParams), responses(
    (status = 200, body = ListResponse<Agent>), (status = 404, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<AppId>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<Agent>>, ApiError> {
    let page = agents::list(&s.db, caller.org, app, page.to_request()?).await.map_err(|e| ApiError::from_storage(e, "app"))?;
    Ok(Json(page.into()))
}

/// Create an agent in an app. `name` is required.
#[utoipa::path(post, path = "/apps/{app_id}/agents", tag = "agents", params(("app_id" = AppId, Path)), request_body = AgentFields, responses(
    (status = 201, body = Agent), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<AppId>,
    ApiJson(body): ApiJson<AgentFields>,
) -> Result<(StatusCode, Json<Agent>), ApiError> {
    let name = body.name.clone().ok_or_else(|| Invalid::new("name", "is required"))?;
    let spec = body.apply(AgentSpec::named(name))?;
    let agent = agents::create(&s.db, caller.org, app, spec, caller.actor).await.map_err(|e| ApiError::from_storage(e, "app"))?;
    Ok((StatusCode::CREATED, Json(agent)))
}

/// Read an agent's current version.
#[utoipa::path(get, path = "/agents/{id}", tag = "agents", params(("id" = AgentId, Path)), responses(
    (status = 200, body = Agent), (status = 404, body = Problem)))]
pub async fn get(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<AgentId>) -> Result<Json<Agent>, ApiError> {
    Ok(Json(agents::get(&s.db, caller.org, id).await.map_err(storage_error)?))
}

/// Change an agent; a real change makes a new version, used from the next call on.
#[utoipa::path(patch, path = "/agents/{id}", tag = "agents", params(("id" = AgentId, Path)), request_body = AgentFields, responses(
    (status = 200, body = Agent), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<AgentId>,
    ApiJson(body): ApiJson<AgentFields>,
) -> Result<Json<Agent>, ApiError> {
    let current = agents::get(&s.db, caller.org, id).await.map_err(storage_error)?;
    let spec = body.apply(current.spec.clone())?;
    let updated = agents::update(&s.db, caller.org, &current, spec, caller.actor).await.map_err(storage_error)?;
    if updated.version != current.version {
        // Its numbers' greetings are made again: the words (where the model writes them) and
        // the audio.
        phone_numbers::forget_generated_greetings(&s.db, caller.org, id).await.map_err(storage_error)?;
        let numbers = phone_numbers::answered_by(&s.db, caller.org, id).await.map_err(storage_error)?;
        greeting::refresh_in_background(s.db.clone(), s.egress.clone(), s.models.clone(), s.speech_cache.clone(), caller.org, numbers);
    }
    Ok(Json(updated))
}

/// Delete an agent no phone number routes to. Its calls keep their records.
#[utoipa::path(delete, path = "/agents/{id}", tag = "agents", params(("id" = AgentId, Path)), responses(
    (status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<AgentId>) -> Result<StatusCode, ApiError> {
    agents::delete(&s.db, caller.org, id, caller.actor).await.map_err(storage_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every version of an agent, newest first.
#[utoipa::path(get, path = "/agents/{id}/versions", tag = "agents", params(("id" = AgentId, Path)), responses(
    (status = 200, body = ListResponse<AgentVersion>), (status = 404, body = Problem)))]
pub async fn versions(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<AgentId>,
) -> Result<Json<ListResponse<AgentVersion>>, ApiError> {
    let versions = agents::versions(&s.db, caller.org, id).await.map_err(storage_error)?;
    Ok(Json(ListResponse { data: versions, next_cursor: None }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// The caller number to show in the call facts (default +15555550123).
    pub(crate) caller: Option<String>,
    /// Locales offered besides English, comma-separated (as a service with expand languages).
    pub(crate) languages: Option<String>,
}

/// What the model receives on a call: the system prompt and the tools offered.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PromptPreview {
    pub(crate) system_prompt: String,
    /// The tools offered, with their JSON Schemas, as sent to the model.
    #[schema(value_type = Vec<Object>)]
    pub(crate) tools: Vec<serde_json::Value>,
}

/// Show exactly what the model receives for this agent on a call.
#[utoipa::path(get, path = "/agents/{id}/prompt-preview", tag = "agents", params(("id" = AgentId, Path), PreviewQuery), responses(
    (status = 200, body = PromptPreview), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn prompt_preview(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<AgentId>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> Result<Json<PromptPreview>, ApiError> {
    let agent = agents::get(&s.db, caller.org, id).await.map_err(storage_error)?;
    let caller_number = E164::parse("caller", q.caller.as_deref().unwrap_or("+15555550123"))?;
    let codes: Vec<String> =
        q.languages.as_deref().map(|l| l.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect()).unwrap_or_default();
    let other_languages = crate::domain::languages::other_locales(&crate::domain::languages::validate_codes(&codes)?);
    let context = CallContext { caller: caller_number.as_str(), now: crate::domain::time::now(), other_languages: &other_languages };
    Ok(Json(PromptPreview {
        system_prompt: prompt::system_prompt(&agent.spec, &context),
        tools: tools::offered(&agent.spec, &other_languages)
            .iter()
            .map(|tool| serde_json::to_value(tool).expect("a tool is plain JSON"))
            .collect(),
    }))
}
