//! A stateful fake of Twilio's 2010-04-01 REST API on 127.0.0.1, speaking its wire format: Basic
//! auth (account SID + auth token, or API key + secret), `.json` paths, form bodies, snake_case
//! JSON, Twilio error documents (20003, 20404, 21452, 20429), 201/204 statuses and page URIs.
//! Every request is checked against Twilio's published OpenAPI description first
//! (`twilio_openapi`) and refused with 400 when the description does not allow it.
//! Tests arrange accounts and numbers and read back what the server did.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

#[derive(Clone, Default)]
pub struct FakeTwilio {
    pub addr: Option<SocketAddr>,
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    accounts: HashMap<String, FakeAccount>,
    /// Owned numbers, in purchase order.
    numbers: Vec<FakeNumber>,
    /// Numbers for sale by area code.
    for_sale: HashMap<String, Vec<String>>,
    /// Answer this many requests with 429 before serving again.
    throttle: u32,
    /// Answer every request with 503.
    down: bool,
    call_updates: Vec<(String, Vec<(String, String)>)>,
    /// Calls Twilio knows: SID → (status, duration in seconds).
    /// Call SID → (status, duration, price): Twilio fills the price in a while after the call.
    calls: HashMap<String, (String, Option<i64>, Option<String>)>,
    /// Recordings: SID → (call SID, WAV audio, status).
    recordings: HashMap<String, (String, Vec<u8>, String)>,
    next_sid: u32,
}

struct FakeAccount {
    auth_token: String,
    status: String,
    api_keys: HashMap<String, String>,
}

#[derive(Clone)]
pub struct FakeNumber {
    pub sid: String,
    pub account: String,
    pub phone_number: String,
    pub voice: HashMap<String, String>,
}

const VOICE_FIELDS: [(&str, &str); 7] = [
    ("VoiceUrl", "voice_url"),
    ("VoiceMethod", "voice_method"),
    ("VoiceFallbackUrl", "voice_fallback_url"),
    ("VoiceFallbackMethod", "voice_fallback_method"),
    ("StatusCallback", "status_callback"),
    ("StatusCallbackMethod", "status_callback_method"),
    ("VoiceApplicationSid", "voice_application_sid"),
];

