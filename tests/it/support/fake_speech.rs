//! A fake speech server on 127.0.0.1 that speaks three vendors' real wire protocols:
//! - OpenAI-compatible (`/v1/audio/transcriptions`, `/v1/audio/speech`): multipart uploads
//!   answered with `{"text": …}`, speech streamed in chunks that split samples, errors in
//!   OpenAI's shape (401 for a wrong key, 404 for an unknown model). Two answer styles seen in
//!   the wild: raw 24 kHz PCM (OpenAI's `pcm`) and a WAV at its own rate (servers built on Piper
//!   answer 22.05 kHz WAV even when asked for `pcm`). Every request is checked against OpenAI's
//!   published request schemas (`openai_schema`) and refused with a 400 if they forbid it.
//! - Deepgram's streaming recognition (`/v1/listen` WebSocket, `Authorization: Token`): binary
//!   16-bit PCM in, an interim `Results` (`is_final: false`) while audio arrives, then on
//!   `CloseStream` the final results in two parts, `Metadata`, and a close; a wrong key or model
//!   refuses the handshake with Deepgram's `{"err_code", "err_msg"}`.
//! - ElevenLabs' streamed synthesis (`/v1/text-to-speech/{voice}/stream?output_format=pcm_16000`,
//!   `xi-api-key`): raw 16 kHz PCM in chunks; errors as `{"detail": {"status", "message"}}`.
//!
//! Its "voice" is a code the tests can read back through any telephone path: each byte of the
//! text is two 30 ms steps of a constant level, one per half-byte ([`speak`]); its recognition
//! reads the steps back ([`hear`]). So what the agent "hears" is exactly what survived μ-law,
//! resampling, framing, the speech gate and barge-in.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use switchboard::audio::{Audio, wav};

use super::openai_schema;

pub const API_KEY: &str = "sk-speech-test";
pub const TRANSCRIPTION_MODEL: &str = "whisper-1";
pub const SPEECH_MODEL: &str = "tts-1";
pub const DEEPGRAM_MODEL: &str = "nova-3";
pub const ELEVENLABS_MODEL: &str = "eleven_flash_v2_5";

/// How the server answers speech requests.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum SpeechStyle {
    /// Raw 16-bit PCM at 24 kHz, as OpenAI's `pcm`.
    #[default]
    RawPcm24k,
    /// A WAV at 22.05 kHz whatever was asked.
    Wav22k,
}

#[derive(Clone, Default)]
pub struct FakeSpeech {
    pub base_url: String,
    style: Arc<Mutex<SpeechStyle>>,
    /// Texts asked to be spoken, with their voice.
    spoken: Arc<Mutex<Vec<(String, String)>>>,
    /// Transcriptions answered, with the language asked for.
    heard: Arc<Mutex<Vec<(String, String)>>>,
    /// What every utterance is heard as, when set: a recogniser's answer to real speech, which
    /// the coded voice's reading cannot give.
    hears_as: Arc<Mutex<Option<String>>>,
    /// Texts starting with this are synthesised only after the delay (OpenAI-compatible path).
    slow_to_speak: Arc<Mutex<Option<(String, Duration)>>>,
}

impl FakeSpeech {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeSpeech { base_url: format!("http://{}/v1", listener.local_addr().unwrap()), ..Default::default() };
        let app = Router::new()
            .route("/v1/audio/transcriptions", post(transcribe))
            .route("/v1/audio/speech", post(synthesize))
            .route("/v1/listen", axum::routing::get(deepgram_listen))
            .route("/v1/text-to-speech/{voice}/stream", post(elevenlabs_stream))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// Transcribes every utterance from now on as `text` (for tests that play real speech).
    pub fn hear_every_utterance_as(&self, text: &str) {
        *self.hears_as.lock().unwrap() = Some(text.to_owned());
    }

    /// Answers a request to speak a text that starts with `start` only after `delay`, as a
    /// loaded synthesiser does: the agent's voice pauses between two sentences.
    pub fn slow_to_speak(&self, start: &str, delay: Duration) {
        *self.slow_to_speak.lock().unwrap() = Some((start.to_owned(), delay));
    }

    pub fn answer_like(&self, style: SpeechStyle) {
        *self.style.lock().unwrap() = style;
    }

    /// Every text synthesised so far, with its voice.
    pub fn spoken(&self) -> Vec<(String, String)> {
        self.spoken.lock().unwrap().clone()
    }

    /// Every transcription answered so far, with its language.
    pub fn heard(&self) -> Vec<(String, String)> {
        self.heard.lock().unwrap().clone()
    }
}

/// Samples per code step at `rate`: 10 ms.
fn step(rate: u32) -> usize {
    rate as usize / 100
}

const BASE_LEVEL: f64 = 4000.0;
const LEVEL_STEP: f64 = 1300.0;
/// Code is never quieter than this, even where a resampler's filter rings between steps.
const SILENT_BELOW: i16 = 1000;

