//! A phone without a carrier. It plays Twilio against a running server: posts the signed
//! incoming-call webhook, reads the TwiML, opens the call's socket as Twilio would —
//! ConversationRelay (`relay`: text both ways) or Media Streams (`media`: audio both ways, in
//! real time, with Twilio's playback buffer, marks and clear) — passes what the agent says on and
//! the caller's actions in, and posts the connect-action and status callbacks when the call
//! ends. [`call`] is driven through channels; `switchboard dial` runs it from the terminal
//! ([`from_terminal`]) and the console's test call from the browser.
//!
//! Typed lines starting with `/` are actions: `/dtmf 123`, `/interrupt` (cut the agent off),
//! `/play FILE.wav` (media streams), `/wait SECONDS` (stay silent), `/hangup`.

mod media;
mod relay;

pub use media::AudioPhone;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
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
    /// How the phone speaks and listens on media-stream numbers; without it, only
    /// ConversationRelay numbers can be dialled.
    pub audio: Option<AudioPhone>,
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
    /// Play a WAV file as the caller's voice (media streams).
    Play(std::path::PathBuf),
    /// The next piece of a live voice, 8 kHz samples (a microphone, media streams).
    Audio(Vec<i16>),
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
            ("/play", file) => Some(CallerAction::Play(file.into())),
            _ => Some(CallerAction::Say(line.to_owned())),
        }
    }
}

/// What the phone hears and sees during the call.
#[derive(Clone, Debug, PartialEq)]
pub enum PhoneEvent {
    /// The call record exists; its id is the last segment of the socket's URL. On a
    /// ConversationRelay call, `greeting` is what the carrier says first (the TwiML's).
    Connected { call_id: String, greeting: Option<String> },
    /// The server refused the call with these words.
    Refused(String),
    /// Part of what the agent says, as it streams (on media streams: an utterance as heard).
    Token(String),
    /// The agent's voice began an utterance (media streams: its audio started playing; the
    /// words come once it is transcribed).
    Speaking,
    /// The agent finished an utterance.
    UtteranceEnd,
    /// The caller interrupted; this much of the utterance in progress was heard (nothing when
    /// the agent was pausing between sentences).
    Interrupted { heard: String },
    /// The agent switched the call's language.
    Language(String),
}

