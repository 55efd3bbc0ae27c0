//! `/llm-providers`: OpenAI-compatible endpoints, with a connection test. The API key is
//! write-only. `/embedded-model`: the built-in model, which serves when there is none.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{nullable, reachable_url};
use crate::agent::model::ProviderCheck;
use crate::domain::ids::LlmProviderId;
use crate::domain::provider::{self, LlmProvider};
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{ListResponse, PageParams};
use crate::storage::llm_providers::{self as store, LlmProviderChanges, NewLlmProvider};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLlmProvider {
    #[serde(default)]
    #[schema(required = true)]
    pub(crate) name: String,
    /// e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`.
    #[serde(default)]
    #[schema(required = true)]
    pub(crate) base_url: String,
    #[serde(default)]
    #[schema(required = true)]
    pub(crate) default_model: String,
    /// Sent as `Authorization: Bearer`; optional for local servers. Never returned.
    pub(crate) api_key: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLlmProvider {
    name: Option<String>,
    base_url: Option<String>,
    default_model: Option<String>,
    /// A new key, or `null` to remove the key.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    api_key: Option<Option<String>>,
}

fn api_key(value: &str) -> Result<String, Invalid> {
    provider::credential("api_key", value)
}

fn storage_error(e: crate::storage::StorageError) -> ApiError {
    ApiError::from_storage(e, "LLM provider")
}

/// List LLM providers, newest first.
#[utoipa::path(get, path = "/llm-providers", tag = "llm-providers", params(PageParams), responses((status = 200, body = ListResponse<LlmProvider>)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<LlmProvider>>, ApiError> {
    Ok(Json(store::list(&s.db, caller.org, page.to_request()?).await.map_err(storage_error)?.into()))
}

/// Add an OpenAI-compatible LLM endpoint.
#[utoipa::path(post, path = "/llm-providers", tag = "llm-providers", request_body = CreateLlmProvider, responses(
    (status = 201, body = LlmProvider), (status = 422, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateLlmProvider>,
) -> Result<(StatusCode, Json<LlmProvider>), ApiError> {
    let new = NewLlmProvider {
        name: provider::provider_name(&body.name)?,
        base_url: provider::api_base_url(&body.base_url)?,
        default_model: provider::model_name("default_model", &body.default_model)?,
        api_key: body.api_key.as_deref().map(api_key).transpose()?,
    };
    reachable_url(&s.egress, "base_url", &new.base_url).await?;
    let created = store::create(&s.db, caller.org, new, caller.actor).await.map_err(storage_error)?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Read an LLM provider (never its key).
#[utoipa::path(get, path = "/llm-providers/{id}", tag = "llm-providers", params(("id" = LlmProviderId, Path)), responses(
    (status = 200, body = LlmProvider), (status = 404, body = Problem)))]
pub async fn get(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<LlmProviderId>) -> Result<Json<LlmProvider>, ApiError> {
    Ok(Json(store::get(&s.db, caller.org, id).await.map_err(storage_error)?))
}

/// Change an LLM provider.
#[utoipa::path(patch, path = "/llm-providers/{id}", tag = "llm-providers", params(("id" = LlmProviderId, Path)), request_body = UpdateLlmProvider, responses(
    (status = 200, body = LlmProvider), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<LlmProviderId>,
    ApiJson(body): ApiJson<UpdateLlmProvider>,
) -> Result<Json<LlmProvider>, ApiError> {
    let changes = LlmProviderChanges {
        name: body.name.as_deref().map(provider::provider_name).transpose()?,
        base_url: body.base_url.as_deref().map(provider::api_base_url).transpose()?,
        default_model: body.default_model.as_deref().map(|m| provider::model_name("default_model", m)).transpose()?,
        api_key: body.api_key.map(|key| key.as_deref().map(api_key).transpose()).transpose()?,
    };
    if let Some(base_url) = &changes.base_url {
        reachable_url(&s.egress, "base_url", base_url).await?;
    }
    Ok(Json(store::update(&s.db, caller.org, id, changes, caller.actor).await.map_err(storage_error)?))
}

/// Delete an LLM provider no agent uses.
#[utoipa::path(delete, path = "/llm-providers/{id}", tag = "llm-providers", params(("id" = LlmProviderId, Path)), responses(
    (status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<LlmProviderId>) -> Result<StatusCode, ApiError> {
    store::delete(&s.db, caller.org, id, caller.actor).await.map_err(storage_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// What asking a provider's default model for one word found.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionTest {
    /// The model answered.
    pub(crate) ok: bool,
    pub(crate) model: String,
    /// From the request to the whole answer.
    pub(crate) latency_ms: i64,
    /// The model's answer (first 200 characters).
    pub(crate) reply: Option<String>,
    /// Why it did not answer.
    pub(crate) error: Option<String>,
}

/// The built-in language model: whether it is installed, whether this organisation's agents use
/// it (they do while it has no LLM provider), and how busy it is.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EmbeddedModel {
    pub(crate) installed: bool,
    /// The organisation has no LLM provider, so agents answer with it.
    pub(crate) in_use: bool,
    /// What it is, and what it is for.
    pub(crate) description: String,
    /// Generations at once, conversations kept, requests in progress and waiting (absent when
    /// it is not installed).
    pub(crate) workers: Option<usize>,
    pub(crate) slots: Option<usize>,
    pub(crate) busy: Option<usize>,
    pub(crate) waiting: Option<usize>,
}

/// The built-in language model (installed by `switchboard models install`).
#[utoipa::path(get, path = "/embedded-model", tag = "llm-providers", responses((status = 200, body = EmbeddedModel)))]
pub async fn embedded(State(s): State<AppState>, caller: Caller) -> Result<Json<EmbeddedModel>, ApiError> {
    let first = crate::storage::PageRequest { before: None, limit: 1 };
    let has_provider = !store::list(&s.db, caller.org, first).await.map_err(storage_error)?.items.is_empty();
    let stats = s.models.language_model().map(|engine| engine.stats());
    Ok(Json(EmbeddedModel {
        installed: stats.is_some(),
        in_use: stats.is_some() && !has_provider,
        description: match stats {
            Some(_) => "Qwen2.5 0.5B, a small demo model run inside the server: no URL, no key, nothing leaves the machine. \
                        Connect an LLM provider for real callers."
                .into(),
            None => "Not installed: `switchboard models install` adds a small model that answers calls with no model server.".into(),
        },
        workers: stats.map(|s| s.workers),
        slots: stats.map(|s| s.slots),
        busy: stats.map(|s| s.busy),
        waiting: stats.map(|s| s.waiting),
    }))
}

/// Test the connection: ask the provider's default model for a one-word answer, which checks the
/// URL, the API key and the model name at once.
#[utoipa::path(post, path = "/llm-providers/{id}/test", tag = "llm-providers", params(("id" = LlmProviderId, Path)), responses(
    (status = 200, body = ConnectionTest), (status = 404, body = Problem)))]
pub async fn test(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<LlmProviderId>,
) -> Result<Json<ConnectionTest>, ApiError> {
    let provider = store::get(&s.db, caller.org, id).await.map_err(storage_error)?;
    let ProviderCheck { answer, latency_ms } = crate::agent::model::check(&s.db, &s.egress, &provider).await.map_err(storage_error)?;
    Ok(Json(match answer {
        Ok(reply) => ConnectionTest {
            ok: true,
            model: provider.default_model,
            latency_ms,
            reply: Some(reply.chars().take(200).collect()),
            error: None,
        },
        Err(e) => ConnectionTest { ok: false, model: provider.default_model, latency_ms, reply: None, error: Some(e.to_string()) },
    }))
}
