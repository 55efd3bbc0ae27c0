//! Client for Twilio's 2010-04-01 REST API: account check, number search, purchase, voice
//! settings, release, and live-call control. The base URL is configuration
//! (`twilio_api_base`), so tests point it at a local fake.
//!
//! Every request has a timeout. Twilio answers 429 (too many concurrent requests) and 5xx are
//! retried with exponential back-off, three tries in all; nothing else is retried, so a purchase
//! is never sent twice after Twilio has acted on it.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const API_VERSION: &str = "2010-04-01";
const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How we authenticate to an account: the account SID with its auth token, or an API key.
#[derive(Clone)]
pub struct Credentials {
    pub account_sid: String,
    pub username: String,
    pub password: zeroize::Zeroizing<String>,
}

/// What went wrong talking to Twilio.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// Twilio answered with an error document.
    #[error("Twilio refused the request: {message} (HTTP {status}{})", code.map(|c| format!(", error {c}")).unwrap_or_default())]
    Refused { status: u16, code: Option<i64>, message: String },
    /// No usable answer: connection failure, timeout, or 429/5xx after every retry.
    #[error("Twilio could not be reached: {0}")]
    Unreachable(String),
}

impl TwilioError {
    /// Whether Twilio rejected the credentials themselves.
    pub fn is_bad_credentials(&self) -> bool {
        matches!(self, TwilioError::Refused { status: 401, .. } | TwilioError::Refused { code: Some(20003), .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, TwilioError::Refused { status: 404, .. })
    }
}

/// The part of an Account we use.
#[derive(Debug, Deserialize)]
pub struct Account {
    /// `active`, `suspended` or `closed`.
    pub status: String,
    #[serde(default)]
    pub friendly_name: Option<String>,
}

/// A number offered for purchase.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AvailableNumber {
    pub phone_number: String,
    #[serde(default)]
    pub friendly_name: Option<String>,
    #[serde(default)]
    pub locality: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub iso_country: Option<String>,
}

/// A number the account owns, with its voice settings.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncomingNumber {
    pub sid: String,
    pub phone_number: String,
    #[serde(default)]
    pub friendly_name: Option<String>,
    #[serde(flatten)]
    pub voice: VoiceSettings,
}

/// The voice settings of a number: what we set when we attach it and restore when we let go.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VoiceSettings {
    #[serde(default)]
    pub voice_url: Option<String>,
    #[serde(default)]
    pub voice_method: Option<String>,
    #[serde(default)]
    pub voice_fallback_url: Option<String>,
    #[serde(default)]
    pub voice_fallback_method: Option<String>,
    #[serde(default)]
    pub status_callback: Option<String>,
    #[serde(default)]
    pub status_callback_method: Option<String>,
    #[serde(default)]
    pub voice_application_sid: Option<String>,
}

impl VoiceSettings {
    /// Settings that send a number's calls to this server.
    pub fn pointing_at(public_base_url: &str) -> Self {
        Self {
            voice_url: Some(format!("{public_base_url}/twilio/voice")),
            voice_method: Some("POST".into()),
            voice_fallback_url: Some(format!("{public_base_url}/twilio/fallback")),
            voice_fallback_method: Some("POST".into()),
            status_callback: Some(format!("{public_base_url}/twilio/status")),
            status_callback_method: Some("POST".into()),
            // An application SID would override VoiceUrl, so it must be cleared.
            voice_application_sid: Some(String::new()),
        }
    }

    /// The form fields that set these settings. URLs are always sent (empty clears one, so a
    /// restored number stops calling us); methods and the application SID only when known,
    /// since Twilio accepts only GET/POST as a method.
    fn form(&self) -> Vec<(&'static str, String)> {
        let urls =
            [("VoiceUrl", &self.voice_url), ("VoiceFallbackUrl", &self.voice_fallback_url), ("StatusCallback", &self.status_callback)];
        let optional = [
            ("VoiceMethod", &self.voice_method),
            ("VoiceFallbackMethod", &self.voice_fallback_method),
            ("StatusCallbackMethod", &self.status_callback_method),
            ("VoiceApplicationSid", &self.voice_application_sid),
        ];
        let mut form: Vec<(&'static str, String)> =
            urls.into_iter().map(|(name, value)| (name, value.clone().unwrap_or_default())).collect();
        form.extend(optional.into_iter().filter_map(|(name, value)| value.clone().map(|v| (name, v))));
        form
    }
}

/// One page of the account's numbers; `next_page` is an opaque query string for the next one.
#[derive(Debug)]
pub struct IncomingNumberPage {
    pub numbers: Vec<IncomingNumber>,
    pub next_page: Option<String>,
}

/// Which number to buy.
pub enum Purchase<'a> {
    AnyInAreaCode(&'a str),
    Exactly(&'a str),
}

#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    base: String,
}

impl TwilioClient {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("the HTTP client builds with static settings");
        Self { http, base: base.trim_end_matches('/').to_owned() }
    }

