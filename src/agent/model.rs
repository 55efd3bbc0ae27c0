//! Which model serves an agent: its own LLM provider (and model override), else the
//! organisation's newest LLM provider; none when the organisation has no provider at all.

use crate::domain::agent::AgentSpec;
use crate::domain::ids::{LlmProviderId, OrgId};
use crate::domain::provider::LlmProvider;
use crate::providers::egress::Egress;
use crate::providers::llm::{self, ChatMessage, ChatRequest, LlmClient};
use crate::storage::{Db, PageRequest, Result, llm_providers};

/// The model that serves an agent.
pub struct AgentModel {
    pub client: LlmClient,
    /// The model name to ask for.
    pub model: String,
    pub provider_id: LlmProviderId,
}

/// A client for the agent's endpoint and the model name to ask for.
pub async fn for_agent(db: &Db, egress: &Egress, org: OrgId, agent: &AgentSpec) -> Result<Option<AgentModel>> {
    let provider = match agent.llm_provider_id {
        Some(id) => Some(llm_providers::get(db, org, id).await?),
        None => llm_providers::list(db, org, PageRequest { before: None, limit: 1 }).await?.items.pop(),
    };
    let Some(provider) = provider else { return Ok(None) };
    let model = agent.model.clone().unwrap_or(provider.default_model.clone());
    Ok(Some(AgentModel { client: client(db, egress, &provider).await?, model, provider_id: provider.id }))
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
