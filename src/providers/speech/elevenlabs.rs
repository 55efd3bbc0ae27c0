//! ElevenLabs' streamed synthesis: `POST {base_url}/text-to-speech/{voice_id}/stream` with
//! `output_format=pcm_16000` in the query, `{"text", "model_id"}` as JSON and the key as
//! `xi-api-key`; the answer is raw 16-bit PCM at 16 kHz as it is synthesised. Errors come as
//! `{"detail": {"status", "message"}}`.

use serde_json::json;
use tokio::sync::mpsc;

use super::{SpeakingVoice, SpeechError, TextToSpeech, request, stream_speech};
use crate::audio::Audio;
use crate::providers::egress::Egress;

pub struct ElevenLabs {
    egress: Egress,
    base_url: String,
    api_key: Option<String>,
    model: String,
}

/// The rate of `pcm_16000`.
const RATE: u32 = 16_000;

impl ElevenLabs {
    pub fn new(egress: Egress, base_url: &str, api_key: Option<String>, model: &str) -> Self {
        Self { egress, base_url: base_url.to_owned(), api_key, model: model.to_owned() }
    }
}

impl TextToSpeech for ElevenLabs {
    fn synthesize(&self, text: &str, voice: &SpeakingVoice) -> mpsc::Receiver<Result<Audio, SpeechError>> {
        let voice: String = url::form_urlencoded::byte_serialize(voice.name.as_bytes()).collect();
        let path = format!("/text-to-speech/{voice}/stream?output_format=pcm_16000");
        let body = json!({ "text": text, "model_id": self.model });
        let prepared = request(&self.egress, reqwest::Method::POST, &self.base_url, &path).map(|request| {
            let request = request.json(&body);
            match &self.api_key {
                Some(key) => request.header("xi-api-key", key),
                None => request,
            }
        });
        stream_speech(prepared, RATE)
    }
}