/// The fake voice: `text` as levels, two 10 ms steps a byte, at `rate`.
pub fn speak(text: &str, rate: u32) -> Vec<i16> {
    let mut samples = Vec::new();
    for byte in text.bytes() {
        for nibble in [byte >> 4, byte & 0x0F] {
            let level = (BASE_LEVEL + f64::from(nibble) * LEVEL_STEP) as i16;
            samples.extend(std::iter::repeat_n(level, step(rate)));
        }
    }
    samples
}

/// The fake recognition: the text of every stretch of code in `audio`, each read from its own
/// start (so pieces synthesised apart, with a gap between them, read back joined).
pub fn hear(audio: &Audio) -> String {
    let step = step(audio.rate);
    let mut nibbles = Vec::new();
    let mut at = 0;
    while at < audio.samples.len() {
        let Some(start) = audio.samples[at..].iter().position(|s| s.abs() >= SILENT_BELOW).map(|i| at + i) else { break };
        let length = audio.samples[start..].iter().position(|s| s.abs() < SILENT_BELOW).unwrap_or(audio.samples.len() - start);
        let steps = (length + step / 2) / step;
        for k in 0..steps {
            let mut middle: Vec<i16> =
                audio.samples[start + k * step + step / 4..(start + k * step + step * 3 / 4).min(start + length)].to_vec();
            if middle.is_empty() {
                break;
            }
            middle.sort_unstable();
            let level = middle[middle.len() / 2];
            nibbles.push(((f64::from(level) - BASE_LEVEL) / LEVEL_STEP).round().clamp(0.0, 15.0) as u8);
        }
        at = start + length;
    }
    let bytes: Vec<u8> = nibbles.chunks_exact(2).map(|pair| pair[0] << 4 | pair[1]).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn openai_error(status: StatusCode, message: &str, code: &str) -> Response {
    (status, axum::Json(json!({ "error": { "message": message, "type": "invalid_request_error", "param": null, "code": code } })))
        .into_response()
}

fn authorised(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {API_KEY}"))
}

fn unauthorised() -> Response {
    openai_error(StatusCode::UNAUTHORIZED, "Incorrect API key provided.", "invalid_api_key")
}

async fn transcribe(State(fake): State<FakeSpeech>, headers: HeaderMap, mut form: Multipart) -> Response {
    if !authorised(&headers) {
        return unauthorised();
    }
    let (mut file, mut model, mut language) = (None, String::new(), String::new());
    let mut fields = Vec::new();
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            file = field.bytes().await.ok();
            fields.push((name, None));
            continue;
        }
        let text = field.text().await.unwrap_or_default();
        match name.as_str() {
            "model" => model = text.clone(),
            "language" => language = text.clone(),
            _ => {}
        }
        fields.push((name, Some(text)));
    }
    let problems = openai_schema::transcription_violations(&fields);
    if !problems.is_empty() {
        return openai_error(StatusCode::BAD_REQUEST, &problems.join("; "), "invalid_request_error");
    }
    if model != TRANSCRIPTION_MODEL {
        return openai_error(
            StatusCode::NOT_FOUND,
            &format!("The model `{model}` does not exist or you do not have access to it."),
            "model_not_found",
        );
    }
    let Some(Ok(audio)) = file.map(|bytes| wav::decode(&bytes)) else {
        return openai_error(StatusCode::BAD_REQUEST, "Invalid file format.", "invalid_value");
    };
    let text = fake.hears_as.lock().unwrap().clone().unwrap_or_else(|| hear(&audio));
    fake.heard.lock().unwrap().push((text.clone(), language));
    axum::Json(json!({ "text": text })).into_response()
}

async fn synthesize(State(fake): State<FakeSpeech>, headers: HeaderMap, axum::Json(request): axum::Json<Value>) -> Response {
    if !authorised(&headers) {
        return unauthorised();
    }
    let problems = openai_schema::speech_violations(&request);
    if !problems.is_empty() {
        return openai_error(StatusCode::BAD_REQUEST, &problems.join("; "), "invalid_request_error");
    }
    if request["model"] != SPEECH_MODEL {
        return openai_error(StatusCode::NOT_FOUND, &format!("The model `{}` does not exist.", request["model"]), "model_not_found");
    }
    let (text, voice) =
        (request["input"].as_str().unwrap_or_default().to_owned(), request["voice"].as_str().unwrap_or_default().to_owned());
    fake.spoken.lock().unwrap().push((text.clone(), voice));
    let delay = fake.slow_to_speak.lock().unwrap().clone().filter(|(start, _)| text.starts_with(start.as_str())).map(|(_, delay)| delay);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let style = *fake.style.lock().unwrap();
    let (content_type, bytes) = match style {
        SpeechStyle::RawPcm24k => ("audio/pcm", pcm_bytes(&speak(&text, 24_000))),
        SpeechStyle::Wav22k => ("audio/wav", wav::encode(&Audio { rate: 22_050, samples: speak(&text, 22_050) })),
    };
    streamed(content_type, bytes)
}

