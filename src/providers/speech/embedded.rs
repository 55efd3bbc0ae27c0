//! The speech engines inside the server (`models::SpeechEngines`) behind the vendors'
//! interfaces, so a call cannot tell them apart: Whisper transcribes in the call's language;
//! the voice `joe` is Piper's neural English voice (other languages are spoken by espeak-ng),
//! and the voice `espeak` is espeak-ng in every language. Each synthesis is one sentence (the
//! voice layer hands them over one by one as the model streams), so the first audio of a reply
//! leaves while the rest is still being written.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Pending, SpeakingVoice, SpeechError, SpeechToText, TextToSpeech};
use crate::audio::Audio;
use crate::models::{SpeechEngines, espeak};

/// The neural voice (English; other languages fall to espeak-ng).
pub const NEURAL_VOICE: &str = "joe";
/// espeak-ng's voice for the language, in every language.
pub const ESPEAK_VOICE: &str = "espeak";

pub struct EmbeddedSpeech {
    engines: Arc<SpeechEngines>,
}

impl EmbeddedSpeech {
    pub fn new(engines: Arc<SpeechEngines>) -> Self {
        Self { engines }
    }

    /// The voice used when an agent names none: the neural one when it is installed.
    pub fn default_voice(&self) -> &'static str {
        if self.engines.voice.is_some() { NEURAL_VOICE } else { ESPEAK_VOICE }
    }

    async fn speak(&self, text: &str, voice: &SpeakingVoice) -> Result<Audio, SpeechError> {
        let failed = |e: String| SpeechError::Engine(e);
        let english = voice.language.to_ascii_lowercase().starts_with("en");
        match &self.engines.voice {
            Some(neural) if voice.name == NEURAL_VOICE && english => {
                let phonemes = espeak::phonemes(text, &neural.espeak_voice).await.map_err(|e| failed(e.to_string()))?;
                let neural = Arc::clone(neural);
                tokio::task::spawn_blocking(move || neural.speak(&phonemes))
                    .await
                    .map_err(|e| failed(e.to_string()))?
                    .map_err(|e| failed(e.to_string()))
            }
            _ => espeak::speak(text, espeak::voice_for(&voice.language)).await.map_err(|e| failed(e.to_string())),
        }
    }
}

impl SpeechToText for EmbeddedSpeech {
    fn transcribe<'a>(&'a self, utterance: &'a Audio, language: &'a str) -> Pending<'a, String> {
        Box::pin(async move {
            self.engines.whisper.transcribe(utterance, &whisper_language(language)).await.map_err(|e| SpeechError::Engine(e.to_string()))
        })
    }
}

impl TextToSpeech for EmbeddedSpeech {
    fn synthesize(&self, text: &str, voice: &SpeakingVoice) -> mpsc::Receiver<Result<Audio, SpeechError>> {
        let (tx, rx) = mpsc::channel(1);
        let (speech, text, voice) = (Self { engines: Arc::clone(&self.engines) }, text.to_owned(), voice.clone());
        tokio::spawn(async move {
            let _ = tx.send(speech.speak(&text, &voice).await).await;
        });
        rx
    }
}

/// Whisper's name for the language of a BCP 47 tag: its primary subtag, but Norwegian Bokmål
/// is `no` and Cantonese (which Whisper base writes as Chinese) `zh`; `auto` when it is not a
/// language code at all.
fn whisper_language(tag: &str) -> String {
    let primary = tag.split(['-', '_']).next().unwrap_or(tag).to_ascii_lowercase();
    match primary.as_str() {
        "nb" | "nn" => "no".to_owned(),
        "yue" | "cmn" => "zh".to_owned(),
        _ if primary.len() == 2 && primary.chars().all(|c| c.is_ascii_lowercase()) => primary,
        _ => "auto".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::whisper_language;

    #[test]
    fn whisper_hears_each_call_language_by_its_own_name() {
        assert_eq!(whisper_language("en-US"), "en");
        assert_eq!(whisper_language("pt-BR"), "pt");
        assert_eq!(whisper_language("nb-NO"), "no");
        assert_eq!(whisper_language("zh-HK"), "zh");
        assert_eq!(whisper_language("yue"), "zh");
        assert_eq!(whisper_language("nl-BE"), "nl");
        assert_eq!(whisper_language("EN"), "en");
        assert_eq!(whisper_language("klingon"), "auto");
    }
}
