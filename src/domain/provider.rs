//! Phone providers (a carrier account: today Twilio), LLM providers (any OpenAI-compatible
//! endpoint) and speech providers (the vendors Media Streams calls hear and speak through).
//! Credentials live here only as write-only inputs; what is shown never holds them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ids::{LlmProviderId, OrgId, PhoneProviderId, SpeechProviderId};
use super::text_enum;
use super::validation::{Invalid, http_url, required_text};

text_enum!(
    /// The carrier behind a phone provider.
    PhoneProviderKind { Twilio => "twilio" }
);

text_enum!(
    /// What the last verification against the carrier found.
    PhoneProviderStatus {
        Unverified => "unverified",
        Active => "active",
        Suspended => "suspended",
        Closed => "closed",
        InvalidCredentials => "invalid_credentials",
        Unreachable => "unreachable",
    }
);

/// A phone provider as shown to users: no secret, only whether an API key is set.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PhoneProvider {
    pub id: PhoneProviderId,
    #[serde(skip)]
    pub org_id: OrgId,
    pub name: String,
    pub kind: PhoneProviderKind,
    pub account_sid: String,
    /// The API key SID (`SK…`) used instead of the auth token for REST calls, when set.
    pub api_key_sid: Option<String>,
    pub status: PhoneProviderStatus,
    pub last_verified_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A Twilio SID: two upper-case letters of the given prefix and 32 lower-case hex digits.
pub fn twilio_sid(field: &str, prefix: &str, value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    let well_formed = value.len() == 34 && value.starts_with(prefix) && value[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if well_formed {
        Ok(value.to_owned())
    } else {
        Err(Invalid::new(field, format!("must be `{prefix}` followed by 32 hexadecimal digits, as shown in the Twilio console")))
    }
}

/// A secret credential (auth token, API key secret): non-empty, no white space, bounded.
pub fn credential(field: &str, value: &str) -> Result<String, Invalid> {
    if value.is_empty() || value.len() > 256 || value.chars().any(char::is_whitespace) {
        return Err(Invalid::new(field, "must be 1 to 256 characters without spaces"));
    }
    Ok(value.to_owned())
}

/// A validated provider display name.
pub fn provider_name(value: &str) -> Result<String, Invalid> {
    required_text("name", value, 100)
}

/// An OpenAI-compatible endpoint as shown to users: no API key, only whether one is set.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LlmProvider {
    pub id: LlmProviderId,
    #[serde(skip)]
    pub org_id: OrgId,
    pub name: String,
    /// Base URL of the Chat Completions API, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub default_model: String,
    pub has_api_key: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A validated LLM base URL, without a trailing slash.
pub fn api_base_url(value: &str) -> Result<String, Invalid> {
    let url = http_url("base_url", value)?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A validated model name.
pub fn model_name(field: &str, value: &str) -> Result<String, Invalid> {
    let model = required_text(field, value, 200)?;
    if model.chars().any(char::is_whitespace) {
        return Err(Invalid::new(field, "must not contain spaces"));
    }
    Ok(model)
}

text_enum!(
    /// The API a speech provider speaks: `openai` (`/audio/transcriptions` and `/audio/speech`,
    /// OpenAI and self-hosted servers), `deepgram` (streaming recognition over the `/listen`
    /// WebSocket), `elevenlabs` (streamed synthesis from `/text-to-speech/{voice}/stream`).
    SpeechProviderKind { OpenAi => "openai", Deepgram => "deepgram", ElevenLabs => "elevenlabs" }
);

impl SpeechProviderKind {
    /// The vendor as people name it.
    pub fn label(self) -> &'static str {
        match self {
            SpeechProviderKind::OpenAi => "OpenAI-compatible",
            SpeechProviderKind::Deepgram => "Deepgram",
            SpeechProviderKind::ElevenLabs => "ElevenLabs",
        }
    }

    /// Where the vendor's API lives when no base URL is given; OpenAI-compatible servers are
    /// anywhere, so they need one.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            SpeechProviderKind::OpenAi => None,
            SpeechProviderKind::Deepgram => Some("https://api.deepgram.com/v1"),
            SpeechProviderKind::ElevenLabs => Some("https://api.elevenlabs.io/v1"),
        }
    }
}