/// Places the call and runs it to its end: `actions` are what the caller does, `events` what
/// they hear. The call ends when the agent ends it, the caller hangs up, or `actions` closes.
pub async fn call(dial: Dial, actions: mpsc::Receiver<CallerAction>, events: mpsc::Sender<PhoneEvent>) -> anyhow::Result<Outcome> {
    let mut twilio = Twilio { dial: &dial, http: reqwest::Client::new(), call_sid: random_call_sid(), sequence: 0 };
    let started = Instant::now();
    let mut params = twilio.base_params("ringing");
    if dial.test {
        params.push((TEST_CALL_PARAM.to_owned(), "true".to_owned()));
    }
    let twiml = twilio.post("/twilio/voice", &params).await?;
    let (mode, socket_url) = match (attribute(&twiml, "ConversationRelay", "url"), attribute(&twiml, "Stream", "url")) {
        (Some(url), _) => ("relay", url),
        (None, Some(url)) => ("media", url),
        (None, None) => {
            if let Some(words) = element_text(&twiml, "Say") {
                let _ = events.send(PhoneEvent::Refused(words)).await;
                return Ok(Outcome { summary: "call refused by the server".into(), ok: false });
            }
            bail!("the server did not connect the call to an agent: {twiml}");
        }
    };
    let call_id = socket_url.rsplit('/').next().unwrap_or_default().to_owned();
    let greeting = attribute(&twiml, "ConversationRelay", "welcomeGreeting");
    let _ = events.send(PhoneEvent::Connected { call_id, greeting }).await;
    twilio.status_callback("in-progress", &[]).await;

    // Twilio signs the URL written in the TwiML (without parameters); we reach it through `server`.
    let path = socket_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
        .context("socket URL has no path")?;
    let mut request = format!("{}{path}", dial.server.replacen("http", "ws", 1)).as_str().into_client_request()?;
    request.headers_mut().insert("X-Twilio-Signature", signature::sign(&dial.auth_token, &socket_url, &[]).parse()?);
    let (socket, _) =
        tokio_tungstenite::connect_async_with_config(request, None, true).await.with_context(|| format!("opening the {mode} WebSocket"))?;
    let ended = if mode == "relay" {
        relay::converse(&twilio, socket, actions, &events).await?
    } else {
        let Some(audio) = &dial.audio else {
            bail!("this number uses media streams (Switchboard's own speech): dial it with --audio");
        };
        let parameters = stream_parameters(&twiml);
        media::converse(&twilio, audio, socket, parameters, actions, &events).await?
    };
    let duration = started.elapsed().as_secs().to_string();
    let outcome = match ended {
        Ended::ByAgent { handoff } => {
            let mut params = twilio.base_params("in-progress");
            if let Some(data) = &handoff {
                params.extend([
                    ("SessionId".into(), "VXdevphone".into()),
                    ("SessionStatus".into(), "ended".into()),
                    ("SessionDuration".into(), duration.clone()),
                    ("HandoffData".into(), data.clone()),
                ]);
            }
            let next = twilio.post("/twilio/connect-action", &params).await?;
            let handoff: Value = handoff.and_then(|data| serde_json::from_str(&data).ok()).unwrap_or(Value::Null);
            let reason = handoff["reason"].as_str().map_or_else(String::new, |r| format!(" ({r})"));
            match element_text(&next, "Dial") {
                Some(number) => Outcome { summary: format!("call transferred to {number}{reason} after {duration}s"), ok: true },
                None => Outcome { summary: format!("call ended by the agent{reason} after {duration}s"), ok: true },
            }
        }
        Ended::ByCaller => Outcome { summary: format!("you hung up after {duration}s"), ok: true },
    };
    twilio.status_callback("completed", &[("CallDuration", duration), ("Duration", "1".into())]).await;
    Ok(outcome)
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a conversation on the socket ended.
enum Ended {
    /// The agent closed it; ConversationRelay says what next in its handoff data.
    ByAgent {
        handoff: Option<String>,
    },
    ByCaller,
}

/// The `<Parameter name value>` pairs of a `<Stream>`.
fn stream_parameters(twiml: &str) -> Vec<(String, String)> {
    let mut parameters = Vec::new();
    let mut rest = twiml;
    while let Some(at) = rest.find("<Parameter ") {
        rest = &rest[at..];
        if let (Some(name), Some(value)) = (attribute(rest, "Parameter", "name"), attribute(rest, "Parameter", "value")) {
            parameters.push((name, value));
        }
        rest = &rest["<Parameter ".len()..];
    }
    parameters
}

/// How long a script in audio waits for the agent's greeting to start.
const GREETING_WAIT: Duration = Duration::from_secs(3);
/// How long after its last line (and the agent's last words) a script hangs up.
const SCRIPT_HANG_UP: Duration = Duration::from_secs(10);

/// Runs a call from the terminal (`switchboard dial`): prints what the agent says as it streams
/// and sends each typed line, or each line of a script. A script waits for the agent to finish
/// before its next line (the agent's `filler`, "One moment.", is not an answer: the script
/// waits on), `/wait SECONDS` pauses it, and it hangs up once the agent has been quiet for 10 s
/// after its last line, if the agent has not ended the call by then.
pub async fn from_terminal(dial: Dial, script: Option<Vec<String>>, filler: &str) -> anyhow::Result<Outcome> {
    use std::io::Write;
    println!("calling {} from {}", dial.to, dial.from);
    let (act, actions) = mpsc::channel(16);
    let (hear, mut events) = mpsc::channel(256);
    // In audio the agent's greeting is heard before a script's first line (as long as it takes
    // to start: an agent may have none).
    let greeting_wait = dial.audio.as_ref().map(|_| tokio::time::Instant::now() + GREETING_WAIT);
    let call = tokio::spawn(call(dial, actions, hear));
    let mut script = script.map(|lines| lines.into_iter());
    let mut terminal = BufReader::new(tokio::io::stdin()).lines();
    let mut agent_busy = greeting_wait.is_some();
    let mut line_open = false;
    // What the agent has said of the utterance being printed.
    let mut utterance = String::new();
    // Whether the agent's voice has been heard (its words may take a while to transcribe).
    let mut agent_heard = false;
    let mut hang_up_at: Option<tokio::time::Instant> = None;
    let mut input_done = false;
    // A script speaks once the call is connected (and the carrier's greeting said).
    let mut connected = false;
    // A `/wait`: the next line waits until then, while what the agent says is still printed.
    let mut paused_until: Option<tokio::time::Instant> = None;
    loop {
        let pause = paused_until;
        let next_line = async {
            if let Some(at) = pause {
                tokio::time::sleep_until(at).await;
            }
            match script.as_mut() {
                _ if input_done => std::future::pending().await,
                Some(lines) if connected && !agent_busy && hang_up_at.is_none() => Ok(lines.next()),
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
        let no_greeting = async {
            match greeting_wait {
                Some(at) if agent_busy && !line_open && !agent_heard => tokio::time::sleep_until(at).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            () = no_greeting => agent_busy = false,
            () = give_up => { let _ = act.send(CallerAction::HangUp).await; hang_up_at = None; }
            event = events.recv() => match event {
                Some(PhoneEvent::Connected { call_id, greeting }) => {
                    println!("connected (call record {call_id})");
                    if let Some(words) = greeting {
                        println!("agent: {words}");
                    }
                    connected = true;
                }
                Some(PhoneEvent::Refused(words)) => println!("server: {words}"),
                Some(PhoneEvent::Speaking) => {
                    agent_heard = true;
                    agent_busy = true;
                    // The agent is still talking: the script's hang-up waits for it.
                    hang_up_at = hang_up_at.map(|_| tokio::time::Instant::now() + SCRIPT_HANG_UP);
                }
                Some(PhoneEvent::Token(token)) => {
                    if !line_open {
                        print!("agent: ");
                        line_open = true;
                    }
                    hang_up_at = hang_up_at.map(|_| tokio::time::Instant::now() + SCRIPT_HANG_UP);
                    agent_busy = true;
                    utterance.push_str(&token);
                    print!("{token}");
                    let _ = std::io::stdout().flush();
                }
                Some(PhoneEvent::UtteranceEnd) => {
                    println!();
                    line_open = false;
                    agent_busy = same_words(&std::mem::take(&mut utterance), filler);
                }
                Some(PhoneEvent::Interrupted { heard }) => {
                    utterance.clear();
                    if line_open {
                        println!();
                        line_open = false;
                    }
                    agent_busy = false;
                    println!("[interrupting; heard: \"{heard}\"]");
                }
                Some(PhoneEvent::Language(locale)) => println!("[language → {locale}]"),
                // The call is over and everything it told has been printed.
                None => return call.await.context("the call task failed")?,
            },
            line = next_line => {
                paused_until = None;
                let Some(line) = line? else {
                    input_done = true;
                    match script {
                        Some(_) => hang_up_at = Some(tokio::time::Instant::now() + SCRIPT_HANG_UP),
                        None => { let _ = act.send(CallerAction::HangUp).await; }
                    }
                    continue;
                };
                if let Some(seconds) = line.trim().strip_prefix("/wait") {
                    let seconds = seconds.trim().parse().ok().and_then(|s| Duration::try_from_secs_f64(s).ok()).unwrap_or(Duration::from_secs(1));
                    paused_until = Some(tokio::time::Instant::now() + seconds);
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

/// Whether two utterances say the same words (a transcript may differ in case and punctuation).
fn same_words(a: &str, b: &str) -> bool {
    let a = crate::domain::agent::words(a);
    !a.is_empty() && a == crate::domain::agent::words(b)
}

fn random_call_sid() -> String {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the operating system provides randomness");
    format!("CA{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_attributes_and_say_from_twiml() {
        let twiml = r#"<?xml version="1.0"?><Response><Connect action="a"><ConversationRelay url="wss://h/twilio/relay/1" welcomeGreeting="Hi &amp; &quot;welcome&quot;"/></Connect></Response>"#;
        assert_eq!(attribute(twiml, "ConversationRelay", "url").as_deref(), Some("wss://h/twilio/relay/1"));
        assert_eq!(attribute(twiml, "ConversationRelay", "welcomeGreeting").as_deref(), Some(r#"Hi & "welcome""#));
        assert_eq!(attribute(twiml, "Stream", "url"), None);
        assert_eq!(element_text("<Response><Say>Sorry &amp; bye</Say><Hangup/></Response>", "Say").as_deref(), Some("Sorry & bye"));
        assert_eq!(element_text("<Response><Dial>+14155550199</Dial></Response>", "Dial").as_deref(), Some("+14155550199"));
        assert_eq!(random_call_sid().len(), 34);
        assert!(same_words("One moment.", "one moment") && same_words(" One, moment! ", "One moment."));
        assert!(!same_words("One moment, please.", "One moment.") && !same_words("", ""));
        let stream = r#"<Response><Connect action="a"><Stream url="wss://h/twilio/media/1"><Parameter name="call_id" value="1"/><Parameter name="x" value="a&amp;b"/></Stream></Connect></Response>"#;
        assert_eq!(attribute(stream, "Stream", "url").as_deref(), Some("wss://h/twilio/media/1"));
        assert_eq!(stream_parameters(stream), [("call_id".to_owned(), "1".to_owned()), ("x".to_owned(), "a&b".to_owned())]);
    }

    #[test]
    fn typed_lines_become_caller_actions() {
        assert_eq!(CallerAction::parse("  When do you open? "), Some(CallerAction::Say("When do you open?".into())));
        assert_eq!(CallerAction::parse("/dtmf 12#"), Some(CallerAction::Digits("12#".into())));
        assert_eq!(CallerAction::parse("/interrupt"), Some(CallerAction::Interrupt));
        assert_eq!(CallerAction::parse("/hangup"), Some(CallerAction::HangUp));
        assert_eq!(CallerAction::parse("/play hello.wav"), Some(CallerAction::Play("hello.wav".into())));
        assert_eq!(CallerAction::parse("   "), None);
    }
}
