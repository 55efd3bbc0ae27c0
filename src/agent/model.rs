//! Which model serves an agent: its own LLM provider (and model override), else the
//! organisation's newest LLM provider; none when the organisation has no provider at all.

use crate::domain::agent::AgentSpec;
use crate::domain::ids::OrgId;
use crate::domain::provider::LlmProvider;
use crate::providers::egress::Egress;
use crate::providers::llm::LlmClient;
use crate::storage::{Db, PageRequest, Result, llm_providers};

/// A client for the agent's endpoint and the model name to ask for.
pub async fn for_agent(db: &Db, egress: &Egress, org: OrgId, agent: &AgentSpec) -> Result<Option<(LlmClient, String)>> {
    let provider = match agent.llm_provider_id {
        Some(id) => Some(llm_providers::get(db, org, id).await?),
        None => llm_providers::list(db, org, PageRequest { before: None, limit: 1 }).await?.items.pop(),
    };
    let Some(provider) = provider else { return Ok(None) };
    let model = agent.model.clone().unwrap_or(provider.default_model.clone());
    Ok(Some((client(db, egress, &provider).await?, model)))
}

/// A client for a provider's endpoint, with its key, reached through the egress policy.
pub async fn client(db: &Db, egress: &Egress, provider: &LlmProvider) -> Result<LlmClient> {
    let key = llm_providers::api_key(db, provider.org_id, provider.id).await?;
    Ok(LlmClient::new(egress.clone(), &provider.base_url, key.map(|k| k.to_string())))
}