    fn url(&self, credentials: &Credentials, resource: &str) -> String {
        format!("{}/{API_VERSION}/Accounts/{}{resource}", self.base, credentials.account_sid)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        credentials: &Credentials,
        method: reqwest::Method,
        url: &str,
        query: &[(&str, String)],
        form: &[(&str, String)],
    ) -> Result<Option<T>, TwilioError> {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let mut request =
                self.http.request(method.clone(), url).basic_auth(&credentials.username, Some(credentials.password.as_str())).query(query);
            if !form.is_empty() {
                request = request.form(form);
            }
            let outcome = request.send().await;
            let retry_reason = match outcome {
                Ok(response) if response.status().is_success() => {
                    if response.status() == reqwest::StatusCode::NO_CONTENT {
                        return Ok(None);
                    }
                    let body = response.text().await.map_err(|e| TwilioError::Unreachable(e.to_string()))?;
                    return serde_json::from_str(&body)
                        .map(Some)
                        .map_err(|e| TwilioError::Unreachable(format!("unreadable answer from Twilio: {e}")));
                }
                Ok(response) if response.status().as_u16() == 429 || response.status().is_server_error() => {
                    format!("HTTP {}", response.status().as_u16())
                }
                Ok(response) => return Err(refusal(response).await),
                Err(e) => e.to_string(),
            };
            if attempt == ATTEMPTS {
                return Err(TwilioError::Unreachable(retry_reason));
            }
            tracing::debug!(attempt, reason = %retry_reason, "retrying a Twilio request");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        unreachable!("the last attempt returns")
    }

    /// Checks the credentials by reading the account.
    pub async fn fetch_account(&self, credentials: &Credentials) -> Result<Account, TwilioError> {
        let url = format!("{}/{API_VERSION}/Accounts/{}.json", self.base, credentials.account_sid);
        required(self.send(credentials, reqwest::Method::GET, &url, &[], &[]).await?)
    }

