//! Speech vendors behind two small interfaces, [`SpeechToText`] and [`TextToSpeech`], which the
//! Media Streams pipeline listens and speaks through (and the embedded engines will implement).
//! [`OpenAiSpeech`] speaks the OpenAI-compatible audio API that hosted and self-hosted servers
//! share: `POST {base_url}/audio/transcriptions` (multipart: a WAV of the utterance, `model`,
//! `language`; answers `{"text": …}` or plain text) and `POST {base_url}/audio/speech` (JSON;
//! answers audio as it is synthesised: raw 16-bit PCM, 24 kHz unless the server says otherwise,
//! or a WAV whose header gives the rate). Requests go through the egress policy; an error answer
//! is reduced to the API's own message, as for models.

use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::egress::{Egress, Refused};
use crate::audio::Audio;
use crate::audio::wav;

/// Why a speech request gave no (complete) answer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SpeechError {
    #[error("could not reach the speech server: {0}")]
    Unreachable(String),
    #[error("the speech server did not answer in time")]
    Timeout,
    #[error("the speech server answered HTTP {status}: {reason}")]
    Refused { status: u16, reason: String },
    #[error("the speech server's answer is unreadable: {0}")]
    Unreadable(String),
    #[error(transparent)]
    NotAllowed(#[from] Refused),
}

type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, SpeechError>> + Send + 'a>>;

/// Turns an utterance into text.
pub trait SpeechToText: Send + Sync {
    /// The words of `utterance`, spoken in `language` (a BCP 47 tag such as `en-US`).
    fn transcribe<'a>(&'a self, utterance: &'a Audio, language: &'a str) -> Pending<'a, String>;
}

/// Turns text into audio, streamed: pieces of audio as they are synthesised, then the end of
/// the channel (or an error). Dropping the receiver stops the synthesis.
pub trait TextToSpeech: Send + Sync {
    fn synthesize(&self, text: &str, voice: &str) -> mpsc::Receiver<Result<Audio, SpeechError>>;
}

/// An OpenAI-compatible audio endpoint.
#[derive(Clone)]
pub struct OpenAiSpeech {
    egress: Egress,
    base_url: String,
    api_key: Option<String>,
    pub transcription_model: String,
    pub speech_model: String,
    pub timeout: Duration,
}

/// PCM answers without a header are at this rate (OpenAI's `pcm` format).
const RAW_PCM_RATE: u32 = 24_000;

impl OpenAiSpeech {
    pub fn new(egress: Egress, base_url: &str, api_key: Option<String>, transcription_model: &str, speech_model: &str) -> Self {
        Self {
            egress,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            transcription_model: transcription_model.to_owned(),
            speech_model: speech_model.to_owned(),
            timeout: Duration::from_secs(15),
        }
    }

    fn post(&self, path: &str) -> Result<reqwest::RequestBuilder, SpeechError> {
        let url = url::Url::parse(&format!("{}{path}", self.base_url)).map_err(|e| SpeechError::Unreachable(e.to_string()))?;
        let mut request = self.egress.client_for(&url)?.post(url);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        Ok(request)
    }

