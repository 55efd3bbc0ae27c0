//! A phone without a carrier. It plays Twilio against a running server: posts the signed
//! incoming-call webhook, reads the TwiML, opens the ConversationRelay socket as Twilio would,
//! passes the agent's speech on as it streams and the caller's actions in, and posts the
//! connect-action and status callbacks when the call ends. [`call`] is driven through channels;
//! `switchboard dial` runs it from the terminal ([`from_terminal`]) and the console's test call
//! from the browser.
//!
//! Typed lines starting with `/` are actions: `/dtmf 123`, `/interrupt` (cut the agent off),
//! `/wait SECONDS` (stay silent), `/hangup`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::signature;

/// Who is calling whom, and how to reach and sign for the server.
pub struct Dial {
    pub to: String,
    pub from: String,
    /// Where requests go, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// The URL the server believes it is reached at (signatures are computed over it).
    pub public_base_url: String,
    pub account_sid: String,
    pub auth_token: String,
    /// Marks the call as a test (excluded from analytics): the console's test calls.
    pub test: bool,
}

/// The form parameter that marks a dev-phone call as a test call. Twilio never sends it; it is
/// covered by the request's signature like every parameter.
pub const TEST_CALL_PARAM: &str = "SwitchboardTestCall";

/// How the call ended, for the summary line and the exit code.
pub struct Outcome {
    pub summary: String,
    pub ok: bool,
}

struct Twilio<'a> {
    dial: &'a Dial,
    http: reqwest::Client,
    call_sid: String,
    sequence: u32,
}

