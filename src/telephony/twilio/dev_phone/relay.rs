//! The dev phone's ConversationRelay side: Twilio's part of a `<ConversationRelay>` call. The
//! caller's words go as prompts; the agent's text streams back; an interruption reports what a
//! voice would have said by then.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{CallerAction, Ended, PhoneEvent, Socket, Twilio};

/// Runs the relay conversation until the agent ends it or the caller hangs up.
pub(super) async fn converse(
    twilio: &Twilio<'_>,
    socket: Socket,
    mut actions: mpsc::Receiver<CallerAction>,
    events: &mpsc::Sender<PhoneEvent>,
) -> anyhow::Result<Ended> {
    let (mut outgoing, mut incoming) = socket.split();
    let dial = twilio.dial;
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
                    Some(CallerAction::Play(file)) => {
                        eprintln!("cannot play {}: this number uses ConversationRelay, which takes words, not audio", file.display());
                        continue;
                    }
                    // ConversationRelay carries words: a live voice has nowhere to go.
                    Some(CallerAction::Audio(_)) => continue,
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
    Ok(match handoff {
        Some(data) => Ended::ByAgent { handoff: Some(data) },
        None => Ended::ByCaller,
    })
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
}
