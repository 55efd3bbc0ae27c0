//! Agents: what a conversational agent is told, how it sounds, which model thinks for it and
//! which tools it may use. Every change makes a new version; calls remember the version they ran.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{AgentId, AppId, LlmProviderId, OrgId, SpeechProviderId};
use super::phone_number::E164;
use super::text_enum;
use super::validation::{Invalid, bounded_text, in_range, required_text};

text_enum!(
    /// Built-in tools an agent may call during a phone conversation.
    AgentTool {
        EndConversation => "endConversation",
        TransferCall => "transferCall",
        SwitchLanguage => "switchLanguage",
    }
);

/// Default seconds of caller silence before the agent checks whether they are still there.
pub const DEFAULT_CONVERSATION_TIMEOUT_SECS: i64 = 30;
/// Default longest call, in seconds.
pub const DEFAULT_MAX_CALL_DURATION_SECS: i64 = 1800;

/// Everything about an agent a user edits. `validate` is the only way to trust one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentSpec {
    pub name: String,
    pub description: String,
    /// Training instructions: who the agent is and what it knows.
    pub instructions: String,
    /// Extra instructions that apply on the phone only.
    pub phone_instructions: String,
    /// What the agent says when it picks up; empty means none (or a generated one).
    pub first_message: String,
    pub conversation_timeout_secs: i64,
    pub max_call_duration_secs: i64,
    /// When and how the agent should end a call.
    pub end_call_instructions: String,
    /// Words that end the call when the agent's reply ends with one of them ("Goodbye"), after
    /// the reply has played; a backup for models that rarely call `endConversation`.
    #[serde(default)]
    pub end_call_phrases: Vec<String>,
    pub llm_provider_id: Option<LlmProviderId>,
    /// Overrides the provider's default model.
    pub model: Option<String>,
    pub temperature: Option<f64>,
    pub voice: Option<String>,
    /// Tools besides `endConversation`, which every phone agent has.
    pub tools: Vec<AgentTool>,
    /// Where `transferCall` sends the caller.
    pub transfer_number: Option<E164>,
    /// How the agent hears and speaks on `media_stream` numbers.
    #[serde(default)]
    pub speech: AgentSpeech,
}

/// Default silence, in milliseconds, that ends a caller's turn on `media_stream` numbers.
pub const DEFAULT_END_OF_TURN_SILENCE_MS: i64 = 700;
/// Default wait for a caller who paused mid-sentence.
pub const DEFAULT_PATIENCE_MS: i64 = 2000;

/// How the agent hears and speaks where Switchboard does the speech (`media_stream` numbers;
/// on `conversation_relay` numbers Twilio does). A provider left out is the organisation's
/// newest one that can do the job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSpeech {
    /// Recognises the caller: a speech provider with a transcription model.
    pub speech_to_text_provider_id: Option<SpeechProviderId>,
    /// Speaks for the agent: a speech provider with a speech model.
    pub text_to_speech_provider_id: Option<SpeechProviderId>,
    /// The voice for a language (`fr`) or a locale (`fr-CA`); others use the agent's `voice`,
    /// else the provider's default voice. A language switch changes the voice with it.
    pub voices: BTreeMap<String, String>,
    /// Silence that ends the caller's turn, in milliseconds (200–5000, default 700), where no
    /// end-of-turn model decides (the turn-taking models are not installed).
    pub end_of_turn_silence_ms: i64,
    /// How long the agent waits for a caller who stopped mid-sentence (the end-of-turn model
    /// heard it, or their words end on "to", "and", "um"…) before answering anyway, in
    /// milliseconds (300–10000, default 2000). Raise it for callers who read out long numbers.
    pub patience_ms: i64,
    /// Whether "mhm", "yeah", "okay" and the like stop the agent mid-sentence (default: they
    /// do not; anything longer than a short utterance always does).
    pub backchannels_interrupt: bool,
    /// Said when the answer has not begun `filler_after_ms` after the caller's turn ended, so
    /// the line is never dead (empty: never). Not part of the transcript.
    pub filler: String,
    /// 300–10000, default 1500.
    pub filler_after_ms: i64,
}

/// Default filler and its delay.
pub const DEFAULT_FILLER: &str = "One moment.";
pub const DEFAULT_FILLER_AFTER_MS: i64 = 1500;

