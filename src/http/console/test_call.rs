//! The test call ("Testing Your Phone Integration"): talk to a number's agent from the browser by
//! typing. The browser holds a WebSocket to this server, which places the call through the real
//! call path by playing Twilio against itself (the dev phone of `switchboard dial`): signed
//! webhook, call record (marked as a test, so analytics leave it out), ConversationRelay or Media
//! Streams socket, callbacks. The agent's words stream back to the browser as they come; on
//! media-stream numbers the typed words are spoken and the agent's audio transcribed, or the
//! browser's microphone is the caller's voice and the agent's audio plays in the browser.

use askama::Template;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::auth::{Viewer, same_origin};
use super::{ConsoleError, Layout};
use crate::agent::speech;
use crate::audio::resample::Resampler;
use crate::domain::ids::PhoneNumberId;
use crate::domain::phone_number::{PhoneNumber, ServiceMode};
use crate::http::AppState;
use crate::http::api::phone_numbers as numbers_api;
use crate::http::error::ApiError;
use crate::http::input::ApiPath;
use crate::providers::speech::SpeakingVoice;
use crate::storage::phone_providers;
use crate::telephony::twilio::dev_phone::{self, AudioPhone, CallerAction, Dial, PhoneEvent};

/// The caller number test calls come from.
const TEST_CALLER: &str = "+15555550100";
/// The rate of the audio the phone carries.
const PHONE_RATE: u32 = 8000;

#[derive(Template)]
#[template(path = "numbers/test_call.html")]
struct TestCallPage {
    layout: Layout,
    number: PhoneNumber,
    /// Whether the browser's microphone can be the caller's voice (media streams carry audio).
    microphone: bool,
}

/// `GET /numbers/{id}/test-call`.
pub async fn page(State(state): State<AppState>, Path(id): Path<PhoneNumberId>, viewer: Viewer) -> Result<Response, ConsoleError> {
    let number = numbers_api::get(State(state), viewer.caller(), ApiPath(id)).await?.0;
    let layout = viewer.layout(format!("Test call to {}", number.number.as_str()), "apps");
    let microphone = number.mode == ServiceMode::MediaStream;
    Ok(viewer.render(&TestCallPage { layout, number, microphone }))
}

/// `GET /numbers/{id}/test-call/socket`: the browser's side of a test call. Only owners and
/// admins place test calls (they create call records), and only from this console's pages.
pub async fn socket(
    State(state): State<AppState>,
    Path(id): Path<PhoneNumberId>,
    viewer: Viewer,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ConsoleError> {
    if !same_origin(&headers) || headers.get(axum::http::header::ORIGIN).is_none() {
        return Err(ConsoleError::Forbidden("Test calls start from this console's pages only.".into()));
    }
    if !viewer.owner.role.can_change() {
        return Err(ConsoleError::Forbidden("Test calls create call records: ask an owner or admin.".into()));
    }
    let number = numbers_api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
    let secrets = phone_providers::secrets(&state.db, number.org_id, number.provider_id)
        .await
        .map_err(|e| ApiError::from_storage(e, "phone provider"))?;
    // The agent's audio as it plays, for the browser's speaker (media streams).
    let (speaker, played) = mpsc::channel(64);
    let dial = Dial {
        to: number.number.as_str().to_owned(),
        from: TEST_CALLER.to_owned(),
        server: format!("http://{}", state.config.listen),
        public_base_url: state.config.public_base_url(),
        account_sid: secrets.account_sid,
        auth_token: secrets.auth_token.to_string(),
        test: true,
        audio: match number.mode {
            ServiceMode::ConversationRelay => None,
            // The typed words are spoken and the agent's audio transcribed by the agent's own
            // speech providers, so the call goes through the whole audio path.
            ServiceMode::MediaStream => speech::for_number(&state.db, &state.egress, &state.models, &number)
                .await
                .map_err(|e| ApiError::from_storage(e, "agent"))?
                .map(|ears| AudioPhone {
                    mouth: Some(ears.tts),
                    voice: SpeakingVoice::new(ears.default_voice, speech::CALL_LANGUAGE),
                    ears: Some(ears.stt),
                    record: None,
                    speaker: Some(speaker),
                }),
        },
    };
    Ok(upgrade.on_upgrade(move |socket| bridge(socket, dial, played)))
}

/// What the browser sends as text. After `microphone`, its binary messages are the caller's
/// voice: 16-bit little-endian mono samples at the rate it named.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FromBrowser {
    Say { text: String },
    Digits { digits: String },
    Interrupt,
    HangUp,
    Microphone { rate: u32 },
}

