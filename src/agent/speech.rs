//! Which speech providers serve an agent on `media_stream` numbers: the ones its settings name,
//! else the organisation's newest provider that transcribes and newest that speaks; and clients
//! for them, reached through the egress policy.

use std::sync::Arc;

use crate::domain::agent::AgentSpec;
use crate::domain::ids::{OrgId, SpeechProviderId};
use crate::domain::phone_number::PhoneNumber;
use crate::domain::provider::SpeechProvider;
use crate::providers::egress::Egress;
use crate::providers::speech::{OpenAiSpeech, SpeechToText, TextToSpeech};
use crate::storage::{Db, PageRequest, Result, agents, speech_providers};

/// How an agent hears and speaks.
pub struct AgentEars {
    pub stt: Arc<dyn SpeechToText>,
    pub tts: Arc<dyn TextToSpeech>,
    /// The speaking provider's voice, for languages the agent names no voice for.
    pub default_voice: String,
}

/// The providers that hear and speak for `agent`; `None` when the organisation has none that
/// can do one of the two.
pub async fn providers_for(db: &Db, org: OrgId, agent: &AgentSpec) -> Result<Option<(SpeechProvider, SpeechProvider)>> {
    let chosen = |id: Option<SpeechProviderId>| async move {
        match id {
            Some(id) => speech_providers::get(db, org, id).await.map(Some),
            None => Ok(None),
        }
    };
    let (mut hears, mut speaks) =
        (chosen(agent.speech.speech_to_text_provider_id).await?, chosen(agent.speech.text_to_speech_provider_id).await?);
    if hears.is_none() || speaks.is_none() {
        let newest = speech_providers::list(db, org, PageRequest { before: None, limit: 100 }).await?.items;
        hears = hears.or_else(|| newest.iter().find(|p| p.transcribes()).cloned());
        speaks = speaks.or_else(|| newest.iter().find(|p| p.speaks()).cloned());
    }
    Ok(hears.zip(speaks))
}

/// Clients for the providers that hear and speak for `agent`.
pub async fn for_agent(db: &Db, egress: &Egress, org: OrgId, agent: &AgentSpec) -> Result<Option<AgentEars>> {
    let Some((hears, speaks)) = providers_for(db, org, agent).await? else { return Ok(None) };
    let stt = client(db, egress, &hears).await?;
    let tts = client(db, egress, &speaks).await?;
    let default_voice = agent.voice.clone().or(speaks.default_voice).unwrap_or_default();
    Ok(Some(AgentEars { stt: Arc::new(stt), tts: Arc::new(tts), default_voice }))
}

/// Clients for the providers of the agent that answers `number`.
pub async fn for_number(db: &Db, egress: &Egress, number: &PhoneNumber) -> Result<Option<AgentEars>> {
    let agent = agents::get(db, number.org_id, number.agent_id).await?;
    for_agent(db, egress, number.org_id, &agent.spec).await
}

async fn client(db: &Db, egress: &Egress, provider: &SpeechProvider) -> Result<OpenAiSpeech> {
    let key = speech_providers::api_key(db, provider.org_id, provider.id).await?.map(|k| k.to_string());
    let models = (provider.transcription_model.as_deref().unwrap_or_default(), provider.speech_model.as_deref().unwrap_or_default());
    Ok(OpenAiSpeech::new(egress.clone(), &provider.base_url, key, models.0, models.1))
}
