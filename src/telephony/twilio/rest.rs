//! Client for Twilio's 2010-04-01 REST API: account check, number search, purchase, voice
//! settings, release, live-call control and recordings. The base URL is configuration
//! (`twilio_api_base`), so tests point it at a local fake.
//!
//! Every request has a timeout. Twilio answers 429 (too many concurrent requests) and 5xx are
//! retried with exponential back-off, three tries in all; nothing else is retried, so a purchase
//! is never sent twice after Twilio has acted on it.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::phone_number::Backup;

const API_VERSION: &str = "2010-04-01";
const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Twilio's hosted call forwarding (a Twimlet): a fallback that works with no server of ours up.
const FORWARDING_TWIMLET: &str = "https://twimlets.com/forward";
/// A recording's download: four hours of two-channel 8 kHz audio is some 460 MB.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);
const MAX_RECORDING: usize = 512 << 20;

/// One request to send.
struct Exchange<'a> {
    method: reqwest::Method,
    url: &'a str,
    query: &'a [(&'a str, String)],
    form: &'a [(&'a str, String)],
    /// The largest answer accepted.
    most: usize,
    timeout: Duration,
}

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
    /// Twilio answered, but not in a shape we can read.
    #[error("Twilio's answer could not be read: {0}")]
    Unreadable(String),
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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
pub struct IncomingNumber {
    pub sid: String,
    pub phone_number: String,
    #[serde(default)]
    pub friendly_name: Option<String>,
    #[serde(flatten)]
    pub voice: VoiceSettings,
}

/// The voice settings of a number: what we set when we attach it and restore when we let go.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// The form fields that turn a number's voice settings into others. Twilio's description allows
/// only real values (a URI, GET/POST, an `AP…` SID), so values to set and fields to clear
/// (sent empty, which the description does not list and Twilio may refuse) go in separate
/// requests.
#[derive(Debug, Default, PartialEq)]
pub struct VoiceChanges {
    pub set: Vec<(&'static str, String)>,
    /// Fields that have a value now and should have none; methods are never cleared (a method
    /// without its URL means nothing).
    pub clear: Vec<&'static str>,
}

impl VoiceSettings {
    /// Settings that send a number's calls to this server, and to `backup` when it cannot
    /// answer (else to this server's own fallback). An application SID would override the Voice
    /// URL, so attaching clears one (see [`VoiceSettings::changes_from`]).
    pub fn pointing_at(public_base_url: &str, backup: Option<&Backup>) -> Self {
        let fallback = match backup {
            None => format!("{public_base_url}/twilio/fallback"),
            Some(Backup::ForwardTo(number)) => {
                let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("PhoneNumber", number.as_str()).finish();
                format!("{FORWARDING_TWIMLET}?{query}")
            }
            Some(Backup::Deployment(base)) => format!("{base}/twilio/voice"),
        };
        Self {
            voice_url: Some(format!("{public_base_url}/twilio/voice")),
            voice_method: Some("POST".into()),
            voice_fallback_url: Some(fallback),
            voice_fallback_method: Some("POST".into()),
            status_callback: Some(format!("{public_base_url}/twilio/status")),
            status_callback_method: Some("POST".into()),
            voice_application_sid: None,
        }
    }

    /// Each field: its form name, its name in Twilio's JSON, its value, and whether it is a method.
    fn fields(&self) -> [(&'static str, &'static str, Option<&str>, bool); 7] {
        fn value(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|v| !v.is_empty())
        }
        [
            ("VoiceUrl", "voice_url", value(&self.voice_url), false),
            ("VoiceMethod", "voice_method", value(&self.voice_method), true),
            ("VoiceFallbackUrl", "voice_fallback_url", value(&self.voice_fallback_url), false),
            ("VoiceFallbackMethod", "voice_fallback_method", value(&self.voice_fallback_method), true),
            ("StatusCallback", "status_callback", value(&self.status_callback), false),
            ("StatusCallbackMethod", "status_callback_method", value(&self.status_callback_method), true),
            ("VoiceApplicationSid", "voice_application_sid", value(&self.voice_application_sid), false),
        ]
    }