/// Runs the call, passing the browser's actions in and what the phone hears out, until either
/// side ends it. Once the browser speaks through its microphone, the agent's audio (`played`,
/// 8 kHz) goes back to it as binary messages of the same form.
async fn bridge(mut browser: WebSocket, dial: Dial, played: mpsc::Receiver<Vec<i16>>) {
    // Closed at once on ConversationRelay numbers, where the phone plays no audio.
    let mut played = Some(played);
    let (act, actions) = mpsc::channel(64);
    let (hear, mut events) = mpsc::channel(256);
    let mut call = tokio::spawn(dev_phone::call(dial, actions, hear));
    let mut act = Some(act);
    let mut microphone: Option<Resampler> = None;
    loop {
        tokio::select! {
            samples = async { played.as_mut()?.recv().await }, if microphone.is_some() && played.is_some() => {
                let Some(samples) = samples else {
                    played = None;
                    continue;
                };
                let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
                if browser.send(Message::Binary(bytes.into())).await.is_err() {
                    act = None;
                }
            }
            outcome = &mut call => {
                let message = match outcome {
                    Ok(Ok(outcome)) => json!({ "type": "ended", "summary": outcome.summary }),
                    Ok(Err(e)) => json!({ "type": "failed", "error": format!("{e:#}") }),
                    Err(e) => json!({ "type": "failed", "error": e.to_string() }),
                };
                while let Ok(event) = events.try_recv() {
                    let _ = browser.send(Message::Text(event_json(event).to_string().into())).await;
                }
                let _ = browser.send(Message::Text(message.to_string().into())).await;
                let _ = browser.send(Message::Close(None)).await;
                return;
            }
            event = events.recv() => {
                if let Some(event) = event
                    && browser.send(Message::Text(event_json(event).to_string().into())).await.is_err()
                {
                    act = None;
                }
            }
            message = browser.recv(), if act.is_some() => {
                let action = match message {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<FromBrowser>(&text) {
                        Ok(FromBrowser::Say { text }) => CallerAction::Say(text),
                        Ok(FromBrowser::Digits { digits }) => CallerAction::Digits(digits),
                        Ok(FromBrowser::Interrupt) => CallerAction::Interrupt,
                        Ok(FromBrowser::HangUp) => CallerAction::HangUp,
                        Ok(FromBrowser::Microphone { rate }) => {
                            match Resampler::new(rate, PHONE_RATE) {
                                Ok(resampler) => microphone = Some(resampler),
                                Err(e) => tracing::debug!(error = %e, "a test call's microphone has a rate that cannot be used"),
                            }
                            continue;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "a test call ignored a browser message");
                            continue;
                        }
                    },
                    Some(Ok(Message::Binary(bytes))) => {
                        let Some(resampler) = microphone.as_mut() else { continue };
                        let voice: Vec<i16> = bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                        let mut samples = Vec::with_capacity(voice.len());
                        resampler.process(&voice, &mut samples);
                        CallerAction::Audio(samples)
                    }
                    Some(Ok(_)) => continue,
                    // The browser went away: the caller hangs up.
                    _ => CallerAction::HangUp,
                };
                let hang_up = action == CallerAction::HangUp;
                if let Some(sender) = &act {
                    let _ = sender.send(action).await;
                }
                if hang_up {
                    act = None;
                }
            }
        }
    }
}

fn event_json(event: PhoneEvent) -> serde_json::Value {
    match event {
        PhoneEvent::Connected { call_id, greeting } => json!({ "type": "connected", "call_id": call_id, "greeting": greeting }),
        PhoneEvent::Refused(text) => json!({ "type": "refused", "text": text }),
        PhoneEvent::Token(text) => json!({ "type": "token", "text": text }),
        PhoneEvent::Speaking => json!({ "type": "speaking" }),
        PhoneEvent::UtteranceEnd => json!({ "type": "utterance_end" }),
        PhoneEvent::Interrupted { heard } => json!({ "type": "interrupted", "heard": heard }),
        PhoneEvent::Language(locale) => json!({ "type": "language", "locale": locale }),
    }
}
