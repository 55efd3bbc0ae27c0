//! `switchboard dial`: a phone without a carrier. It plays Twilio against a running server:
//! posts the signed incoming-call webhook, reads the TwiML, opens the ConversationRelay socket
//! as Twilio would, prints the agent's speech as it streams, sends each typed line (or each line
//! of a script) as the caller's speech, and posts the connect-action and status callbacks when
//! the call ends.
//!
//! Lines starting with `/` are actions: `/dtmf 123`, `/interrupt` (cut the agent off),
//! `/wait SECONDS` (stay silent), `/hangup`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
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
    /// Script lines, or `None` to read the terminal.
    pub script: Option<Vec<String>>,
}

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

/// Places the call and runs it to its end.
pub async fn call(dial: Dial) -> anyhow::Result<Outcome> {
    let mut twilio = Twilio { dial: &dial, http: reqwest::Client::new(), call_sid: random_call_sid(), sequence: 0 };
    let started = Instant::now();
    println!("calling {} from {} (call {})", dial.to, dial.from, twilio.call_sid);
    let twiml = twilio.post("/twilio/voice", &twilio.base_params("ringing")).await?;
    let Some(relay_url) = attribute(&twiml, "ConversationRelay", "url") else {
        if let Some(words) = element_text(&twiml, "Say") {
            println!("server: {words}");
            return Ok(Outcome { summary: "call refused by the server".into(), ok: false });
        }
        bail!("the server did not connect the call to a ConversationRelay agent (media streams are not supported by dial): {twiml}");
    };
    twilio.status_callback("in-progress", &[]).await;
    if let Some(greeting) = attribute(&twiml, "ConversationRelay", "welcomeGreeting") {
        println!("agent: {greeting}");
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

    let mut script = dial.script.clone().map(|lines| lines.into_iter());
    let mut terminal = BufReader::new(tokio::io::stdin()).lines();
    // The agent's current (or last) utterance and when it began, to tell what a caller who
    // interrupts has heard by now: Twilio's voice speaks far slower than the text streams.
    let mut speaking = String::new();
    let mut speaking_since = tokio::time::Instant::now();
    let mut agent_busy = false;
    let mut line_open = false;
    let mut handoff: Option<String> = None;
    // When a script runs out, the caller waits this long for the agent to end the call.
    let mut hang_up_at: Option<tokio::time::Instant> = None;
    loop {
        // A script waits for the agent to finish before its next line; a person may talk over it.
        let next_line = async {
            match script.as_mut() {
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
            () = give_up => break,
            message = incoming.next() => {
                let Some(Ok(message)) = message else { break };
                let Message::Text(text) = message else { continue };
                let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                match message["type"].as_str() {
                    Some("text") => {
                        let token = message["token"].as_str().unwrap_or_default();
                        if !line_open {
                            print!("agent: ");
                            line_open = true;
                            speaking.clear();
                            speaking_since = tokio::time::Instant::now();
                        }
                        agent_busy = true;
                        speaking.push_str(token);
                        print!("{token}");
                        if message["last"] == true {
                            println!();
                            line_open = false;
                            agent_busy = false;
                        }
                        use std::io::Write;
                        let _ = std::io::stdout().flush();
                    }
                    Some("language") => println!("[language → {}]", message["ttsLanguage"].as_str().unwrap_or("?")),
                    Some("end") => {
                        handoff = Some(message["handoffData"].as_str().unwrap_or_default().to_owned());
                        break;
                    }
                    _ => println!("[{message}]"),
                }
            }
            line = next_line => {
                let Some(line) = line? else {
                    if script.is_none() {
                        break;
                    }
                    hang_up_at = Some(tokio::time::Instant::now() + Duration::from_secs(10));
                    continue;
                };
                let line = line.trim().to_owned();
                if line.is_empty() {
                    continue;
                }
                if script.is_some() {
                    println!("you: {line}");
                }
                let message = match line.split_once(' ').map_or((line.as_str(), ""), |(a, b)| (a, b.trim())) {
                    ("/hangup", _) => break,
                    ("/wait", seconds) => {
                        tokio::time::sleep(Duration::from_secs_f64(seconds.parse().unwrap_or(1.0))).await;
                        continue;
                    }
                    ("/dtmf", digits) => {
                        for digit in digits.chars() {
                            outgoing.send(Message::Text(json!({ "type": "dtmf", "digit": digit.to_string() }).to_string().into())).await?;
                        }
                        agent_busy = true;
                        continue;
                    }
                    ("/interrupt", _) => {
                        if line_open {
                            println!();
                            line_open = false;
                        }
                        let heard = heard_so_far(&std::mem::take(&mut speaking), speaking_since.elapsed());
                        println!("[interrupting; heard: \"{heard}\"]");
                        agent_busy = false;
                        json!({ "type": "interrupt", "utteranceUntilInterrupt": heard, "durationUntilInterruptMs": 500 })
                    }
                    _ => {
                        agent_busy = true;
                        json!({ "type": "prompt", "voicePrompt": line, "lang": "en-US", "last": true })
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
}