    /// Local numbers for sale in `country`, optionally in an area code.
    pub async fn search_local_numbers(
        &self,
        credentials: &Credentials,
        country: &str,
        area_code: Option<&str>,
    ) -> Result<Vec<AvailableNumber>, TwilioError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            available_phone_numbers: Vec<AvailableNumber>,
        }
        let url = self.url(credentials, &format!("/AvailablePhoneNumbers/{country}/Local.json"));
        let mut query = vec![("VoiceEnabled", "true".to_owned()), ("PageSize", "20".to_owned())];
        if let Some(code) = area_code {
            query.push(("AreaCode", code.to_owned()));
        }
        let page: Page = required(self.send(credentials, reqwest::Method::GET, &url, &query, &[]).await?)?;
        Ok(page.available_phone_numbers)
    }

    /// One page of the account's own numbers. `page` is a previous `next_page`, or `None`.
    pub async fn list_incoming_numbers(
        &self,
        credentials: &Credentials,
        page: Option<&str>,
        page_size: u32,
    ) -> Result<IncomingNumberPage, TwilioError> {
        let url = self.url(credentials, "/IncomingPhoneNumbers.json");
        let mut query: Vec<(&str, String)> = match page {
            Some(token) => url::form_urlencoded::parse(token.as_bytes())
                .filter_map(|(k, v)| match k.as_ref() {
                    "Page" => Some(("Page", v.into_owned())),
                    "PageToken" => Some(("PageToken", v.into_owned())),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        query.push(("PageSize", page_size.to_string()));
        let page: IncomingPage = required(self.send(credentials, reqwest::Method::GET, &url, &query, &[]).await?)?;
        let next_page = page.next_page_uri.and_then(|uri| uri.split_once('?').map(|(_, q)| q.to_owned()));
        Ok(IncomingNumberPage { numbers: page.incoming_phone_numbers, next_page })
    }

    /// The account's number with exactly this E.164 value, if it owns it.
    pub async fn find_incoming_number(&self, credentials: &Credentials, phone_number: &str) -> Result<Option<IncomingNumber>, TwilioError> {
        let url = self.url(credentials, "/IncomingPhoneNumbers.json");
        let query = [("PhoneNumber", phone_number.to_owned())];
        let page: IncomingPage = required(self.send(credentials, reqwest::Method::GET, &url, &query, &[]).await?)?;
        Ok(page.incoming_phone_numbers.into_iter().find(|n| n.phone_number == phone_number))
    }

    pub async fn fetch_incoming_number(&self, credentials: &Credentials, sid: &str) -> Result<IncomingNumber, TwilioError> {
        let url = self.url(credentials, &format!("/IncomingPhoneNumbers/{sid}.json"));
        required(self.send(credentials, reqwest::Method::GET, &url, &[], &[]).await?)
    }

    /// Buys a number and points its voice settings in one request.
    pub async fn buy_number(
        &self,
        credentials: &Credentials,
        which: Purchase<'_>,
        voice: &VoiceSettings,
    ) -> Result<IncomingNumber, TwilioError> {
        let url = self.url(credentials, "/IncomingPhoneNumbers.json");
        let mut form = voice.form();
        form.retain(|(_, value)| !value.is_empty());
        match which {
            Purchase::AnyInAreaCode(code) => form.push(("AreaCode", code.to_owned())),
            Purchase::Exactly(number) => form.push(("PhoneNumber", number.to_owned())),
        }
        // A purchase is not retried after a timeout: Twilio may already have acted on it.
        let response = self
            .http
            .post(&url)
            .basic_auth(&credentials.username, Some(credentials.password.as_str()))
            .form(&form)
            .send()
            .await
            .map_err(|e| TwilioError::Unreachable(e.to_string()))?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(TwilioError::Unreachable(format!("HTTP {} while buying a number; nothing was bought, try again", status.as_u16())));
        }
        if !status.is_success() {
            return Err(refusal(response).await);
        }
        response.json().await.map_err(|e| TwilioError::Unreachable(format!("unreadable answer from Twilio: {e}")))
    }

    /// Replaces a number's voice settings.
    pub async fn update_voice_settings(
        &self,
        credentials: &Credentials,
        sid: &str,
        voice: &VoiceSettings,
    ) -> Result<IncomingNumber, TwilioError> {
        let url = self.url(credentials, &format!("/IncomingPhoneNumbers/{sid}.json"));
        required(self.send(credentials, reqwest::Method::POST, &url, &[], &voice.form()).await?)
    }

    /// Releases a number from the account (it stops being ours and billed).
    pub async fn release_number(&self, credentials: &Credentials, sid: &str) -> Result<(), TwilioError> {
        let url = self.url(credentials, &format!("/IncomingPhoneNumbers/{sid}.json"));
        self.send::<Value>(credentials, reqwest::Method::DELETE, &url, &[], &[]).await.map(|_| ())
    }

    /// Reads a call's state.
    pub async fn fetch_call(&self, credentials: &Credentials, call_sid: &str) -> Result<CallResource, TwilioError> {
        let url = self.url(credentials, &format!("/Calls/{call_sid}.json"));
        required(self.send(credentials, reqwest::Method::GET, &url, &[], &[]).await?)
    }

    /// Ends a live call.
    pub async fn hang_up(&self, credentials: &Credentials, call_sid: &str) -> Result<(), TwilioError> {
        let url = self.url(credentials, &format!("/Calls/{call_sid}.json"));
        self.send::<Value>(credentials, reqwest::Method::POST, &url, &[], &[("Status", "completed".to_owned())]).await.map(|_| ())
    }

    /// Replaces what a live call is doing with `twiml`.
    pub async fn redirect(&self, credentials: &Credentials, call_sid: &str, twiml: &str) -> Result<(), TwilioError> {
        let url = self.url(credentials, &format!("/Calls/{call_sid}.json"));
        self.send::<Value>(credentials, reqwest::Method::POST, &url, &[], &[("Twiml", twiml.to_owned())]).await.map(|_| ())
    }
}

/// A call as Twilio reports it (only what we use; `duration` arrives as a string of seconds).
#[derive(Clone, Debug, Deserialize)]
pub struct CallResource {
    pub status: String,
    #[serde(default)]
    pub end_time: Option<String>,
    #[serde(default, deserialize_with = "lenient_seconds")]
    pub duration: Option<i64>,
}

fn lenient_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    })
}

#[derive(Deserialize)]
struct IncomingPage {
    #[serde(default)]
    incoming_phone_numbers: Vec<IncomingNumber>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

fn required<T>(value: Option<T>) -> Result<T, TwilioError> {
    value.ok_or_else(|| TwilioError::Unreachable("Twilio answered without a body".into()))
}

/// Reads Twilio's error document (`{code, message, more_info, status}`), tolerating others.
async fn refusal(response: reqwest::Response) -> TwilioError {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let code = body.get("code").and_then(Value::as_i64);
    let message = body.get("message").or_else(|| body.get("detail")).and_then(Value::as_str).unwrap_or("no message").to_owned();
    TwilioError::Refused { status, code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restoring_clears_our_urls_but_sends_only_known_methods() {
        let previous = VoiceSettings {
            voice_url: Some("https://old.example.com/voice".into()),
            voice_method: Some("GET".into()),
            ..Default::default()
        };
        let form = previous.form();
        assert!(form.contains(&("VoiceUrl", "https://old.example.com/voice".into())));
        assert!(form.contains(&("VoiceFallbackUrl", String::new())));
        assert!(form.contains(&("StatusCallback", String::new())));
        assert!(form.contains(&("VoiceMethod", "GET".into())));
        assert!(!form.iter().any(|(name, _)| *name == "StatusCallbackMethod" || *name == "VoiceApplicationSid"));
        let ours = VoiceSettings::pointing_at("https://sb.example.com").form();
        assert!(ours.contains(&("VoiceApplicationSid", String::new())), "attaching clears an application that would override VoiceUrl");
    }
}
