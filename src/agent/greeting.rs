//! Greetings made ahead, whenever a phone service or its agent changes, so answering a call
//! never waits: a service with `generate_first_message` greets callers with words the model
//! wrote from the agent's instructions, cached on the service (until they exist, the agent's own
//! first message is used); and on `media_stream` services the greeting's audio is synthesised
//! into the speech cache.

use std::sync::Arc;

use super::speech;
use super::voice::SpeechCache;
use crate::domain::ids::{OrgId, PhoneNumberId};
use crate::models::LoadedModels;
use crate::providers::egress::Egress;
use crate::providers::llm::{self, ChatMessage, ChatRequest};
use crate::storage::{Db, Result, agents, phone_numbers};

use super::model;

const INSTRUCTION: &str = "Write the first thing you say when you answer a phone call: one or two short, \
friendly spoken sentences that say who you are and invite the caller to say what they need. \
Answer with those words only, without quotes.";

/// Makes the greeting of each service ahead, in the background: its words when the model writes
/// them and they are missing, then its audio.
pub fn refresh_in_background(
    db: Db,
    egress: Egress,
    models: Arc<LoadedModels>,
    cache: SpeechCache,
    org: OrgId,
    numbers: Vec<PhoneNumberId>,
) {
    if numbers.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for number in numbers {
            if let Err(e) = generate(&db, &egress, &models, org, number).await {
                tracing::warn!(number = %number, error = ?e, "could not generate a first message");
            }
            match phone_numbers::get(&db, org, number).await {
                Ok(service) => speech::warm_greeting(&db, &egress, &models, &cache, &service).await,
                Err(e) => tracing::warn!(number = %number, error = ?e, "could not synthesise the greeting ahead"),
            }
        }
    });
}

/// Asks the agent's model for a greeting and caches it on the service, unless it has one.
pub async fn generate(db: &Db, egress: &Egress, models: &LoadedModels, org: OrgId, number: PhoneNumberId) -> Result<()> {
    let service = phone_numbers::get(db, org, number).await?;
    if !service.generate_first_message || service.generated_first_message.is_some() {
        return Ok(());
    }
    let agent = agents::get(db, org, service.agent_id).await?;
    let Some(model::AgentModel { client: llm, model, .. }) = model::for_agent(db, egress, models, org, &agent.spec).await? else {
        tracing::warn!(number = %number, "no LLM provider to generate a first message with");
        return Ok(());
    };
    let mut system = format!("You are {}, a voice agent answering the phone.", agent.spec.name);
    for part in [&agent.spec.instructions, &agent.spec.phone_instructions] {
        if !part.trim().is_empty() {
            system = format!("{system}\n\n{}", part.trim());
        }
    }
    let request = ChatRequest {
        model,
        temperature: agent.spec.temperature,
        messages: vec![ChatMessage::System { content: system }, ChatMessage::User { content: INSTRUCTION.into() }],
        tools: vec![],
        response_format: None,
    };
    let greeting = match llm::complete(llm.as_ref(), request).await {
        Ok(text) => text,
        Err(error) => {
            tracing::warn!(number = %number, %error, "the model could not write a first message");
            return Ok(());
        }
    };
    let greeting = greeting.trim().trim_matches('"').trim();
    if greeting.is_empty() {
        return Ok(());
    }
    let greeting: String = greeting.chars().take(1000).collect();
    phone_numbers::set_generated_first_message(db, org, number, service.agent_id, &greeting).await
}
