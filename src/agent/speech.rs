//! Which speech providers serve an agent on `media_stream` numbers: the ones its settings name,
//! else the organisation's newest provider that transcribes and newest that speaks; and clients
//! for them, reached through the egress policy.

use std::sync::Arc;

use super::voice::SpeechCache;
use crate::domain::agent::AgentSpec;
use crate::domain::ids::{OrgId, SpeechProviderId};
use crate::domain::phone_number::{PhoneNumber, ServiceMode};
use crate::domain::provider::SpeechProvider;
use crate::providers::egress::Egress;
use crate::providers::speech::{SpeakingVoice, SpeechAccount, SpeechToText, TextToSpeech};
use crate::storage::{Db, PageRequest, Result, StorageError, agents, speech_providers};

/// The language a call starts in.
pub const CALL_LANGUAGE: &str = "en-US";

/// How an agent hears and speaks.
pub struct AgentEars {
    pub stt: Arc<dyn SpeechToText>,
    pub tts: Arc<dyn TextToSpeech>,
    /// The speaking provider's voice, for languages the agent names no voice for.
    pub default_voice: String,
    /// The speaking provider as the speech cache knows it: its id and the version of its
    /// settings, so a changed provider is synthesised afresh.
    pub synthesizer: String,
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
    let (Some(stt), Some(tts)) = (account(db, &hears).await?.recognizer(egress), account(db, &speaks).await?.synthesizer(egress)) else {
        return Ok(None);
    };
    Ok(Some(AgentEars { stt, tts, default_voice: default_voice(agent, &speaks), synthesizer: synthesizer_name(&speaks) }))
}

/// Clients for the providers of the agent that answers `number`.
pub async fn for_number(db: &Db, egress: &Egress, number: &PhoneNumber) -> Result<Option<AgentEars>> {
    let agent = agents::get(db, number.org_id, number.agent_id).await?;
    for_agent(db, egress, number.org_id, &agent.spec).await
}

/// Synthesises the greeting of `number`'s calls ahead into `cache` when the number uses media
/// streams: a call's first words start as soon as its stream does.
pub async fn warm_greeting(db: &Db, egress: &Egress, cache: &SpeechCache, number: &PhoneNumber) {
    if number.mode != ServiceMode::MediaStream {
        return;
    }
    let found = async {
        let agent = agents::get(db, number.org_id, number.agent_id).await?.spec;
        Ok::<_, StorageError>(providers_for(db, number.org_id, &agent).await?.map(|(_, speaks)| (agent, speaks)))
    };
    match found.await {
        // Nothing to do when nobody can speak for the agent.
        Ok(Some((agent, speaks))) => synthesize_greeting(db, egress, cache, number, &agent, &speaks).await,
        Ok(None) => {}
        Err(e) => tracing::warn!(number = %number.id, error = ?e, "could not synthesise the greeting ahead"),
    }
}

/// [`warm_greeting`] in the background for a call being routed, whose agent and speaking
/// provider were just read.
pub fn warm_greeting_for_call(db: Db, egress: Egress, cache: SpeechCache, number: PhoneNumber, agent: AgentSpec, speaks: SpeechProvider) {
    tokio::spawn(async move { synthesize_greeting(&db, &egress, &cache, &number, &agent, &speaks).await });
}

async fn synthesize_greeting(
    db: &Db,
    egress: &Egress,
    cache: &SpeechCache,
    number: &PhoneNumber,
    agent: &AgentSpec,
    speaks: &SpeechProvider,
) {
    let synthesized = async {
        let Some(tts) = account(db, speaks).await?.synthesizer(egress) else { return Ok(()) };
        let default_voice = default_voice(agent, speaks);
        let voice = SpeakingVoice::new(agent.speech.voice_for(CALL_LANGUAGE, &default_voice), CALL_LANGUAGE);
        if let Err(e) = cache.warm(tts.as_ref(), &synthesizer_name(speaks), &voice, number.greeting(agent)).await {
            tracing::warn!(number = %number.id, error = %e, "could not synthesise the greeting ahead");
        }
        Ok::<_, StorageError>(())
    };
    if let Err(e) = synthesized.await {
        tracing::warn!(number = %number.id, error = ?e, "could not synthesise the greeting ahead");
    }
}

/// The voice for languages the agent names none for: the agent's, else the provider's default.
fn default_voice(agent: &AgentSpec, speaks: &SpeechProvider) -> String {
    agent.voice.clone().or(speaks.default_voice.clone()).unwrap_or_default()
}

/// The speaking provider as the speech cache knows it: its id and the version of its settings.
fn synthesizer_name(speaks: &SpeechProvider) -> String {
    format!("{}@{}", speaks.id, speaks.updated_at.timestamp_micros())
}

async fn account(db: &Db, provider: &SpeechProvider) -> Result<SpeechAccount> {
    Ok(SpeechAccount {
        kind: provider.kind,
        base_url: provider.base_url.clone(),
        api_key: speech_providers::api_key(db, provider.org_id, provider.id).await?.map(|k| k.to_string()),
        transcription_model: provider.transcription_model.clone(),
        speech_model: provider.speech_model.clone(),
    })
}
