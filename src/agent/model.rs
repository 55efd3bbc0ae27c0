//! Which model serves an agent: its own LLM provider (and model override), else the
//! organisation's newest LLM provider, else the embedded model when it is installed; none when
//! there is none of these.

use crate::domain::agent::AgentSpec;
use crate::domain::ids::{LlmProviderId, OrgId};
use crate::domain::provider::LlmProvider;
use crate::models::LoadedModels;
use crate::providers::egress::Egress;
use crate::providers::llm::{self, ChatMessage, ChatModel, ChatRequest, LlmClient};
use crate::storage::{Db, PageRequest, Result, llm_providers};

/// The model that serves an agent.
pub struct AgentModel {
    pub client: std::sync::Arc<dyn ChatModel>,
    /// The model name to ask for.
    pub model: String,
    /// The provider; none for the embedded model.
    pub provider_id: Option<LlmProviderId>,
    /// Where the model runs, to tell one endpoint from another: the provider's URL and model.
    pub endpoint: String,
}

/// The name the embedded model goes by, in requests and on the console.
pub const EMBEDDED_MODEL: &str = "embedded";

/// The end-call phrases of an agent the embedded model serves, when the agent has none: a small
/// model says goodbye far more reliably than it calls `endConversation`.
pub const EMBEDDED_END_CALL_PHRASES: [&str; 2] = ["goodbye", "bye"];

/// The model that serves `agent`, and the model name to ask for.
pub async fn for_agent(db: &Db, egress: &Egress, models: &LoadedModels, org: OrgId, agent: &AgentSpec) -> Result<Option<AgentModel>> {
    let provider = match agent.llm_provider_id {
        Some(id) => Some(llm_providers::get(db, org, id).await?),
        None => llm_providers::list(db, org, PageRequest { before: None, limit: 1 }).await?.items.pop(),
    };
    let Some(provider) = provider else {
        return Ok(models.language_model().map(|embedded| AgentModel {
            client: std::sync::Arc::new(embedded),
            model: EMBEDDED_MODEL.to_owned(),
            provider_id: None,
            endpoint: EMBEDDED_MODEL.to_owned(),
        }));
    };
    let model = agent.model.clone().unwrap_or(provider.default_model.clone());
    Ok(Some(AgentModel {
        client: std::sync::Arc::new(client(db, egress, &provider).await?),
        endpoint: format!("{} {model}", provider.base_url),
        model,
        provider_id: Some(provider.id),
    }))
}

/// What asking a provider's default model for one word showed.
pub struct ProviderCheck {
    /// The model's answer, or why there was none.
    pub answer: std::result::Result<String, String>,
    /// From the request to the whole answer.
    pub latency_ms: i64,
}

/// Asks the provider's default model for a one-word answer, which checks the URL, the API key
/// and the model name at once (30 seconds at most).
pub async fn check(db: &Db, egress: &Egress, provider: &LlmProvider) -> Result<ProviderCheck> {
    let mut client = client(db, egress, provider).await?;
    client.total_timeout = std::time::Duration::from_secs(30);
    let request = ChatRequest {
        model: provider.default_model.clone(),
        temperature: Some(0.0),
        messages: vec![ChatMessage::User { content: "Reply with the single word OK.".to_owned() }],
        tools: Vec::new(),
        response_format: None,
    };
    let started = std::time::Instant::now();
    let answer = llm::complete(&client, request).await.map_err(|e| e.to_string());
    Ok(ProviderCheck { answer, latency_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX) })
}

/// A client for a provider's endpoint, with its key, reached through the egress policy.
pub async fn client(db: &Db, egress: &Egress, provider: &LlmProvider) -> Result<LlmClient> {
    let key = llm_providers::api_key(db, provider.org_id, provider.id).await?;
    Ok(LlmClient::new(egress.clone(), &provider.base_url, key.map(|k| k.to_string())))
}