impl Twilio<'_> {
    fn base_params(&self, status: &str) -> Vec<(String, String)> {
        [
            ("AccountSid", self.dial.account_sid.as_str()),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", self.call_sid.as_str()),
            ("CallStatus", status),
            ("Called", self.dial.to.as_str()),
            ("Caller", self.dial.from.as_str()),
            ("Direction", "inbound"),
            ("From", self.dial.from.as_str()),
            ("To", self.dial.to.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Posts a signed form to one of the server's Twilio endpoints; returns the body.
    async fn post(&self, path: &str, params: &[(String, String)]) -> anyhow::Result<String> {
        let signed_url = format!("{}{path}", self.dial.public_base_url);
        let response = self
            .http
            .post(format!("{}{path}", self.dial.server))
            .header("X-Twilio-Signature", signature::sign(&self.dial.auth_token, &signed_url, params))
            .form(params)
            .send()
            .await
            .with_context(|| format!("reaching {}", self.dial.server))?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            bail!("{path} answered HTTP {status}: {body}");
        }
        Ok(body)
    }

    async fn status_callback(&mut self, status: &str, extra: &[(&str, String)]) {
        let mut params = self.base_params(status);
        params.push(("SequenceNumber".into(), self.sequence.to_string()));
        params.push(("CallbackSource".into(), "call-progress-events".into()));
        params.push(("Timestamp".into(), chrono::Utc::now().to_rfc2822()));
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        self.sequence += 1;
        if let Err(e) = self.post("/twilio/status", &params).await {
            eprintln!("status callback failed: {e:#}");
        }
    }
}

/// The value of `name="…"` on the first `<element` in a TwiML document, unescaped.
fn attribute(twiml: &str, element: &str, name: &str) -> Option<String> {
    let start = twiml.find(&format!("<{element} "))?;
    let tag = &twiml[start..start + twiml[start..].find('>')?];
    let value_start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let value = &tag[value_start..value_start + tag[value_start..].find('"')?];
    Some(unescape(value))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// The text of the first `<element>…</element>` in a TwiML document.
fn element_text(twiml: &str, element: &str) -> Option<String> {
    let open = format!("<{element}>");
    let start = twiml.find(&open)? + open.len();
    Some(unescape(&twiml[start..start + twiml[start..].find(&format!("</{element}>"))?]))
}

/// What the caller does.
#[derive(Clone, Debug, PartialEq)]
pub enum CallerAction {
    /// Speak these words.
    Say(String),
    /// Press these keys.
    Digits(String),
    /// Talk over the agent (it has been heard up to where a voice would be by now).
    Interrupt,
    HangUp,
}

impl CallerAction {
    /// Reads a typed line: words, or `/dtmf 12`, `/interrupt`, `/hangup`. `None` for an empty line.
    pub fn parse(line: &str) -> Option<CallerAction> {
        let line = line.trim();
        match line.split_once(' ').map_or((line, ""), |(a, b)| (a, b.trim())) {
            ("", _) => None,
            ("/hangup", _) => Some(CallerAction::HangUp),
            ("/interrupt", _) => Some(CallerAction::Interrupt),
            ("/dtmf", digits) => Some(CallerAction::Digits(digits.to_owned())),
            _ => Some(CallerAction::Say(line.to_owned())),
        }
    }
}

/// What the phone hears and sees during the call.
#[derive(Clone, Debug, PartialEq)]
pub enum PhoneEvent {
    /// The call record exists; its id is the last segment of the relay URL.
    Connected { call_id: String },
    /// The server refused the call with these words.
    Refused(String),
    /// The agent's greeting, spoken by the carrier.
    Greeting(String),
    /// Part of what the agent says, as it streams.
    Token(String),
    /// The agent finished an utterance.
    UtteranceEnd,
    /// The caller interrupted; this much of the utterance was heard.
    Interrupted { heard: String },
    /// The agent switched the call's language.
    Language(String),
}

/// Places the call and runs it to its end: `actions` are what the caller does, `events` what
/// they hear. The call ends when the agent ends it, the caller hangs up, or `actions` closes.
pub async fn call(dial: Dial, mut actions: mpsc::Receiver<CallerAction>, events: mpsc::Sender<PhoneEvent>) -> anyhow::Result<Outcome> {
    let mut twilio = Twilio { dial: &dial, http: reqwest::Client::new(), call_sid: random_call_sid(), sequence: 0 };
    let started = Instant::now();
    let mut params = twilio.base_params("ringing");
    if dial.test {
        params.push((TEST_CALL_PARAM.to_owned(), "true".to_owned()));
    }
    let twiml = twilio.post("/twilio/voice", &params).await?;
    let Some(relay_url) = attribute(&twiml, "ConversationRelay", "url") else {
        if let Some(words) = element_text(&twiml, "Say") {
            let _ = events.send(PhoneEvent::Refused(words)).await;
            return Ok(Outcome { summary: "call refused by the server".into(), ok: false });
        }
        bail!("the server did not connect the call to a ConversationRelay agent (media streams are not supported by dial): {twiml}");
    };
    let call_id = relay_url.rsplit('/').next().unwrap_or_default().to_owned();
    let _ = events.send(PhoneEvent::Connected { call_id }).await;
    twilio.status_callback("in-progress", &[]).await;
    if let Some(greeting) = attribute(&twiml, "ConversationRelay", "welcomeGreeting") {
        let _ = events.send(PhoneEvent::Greeting(greeting)).await;
    }

    // Twilio signs the URL written in the TwiML; we reach it through `server`.
    let path =
        relay_url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned())).context("relay URL has no path")?;
    let socket_url = format!("{}{path}", dial.server.replacen("http", "ws", 1));
    let mut request = socket_url.as_str().into_client_request()?;
    request.headers_mut().insert("X-Twilio-Signature", signature::sign(&dial.auth_token, &relay_url, &[]).parse()?);
    let (socket, _) = tokio_tungstenite::connect_async(request).await.context("opening the relay WebSocket")?;
    let (mut outgoing, mut incoming) = socket.split();
    let setup = json!({ "type": "setup", "sessionId": "VXdevphone", "accountSid": dial.account_sid, "parentCallSid": "", "callSid": twilio.call_sid,
        "from": dial.from, "to": dial.to, "forwardedFrom": "", "callType": "PSTN", "callerName": "", "direction": "inbound", "callStatus": "IN-PROGRESS", "customParameters": {} });
    outgoing.send(Message::Text(setup.to_string().into())).await?;

    // The agent's current (or last) utterance and when it began, to tell what a caller who
    // interrupts has heard by now: Twilio's voice speaks far slower than the text streams.
    let mut speaking = String::new();
    let mut speaking_since = tokio::time::Instant::now();
    let mut utterance_open = false;
    let mut handoff: Option<String> = None;
    loop {
        tokio::select! {
            message = incoming.next() => {
                let Some(Ok(message)) = message else { break };
                let Message::Text(text) = message else { continue };
                let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                match message["type"].as_str() {
                    Some("text") => {
                        if !utterance_open {
                            utterance_open = true;
                            speaking.clear();
                            speaking_since = tokio::time::Instant::now();
                        }
                        let token = message["token"].as_str().unwrap_or_default();
                        speaking.push_str(token);
                        let _ = events.send(PhoneEvent::Token(token.to_owned())).await;
                        if message["last"] == true {
                            utterance_open = false;
                            let _ = events.send(PhoneEvent::UtteranceEnd).await;
                        }
                    }
                    Some("language") => {
                        let _ = events.send(PhoneEvent::Language(message["ttsLanguage"].as_str().unwrap_or("?").to_owned())).await;
                    }
                    Some("end") => {
                        handoff = Some(message["handoffData"].as_str().unwrap_or_default().to_owned());
                        break;
                    }
                    _ => tracing::debug!(%message, "the dev phone ignores a relay message"),
                }
            }
            action = actions.recv() => {
                let message = match action {
                    None | Some(CallerAction::HangUp) => break,
                    Some(CallerAction::Say(words)) => json!({ "type": "prompt", "voicePrompt": words, "lang": "en-US", "last": true }),
                    Some(CallerAction::Digits(digits)) => {
                        for digit in digits.chars() {
                            outgoing.send(Message::Text(json!({ "type": "dtmf", "digit": digit.to_string() }).to_string().into())).await?;
                        }
                        continue;
                    }
                    Some(CallerAction::Interrupt) => {
                        utterance_open = false;
                        let heard = heard_so_far(&std::mem::take(&mut speaking), speaking_since.elapsed());
                        let _ = events.send(PhoneEvent::Interrupted { heard: heard.clone() }).await;
                        json!({ "type": "interrupt", "utteranceUntilInterrupt": heard, "durationUntilInterruptMs": 500 })
                    }
                };
                outgoing.send(Message::Text(message.to_string().into())).await?;
            }
        }
    }
    let _ = outgoing.close().await;
    let duration = started.elapsed().as_secs().to_string();
    let outcome = match handoff {
        Some(data) => {
            let mut params = twilio.base_params("in-progress");
            params.extend([
                ("SessionId".into(), "VXdevphone".into()),
                ("SessionStatus".into(), "ended".into()),
                ("SessionDuration".into(), duration.clone()),
                ("HandoffData".into(), data.clone()),
            ]);
            let next = twilio.post("/twilio/connect-action", &params).await?;
            let handoff: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            let reason = handoff["reason"].as_str().unwrap_or("ended").to_owned();
            match element_text(&next, "Dial") {
                Some(number) => Outcome { summary: format!("call transferred to {number} ({reason}) after {duration}s"), ok: true },
                None => Outcome { summary: format!("call ended by the agent ({reason}) after {duration}s"), ok: true },
            }
        }
        None => Outcome { summary: format!("you hung up after {duration}s"), ok: true },
    };
    twilio.status_callback("completed", &[("CallDuration", duration), ("Duration", "1".into())]).await;
    Ok(outcome)
}

