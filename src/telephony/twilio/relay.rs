//! ConversationRelay: Twilio turns the caller's speech into text and our text into speech, over
//! a WebSocket per call (`GET /twilio/relay/{call_id}`). This adapter checks the handshake's
//! signature, then translates Twilio's messages into [`CallerEvent`]s for an agent session and
//! the session's [`AgentCommand`]s into Twilio's messages (shared/specs/twilio.md §6).
//!
//! When no answer has begun the agent's `speech.filler_after_ms` after the caller's words (a slow
//! model, or the embedded model's queue), Twilio is given the agent's filler ("One moment.") to
//! say as an utterance of its own, as on Media Streams calls; the transcript never sees it, and
//! an interruption of the filler alone is nobody's business but Twilio's.
//!
//! When the session ends the call itself, Twilio closes the socket and asks
//! `/twilio/connect-action` what next (the handshake and the end of a session are shared with
//! Media Streams in `call_socket`).

use std::collections::VecDeque;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use super::{TwilioState, call_socket};
use crate::agent::assembly;
use crate::agent::call_log::StoredCallLog;
use crate::agent::session::{AgentCommand, CallerEvent, Ending, Handoff, Session, SessionSetup};
use crate::domain::agent::AgentSpeech;
use crate::domain::call::Call;
use crate::domain::ids::CallId;

/// ConversationRelay's messages are small JSON texts: small socket buffers keep an idle call
/// cheap (the defaults are 128 KiB each way), and a larger message is refused.
const RELAY_BUFFER: usize = 4 << 10;
const MAX_RELAY_MESSAGE: usize = 64 << 10;

/// The relay WebSocket of one call. The signature is checked before anything is said about the
/// call (an unknown call is refused like a bad signature), and only one session may hold a call.
#[utoipa::path(get, path = "/twilio/relay/{call_id}", tag = "twilio", security(()), params(("call_id" = CallId, Path)), responses(
    (status = 101, description = "WebSocket (ConversationRelay protocol)"), (status = 400, description = "Not a call id, or not a WebSocket handshake"),
    (status = 403, description = "Bad signature or no such call"),
    (status = 409, description = "The call is over, or another session holds it")))]
pub async fn relay(
    State(state): State<TwilioState>,
    Path(call_id): Path<CallId>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let call = match call_socket::signed_open_call(&state, "relay", call_id, &headers).await {
        Ok(call) => call,
        Err(refused) => return refused,
    };
    let setup =
        match assembly::for_call(&state.db, &state.egress, &state.models, &call, state.live.clone(), state.transcripts.clone()).await {
            Ok(setup) => setup,
            Err(e) => return call_socket::internal(e),
        };
    if let Err(refused) = call_socket::claim(&state, &call).await {
        return refused;
    }
    upgrade
        .read_buffer_size(RELAY_BUFFER)
        .write_buffer_size(RELAY_BUFFER)
        .max_message_size(MAX_RELAY_MESSAGE)
        .on_upgrade(move |socket| converse(state, call, setup, socket))
}

/// A message from Twilio. Unknown types and fields are tolerated.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum RelayMessage {
    Setup {
        #[serde(default, rename = "callSid")]
        call_sid: String,
    },
    Prompt {
        #[serde(default, rename = "voicePrompt")]
        voice_prompt: String,
        #[serde(default)]
        lang: Option<String>,
        #[serde(default = "yes")]
        last: bool,
    },
    Interrupt {
        #[serde(default, rename = "utteranceUntilInterrupt")]
        utterance_until_interrupt: String,
    },
    Dtmf {
        #[serde(default)]
        digit: String,
    },
    Error {
        #[serde(default)]
        description: String,
    },
    #[serde(other)]
    Other,
}

fn yes() -> bool {
    true
}

/// What a Twilio message means for the session, if anything.
fn caller_event(text: &str, call: &Call) -> Option<CallerEvent> {
    match serde_json::from_str::<RelayMessage>(text) {
        Ok(RelayMessage::Setup { call_sid }) => {
            if call_sid != call.call_sid {
                tracing::warn!(call = %call.id, %call_sid, "relay setup names another call SID");
            }
            None
        }
        Ok(RelayMessage::Prompt { voice_prompt, lang, last: true }) if !voice_prompt.trim().is_empty() => {
            Some(CallerEvent::Said { text: voice_prompt, language: lang })
        }
        Ok(RelayMessage::Interrupt { utterance_until_interrupt }) => Some(CallerEvent::Interrupted { heard: utterance_until_interrupt }),
        Ok(RelayMessage::Dtmf { digit }) if !digit.is_empty() => Some(CallerEvent::Digits(digit)),
        Ok(RelayMessage::Error { description }) => {
            tracing::warn!(call = %call.id, %description, "ConversationRelay reported an error");
            None
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(call = %call.id, error = %e, "unreadable ConversationRelay message");
            None
        }
    }
}

