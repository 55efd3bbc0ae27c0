//! Phone providers (a carrier account: today Twilio) and LLM providers (any OpenAI-compatible
//! endpoint). Credentials live here only as write-only inputs; what is shown never holds them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ids::{LlmProviderId, OrgId, PhoneProviderId};
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
pub fn llm_base_url(value: &str) -> Result<String, Invalid> {
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
    fn base_urls_lose_trailing_slash() {
        assert_eq!(llm_base_url("http://127.0.0.1:8000/v1/").unwrap(), "http://127.0.0.1:8000/v1");
        assert!(llm_base_url("file:///etc/passwd").is_err());
    }
}