impl Default for AgentSpeech {
    fn default() -> Self {
        Self {
            speech_to_text_provider_id: None,
            text_to_speech_provider_id: None,
            voices: BTreeMap::new(),
            end_of_turn_silence_ms: DEFAULT_END_OF_TURN_SILENCE_MS,
            patience_ms: DEFAULT_PATIENCE_MS,
            backchannels_interrupt: false,
            filler: DEFAULT_FILLER.to_owned(),
            filler_after_ms: DEFAULT_FILLER_AFTER_MS,
        }
    }
}

impl AgentSpeech {
    fn validate(mut self) -> Result<Self, Invalid> {
        in_range("speech.end_of_turn_silence_ms", self.end_of_turn_silence_ms, 200, 5_000, "milliseconds")?;
        in_range("speech.patience_ms", self.patience_ms, 300, 10_000, "milliseconds")?;
        in_range("speech.filler_after_ms", self.filler_after_ms, 300, 10_000, "milliseconds")?;
        self.filler = bounded_text("speech.filler", self.filler.trim(), 200)?;
        let mut voices = BTreeMap::new();
        for (language, voice) in std::mem::take(&mut self.voices) {
            if super::languages::find(&language).is_none() {
                return Err(Invalid::new("speech.voices", format!("`{language}` is not a supported language or locale (see /languages)")));
            }
            voices.insert(language, required_text("speech.voices", voice.trim(), 200)?);
        }
        self.voices = voices;
        Ok(self)
    }

    /// The voice for a call in `locale`: the one named for the locale, else for its language,
    /// else `fallback` (the agent's voice or the provider's default).
    pub fn voice_for<'a>(&'a self, locale: &str, fallback: &'a str) -> &'a str {
        let language = super::languages::find(locale).map(|l| l.id.as_str());
        self.voices.get(locale).or_else(|| language.and_then(|id| self.voices.get(id))).map_or(fallback, String::as_str)
    }
}

impl AgentSpec {
    /// A spec with the platform defaults and the given name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            instructions: String::new(),
            phone_instructions: String::new(),
            first_message: String::new(),
            conversation_timeout_secs: DEFAULT_CONVERSATION_TIMEOUT_SECS,
            max_call_duration_secs: DEFAULT_MAX_CALL_DURATION_SECS,
            end_call_instructions: String::new(),
            end_call_phrases: Vec::new(),
            llm_provider_id: None,
            model: None,
            temperature: None,
            voice: None,
            tools: vec![AgentTool::EndConversation],
            transfer_number: None,
            speech: AgentSpeech::default(),
        }
    }

    /// Checks every rule and normalises text; returns the first problem found.
    pub fn validate(mut self) -> Result<Self, Invalid> {
        self.name = required_text("name", &self.name, 100)?;
        self.description = bounded_text("description", &self.description, 2_000)?;
        self.instructions = bounded_text("instructions", &self.instructions, 50_000)?;
        self.phone_instructions = bounded_text("phone_instructions", &self.phone_instructions, 20_000)?;
        self.first_message = bounded_text("first_message", self.first_message.trim(), 1_000)?;
        self.end_call_instructions = bounded_text("end_call_instructions", &self.end_call_instructions, 5_000)?;
        if self.end_call_phrases.len() > MAX_END_CALL_PHRASES {
            return Err(Invalid::new(
                "end_call_phrases",
                format!("at most {MAX_END_CALL_PHRASES} phrases, got {}", self.end_call_phrases.len()),
            ));
        }
        let mut phrases: Vec<String> = Vec::with_capacity(self.end_call_phrases.len());
        for phrase in &self.end_call_phrases {
            let phrase = required_text("end_call_phrases", phrase.trim(), 100)?;
            if words(&phrase).is_empty() {
                return Err(Invalid::new("end_call_phrases", format!("`{phrase}` has no words to match")));
            }
            if !phrases.iter().any(|p| words(p) == words(&phrase)) {
                phrases.push(phrase);
            }
        }
        self.end_call_phrases = phrases;
        in_range("conversation_timeout_secs", self.conversation_timeout_secs, 5, 600, "seconds")?;
        in_range("max_call_duration_secs", self.max_call_duration_secs, 30, 14_400, "seconds")?;
        if let Some(model) = &self.model {
            self.model = Some(super::provider::model_name("model", model)?);
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(Invalid::new("temperature", format!("must be between 0 and 2, got {t}")));
        }
        if let Some(voice) = &self.voice {
            self.voice = Some(required_text("voice", voice, 200)?);
        }
        if !self.tools.contains(&AgentTool::EndConversation) {
            self.tools.insert(0, AgentTool::EndConversation);
        }
        let mut seen = Vec::with_capacity(self.tools.len());
        self.tools.retain(|tool| {
            if seen.contains(tool) {
                false
            } else {
                seen.push(*tool);
                true
            }
        });
        self.speech = self.speech.validate()?;
        if self.tools.contains(&AgentTool::TransferCall) && self.transfer_number.is_none() {
            return Err(Invalid::new("transfer_number", "is required when the transferCall tool is enabled"));
        }
        Ok(self)
    }
}