/// The agent's filler on a relay call: when it is due, and whether it is what Twilio plays.
struct Filler {
    words: String,
    after: Duration,
    due: Option<Instant>,
    playing: bool,
    /// The session has ended the call: nothing more is said.
    ended: bool,
}

impl Filler {
    fn new(speech: &AgentSpeech) -> Self {
        Self {
            words: speech.filler.trim().to_owned(),
            after: Duration::from_millis(speech.filler_after_ms.max(0) as u64),
            due: None,
            playing: false,
            ended: false,
        }
    }

    /// Notes what the caller did; false when the event is the filler's alone (an interruption
    /// of the filler, which the session never said).
    fn caller(&mut self, event: &CallerEvent) -> bool {
        match event {
            CallerEvent::Said { .. } if !self.words.is_empty() && !self.ended => self.due = Some(Instant::now() + self.after),
            CallerEvent::Interrupted { .. } if self.playing => {
                self.playing = false;
                return false;
            }
            _ => {}
        }
        true
    }

    /// Notes what the session said: any answer means the filler is not needed.
    fn agent(&mut self, command: &AgentCommand) {
        if matches!(command, AgentCommand::Speak { .. } | AgentCommand::Announce { .. } | AgentCommand::End(_)) {
            (self.due, self.playing) = (None, false);
        }
        self.ended |= matches!(command, AgentCommand::End(_));
    }

    /// The message that says the filler, now that it is due.
    fn say(&mut self) -> String {
        (self.due, self.playing) = (None, true);
        json!({ "type": "text", "token": self.words, "last": true }).to_string()
    }
}

/// Twilio's message for a session command (stopping the recording is a REST request instead).
fn relay_message(command: &AgentCommand) -> Option<String> {
    let message = match command {
        AgentCommand::Speak { token, last } => json!({ "type": "text", "token": token, "last": last }),
        AgentCommand::Announce { words } => json!({ "type": "text", "token": words, "last": true, "interruptible": false }),
        AgentCommand::SwitchLanguage { locale } => json!({ "type": "language", "ttsLanguage": locale, "transcriptionLanguage": locale }),
        AgentCommand::End(ending) => json!({ "type": "end", "handoffData": handoff_data(ending).to_string() }),
        AgentCommand::StopRecording => return None,
    };
    Some(message.to_string())
}

/// What Twilio hands back to `/twilio/connect-action` when the session ends the call.
fn handoff_data(ending: &Ending) -> serde_json::Value {
    match ending.handoff() {
        Handoff::Transfer { to } => json!({ "action": "transfer", "to": to, "reason": ending.reason }),
        Handoff::HangUp => json!({ "action": "hangup", "reason": ending.reason }),
    }
}

