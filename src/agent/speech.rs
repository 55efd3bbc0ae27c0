//! Who hears and speaks for an agent on `media_stream` numbers: the speech providers its
//! settings name, else the organisation's newest provider that transcribes and newest that
//! speaks, else the speech engines inside this server (`switchboard models install`, or
//! installed in the background when a call first needs them). And clients for them: vendors
//! are reached through the egress policy; the embedded engines never leave the machine.

use std::sync::Arc;

use super::voice::SpeechCache;
use crate::domain::agent::AgentSpec;
use crate::domain::ids::{OrgId, SpeechProviderId};
use crate::domain::phone_number::{PhoneNumber, ServiceMode};
use crate::domain::provider::SpeechProvider;
use crate::models::{LoadedModels, SpeechReadiness};
use crate::providers::egress::Egress;
use crate::providers::speech::embedded::EmbeddedSpeech;
use crate::providers::speech::{SpeakingVoice, SpeechAccount, SpeechToText, TextToSpeech};
use crate::storage::{Db, PageRequest, Result, agents, speech_providers};

/// The language a call starts in.
pub const CALL_LANGUAGE: &str = "en-US";
/// The embedded engines as the speech cache knows them.
const EMBEDDED: &str = "embedded";

/// Who does one half of an agent's speech (hearing or speaking).
#[derive(Clone, Debug)]
pub enum SpeechSource {
    /// One of the organisation's speech providers.
    Provider(SpeechProvider),
    /// The engines inside this server.
    Embedded,
}

impl SpeechSource {
    fn is_embedded(&self) -> bool {
        matches!(self, SpeechSource::Embedded)
    }

    fn provider_id(&self) -> Option<SpeechProviderId> {
        match self {
            SpeechSource::Provider(provider) => Some(provider.id),
            SpeechSource::Embedded => None,
        }
    }
}

/// Who hears and who speaks for an agent.
#[derive(Clone, Debug)]
pub struct SpeechSources {
    pub hears: SpeechSource,
    pub speaks: SpeechSource,
}

impl SpeechSources {
    /// Whether the embedded engines do any of it.
    pub fn need_embedded(&self) -> bool {
        self.hears.is_embedded() || self.speaks.is_embedded()
    }
}

/// How an agent hears and speaks.
pub struct AgentEars {
    pub stt: Arc<dyn SpeechToText>,
    pub tts: Arc<dyn TextToSpeech>,
    /// The speaking side's voice, for languages the agent names no voice for.
    pub default_voice: String,
    /// The speaking side as the speech cache knows it: a provider's id and the version of its
    /// settings (so a changed provider is synthesised afresh), or the embedded engines.
    pub synthesizer: String,
    /// The providers that hear and speak (none: the embedded engines), for the call's usage.
    pub hearing_provider: Option<SpeechProviderId>,
    pub speaking_provider: Option<SpeechProviderId>,
}

/// Who hears and speaks for `agent`: the providers it names, else the organisation's newest
/// that can, else the embedded engines.
pub async fn sources_for(db: &Db, org: OrgId, agent: &AgentSpec) -> Result<SpeechSources> {
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
    let source = |provider: Option<SpeechProvider>| provider.map_or(SpeechSource::Embedded, SpeechSource::Provider);
    Ok(SpeechSources { hears: source(hears), speaks: source(speaks) })
}

/// Whether a call to an agent heard and spoken for by `sources` can be served now; when the
/// embedded engines are needed and missing, their background installation starts (if allowed).
pub fn readiness(sources: &SpeechSources, models: &Arc<LoadedModels>) -> SpeechReadiness {
    if sources.need_embedded() { models.speech_engines() } else { SpeechReadiness::Ready }
}