/// Runs a call from the terminal (`switchboard dial`): prints what the agent says as it streams
/// and sends each typed line, or each line of a script. A script waits for the agent to finish
/// before its next line (`/wait SECONDS` pauses it) and hangs up 10 s after its last line if
/// the agent has not ended the call by then.
pub async fn from_terminal(dial: Dial, script: Option<Vec<String>>) -> anyhow::Result<Outcome> {
    use std::io::Write;
    println!("calling {} from {}", dial.to, dial.from);
    let (act, actions) = mpsc::channel(16);
    let (hear, mut events) = mpsc::channel(256);
    let mut call = tokio::spawn(call(dial, actions, hear));
    let mut script = script.map(|lines| lines.into_iter());
    let mut terminal = BufReader::new(tokio::io::stdin()).lines();
    let mut agent_busy = false;
    let mut line_open = false;
    let mut hang_up_at: Option<tokio::time::Instant> = None;
    let mut input_done = false;
    loop {
        let next_line = async {
            match script.as_mut() {
                _ if input_done => std::future::pending().await,
                Some(lines) if !agent_busy && hang_up_at.is_none() => Ok(lines.next()),
                Some(_) => std::future::pending().await,
                None => terminal.next_line().await,
            }
        };
        let give_up = async {
            match hang_up_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            outcome = &mut call => return outcome.context("the call task failed")?,
            () = give_up => { let _ = act.send(CallerAction::HangUp).await; hang_up_at = None; }
            event = events.recv() => match event {
                Some(PhoneEvent::Connected { call_id }) => println!("connected (call record {call_id})"),
                Some(PhoneEvent::Refused(words)) => println!("server: {words}"),
                Some(PhoneEvent::Greeting(words)) => println!("agent: {words}"),
                Some(PhoneEvent::Token(token)) => {
                    if !line_open {
                        print!("agent: ");
                        line_open = true;
                    }
                    agent_busy = true;
                    print!("{token}");
                    let _ = std::io::stdout().flush();
                }
                Some(PhoneEvent::UtteranceEnd) => {
                    println!();
                    line_open = false;
                    agent_busy = false;
                }
                Some(PhoneEvent::Interrupted { heard }) => {
                    if line_open {
                        println!();
                        line_open = false;
                    }
                    agent_busy = false;
                    println!("[interrupting; heard: \"{heard}\"]");
                }
                Some(PhoneEvent::Language(locale)) => println!("[language → {locale}]"),
                None => {}
            },
            line = next_line => {
                let Some(line) = line? else {
                    input_done = true;
                    match script {
                        Some(_) => hang_up_at = Some(tokio::time::Instant::now() + Duration::from_secs(10)),
                        None => { let _ = act.send(CallerAction::HangUp).await; }
                    }
                    continue;
                };
                if let Some(seconds) = line.trim().strip_prefix("/wait") {
                    tokio::time::sleep(Duration::from_secs_f64(seconds.trim().parse().unwrap_or(1.0))).await;
                    continue;
                }
                let Some(action) = CallerAction::parse(&line) else { continue };
                if script.is_some() {
                    println!("you: {}", line.trim());
                }
                agent_busy = matches!(action, CallerAction::Say(_) | CallerAction::Digits(_));
                let _ = act.send(action).await;
            }
        }
    }
}