impl AgentSpec {
    /// Whether `reply` ends with one of the end-call phrases, ignoring case, punctuation and
    /// spacing ("Thanks, and goodbye!" ends with "Goodbye").
    pub fn ends_the_call(&self, reply: &str) -> bool {
        let reply = words(reply);
        self.end_call_phrases.iter().any(|phrase| {
            let phrase = words(phrase);
            !phrase.is_empty() && reply.ends_with(&phrase)
        })
    }
}

/// The most end-call phrases an agent may have.
pub const MAX_END_CALL_PHRASES: usize = 20;

/// Text as lowercase words, for phrase matching (case and punctuation do not count).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// A stored agent: its current spec and version.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: AgentId,
    #[serde(skip)]
    pub org_id: OrgId,
    pub app_id: AppId,
    #[serde(flatten)]
    pub spec: AgentSpec,
    /// Bumped on every change; calls record the version that answered them.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A past (or the current) version of an agent.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AgentVersion {
    pub version: i64,
    pub spec: AgentSpec,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_conversation_is_always_enabled_once() {
        let mut spec = AgentSpec::named("Ava");
        spec.tools = vec![AgentTool::SwitchLanguage, AgentTool::SwitchLanguage];
        let spec = spec.validate().unwrap();
        assert_eq!(spec.tools, vec![AgentTool::EndConversation, AgentTool::SwitchLanguage]);
    }

    #[test]
    fn transfer_needs_a_number() {
        let mut spec = AgentSpec::named("Ava");
        spec.tools = vec![AgentTool::TransferCall];
        assert_eq!(spec.clone().validate().unwrap_err().field, "transfer_number");
        spec.transfer_number = Some(E164::parse("transfer_number", "+14155550199").unwrap());
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn end_call_phrases_match_whole_closing_words() {
        let mut spec = AgentSpec::named("Ava");
        spec.end_call_phrases = vec![" Goodbye ".into(), "goodbye!".into(), "Have a nice day".into()];
        let spec = spec.validate().unwrap();
        assert_eq!(spec.end_call_phrases, ["Goodbye", "Have a nice day"], "trimmed, duplicates by words removed");
        assert!(spec.ends_the_call("Thanks for calling, and GOODBYE!"));
        assert!(spec.ends_the_call("You too. Have a   nice day."));
        assert!(!spec.ends_the_call("Goodbye is not what I'd say yet. What else?"));
        assert!(!spec.ends_the_call("Say bye-goodbyes"), "whole words only");
        assert!(!AgentSpec::named("Ava").ends_the_call("Goodbye!"), "no phrases, no match");
        let mut spec = AgentSpec::named("Ava");
        spec.end_call_phrases = vec!["?!".into()];
        assert_eq!(spec.validate().unwrap_err().field, "end_call_phrases");
    }

    #[test]
    fn voices_are_per_language_or_locale() {
        let voices = [("fr".to_owned(), " juliette ".to_owned()), ("fr-CA".to_owned(), "gabrielle".to_owned())].into();
        let speech = AgentSpeech { voices, ..AgentSpeech::default() }.validate().unwrap();
        assert_eq!(speech.voice_for("fr-CA", "alloy"), "gabrielle");
        assert_eq!(speech.voice_for("fr-FR", "alloy"), "juliette", "trimmed, found by language");
        assert_eq!(speech.voice_for("en-US", "alloy"), "alloy");
        let spec = AgentSpeech { voices: [("klingon".to_owned(), "worf".to_owned())].into(), ..AgentSpeech::default() };
        assert_eq!(spec.validate().unwrap_err().field, "speech.voices");
        let spec = AgentSpeech { end_of_turn_silence_ms: 50, ..AgentSpeech::default() };
        assert_eq!(spec.validate().unwrap_err().field, "speech.end_of_turn_silence_ms");
    }

    #[test]
    fn ranges_are_enforced() {
        let mut spec = AgentSpec::named("Ava");
        spec.conversation_timeout_secs = 1;
        assert_eq!(spec.validate().unwrap_err().field, "conversation_timeout_secs");
        let mut spec = AgentSpec::named("Ava");
        spec.temperature = Some(3.5);
        assert_eq!(spec.validate().unwrap_err().field, "temperature");
    }
}
