//! Call recording: what a phone service says about recording its calls (on or off, the consent
//! announcement per language, the caller's keypad opt-out, whether Twilio keeps its copy) and a
//! call's recording as the API shows it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{CallId, RecordingId};
use super::languages;
use super::text_enum;
use super::validation::Invalid;

/// The key a caller presses, as a keypad answer of its own, to stop the recording.
pub const OPT_OUT_KEY: &str = "9";
/// What callers hear when a service records and gives no wording of its own.
pub const DEFAULT_ANNOUNCEMENT: &str = "This call is recorded for quality and training.";
/// Added to the default wording when callers may opt out.
pub const DEFAULT_OPT_OUT_HINT: &str = "If you prefer not to be recorded, press 9 at any time.";
/// What the agent says once a caller has opted out.
pub const OPTED_OUT_CONFIRMATION: &str = "Understood, this call is no longer being recorded.";
/// The longest announcement, in characters (it is spoken before the agent's first words).
const MAX_ANNOUNCEMENT: usize = 400;

/// A phone service's recording settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingSettings {
    /// Record this number's calls (both sides, one channel each).
    #[serde(default)]
    pub enabled: bool,
    /// The consent announcement by language id or locale (`en`, `fr-CA`), spoken before the
    /// agent's first message in the language the call opens in (US English). Without one for
    /// that language the default wording is spoken.
    #[serde(default)]
    #[schema(example = json!({ "en": "This call is recorded. Press 9 if you prefer it not to be." }))]
    pub announcement: BTreeMap<String, String>,
    /// Callers may press 9 (as a keypad answer of its own) to stop the recording; what was
    /// recorded until then is deleted. Say so in a custom announcement.
    #[serde(default)]
    pub caller_may_opt_out: bool,
    /// Keep Twilio's copy of a ConversationRelay call's recording; by default it is deleted at
    /// Twilio once stored here, so the only copy is under your control.
    #[serde(default)]
    pub keep_carrier_copy: bool,
}

impl RecordingSettings {
    /// The settings with trimmed texts, or what to fix.
    pub fn validate(mut self) -> Result<Self, Invalid> {
        let field = "recording.announcement";
        let mut texts = BTreeMap::new();
        for (code, text) in std::mem::take(&mut self.announcement) {
            let (code, text) = (code.trim().to_owned(), text.trim().to_owned());
            if languages::find(&code).is_none() {
                return Err(Invalid::new(
                    field,
                    format!("`{code}` is not a supported language; GET /api/v1/languages lists the ids and locales"),
                ));
            }
            if text.is_empty() || text.chars().count() > MAX_ANNOUNCEMENT {
                return Err(Invalid::new(field, format!("the `{code}` announcement must be 1 to {MAX_ANNOUNCEMENT} characters")));
            }
            texts.insert(code, text);
        }
        self.announcement = texts;
        Ok(self)
    }

    /// What a call opening in `locale` hears before the agent's first words, when it is recorded.
    pub fn announcement_for(&self, locale: &str) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let language = languages::find(locale).map(|l| l.id.as_str());
        let custom = self.announcement.get(locale).or_else(|| language.and_then(|id| self.announcement.get(id)));
        Some(match custom {
            Some(text) => text.clone(),
            None if self.caller_may_opt_out => format!("{DEFAULT_ANNOUNCEMENT} {DEFAULT_OPT_OUT_HINT}"),
            None => DEFAULT_ANNOUNCEMENT.to_owned(),
        })
    }
}

text_enum!(
    /// Where a call's recording is in its life.
    RecordingStatus {
        Recording => "recording",
        Processing => "processing",
        Stored => "stored",
        OptedOut => "opted_out",
        Absent => "absent",
        Failed => "failed"
    }
);

text_enum!(
    /// Who captured the audio: Twilio (ConversationRelay calls) or Switchboard itself (Media Streams).
    RecordingSource { Carrier => "carrier", Switchboard => "switchboard" }
);

/// A call's recording, as the API shows it (the audio is at `/calls/{id}/recording/audio`).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Recording {
    pub id: RecordingId,
    pub call_id: CallId,
    pub status: RecordingStatus,
    pub source: RecordingSource,
    /// What the caller was told before the agent spoke.
    pub announcement: Option<String>,
    /// 2: the caller on the left channel, the agent on the right.
    pub channels: Option<i64>,
    pub duration_ms: Option<i64>,
    /// The size of the audio (a WAV file) once stored.
    pub bytes: Option<i64>,
    /// Why it is absent or failed.
    pub detail: Option<String>,
    pub opted_out_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub stored_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announcement_is_the_services_own_or_the_default_wording() {
        let off = RecordingSettings::default();
        assert_eq!(off.announcement_for("en-US"), None, "no recording, no announcement");
        let mut on = RecordingSettings { enabled: true, ..Default::default() };
        assert_eq!(on.announcement_for("en-US").as_deref(), Some(DEFAULT_ANNOUNCEMENT));
        on.caller_may_opt_out = true;
        assert!(on.announcement_for("en-US").unwrap().ends_with(DEFAULT_OPT_OUT_HINT));
        on.announcement.insert("en".into(), "We record calls.".into());
        assert_eq!(on.announcement_for("en-US").as_deref(), Some("We record calls."), "by language id");
        on.announcement.insert("en-US".into(), "We record US calls.".into());
        assert_eq!(on.announcement_for("en-US").as_deref(), Some("We record US calls."), "a locale comes first");
    }

    #[test]
    fn settings_name_what_to_fix() {
        let unknown = RecordingSettings { announcement: BTreeMap::from([("xx".into(), "Hi".into())]), ..Default::default() };
        assert!(unknown.validate().unwrap_err().message.contains("`xx`"));
        let blank = RecordingSettings { announcement: BTreeMap::from([("en".into(), "  ".into())]), ..Default::default() };
        assert_eq!(blank.validate().unwrap_err().field, "recording.announcement");
        let trimmed = RecordingSettings { announcement: BTreeMap::from([(" fr ".into(), " Bonjour ".into())]), ..Default::default() };
        assert_eq!(trimmed.validate().unwrap().announcement["fr"], "Bonjour");
    }
}