/// Raw 16-bit little-endian samples streamed in odd-sized chunks (samples split between
/// them), a few milliseconds apart, as a synthesiser streams.
fn streamed(content_type: &'static str, bytes: Vec<u8>) -> Response {
    let chunks: Vec<Vec<u8>> = bytes.chunks(4801).map(<[u8]>::to_vec).collect();
    let stream = futures_util::stream::unfold(chunks.into_iter(), |mut chunks| async move {
        let chunk = chunks.next()?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        Some((Ok::<_, std::io::Error>(chunk), chunks))
    });
    ([("content-type", content_type)], Body::from_stream(stream)).into_response()
}

fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

async fn elevenlabs_stream(
    State(fake): State<FakeSpeech>,
    axum::extract::Path(voice): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    let refuse = |status: StatusCode, code: &str, message: &str| {
        (status, axum::Json(json!({ "detail": { "status": code, "message": message } }))).into_response()
    };
    if headers.get("xi-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_api_key", "Invalid API key");
    }
    if request["model_id"] != ELEVENLABS_MODEL {
        return refuse(StatusCode::BAD_REQUEST, "model_not_found", "A model with this ID does not exist");
    }
    if query.get("output_format").map(String::as_str) != Some("pcm_16000") {
        return refuse(StatusCode::BAD_REQUEST, "invalid_output_format", "Unsupported output format");
    }
    let text = request["text"].as_str().unwrap_or_default().to_owned();
    fake.spoken.lock().unwrap().push((text.clone(), voice));
    streamed("audio/pcm", pcm_bytes(&speak(&text, 16_000)))
}

async fn deepgram_listen(
    State(fake): State<FakeSpeech>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let refuse = |status: StatusCode, code: &str, message: &str| {
        (status, axum::Json(json!({ "err_code": code, "err_msg": message, "request_id": "fake" }))).into_response()
    };
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Token {API_KEY}")) {
        return refuse(StatusCode::UNAUTHORIZED, "INVALID_AUTH", "Invalid credentials.");
    }
    if query.get("model").map(String::as_str) != Some(DEEPGRAM_MODEL) {
        return refuse(StatusCode::BAD_REQUEST, "Bad Request", "No such model/language/tier combination found.");
    }
    let rate: u32 = query.get("sample_rate").and_then(|r| r.parse().ok()).unwrap_or(16_000);
    let language = query.get("language").cloned().unwrap_or_default();
    upgrade.on_upgrade(move |socket| deepgram_session(fake, socket, rate, language))
}

async fn deepgram_session(fake: FakeSpeech, mut socket: axum::extract::ws::WebSocket, rate: u32, language: String) {
    use axum::extract::ws::Message;
    let results = |transcript: &str, is_final: bool| {
        let body = json!({ "type": "Results", "channel_index": [0, 1], "duration": 1.0, "start": 0.0, "is_final": is_final,
            "speech_final": is_final, "channel": { "alternatives": [{ "transcript": transcript, "confidence": 0.99, "words": [] }] } });
        Message::Text(body.to_string().into())
    };
    let mut samples: Vec<i16> = Vec::new();
    let mut interim_sent = false;
    while let Some(Ok(message)) = socket.recv().await {
        match message {
            Message::Binary(bytes) => {
                samples.extend(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
                if !interim_sent {
                    interim_sent = true;
                    let _ = socket.send(results("…", false)).await;
                }
            }
            Message::Text(text) if text.contains("CloseStream") => break,
            Message::Close(_) => return,
            _ => {}
        }
    }
    let text = hear(&Audio { rate, samples });
    fake.heard.lock().unwrap().push((text.clone(), language));
    // The final transcript in two results, as Deepgram finalises segment by segment.
    let cut = text.char_indices().filter(|(_, c)| *c == ' ').map(|(i, _)| i).nth(1).unwrap_or(text.len());
    for part in [&text[..cut], &text[cut..]] {
        let _ = socket.send(results(part, true)).await;
    }
    let metadata = json!({ "type": "Metadata", "request_id": "fake", "duration": 1.0, "channels": 1 });
    let _ = socket.send(Message::Text(metadata.to_string().into())).await;
    let _ = socket.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    use switchboard::audio::g711;
    use switchboard::audio::resample::Resampler;

    #[test]
    fn the_code_reads_back_through_a_telephone_line() {
        for rate in [8000, 22_050, 24_000] {
            let audio = Audio { rate, samples: [vec![0; 500], speak("Hi, I'm Ava! ", rate), speak("Zebra~", rate), vec![0; 900]].concat() };
            assert_eq!(hear(&audio), "Hi, I'm Ava! Zebra~");
            // Two sentences synthesised apart, resampled to 8 kHz and sent as μ-law.
            let mut line = Vec::new();
            for sentence in ["Hi, I'm Ava! ", "Zebra~"] {
                let mut resampler = Resampler::new(rate, 8000).unwrap();
                resampler.process(&speak(sentence, rate), &mut line);
                resampler.finish(&mut line);
            }
            let mut mulaw = Vec::new();
            g711::encode_into(&line, &mut mulaw);
            let mut heard = Vec::new();
            g711::decode_into(&mulaw, &mut heard);
            assert_eq!(hear(&Audio { rate: 8000, samples: heard }), "Hi, I'm Ava! Zebra~", "from {rate} Hz");
        }
    }
}
