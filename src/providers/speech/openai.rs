//! The OpenAI-compatible audio API that hosted and self-hosted servers share:
//! `POST {base_url}/audio/transcriptions` (multipart: a WAV of the utterance, `model`,
//! `language`; answers `{"text": …}` or plain text) and `POST {base_url}/audio/speech` (JSON;
//! answers audio as it is synthesised: raw 16-bit PCM, 24 kHz unless the server says otherwise,
//! or a WAV whose header gives the rate). The key goes as `Authorization: Bearer`.

use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Pending, REQUEST_TIMEOUT, SpeakingVoice, SpeechError, SpeechToText, TextToSpeech, request, send, stream_speech};
use crate::audio::{Audio, wav};
use crate::providers::egress::Egress;

/// An OpenAI-compatible audio endpoint.
#[derive(Clone)]
pub struct OpenAiSpeech {
    egress: Egress,
    base_url: String,
    api_key: Option<String>,
    transcription_model: String,
    speech_model: String,
}

/// PCM answers without a header are at this rate (OpenAI's `pcm` format).
const RAW_PCM_RATE: u32 = 24_000;

impl OpenAiSpeech {
    pub fn new(egress: Egress, base_url: &str, api_key: Option<String>, transcription_model: &str, speech_model: &str) -> Self {
        Self {
            egress,
            base_url: base_url.to_owned(),
            api_key,
            transcription_model: transcription_model.to_owned(),
            speech_model: speech_model.to_owned(),
        }
    }

    fn post(&self, path: &str) -> Result<reqwest::RequestBuilder, SpeechError> {
        let request = request(&self.egress, reqwest::Method::POST, &self.base_url, path)?;
        Ok(match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        })
    }
}

#[derive(Deserialize)]
struct TranscriptionBody {
    text: String,
}

impl SpeechToText for OpenAiSpeech {
    fn transcribe<'a>(&'a self, utterance: &'a Audio, language: &'a str) -> Pending<'a, String> {
        Box::pin(async move {
            let deadline = Instant::now() + REQUEST_TIMEOUT;
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
            let response = send(self.post("/audio/transcriptions")?.multipart(form), deadline).await?;
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
    fn synthesize(&self, text: &str, voice: &SpeakingVoice) -> mpsc::Receiver<Result<Audio, SpeechError>> {
        let body = json!({ "model": self.speech_model, "input": text, "voice": voice.name, "response_format": "pcm" });
        stream_speech(self.post("/audio/speech").map(|request| request.json(&body)), RAW_PCM_RATE)
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
            let mut pieces = speech.synthesize("Hello.", &SpeakingVoice::new("alloy", "en-US"));
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
        let mut refused = closed.synthesize("Hi", &SpeakingVoice::new("alloy", "en-US"));
        assert!(matches!(refused.recv().await, Some(Err(SpeechError::NotAllowed(_)))));
    }
}
