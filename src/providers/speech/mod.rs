//! Speech vendors behind two small interfaces, [`SpeechToText`] and [`TextToSpeech`], which the
//! Media Streams pipeline listens and speaks through: the engines inside the server (`embedded`),
//! the OpenAI-compatible audio API that hosted and self-hosted servers share (`openai`),
//! Deepgram's streaming recognition (`deepgram`) and ElevenLabs' streamed synthesis
//! (`elevenlabs`). [`SpeechAccount`] makes the client a stored provider calls for, and
//! [`check`] verifies one when it is saved. Requests go through the egress policy; an error
//! answer is reduced to the vendor's own message, as for models.

mod deepgram;
mod elevenlabs;
pub mod embedded;
mod openai;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use self::openai::OpenAiSpeech;
use super::egress::{Egress, Refused};
use crate::audio::{Audio, wav};
use crate::domain::provider::SpeechProviderKind;

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
    #[error("the embedded speech engine failed: {0}")]
    Engine(String),
}

pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, SpeechError>> + Send + 'a>>;

/// Turns an utterance into text.
pub trait SpeechToText: Send + Sync {
    /// The words of `utterance`, spoken in `language` (a BCP 47 tag such as `en-US`).
    fn transcribe<'a>(&'a self, utterance: &'a Audio, language: &'a str) -> Pending<'a, String>;
}

/// Turns text into audio, streamed: pieces of audio as they are synthesised, then the end of
/// the channel (or an error). Dropping the receiver stops the synthesis.
pub trait TextToSpeech: Send + Sync {
    fn synthesize(&self, text: &str, voice: &SpeakingVoice) -> mpsc::Receiver<Result<Audio, SpeechError>>;
}

/// Who speaks: a vendor's voice by name, in the language of the words (vendors whose voices
/// speak any language ignore it; the embedded engines choose by it).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct SpeakingVoice {
    pub name: String,
    /// A BCP 47 tag such as `en-US`.
    pub language: String,
}

impl SpeakingVoice {
    pub fn new(name: impl Into<String>, language: impl Into<String>) -> Self {
        Self { name: name.into(), language: language.into() }
    }
}

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A stored speech provider's way in: its vendor, URL, key and models.
pub struct SpeechAccount {
    pub kind: SpeechProviderKind,
    pub base_url: String,
    pub api_key: Option<String>,
    pub transcription_model: Option<String>,
    pub speech_model: Option<String>,
}

impl SpeechAccount {
    /// The client that transcribes through this account, if it does.
    pub fn recognizer(&self, egress: &Egress) -> Option<Arc<dyn SpeechToText>> {
        let model = self.transcription_model.as_deref()?;
        Some(match self.kind {
            SpeechProviderKind::OpenAi => Arc::new(OpenAiSpeech::new(egress.clone(), &self.base_url, self.api_key.clone(), model, "")),
            SpeechProviderKind::Deepgram => Arc::new(deepgram::Deepgram::new(egress.clone(), &self.base_url, self.api_key.clone(), model)),
            SpeechProviderKind::ElevenLabs => return None,
        })
    }