async fn converse(state: TwilioState, call: Call, setup: SessionSetup<StoredCallLog>, socket: WebSocket) {
    let _live = state.live.enter(call.id);
    let (mut outgoing, mut incoming) = socket.split();
    let (event_tx, event_rx) = mpsc::channel(32);
    let (command_tx, mut command_rx) = mpsc::channel(64);
    let log = setup.log.clone();
    let mut filler = Filler::new(&setup.agent.speech);
    let session = tokio::spawn(Session::new(setup, command_tx).run(event_rx).instrument(tracing::info_span!("session", call = %call.id)));
    tracing::info!(call = %call.id, "relay session started");
    // Caller events wait here while the session is busy, so reading the socket never waits for
    // the session and the session's commands always reach the socket: neither channel can
    // block the other.
    let mut backlog = VecDeque::new();
    let mut socket_open = true;
    loop {
        tokio::select! {
            permit = event_tx.reserve(), if !backlog.is_empty() => match permit {
                Ok(permit) => permit.send(backlog.pop_front().expect("the backlog is not empty")),
                Err(_) => backlog.clear(), // the session has ended
            },
            message = incoming.next(), if socket_open => match message {
                Some(Ok(Message::Text(text))) => backlog.extend(caller_event(&text, &call).filter(|event| filler.caller(event))),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    socket_open = false;
                    backlog.push_back(CallerEvent::HungUp);
                }
                Some(Ok(_)) => {}
            },
            () = sleep_until(filler.due.unwrap_or_else(Instant::now)), if filler.due.is_some() => {
                let words = filler.say();
                if socket_open && outgoing.send(Message::Text(words.into())).await.is_err() {
                    socket_open = false;
                    backlog.push_back(CallerEvent::HungUp);
                }
            }
            command = command_rx.recv() => match command {
                Some(command) => match relay_message(&command).inspect(|_| filler.agent(&command)) {
                    Some(message) => {
                        if socket_open && outgoing.send(Message::Text(message.into())).await.is_err() {
                            socket_open = false;
                            backlog.push_back(CallerEvent::HungUp);
                        }
                    }
                    None => {
                        let (carrier, call) = (state.carrier_recordings(), call.clone());
                        tokio::spawn(async move { carrier.opt_out(&call).await });
                    }
                },
                None => break,
            },
        }
    }
    call_socket::conclude(&state, &call, session, &log).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::call::{EndReason, EndedBy};

    fn call() -> Call {
        Call::example()
    }

    /// Fuzz target: any text on the relay socket, JSON or not, becomes an event or nothing,
    /// without a panic; a prompt's words come through as Twilio sent them.
    #[test]
    fn fuzz_any_relay_message() {
        let c = call();
        bolero::check!().with_type::<(String, String, bool)>().for_each(|(raw, words, last)| {
            let _ = caller_event(raw, &c);
            let prompt = json!({ "type": "prompt", "voicePrompt": words, "lang": "en-US", "last": last }).to_string();
            match caller_event(&prompt, &c) {
                Some(CallerEvent::Said { text, .. }) => assert!(*last && text == *words),
                None => assert!(!*last || words.trim().is_empty()),
                other => panic!("a prompt became {other:?}"),
            }
        });
    }

    #[test]
    fn twilio_messages_become_caller_events_leniently() {
        let c = call();
        assert_eq!(
            caller_event(r#"{"type":"prompt","voicePrompt":"Hello there","lang":"en-US","last":true,"extra":1}"#, &c),
            Some(CallerEvent::Said { text: "Hello there".into(), language: Some("en-US".into()) })
        );
        assert_eq!(caller_event(r#"{"type":"prompt","voicePrompt":"Hel","last":false}"#, &c), None);
        assert_eq!(
            caller_event(r#"{"type":"interrupt","utteranceUntilInterrupt":"Life is","durationUntilInterruptMs":"460"}"#, &c),
            Some(CallerEvent::Interrupted { heard: "Life is".into() })
        );
        assert_eq!(caller_event(r#"{"type":"dtmf","digit":"5"}"#, &c), Some(CallerEvent::Digits("5".into())));
        for ignored in [
            r#"{"type":"setup","callSid":"CA1","customParameters":{}}"#,
            r#"{"type":"info","name":"x","value":"1"}"#,
            r#"{"type":"brandNew"}"#,
            "not json",
            r#"{"type":"error","description":"bad"}"#,
        ] {
            assert_eq!(caller_event(ignored, &c), None, "{ignored}");
        }
    }

    #[test]
    fn commands_become_twilio_messages() {
        assert_eq!(
            relay_message(&AgentCommand::Speak { token: "Hi ".into(), last: false }).unwrap(),
            r#"{"last":false,"token":"Hi ","type":"text"}"#
        );
        let ended = Ending::new(EndedBy::Agent, EndReason::AgentEnded);
        let end: serde_json::Value = serde_json::from_str(&relay_message(&AgentCommand::End(ended.clone())).unwrap()).unwrap();
        assert_eq!(end["type"], "end");
        assert_eq!(end["handoffData"], r#"{"action":"hangup","reason":"agent_ended"}"#);
        let transfer = Ending { transfer_to: Some("+14155550199".into()), ..Ending::new(EndedBy::Agent, EndReason::Transferred) };
        let end: serde_json::Value = serde_json::from_str(&relay_message(&AgentCommand::End(transfer)).unwrap()).unwrap();
        assert_eq!(end["handoffData"], r#"{"action":"transfer","reason":"transferred","to":"+14155550199"}"#);
        let lang: serde_json::Value =
            serde_json::from_str(&relay_message(&AgentCommand::SwitchLanguage { locale: "fr-FR".into() }).unwrap()).unwrap();
        assert_eq!((lang["ttsLanguage"].as_str(), lang["transcriptionLanguage"].as_str()), (Some("fr-FR"), Some("fr-FR")));
    }
}