impl FakeTwilio {
    pub async fn start() -> Self {
        let mut fake = FakeTwilio::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        fake.addr = Some(listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(fake.state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn add_account(&self, sid: &str, auth_token: &str) {
        self.with(|s| {
            s.accounts.insert(sid.into(), FakeAccount { auth_token: auth_token.into(), status: "active".into(), api_keys: HashMap::new() })
        });
    }

    pub fn add_api_key(&self, account: &str, key_sid: &str, secret: &str) {
        self.with(|s| s.accounts.get_mut(account).unwrap().api_keys.insert(key_sid.into(), secret.into()));
    }

    pub fn set_account_status(&self, sid: &str, status: &str) {
        self.with(|s| s.accounts.get_mut(sid).unwrap().status = status.into());
    }

    pub fn offer(&self, area_code: &str, numbers: &[&str]) {
        self.with(|s| s.for_sale.entry(area_code.into()).or_default().extend(numbers.iter().map(|n| n.to_string())));
    }

    /// Gives the account a number it already owns, with these voice settings (snake_case keys).
    pub fn own(&self, account: &str, phone_number: &str, voice: &[(&str, &str)]) -> String {
        self.with(|s| {
            s.next_sid += 1;
            let sid = format!("PN{:032x}", s.next_sid);
            let voice = voice.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            s.numbers.push(FakeNumber { sid: sid.clone(), account: account.into(), phone_number: phone_number.into(), voice });
            sid
        })
    }

    pub fn number(&self, phone_number: &str) -> Option<FakeNumber> {
        self.with(|s| s.numbers.iter().find(|n| n.phone_number == phone_number).cloned())
    }

    pub fn throttle(&self, requests: u32) {
        self.with(|s| s.throttle = requests);
    }

    pub fn set_down(&self, down: bool) {
        self.with(|s| s.down = down);
    }

    /// Makes Twilio know a call in this state.
    pub fn set_call(&self, sid: &str, status: &str, duration: Option<i64>) {
        self.with(|s| s.calls.insert(sid.to_owned(), (status.to_owned(), duration, None)));
    }

    /// Fills in the price of a known call, as Twilio does a while after it ends (`"-0.01700"`).
    pub fn price_call(&self, sid: &str, price: &str) {
        self.with(|s| s.calls.get_mut(sid).expect("a call Twilio knows").2 = Some(price.to_owned()));
    }

    pub fn call_updates(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.with(|s| s.call_updates.clone())
    }

    /// Changes a number's voice setting as someone might in Twilio's console (`voice_url`, …).
    pub fn set_voice(&self, phone_number: &str, field: &str, value: &str) {
        self.with(|s| {
            let number = s.numbers.iter_mut().find(|n| n.phone_number == phone_number).expect("an owned number");
            number.voice.insert(field.to_owned(), value.to_owned());
        });
    }

    /// Twilio's recording of `call`, `RE…`, holding `wav`.
    pub fn record(&self, call: &str, wav: Vec<u8>) -> String {
        self.with(|s| {
            s.next_sid += 1;
            let sid = format!("RE{:032x}", s.next_sid);
            s.recordings.insert(sid.clone(), (call.to_owned(), wav, "completed".to_owned()));
            sid
        })
    }

    /// The status of recording `sid` (`completed`, `stopped`), or `None` once deleted.
    pub fn recording_status(&self, sid: &str) -> Option<String> {
        self.with(|s| s.recordings.get(sid).map(|(_, _, status)| status.clone()))
    }
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({ "code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status.as_u16() });
    (status, axum::Json(body)).into_response()
}

fn number_json(n: &FakeNumber) -> Value {
    // An empty number stands for an entry whose properties are null (the description allows it).
    let phone_number = if n.phone_number.is_empty() { Value::Null } else { json!(n.phone_number) };
    let mut body = json!({
        "sid": n.sid, "account_sid": n.account, "phone_number": phone_number, "friendly_name": phone_number,
        "date_created": "Mon, 23 Nov 2026 10:00:00 +0000", "capabilities": { "voice": true, "sms": true },
    });
    for (_, field) in VOICE_FIELDS {
        body[field] = n.voice.get(field).map_or(Value::Null, |v| json!(v));
    }
    body
}

/// The account a request authenticates as, if its Basic credentials are valid for `account`.
fn authenticated(state: &FakeState, headers: &HeaderMap, account: &str) -> bool {
    let Some(encoded) = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic ")) else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else { return false };
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    let Some((user, password)) = decoded.split_once(':') else { return false };
    let Some(acct) = state.accounts.get(account) else { return false };
    (user == account && password == acct.auth_token) || acct.api_keys.get(user).is_some_and(|secret| secret == password)
}

async fn handle(State(state): State<Arc<Mutex<FakeState>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let param = |list: &[(String, String)], name: &str| list.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut s = state.lock().unwrap();
    if s.down {
        return error(StatusCode::SERVICE_UNAVAILABLE, 20500, "Service unavailable");
    }
    let path = parts.uri.path().to_owned();
    let Some(rest) = path.strip_prefix("/2010-04-01/Accounts/") else {
        return error(StatusCode::NOT_FOUND, 20404, "The requested resource was not found");
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let account = segments[0].trim_end_matches(".json").to_owned();
    if !authenticated(&s, &parts.headers, &account) {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        return error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
    }
    // A recording's audio is fetched by adding `.wav` to its URI, a path the description does not
    // list (shared/specs/twilio.md §7: UNVERIFIED); every other request is checked.
    let media = parts.method == Method::GET && segments.get(1) == Some(&"Recordings") && path.ends_with(".wav");
    let problems = if media { Vec::new() } else { super::twilio_openapi::violations(parts.method.as_str(), &path, &query, &form) };
    if !problems.is_empty() {
        eprintln!("fake Twilio refused a request its OpenAPI description does not allow: {problems:?}");
        return error(StatusCode::BAD_REQUEST, 21999, &format!("Invalid request: {}", problems.join("; ")));
    }
    let not_found = || error(StatusCode::NOT_FOUND, 20404, &format!("The requested resource {path} was not found"));
    match (&parts.method, &segments[1..]) {
        (&Method::GET, []) => {
            let status = s.accounts[&account].status.clone();
            axum::Json(json!({ "sid": account, "friendly_name": "Test account", "status": status, "type": "Full" })).into_response()
        }
        (&Method::GET, ["AvailablePhoneNumbers", country, "Local.json"]) => {
            let area = param(&query, "AreaCode").unwrap_or_default();
            let owned: Vec<String> = s.numbers.iter().map(|n| n.phone_number.clone()).collect();
            let offers: Vec<Value> = s
                .for_sale
                .get(&area)
                .into_iter()
                .flatten()
                .filter(|n| !owned.contains(n))
                .map(|n| json!({ "phone_number": n, "friendly_name": n, "locality": "San Francisco", "region": "CA", "iso_country": country, "capabilities": { "voice": true } }))
                .collect();
            axum::Json(json!({ "uri": path, "available_phone_numbers": offers })).into_response()
        }
        (&Method::GET, ["IncomingPhoneNumbers.json"]) => {
            let size: usize = param(&query, "PageSize").and_then(|v| v.parse().ok()).unwrap_or(50);
            let page: usize = param(&query, "Page").and_then(|v| v.parse().ok()).unwrap_or(0);
            let filter = param(&query, "PhoneNumber");
            let mine: Vec<&FakeNumber> =
                s.numbers.iter().filter(|n| n.account == account && filter.as_ref().is_none_or(|f| &n.phone_number == f)).collect();
            let items: Vec<Value> = mine.iter().skip(page * size).take(size).map(|n| number_json(n)).collect();
            let next = (mine.len() > (page + 1) * size).then(|| {
                format!(
                    "/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json?PageSize={size}&Page={}&PageToken=PT{}",
                    page + 1,
                    page + 1
                )
            });
            axum::Json(json!({ "incoming_phone_numbers": items, "page": page, "page_size": size, "next_page_uri": next })).into_response()
        }
        (&Method::POST, ["IncomingPhoneNumbers.json"]) => {
            let owned: Vec<String> = s.numbers.iter().map(|n| n.phone_number.clone()).collect();
            let wanted = match (param(&form, "AreaCode"), param(&form, "PhoneNumber")) {
                (Some(area), None) => match s.for_sale.get(&area).into_iter().flatten().find(|n| !owned.contains(n)) {
                    Some(n) => n.clone(),
                    None => return error(StatusCode::BAD_REQUEST, 21452, &format!("No phone numbers found in area code {area}")),
                },
                (None, Some(number)) if s.for_sale.values().flatten().any(|n| n == &number) && !owned.contains(&number) => number,
                (None, Some(number)) => return error(StatusCode::BAD_REQUEST, 21422, &format!("PhoneNumber {number} is not available")),
                _ => return error(StatusCode::BAD_REQUEST, 21450, "Either AreaCode or PhoneNumber is required"),
            };
            s.next_sid += 1;
            let voice =
                VOICE_FIELDS.iter().filter_map(|(form_name, field)| param(&form, form_name).map(|v| (field.to_string(), v))).collect();
            let number = FakeNumber { sid: format!("PN{:032x}", s.next_sid), account: account.clone(), phone_number: wanted, voice };
            let body = number_json(&number);
            s.numbers.push(number);
            (StatusCode::CREATED, axum::Json(body)).into_response()
        }
        (method, ["IncomingPhoneNumbers", file]) => {
            let sid = file.trim_end_matches(".json");
            let Some(index) = s.numbers.iter().position(|n| n.sid == sid && n.account == account) else { return not_found() };
            match *method {
                Method::GET => axum::Json(number_json(&s.numbers[index])).into_response(),
                Method::POST => {
                    for (form_name, field) in VOICE_FIELDS {
                        if let Some(value) = param(&form, form_name) {
                            s.numbers[index].voice.insert(field.to_owned(), value);
                        }
                    }
                    axum::Json(number_json(&s.numbers[index])).into_response()
                }
                Method::DELETE => {
                    s.numbers.remove(index);
                    StatusCode::NO_CONTENT.into_response()
                }
                _ => error(StatusCode::METHOD_NOT_ALLOWED, 20004, "Method not allowed"),
            }
        }
        (&Method::GET, ["Calls", file]) => {
            let call = file.trim_end_matches(".json").to_owned();
            let Some((status, duration, price)) = s.calls.get(&call).cloned() else { return not_found() };
            let end_time = (status == "completed").then_some("Tue, 24 Nov 2026 10:01:00 +0000");
            axum::Json(json!({ "sid": call, "account_sid": account, "status": status, "duration": duration.map(|d| d.to_string()),
                               "end_time": end_time, "price": price, "price_unit": "USD" }))
            .into_response()
        }
        (&Method::POST, ["Calls", file]) => {
            let call = file.trim_end_matches(".json").to_owned();
            s.call_updates.push((call.clone(), form.clone()));
            if param(&form, "Status").as_deref() == Some("completed") {
                s.calls.insert(call.clone(), ("completed".to_owned(), None, None));
            }
            axum::Json(json!({ "sid": call, "account_sid": account, "status": param(&form, "Status").unwrap_or("in-progress".into()) }))
                .into_response()
        }
        (&Method::GET, ["Recordings", file]) if file.ends_with(".wav") => match s.recordings.get(file.trim_end_matches(".wav")) {
            Some((_, wav, _)) => ([("content-type", "audio/x-wav")], wav.clone()).into_response(),
            None => not_found(),
        },
        (&Method::DELETE, ["Recordings", file]) => match s.recordings.remove(file.trim_end_matches(".json")) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => not_found(),
        },
        (&Method::POST, ["Calls", call, "Recordings", file]) => {
            let sid = file.trim_end_matches(".json");
            match s.recordings.get_mut(sid) {
                Some((of_call, _, status)) if of_call == call => {
                    *status = param(&form, "Status").unwrap_or_default();
                    axum::Json(json!({ "sid": sid, "call_sid": call, "account_sid": account, "status": status })).into_response()
                }
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
}