    /// The client that speaks through this account, if it does.
    pub fn synthesizer(&self, egress: &Egress) -> Option<Arc<dyn TextToSpeech>> {
        let model = self.speech_model.as_deref()?;
        Some(match self.kind {
            SpeechProviderKind::OpenAi => Arc::new(OpenAiSpeech::new(egress.clone(), &self.base_url, self.api_key.clone(), "", model)),
            SpeechProviderKind::ElevenLabs => {
                Arc::new(elevenlabs::ElevenLabs::new(egress.clone(), &self.base_url, self.api_key.clone(), model))
            }
            SpeechProviderKind::Deepgram => return None,
        })
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

/// Asks the vendor to do what the account is for: transcribe half a second of silence (any
/// text will do) and say a word with `voice` (some audio must come). This checks the URL, the
/// key, the models and the voice at once.
pub async fn check(egress: &Egress, account: &SpeechAccount, voice: Option<&str>) -> Result<(), CheckFailed> {
    if let Some(stt) = account.recognizer(egress) {
        let silence = Audio { rate: 8000, samples: vec![0; 4000] };
        stt.transcribe(&silence, "en").await.map_err(|error| CheckFailed { ability: Ability::Transcribe, error })?;
    }
    if let (Some(tts), Some(voice)) = (account.synthesizer(egress), voice) {
        let failed = |error| CheckFailed { ability: Ability::Speak, error };
        let mut audio = tts.synthesize("OK.", &SpeakingVoice::new(voice, "en-US"));
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

/// A vendor URL under `base_url`, as a request the egress policy lets through.
fn request(egress: &Egress, method: reqwest::Method, base_url: &str, path: &str) -> Result<reqwest::RequestBuilder, SpeechError> {
    let url = url::Url::parse(&format!("{}{path}", base_url.trim_end_matches('/'))).map_err(|e| SpeechError::Unreachable(e.to_string()))?;
    Ok(egress.client_for(&url)?.request(method, url))
}

/// Sends a request; an answer that is not a success becomes the vendor's reason.
async fn send(request: reqwest::RequestBuilder, deadline: Instant) -> Result<reqwest::Response, SpeechError> {
    let response = tokio::time::timeout_at(deadline, request.send()).await.map_err(|_| SpeechError::Timeout)?.map_err(|e| {
        Refused::behind(&e).cloned().map_or_else(|| SpeechError::Unreachable(e.without_url().to_string()), SpeechError::from)
    })?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    Err(SpeechError::Refused { status, reason: super::llm::error_reason(response, deadline).await })
}

/// Sends a synthesis request and streams its audio to a channel: raw 16-bit PCM at `raw_rate`
/// or a WAV, as it arrives.
fn stream_speech(request: Result<reqwest::RequestBuilder, SpeechError>, raw_rate: u32) -> mpsc::Receiver<Result<Audio, SpeechError>> {
    let (tx, rx) = mpsc::channel(32);
    tokio::spawn(async move {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let response = match request {
            Ok(request) => send(request, deadline).await,
            Err(e) => Err(e),
        };
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let mut reader = PcmReader::new(raw_rate);
        let mut bytes = response.bytes_stream();
        loop {
            let failure = match tokio::time::timeout_at(deadline, bytes.next()).await {
                Err(_) => SpeechError::Timeout,
                Ok(None) => return,
                Ok(Some(Err(e))) => SpeechError::Unreachable(e.without_url().to_string()),
                Ok(Some(Ok(chunk))) => match reader.push(&chunk) {
                    Ok(Some(audio)) => {
                        if tx.send(Ok(audio)).await.is_err() {
                            return; // the listener is gone: stop quietly
                        }
                        continue;
                    }
                    Ok(None) => continue,
                    Err(e) => e,
                },
            };
            let _ = tx.send(Err(failure)).await;
            return;
        }
    });
    rx
}

/// Reads streamed audio: raw 16-bit little-endian PCM at a known rate, or a WAV (its header
/// gives the rate), with samples split across chunks anywhere.
struct PcmReader {
    pending: Vec<u8>,
    raw_rate: u32,
    rate: Option<u32>,
}

impl PcmReader {
    fn new(raw_rate: u32) -> Self {
        Self { pending: Vec::new(), raw_rate, rate: None }
    }

    fn push(&mut self, chunk: &[u8]) -> Result<Option<Audio>, SpeechError> {
        self.pending.extend_from_slice(chunk);
        if self.rate.is_none() {
            if self.pending.len() < 4 {
                return Ok(None);
            }
            if &self.pending[..4] != b"RIFF" {
                self.rate = Some(self.raw_rate);
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
    use super::*;

    /// Fuzz target: any bytes a speech server streams, cut anywhere, become samples or a clear
    /// error, never a panic; raw PCM comes out exactly.
    #[test]
    fn fuzz_any_speech_stream() {
        bolero::check!().with_type::<(Vec<u8>, Vec<u8>)>().for_each(|(stream, cuts)| {
            let mut reader = PcmReader::new(24_000);
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