    async fn send(&self, request: reqwest::RequestBuilder, deadline: Instant) -> Result<reqwest::Response, SpeechError> {
        let response = tokio::time::timeout_at(deadline, request.send()).await.map_err(|_| SpeechError::Timeout)?.map_err(|e| {
            Refused::behind(&e).cloned().map_or_else(|| SpeechError::Unreachable(e.without_url().to_string()), SpeechError::from)
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        Err(SpeechError::Refused { status, reason: super::llm::error_reason(response, deadline).await })
    }
}

/// Which of a provider's abilities a check found wanting, and why.
#[derive(Debug, PartialEq)]
pub struct CheckFailed {
    pub ability: Ability,
    pub error: SpeechError,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ability {
    Transcribe,
    Speak,
}

impl OpenAiSpeech {
    /// Asks the server to do what the provider is for: transcribe half a second of silence
    /// (any text will do) and synthesise a word with `voice` (some audio must come). This checks
    /// the URL, the key, the models and the voice at once.
    pub async fn check(&self, transcribes: bool, speaks: Option<&str>) -> Result<(), CheckFailed> {
        if transcribes {
            let silence = Audio { rate: 8000, samples: vec![0; 4000] };
            self.transcribe(&silence, "en").await.map_err(|error| CheckFailed { ability: Ability::Transcribe, error })?;
        }
        if let Some(voice) = speaks {
            let failed = |error| CheckFailed { ability: Ability::Speak, error };
            let mut audio = self.synthesize("OK.", voice);
            let mut samples = 0;
            while let Some(piece) = audio.recv().await {
                samples += piece.map_err(failed)?.samples.len();
            }
            if samples == 0 {
                return Err(failed(SpeechError::Unreadable("the answer held no audio".into())));
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct TranscriptionBody {
    text: String,
}

impl SpeechToText for OpenAiSpeech {
    fn transcribe<'a>(&'a self, utterance: &'a Audio, language: &'a str) -> Pending<'a, String> {
        Box::pin(async move {
            let deadline = Instant::now() + self.timeout;
            let wav = reqwest::multipart::Part::bytes(wav::encode(utterance))
                .file_name("utterance.wav")
                .mime_str("audio/wav")
                .expect("a valid MIME type");
            // The API takes ISO 639-1 codes: `en-US` is asked for as `en`.
            let code = language.split(['-', '_']).next().unwrap_or(language).to_ascii_lowercase();
            let form = reqwest::multipart::Form::new()
                .part("file", wav)
                .text("model", self.transcription_model.clone())
                .text("language", code)
                .text("response_format", "json");
            let response = self.send(self.post("/audio/transcriptions")?.multipart(form), deadline).await?;
            let body = tokio::time::timeout_at(deadline, response.bytes()).await.map_err(|_| SpeechError::Timeout)?;
            let body = body.map_err(|e| SpeechError::Unreachable(e.without_url().to_string()))?;
            match serde_json::from_slice::<TranscriptionBody>(&body) {
                Ok(parsed) => Ok(parsed.text.trim().to_owned()),
                // Servers asked for JSON that answer plain text anyway.
                Err(_) => match std::str::from_utf8(&body) {
                    Ok(text) if !text.trim_start().starts_with(['{', '[']) => Ok(text.trim().to_owned()),
                    _ => Err(SpeechError::Unreadable("neither {\"text\": …} nor plain text".into())),
                },
            }
        })
    }
}

impl TextToSpeech for OpenAiSpeech {
    fn synthesize(&self, text: &str, voice: &str) -> mpsc::Receiver<Result<Audio, SpeechError>> {
        let (tx, rx) = mpsc::channel(32);
        let body = json!({ "model": self.speech_model, "input": text, "voice": voice, "response_format": "pcm" });
        let client = self.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + client.timeout;
            let response = match client.post("/audio/speech") {
                Ok(request) => client.send(request.json(&body), deadline).await,
                Err(e) => Err(e),
            };
            let response = match response {
                Ok(response) => response,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let mut reader = PcmReader::default();
            let mut bytes = response.bytes_stream();
            loop {
                match tokio::time::timeout_at(deadline, bytes.next()).await {
                    Err(_) => {
                        let _ = tx.send(Err(SpeechError::Timeout)).await;
                        return;
                    }
                    Ok(None) => return,
                    Ok(Some(Err(e))) => {
                        let _ = tx.send(Err(SpeechError::Unreachable(e.without_url().to_string()))).await;
                        return;
                    }
                    Ok(Some(Ok(chunk))) => match reader.push(&chunk) {
                        Ok(Some(audio)) => {
                            if tx.send(Ok(audio)).await.is_err() {
                                return; // the listener is gone: stop quietly
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    },
                }
            }
        });
        rx
    }
}

/// Reads streamed audio: raw 16-bit little-endian PCM at [`RAW_PCM_RATE`], or a WAV (its header
/// gives the rate), with samples split across chunks anywhere.
#[derive(Default)]
struct PcmReader {
    pending: Vec<u8>,
    rate: Option<u32>,
}

impl PcmReader {
    fn push(&mut self, chunk: &[u8]) -> Result<Option<Audio>, SpeechError> {
        self.pending.extend_from_slice(chunk);
        if self.rate.is_none() {
            if self.pending.len() < 4 {
                return Ok(None);
            }
            if &self.pending[..4] != b"RIFF" {
                self.rate = Some(RAW_PCM_RATE);
            } else {
                let Some((rate, data_start)) = wav::format(&self.pending).map_err(SpeechError::Unreadable)? else { return Ok(None) };
                self.pending.drain(..data_start);
                self.rate = Some(rate);
            }
        }
        let whole = self.pending.len() / 2 * 2;
        if whole == 0 {
            return Ok(None);
        }
        let samples = self.pending[..whole].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        self.pending.drain(..whole);
        Ok(Some(Audio { rate: self.rate.expect("set above"), samples }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::extract::{Multipart, State};
    use axum::response::IntoResponse;
    use axum::routing::post;

    use super::*;

    /// Named parts of the requests the fake received, in order.
    type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

    /// What the fake received, and how it answers speech requests.
    #[derive(Clone, Default)]
    struct Fake {
        received: Received,
        speech: Arc<Mutex<(Option<&'static str>, Vec<u8>)>>,
    }

    /// An OpenAI-style audio server: multipart transcriptions, and speech streamed in pieces of
    /// odd sizes (samples split between pieces).
    async fn fake_server(fake: Fake) -> String {
        async fn transcribe(State(fake): State<Fake>, mut form: Multipart) -> impl IntoResponse {
            while let Some(field) = form.next_field().await.unwrap() {
                let name = field.name().unwrap_or_default().to_owned();
                let value = field.bytes().await.unwrap().to_vec();
                fake.received.lock().unwrap().push((name, value));
            }
            axum::Json(json!({ "text": " Hello there. " }))
        }
        async fn speak(State(fake): State<Fake>, axum::Json(body): axum::Json<serde_json::Value>) -> impl IntoResponse {
            fake.received.lock().unwrap().push(("speech".into(), body.to_string().into_bytes()));
            let (content_type, audio) = fake.speech.lock().unwrap().clone();
            let pieces: Vec<Result<Vec<u8>, std::io::Error>> = audio.chunks(7).map(|c| Ok(c.to_vec())).collect();
            ([("content-type", content_type.unwrap_or("audio/pcm"))], Body::from_stream(futures_util::stream::iter(pieces)))
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let app =
            axum::Router::new().route("/v1/audio/transcriptions", post(transcribe)).route("/v1/audio/speech", post(speak)).with_state(fake);
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn an_utterance_is_sent_as_a_wav_with_its_language() {
        let fake = Fake::default();
        let url = fake_server(fake.clone()).await;
        let speech = OpenAiSpeech::new(Egress::unrestricted(), &url, Some("sk-test".into()), "whisper-1", "tts-1");
        let utterance = Audio { rate: 8000, samples: vec![0, 1000, -1000, 32767] };
        assert_eq!(speech.transcribe(&utterance, "fr-FR").await, Ok("Hello there.".to_owned()));
        let received = fake.received.lock().unwrap().clone();
        let field = |name: &str| received.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap();
        assert_eq!((field("model"), field("language")), (b"whisper-1".to_vec(), b"fr".to_vec()));
        let file = field("file");
        assert_eq!(wav::format(&file), Ok(Some((8000, wav::WAV_HEADER))));
        assert_eq!(&file[wav::WAV_HEADER..], &[0, 0, 0xE8, 0x03, 0x18, 0xFC, 0xFF, 0x7F]);
    }

    #[tokio::test]
    async fn speech_streams_as_samples_from_raw_pcm_or_a_wav() {
        let fake = Fake::default();
        let url = fake_server(fake.clone()).await;
        let speech = OpenAiSpeech::new(Egress::unrestricted(), &url, None, "whisper-1", "tts-1");
        let samples: Vec<i16> = (0..100).map(|i| i * 300 - 15_000).collect();
        for (content_type, body, rate) in [
            (None, samples.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>(), RAW_PCM_RATE),
            (Some("audio/wav"), wav::encode(&Audio { rate: 22_050, samples: samples.clone() }), 22_050),
        ] {
            *fake.speech.lock().unwrap() = (content_type, body);
            let mut pieces = speech.synthesize("Hello.", "alloy");
            let mut heard = Vec::new();
            while let Some(piece) = pieces.recv().await {
                let piece = piece.unwrap();
                assert_eq!(piece.rate, rate);
                heard.extend(piece.samples);
            }
            assert_eq!(heard, samples);
        }
        let asked = fake.received.lock().unwrap().iter().find(|(n, _)| n == "speech").map(|(_, v)| v.clone()).unwrap();
        let asked: serde_json::Value = serde_json::from_slice(&asked).unwrap();
        assert_eq!(asked, json!({ "model": "tts-1", "input": "Hello.", "voice": "alloy", "response_format": "pcm" }));
    }

    #[tokio::test]
    async fn refusals_and_private_targets_are_errors() {
        let closed = OpenAiSpeech::new(Egress::new(Default::default()), "http://127.0.0.1:9/v1", None, "m", "m");
        let utterance = Audio { rate: 8000, samples: vec![0; 160] };
        assert!(matches!(closed.transcribe(&utterance, "en-US").await, Err(SpeechError::NotAllowed(_))));
        let mut refused = closed.synthesize("Hi", "alloy");
        assert!(matches!(refused.recv().await, Some(Err(SpeechError::NotAllowed(_)))));
    }

    /// Fuzz target: any bytes a speech server streams, cut anywhere, become samples or a clear
    /// error, never a panic; raw PCM comes out exactly.
    #[test]
    fn fuzz_any_speech_stream() {
        bolero::check!().with_type::<(Vec<u8>, Vec<u8>)>().for_each(|(stream, cuts)| {
            let mut reader = PcmReader::default();
            let (mut rest, mut out) = (stream.as_slice(), Vec::new());
            for cut in cuts {
                let (piece, tail) = rest.split_at(usize::from(*cut).min(rest.len()));
                rest = tail;
                match reader.push(piece) {
                    Ok(audio) => out.extend(audio.map(|a| a.samples).unwrap_or_default()),
                    Err(_) => return,
                }
            }
            if let Ok(Some(audio)) = reader.push(rest) {
                out.extend(audio.samples);
            }
            if !stream.starts_with(b"RIFF") && stream.len() >= 4 {
                let expected: Vec<i16> = stream.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                assert_eq!(out, expected);
            }
        });
    }
}