    /// Only what must change to turn `current` into these settings.
    pub fn changes_from(&self, current: &VoiceSettings) -> VoiceChanges {
        let mut changes = VoiceChanges::default();
        for ((name, _, wanted, is_method), (_, _, now, _)) in self.fields().into_iter().zip(current.fields()) {
            match (wanted, now) {
                (Some(wanted), now) if now != Some(wanted) => changes.set.push((name, wanted.to_owned())),
                (None, Some(_)) if !is_method => changes.clear.push(name),
                _ => {}
            }
        }
        changes
    }

    /// The values of the fields with these form names, by their names in Twilio's JSON.
    pub fn named(&self, form_names: &[&str]) -> Vec<(String, String)> {
        self.fields()
            .into_iter()
            .filter(|(form, ..)| form_names.contains(form))
            .map(|(_, json, value, _)| (json.to_owned(), value.unwrap_or_default().to_owned()))
            .collect()
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
        let exchange = Exchange { method, url, query, form, most: MAX_BODY, timeout: REQUEST_TIMEOUT };
        match self.exchange(credentials, exchange).await? {
            Some(body) => serde_json::from_slice(&body).map(Some).map_err(|e| TwilioError::Unreadable(e.to_string())),
            None => Ok(None),
        }
    }

    /// Sends a request (retrying as the module says) and returns the body of a success.
    async fn exchange(&self, credentials: &Credentials, exchange: Exchange<'_>) -> Result<Option<Vec<u8>>, TwilioError> {
        let Exchange { method, url, query, form, most, timeout } = exchange;
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let mut request = self
                .http
                .request(method.clone(), url)
                .basic_auth(&credentials.username, Some(credentials.password.as_str()))
                .query(query)
                .timeout(timeout);
            if !form.is_empty() {
                request = request.form(form);
            }
            let outcome = request.send().await;
            let retry_reason = match outcome {
                Ok(response) if response.status().is_success() => {
                    if response.status() == reqwest::StatusCode::NO_CONTENT {
                        return Ok(None);
                    }
                    return read_body(response, most).await.map(Some);
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
            available_phone_numbers: Option<Vec<Value>>,
        }
        let url = self.url(credentials, &format!("/AvailablePhoneNumbers/{country}/Local.json"));
        let mut query = vec![("VoiceEnabled", "true".to_owned()), ("PageSize", "20".to_owned())];
        if let Some(code) = area_code {
            query.push(("AreaCode", code.to_owned()));
        }
        let page: Page = required(self.send(credentials, reqwest::Method::GET, &url, &query, &[]).await?)?;
        Ok(readable_entries(page.available_phone_numbers.unwrap_or_default(), "numbers for sale"))
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
        Ok(IncomingNumberPage { numbers: readable_entries(page.incoming_phone_numbers.unwrap_or_default(), "numbers"), next_page })
    }

    /// The account's number with exactly this E.164 value, if it owns it.
    pub async fn find_incoming_number(&self, credentials: &Credentials, phone_number: &str) -> Result<Option<IncomingNumber>, TwilioError> {
        let url = self.url(credentials, "/IncomingPhoneNumbers.json");
        let query = [("PhoneNumber", phone_number.to_owned())];
        let page: IncomingPage = required(self.send(credentials, reqwest::Method::GET, &url, &query, &[]).await?)?;
        let numbers: Vec<IncomingNumber> = readable_entries(page.incoming_phone_numbers.unwrap_or_default(), "numbers");
        Ok(numbers.into_iter().find(|n| n.phone_number == phone_number))
    }

    pub async fn fetch_incoming_number(&self, credentials: &Credentials, sid: &str) -> Result<IncomingNumber, TwilioError> {
        let url = self.url(credentials, &format!("/IncomingPhoneNumbers/{sid}.json"));
        incoming_number(required(self.send::<Value>(credentials, reqwest::Method::GET, &url, &[], &[]).await?)?)
    }

    /// Buys a number and points its voice settings in one request.
    pub async fn buy_number(
        &self,
        credentials: &Credentials,
        which: Purchase<'_>,
        voice: &VoiceSettings,
    ) -> Result<IncomingNumber, TwilioError> {
        let url = self.url(credentials, "/IncomingPhoneNumbers.json");
        let mut form = voice.changes_from(&VoiceSettings::default()).set;
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
        let body = read_body(response, MAX_BODY).await?;
        let value: Value = serde_json::from_slice(&body).map_err(|e| TwilioError::Unreadable(e.to_string()))?;
        incoming_number(value)
    }

    /// Sets some of a number's voice fields (form names and values; an empty value clears one).
    pub async fn update_voice_fields(
        &self,
        credentials: &Credentials,
        sid: &str,
        form: &[(&'static str, String)],
    ) -> Result<IncomingNumber, TwilioError> {
        let url = self.url(credentials, &format!("/IncomingPhoneNumbers/{sid}.json"));
        incoming_number(required(self.send::<Value>(credentials, reqwest::Method::POST, &url, &[], form).await?)?)
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

    /// Hands a live call to new instructions (TwiML), leaving whatever it was doing.
    pub async fn redirect(&self, credentials: &Credentials, call_sid: &str, twiml: &str) -> Result<(), TwilioError> {
        let url = self.url(credentials, &format!("/Calls/{call_sid}.json"));
        self.send::<Value>(credentials, reqwest::Method::POST, &url, &[], &[("Twiml", twiml.to_owned())]).await.map(|_| ())
    }

    /// The audio of a recording, as a WAV file (a two-channel recording of a long call is large,
    /// so it gets a longer timeout).
    pub async fn download_recording(&self, credentials: &Credentials, recording_sid: &str) -> Result<Vec<u8>, TwilioError> {
        let url = self.url(credentials, &format!("/Recordings/{recording_sid}.wav"));
        let exchange =
            Exchange { method: reqwest::Method::GET, url: &url, query: &[], form: &[], most: MAX_RECORDING, timeout: DOWNLOAD_TIMEOUT };
        required(self.exchange(credentials, exchange).await?)
    }

    /// Stops a recording of a live call (the caller opted out).
    pub async fn stop_recording(&self, credentials: &Credentials, call_sid: &str, recording_sid: &str) -> Result<(), TwilioError> {
        let url = self.url(credentials, &format!("/Calls/{call_sid}/Recordings/{recording_sid}.json"));
        self.send::<Value>(credentials, reqwest::Method::POST, &url, &[], &[("Status", "stopped".to_owned())]).await.map(|_| ())
    }

    /// Deletes a recording at Twilio (ours is the copy kept).
    pub async fn delete_recording(&self, credentials: &Credentials, recording_sid: &str) -> Result<(), TwilioError> {
        let url = self.url(credentials, &format!("/Recordings/{recording_sid}.json"));
        self.send::<Value>(credentials, reqwest::Method::DELETE, &url, &[], &[]).await.map(|_| ())
    }

    /// Ends a live call.
    pub async fn hang_up(&self, credentials: &Credentials, call_sid: &str) -> Result<(), TwilioError> {
        let url = self.url(credentials, &format!("/Calls/{call_sid}.json"));
        self.send::<Value>(credentials, reqwest::Method::POST, &url, &[], &[("Status", "completed".to_owned())]).await.map(|_| ())
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
    /// What the call cost, filled in a while after it ended: a decimal string, negative for a
    /// charge (`"-0.01300"`), or null until then.
    #[serde(default, deserialize_with = "lenient_decimal")]
    pub price: Option<String>,
    /// The currency of `price` (`USD`).
    #[serde(default)]
    pub price_unit: Option<String>,
}

fn lenient_decimal<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(s) if !s.trim().is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
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
    incoming_phone_numbers: Option<Vec<Value>>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

/// The most of an answer read from Twilio (a page of 200 numbers is far smaller).
const MAX_BODY: usize = 2 << 20;

/// Reads an answer's body, refusing one larger than [`MAX_BODY`].
async fn read_body(mut response: reqwest::Response, most: usize) -> Result<Vec<u8>, TwilioError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| TwilioError::Unreachable(e.without_url().to_string()))? {
        if body.len() + chunk.len() > most {
            return Err(TwilioError::Unreadable(format!("the answer is larger than {} MiB", most >> 20)));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn required<T>(value: Option<T>) -> Result<T, TwilioError> {
    value.ok_or_else(|| TwilioError::Unreadable("Twilio answered without a body".into()))
}

/// One number resource. Every property may be `null` in Twilio's description; a number without
/// its SID or phone number cannot be used.
fn incoming_number(value: Value) -> Result<IncomingNumber, TwilioError> {
    let sid = value["sid"].as_str().map(str::to_owned);
    serde_json::from_value(value).map_err(|e| {
        TwilioError::Unreadable(format!(
            "a phone number resource{} lacks what we need ({e})",
            sid.map(|s| format!(" ({s})")).unwrap_or_default()
        ))
    })
}

/// The entries of a list that can be read; the others are skipped with a warning, so one
/// incomplete entry does not make a whole list unreadable.
fn readable_entries<T: DeserializeOwned>(entries: Vec<Value>, what: &str) -> Vec<T> {
    entries
        .into_iter()
        .filter_map(|entry| match serde_json::from_value(entry) {
            Ok(item) => Some(item),
            Err(e) => {
                tracing::warn!(error = %e, "skipped an entry of Twilio's {what} it could not read");
                None
            }
        })
        .collect()
}

/// Reads Twilio's error document (`{code, message, more_info, status}`), tolerating others.
async fn refusal(response: reqwest::Response) -> TwilioError {
    let status = response.status().as_u16();
    let body: Value = read_body(response, MAX_BODY).await.ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
    let code = body.get("code").and_then(Value::as_i64);
    let message = body.get("message").or_else(|| body.get("detail")).and_then(Value::as_str).unwrap_or("no message").to_owned();
    TwilioError::Refused { status, code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_is_twilios_fallback_and_needs_no_server_of_ours() {
        let ours = "https://sb.example.com";
        let number = crate::domain::phone_number::E164::parse("to", "+14155550199").unwrap();
        let forward = VoiceSettings::pointing_at(ours, Some(&Backup::ForwardTo(number)));
        assert_eq!(forward.voice_fallback_url.as_deref(), Some("https://twimlets.com/forward?PhoneNumber=%2B14155550199"));
        let other = VoiceSettings::pointing_at(ours, Some(&Backup::Deployment("https://sb-b.example.com".into())));
        assert_eq!(other.voice_fallback_url.as_deref(), Some("https://sb-b.example.com/twilio/voice"));
        assert_eq!(other.voice_url.as_deref(), Some("https://sb.example.com/twilio/voice"), "calls still come here first");
        let none = VoiceSettings::pointing_at(ours, None);
        assert_eq!(none.voice_fallback_url.as_deref(), Some("https://sb.example.com/twilio/fallback"));
    }

    #[test]
    fn only_what_changes_is_sent() {
        let ours = VoiceSettings::pointing_at("https://sb.example.com", None);
        let bare = VoiceSettings::default();
        let buy = ours.changes_from(&bare);
        assert_eq!(buy.set.len(), 6, "URLs and methods");
        assert!(buy.clear.is_empty(), "nothing empty is sent");

        let theirs = VoiceSettings {
            voice_url: Some("https://old.example.com/voice".into()),
            voice_method: Some("POST".into()),
            voice_application_sid: Some(format!("AP{}", "1".repeat(32))),
            ..Default::default()
        };
        let attach = ours.changes_from(&theirs);
        assert!(!attach.set.iter().any(|(name, _)| *name == "VoiceMethod"), "POST already: not sent");
        assert_eq!(attach.clear, ["VoiceApplicationSid"], "an application would override our URL");

        let restore = theirs.changes_from(&ours);
        assert_eq!(
            restore.set,
            [("VoiceUrl", "https://old.example.com/voice".to_owned()), ("VoiceApplicationSid", format!("AP{}", "1".repeat(32)))]
        );
        assert_eq!(restore.clear, ["VoiceFallbackUrl", "StatusCallback"], "methods are never cleared");
        assert_eq!(
            ours.named(&restore.clear),
            [
                ("voice_fallback_url".to_owned(), "https://sb.example.com/twilio/fallback".to_owned()),
                ("status_callback".to_owned(), "https://sb.example.com/twilio/status".to_owned()),
            ]
        );
    }

    #[test]
    fn incomplete_list_entries_are_skipped_not_fatal() {
        let entries = vec![
            serde_json::json!({ "sid": null, "phone_number": null, "voice_url": null }),
            serde_json::json!({ "sid": "PN1", "phone_number": "+14155550100", "voice_url": null, "friendly_name": null }),
        ];
        let numbers: Vec<IncomingNumber> = readable_entries(entries, "numbers");
        assert_eq!(numbers.len(), 1);
        assert_eq!(numbers[0].sid, "PN1");
        let err = incoming_number(serde_json::json!({ "sid": "PN2", "phone_number": null })).unwrap_err();
        assert!(err.to_string().contains("could not be read") && err.to_string().contains("PN2"), "{err}");
    }
}