/// Clients for `sources`; `None` when the embedded engines are needed and not loaded.
pub async fn ears(
    db: &Db,
    egress: &Egress,
    models: &LoadedModels,
    agent: &AgentSpec,
    sources: &SpeechSources,
) -> Result<Option<AgentEars>> {
    let embedded = models.speech().map(|engines| Arc::new(EmbeddedSpeech::new(engines)));
    let stt: Arc<dyn SpeechToText> = match (&sources.hears, &embedded) {
        (SpeechSource::Provider(provider), _) => match account(db, provider).await?.recognizer(egress) {
            Some(stt) => stt,
            None => return Ok(None),
        },
        (SpeechSource::Embedded, Some(embedded)) => embedded.clone(),
        (SpeechSource::Embedded, None) => return Ok(None),
    };
    let (tts, default_voice, synthesizer): (Arc<dyn TextToSpeech>, _, _) = match (&sources.speaks, &embedded) {
        (SpeechSource::Provider(provider), _) => match account(db, provider).await?.synthesizer(egress) {
            Some(tts) => (tts, default_voice(agent, provider), synthesizer_name(provider)),
            None => return Ok(None),
        },
        (SpeechSource::Embedded, Some(embedded)) => {
            let voice = agent.voice.clone().unwrap_or_else(|| embedded.default_voice().to_owned());
            (embedded.clone(), voice, EMBEDDED.to_owned())
        }
        (SpeechSource::Embedded, None) => return Ok(None),
    };
    Ok(Some(AgentEars {
        stt,
        tts,
        default_voice,
        synthesizer,
        hearing_provider: sources.hears.provider_id(),
        speaking_provider: sources.speaks.provider_id(),
    }))
}

/// Clients for whoever hears and speaks for `agent`.
pub async fn for_agent(db: &Db, egress: &Egress, models: &LoadedModels, org: OrgId, agent: &AgentSpec) -> Result<Option<AgentEars>> {
    let sources = sources_for(db, org, agent).await?;
    ears(db, egress, models, agent, &sources).await
}

/// Clients for whoever hears and speaks for the agent that answers `number`.
pub async fn for_number(db: &Db, egress: &Egress, models: &LoadedModels, number: &PhoneNumber) -> Result<Option<AgentEars>> {
    let agent = agents::get(db, number.org_id, number.agent_id).await?;
    for_agent(db, egress, models, number.org_id, &agent.spec).await
}

/// Synthesises the greeting of `number`'s calls ahead into `cache` when the number uses media
/// streams: a call's first words start as soon as its stream does.
pub async fn warm_greeting(db: &Db, egress: &Egress, models: &LoadedModels, cache: &SpeechCache, number: &PhoneNumber) {
    if number.mode != ServiceMode::MediaStream {
        return;
    }
    let warmed = async {
        let agent = agents::get(db, number.org_id, number.agent_id).await?.spec;
        let sources = sources_for(db, number.org_id, &agent).await?;
        synthesize_greeting(db, egress, models, cache, number, &agent, &sources).await
    };
    if let Err(e) = warmed.await {
        tracing::warn!(number = %number.id, error = ?e, "could not synthesise the greeting ahead");
    }
}

/// [`warm_greeting`] in the background for a call being routed, whose agent and speech sources
/// were just read.
pub fn warm_greeting_for_call(
    db: Db,
    egress: Egress,
    models: Arc<LoadedModels>,
    cache: SpeechCache,
    number: PhoneNumber,
    agent: AgentSpec,
    sources: SpeechSources,
) {
    tokio::spawn(async move {
        if let Err(e) = synthesize_greeting(&db, &egress, &models, &cache, &number, &agent, &sources).await {
            tracing::warn!(number = %number.id, error = ?e, "could not synthesise the greeting ahead");
        }
    });
}

async fn synthesize_greeting(
    db: &Db,
    egress: &Egress,
    models: &LoadedModels,
    cache: &SpeechCache,
    number: &PhoneNumber,
    agent: &AgentSpec,
    sources: &SpeechSources,
) -> Result<()> {
    // Nothing to do when nobody can speak for the agent yet.
    let Some(ears) = ears(db, egress, models, agent, sources).await? else { return Ok(()) };
    let voice = SpeakingVoice::new(agent.speech.voice_for(CALL_LANGUAGE, &ears.default_voice), CALL_LANGUAGE);
    if let Err(e) = cache.warm(ears.tts.as_ref(), &ears.synthesizer, &voice, number.greeting(agent)).await {
        tracing::warn!(number = %number.id, error = %e, "could not synthesise the greeting ahead");
    }
    Ok(())
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