/// A speech vendor account as shown to users: no API key, only whether one is set. It can
/// transcribe when it has a transcription model and speak when it has a speech model.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SpeechProvider {
    pub id: SpeechProviderId,
    #[serde(skip)]
    pub org_id: OrgId,
    pub name: String,
    pub kind: SpeechProviderKind,
    /// Base URL of the vendor's API, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The recognition model (`whisper-1`, `nova-3`); none when this provider does not transcribe.
    pub transcription_model: Option<String>,
    /// The synthesis model (`gpt-4o-mini-tts`, `eleven_flash_v2_5`); none when it does not speak.
    pub speech_model: Option<String>,
    /// The voice used when an agent names none for the call's language.
    pub default_voice: Option<String>,
    pub has_api_key: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SpeechProvider {
    pub fn transcribes(&self) -> bool {
        self.transcription_model.is_some()
    }

    pub fn speaks(&self) -> bool {
        self.speech_model.is_some()
    }
}

/// What a speech provider of `kind` must have: Deepgram only transcribes, ElevenLabs only
/// speaks, an OpenAI-compatible server does either or both; a speaking provider needs a voice.
pub fn speech_capabilities(
    kind: SpeechProviderKind,
    transcription_model: Option<&str>,
    speech_model: Option<&str>,
    default_voice: Option<&str>,
) -> Result<(), Invalid> {
    match kind {
        SpeechProviderKind::Deepgram if speech_model.is_some() => {
            return Err(Invalid::new("speech_model", "Deepgram providers transcribe only; leave `speech_model` out"));
        }
        SpeechProviderKind::ElevenLabs if transcription_model.is_some() => {
            return Err(Invalid::new("transcription_model", "ElevenLabs providers speak only; leave `transcription_model` out"));
        }
        _ => {}
    }
    if transcription_model.is_none() && speech_model.is_none() {
        let field = if kind == SpeechProviderKind::ElevenLabs { "speech_model" } else { "transcription_model" };
        return Err(Invalid::new(field, "a speech provider needs a `transcription_model`, a `speech_model`, or both"));
    }
    if speech_model.is_some() && default_voice.is_none() {
        return Err(Invalid::new("default_voice", "is required with a `speech_model` (e.g. `alloy`, or an ElevenLabs voice id)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_need_prefix_and_32_hex_digits() {
        let sid = format!("AC{}", "a1".repeat(16));
        assert_eq!(twilio_sid("account_sid", "AC", &sid).unwrap(), sid);
        assert!(twilio_sid("account_sid", "SK", &sid).is_err());
        assert!(twilio_sid("account_sid", "AC", "AC123").is_err());
        assert!(twilio_sid("account_sid", "AC", &format!("AC{}", "zz".repeat(16))).is_err());
    }

    #[test]
    fn speech_providers_need_what_their_vendor_does() {
        use SpeechProviderKind::*;
        assert!(speech_capabilities(OpenAi, Some("whisper-1"), Some("tts-1"), Some("alloy")).is_ok());
        assert!(speech_capabilities(OpenAi, Some("whisper-1"), None, None).is_ok());
        assert_eq!(speech_capabilities(OpenAi, None, None, None).unwrap_err().field, "transcription_model");
        assert_eq!(speech_capabilities(OpenAi, None, Some("tts-1"), None).unwrap_err().field, "default_voice");
        assert_eq!(speech_capabilities(Deepgram, Some("nova-3"), Some("aura"), Some("x")).unwrap_err().field, "speech_model");
        assert_eq!(speech_capabilities(ElevenLabs, Some("scribe"), None, None).unwrap_err().field, "transcription_model");
        assert_eq!(speech_capabilities(ElevenLabs, None, None, None).unwrap_err().field, "speech_model");
        assert!(speech_capabilities(ElevenLabs, None, Some("eleven_flash_v2_5"), Some("21m00Tcm4TlvDq8ikWAM")).is_ok());
    }

    #[test]
    fn base_urls_lose_trailing_slash() {
        assert_eq!(api_base_url("http://127.0.0.1:8000/v1/").unwrap(), "http://127.0.0.1:8000/v1");
        assert!(api_base_url("file:///etc/passwd").is_err());
    }
}
