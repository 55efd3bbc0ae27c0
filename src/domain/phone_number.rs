//! Phone numbers and the phone service that binds each one to a provider and an agent, plus the
//! value types for E.164 numbers and area codes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::agent::AgentSpec;
use super::ids::{AgentId, AppId, OrgId, PhoneNumberId, PhoneProviderId};
use super::recording::RecordingSettings;
use super::text_enum;
use super::validation::Invalid;

/// A phone number in E.164 form: `+`, a country code not starting with 0, 8 to 15 digits in all.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(into = "String", try_from = "String")]
#[schema(value_type = String, example = "+14155550100", pattern = r"^\+[1-9][0-9]{7,14}$")]
pub struct E164(String);

impl E164 {
    pub fn parse(field: &str, value: &str) -> Result<Self, Invalid> {
        let value = value.trim();
        let digits = value.strip_prefix('+').unwrap_or("");
        let valid = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(Invalid::new(
                field,
                format!("`{value}` is not an E.164 number: write `+`, the country code and the number, digits only, e.g. +14155550100"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for E164 {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Invalid> {
        Self::parse("phone_number", &value)
    }
}

impl From<E164> for String {
    fn from(value: E164) -> String {
        value.0
    }
}

/// A three-digit area code, as Twilio searches by (`AreaCode=415`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "415", pattern = "^[0-9]{3}$")]
pub struct AreaCode(String);

impl AreaCode {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let value = value.trim();
        if value.len() == 3 && value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(value.to_owned()))
        } else {
            Err(Invalid::new("area_code", format!("`{value}` is not an area code: give exactly three digits, e.g. 415")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_enum!(
    /// How a call's audio reaches the agent: Twilio does speech (ConversationRelay) or we do
    /// (Media Streams).
    ServiceMode { ConversationRelay => "conversation_relay", MediaStream => "media_stream" }
);

text_enum!(
    /// Whether a phone service answers calls.
    ServiceStatus { Active => "active", Disabled => "disabled", Error => "error" }
);

/// Where a number's calls go when this server cannot answer them: Twilio's fallback URL for the
/// number, which Twilio calls when the voice webhook fails or times out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Backup {
    /// Forward the call to this number, through the carrier's own hosted forwarding.
    ForwardTo(E164),
    /// A second Switchboard deployment that serves the same number: its public base URL.
    #[schema(example = "https://switchboard-b.example.com")]
    Deployment(String),
}

impl Backup {
    /// The backup, checked: a deployment is an `https` base URL (`http` only on loopback) that is
    /// not this server (`public_base_url`), which would be down with it.
    pub fn validate(self, public_base_url: &str) -> Result<Self, Invalid> {
        let Backup::Deployment(url) = &self else { return Ok(self) };
        let field = "backup.deployment";
        let parsed = url::Url::parse(url.trim()).map_err(|e| Invalid::new(field, format!("`{url}` is not a URL ({e})")))?;
        let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
            return Err(Invalid::new(field, "must be an https:// URL that Twilio can reach"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Invalid::new(field, "give the deployment's base URL only, without a query"));
        }
        let same_server = url::Url::parse(public_base_url)
            .is_ok_and(|ours| ours.host_str() == parsed.host_str() && ours.port_or_known_default() == parsed.port_or_known_default());
        if same_server {
            return Err(Invalid::new(field, "is this server: a backup must be a deployment that stays up when this one is down"));
        }
        Ok(Backup::Deployment(parsed.as_str().trim_end_matches('/').to_owned()))
    }
}

/// A number bound to an agent through a provider: the phone service.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PhoneNumber {
    pub id: PhoneNumberId,
    #[serde(skip)]
    pub org_id: OrgId,
    pub app_id: AppId,
    pub provider_id: PhoneProviderId,
    pub agent_id: AgentId,
    pub number: E164,
    /// The carrier's id for the number (`PN…` on Twilio).
    pub twilio_sid: Option<String>,
    pub area_code: Option<AreaCode>,
    pub expand_languages: bool,
    /// Language ids or locales from `/api/v1/languages` offered besides English.
    pub languages: Vec<String>,
    pub generate_first_message: bool,
    pub generated_first_message: Option<String>,
    pub mode: ServiceMode,
    pub status: ServiceStatus,
    /// Whether calls are recorded, and what callers are told.
    pub recording: RecordingSettings,
    /// Where calls go when this server cannot answer them (none: this server's own fallback,
    /// which only helps while it is up).
    pub backup: Option<Backup>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A number a carrier offers for sale.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct NumberOffer {
    pub phone_number: String,
    pub friendly_name: Option<String>,
    pub locality: Option<String>,
    pub region: Option<String>,
    pub iso_country: Option<String>,
}

/// A number a carrier account owns, to attach to an agent.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct OwnedNumber {
    /// The carrier's id for the number (`PN…` on Twilio).
    pub sid: String,
    pub phone_number: String,
    pub friendly_name: Option<String>,
    /// Where the carrier sends the number's calls now, if anywhere.
    pub voice_url: Option<String>,
}

impl PhoneNumber {
    /// What the agent says first on this number: the cached generated greeting when the service
    /// asks for one, else the agent's own first message.
    pub fn greeting<'a>(&'a self, agent: &'a AgentSpec) -> &'a str {
        match (self.generate_first_message, &self.generated_first_message) {
            (true, Some(generated)) => generated,
            _ => &agent.first_message,
        }
    }

    /// The locales besides English this service offers (none unless languages are expanded).
    pub fn other_languages(&self) -> Vec<String> {
        if self.expand_languages { super::languages::other_locales(&self.languages) } else { Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzz target: what parses as E.164 is `+`, 8 to 15 digits without a leading 0, and parses
    /// again to itself; anything else is refused with a message naming the field.
    #[test]
    fn fuzz_any_phone_number() {
        bolero::check!().with_type::<String>().for_each(|text| match E164::parse("to", text) {
            Ok(number) => {
                let digits = number.as_str().strip_prefix('+').expect("starts with +");
                assert!((8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0'));
                assert_eq!(E164::parse("to", number.as_str()).unwrap(), number);
            }
            Err(invalid) => assert_eq!(invalid.field, "to"),
        });
    }

    #[test]
    fn e164_accepts_only_plus_and_digits() {
        assert_eq!(E164::parse("to", " +14155550100 ").unwrap().as_str(), "+14155550100");
        for bad in ["14155550100", "+1 415 555 0100", "+0123456789", "+1234567", "+1234567890123456", "+"] {
            assert!(E164::parse("to", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_backup_is_a_number_or_another_deployment_never_this_server() {
        let ours = "https://sb.example.com";
        let other = Backup::Deployment("https://sb-b.example.com/".into()).validate(ours).unwrap();
        assert_eq!(other, Backup::Deployment("https://sb-b.example.com".into()), "kept without the trailing slash");
        for (bad, says) in [
            ("https://sb.example.com", "is this server"),
            ("https://sb.example.com:443/x", "is this server"),
            ("http://sb-b.example.com", "https://"),
            ("https://sb-b.example.com?x=1", "without a query"),
            ("sb-b", "not a URL"),
        ] {
            let refused = Backup::Deployment(bad.into()).validate(ours).unwrap_err();
            assert!(refused.message.contains(says), "{bad}: {}", refused.message);
        }
        assert!(Backup::Deployment("http://127.0.0.1:9000".into()).validate(ours).is_ok(), "http on loopback, for tests");
    }

    #[test]
    fn area_codes_are_three_digits() {
        assert!(AreaCode::parse("415").is_ok());
        for bad in ["41", "4155", "4a5", ""] {
            assert!(AreaCode::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