fn random_call_sid() -> String {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the operating system provides randomness");
    format!("CA{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Words a voice speaking at about 15 characters a second has said of `utterance` after
/// `elapsed`, cut back to a whole word.
fn heard_so_far(utterance: &str, elapsed: Duration) -> String {
    let spoken = (elapsed.as_millis() / 65) as usize;
    if spoken >= utterance.chars().count() {
        return utterance.trim().to_owned();
    }
    let prefix: String = utterance.chars().take(spoken).collect();
    match prefix.rfind(' ') {
        Some(end) => prefix[..end].trim().to_owned(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupting_caller_heard_whole_words_at_speaking_pace() {
        let reply = "We are open from nine to five";
        assert_eq!(heard_so_far(reply, Duration::from_millis(0)), "");
        assert_eq!(heard_so_far(reply, Duration::from_millis(65 * 13)), "We are open");
        assert_eq!(heard_so_far(reply, Duration::from_secs(10)), reply);
    }

    #[test]
    fn reads_attributes_and_say_from_twiml() {
        let twiml = r#"<?xml version="1.0"?><Response><Connect action="a"><ConversationRelay url="wss://h/twilio/relay/1" welcomeGreeting="Hi &amp; &quot;welcome&quot;"/></Connect></Response>"#;
        assert_eq!(attribute(twiml, "ConversationRelay", "url").as_deref(), Some("wss://h/twilio/relay/1"));
        assert_eq!(attribute(twiml, "ConversationRelay", "welcomeGreeting").as_deref(), Some(r#"Hi & "welcome""#));
        assert_eq!(attribute(twiml, "Stream", "url"), None);
        assert_eq!(element_text("<Response><Say>Sorry &amp; bye</Say><Hangup/></Response>", "Say").as_deref(), Some("Sorry & bye"));
        assert_eq!(element_text("<Response><Dial>+14155550199</Dial></Response>", "Dial").as_deref(), Some("+14155550199"));
        assert_eq!(random_call_sid().len(), 34);
    }

    #[test]
    fn typed_lines_become_caller_actions() {
        assert_eq!(CallerAction::parse("  When do you open? "), Some(CallerAction::Say("When do you open?".into())));
        assert_eq!(CallerAction::parse("/dtmf 12#"), Some(CallerAction::Digits("12#".into())));
        assert_eq!(CallerAction::parse("/interrupt"), Some(CallerAction::Interrupt));
        assert_eq!(CallerAction::parse("/hangup"), Some(CallerAction::HangUp));
        assert_eq!(CallerAction::parse("   "), None);
    }
}
