//! The embedded speech engines as installed by `switchboard models install` (scripts/test.sh
//! installs them and names the folder in `SWITCHBOARD_TEST_MODELS`): Whisper hears sentences
//! espeak-ng speaks down a phone line, and what the embedded voices say transcribes back.

use std::sync::Arc;

use switchboard::audio::Audio;
use switchboard::models::SpeechEngines;
use switchboard::providers::speech::embedded::{ESPEAK_VOICE, EmbeddedSpeech, NEURAL_VOICE};
use switchboard::providers::speech::{SpeakingVoice, SpeechToText, TextToSpeech};

use crate::turn_models::{installed_models_dir, over_the_phone, spoken};

/// Word error rate of `heard` against `said`: edits over the words said, ignoring case and
/// punctuation, and numbers whether written in digits or words (up to twenty as numbers, longer
/// ones digit by digit).
pub fn word_error_rate(said: &str, heard: &str) -> f64 {
    const NUMBERS: [&str; 21] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    let words = |text: &str| -> Vec<String> {
        text.split_whitespace()
            .map(|w| w.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect::<String>().to_lowercase())
            .filter(|w| !w.is_empty())
            .flat_map(|w| match w.parse::<usize>() {
                Ok(n) if n < NUMBERS.len() => vec![NUMBERS[n].to_owned()],
                // Longer numbers are said digit by digit (an order or a phone number).
                Ok(_) => w.chars().map(|d| NUMBERS[d.to_digit(10).unwrap_or(0) as usize].to_owned()).collect(),
                Err(_) => vec![w],
            })
            .collect()
    };
    let (said, heard) = (words(said), words(heard));
    let mut row: Vec<usize> = (0..=heard.len()).collect();
    for (i, s) in said.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, h) in heard.iter().enumerate() {
            let substitution = previous + usize::from(s != h);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[heard.len()] as f64 / said.len().max(1) as f64
}

/// The engines as the server loads them, once for the whole test binary.
async fn engines() -> Arc<SpeechEngines> {
    static ENGINES: tokio::sync::OnceCell<Arc<SpeechEngines>> = tokio::sync::OnceCell::const_new();
    ENGINES
        .get_or_init(|| async {
            Arc::new(SpeechEngines::load(&installed_models_dir()).await.expect("the engines load").expect("the engines are installed"))
        })
        .await
        .clone()
}

/// What the embedded speech says for `text` in `voice` and `language`, whole.
async fn said(speech: &EmbeddedSpeech, text: &str, voice: &str, language: &str) -> Audio {
    let mut pieces = speech.synthesize(text, &SpeakingVoice::new(voice, language));
    let mut audio = Audio { rate: 0, samples: Vec::new() };
    while let Some(piece) = pieces.recv().await {
        let piece = piece.expect("speech is synthesised");
        audio.rate = piece.rate;
        audio.samples.extend(piece.samples);
    }
    audio
}

#[tokio::test]
async fn whisper_hears_a_caller_on_the_phone_line() {
    let speech = EmbeddedSpeech::new(engines().await);
    for sentence in ["I would like to book a table for two people tonight.", "My order number is four two seven and it has not arrived."] {
        let caller = over_the_phone(&said(&speech, sentence, NEURAL_VOICE, "en-US").await);
        let heard = speech.transcribe(&caller, "en-US").await.unwrap();
        let wer = word_error_rate(sentence, &heard);
        assert!(wer <= 0.1, "heard {heard:?} for {sentence:?}: WER {wer}");
    }
    // espeak-ng's robotic voice is harder to hear, but still understood.
    let sentence = "Can you tell me when you open tomorrow?";
    let heard = speech.transcribe(&spoken(sentence), "en-US").await.unwrap();
    assert!(word_error_rate(sentence, &heard) <= 0.3, "heard {heard:?} for {sentence:?}");
}

#[tokio::test]
async fn what_the_english_voices_say_transcribes_back() {
    let speech = EmbeddedSpeech::new(engines().await);
    // espeak-ng's robotic voice is harder to hear than the neural one.
    for (voice, bound) in [(NEURAL_VOICE, 0.15), (ESPEAK_VOICE, 0.4)] {
        let text = "Your table for two is booked for seven this evening.";
        let audio = said(&speech, text, voice, "en-US").await;
        assert_eq!(audio.rate, 22_050, "{voice}");
        let heard = speech.transcribe(&over_the_phone(&audio), "en-US").await.unwrap();
        let wer = word_error_rate(text, &heard);
        assert!(wer <= bound, "{voice} said {text:?}, heard {heard:?}: WER {wer}");
    }
}

#[tokio::test]
async fn every_language_is_spoken_and_the_neural_voice_leaves_other_languages_to_espeak() {
    let speech = EmbeddedSpeech::new(engines().await);
    let english = said(&speech, "1 2 3 4 5", NEURAL_VOICE, "en-US").await;
    for language in switchboard::domain::languages::all() {
        for locale in &language.locales {
            let audio = said(&speech, "1 2 3 4 5", NEURAL_VOICE, locale).await;
            let seconds = audio.samples.len() as f64 / f64::from(audio.rate);
            assert!((1.0..8.0).contains(&seconds), "{locale}: {seconds} s of audio for five numbers");
            if language.id != "en" {
                assert_ne!(audio, english, "{locale} is not spoken in English");
            }
        }
    }
}

#[test]
fn word_error_rate_counts_edits_over_words_said() {
    assert_eq!(word_error_rate("Book a table, please.", "book a table please"), 0.0);
    assert_eq!(word_error_rate("book a table", "book the table now"), 2.0 / 3.0);
    assert_eq!(word_error_rate("book a table", ""), 1.0);
    assert_eq!(word_error_rate("a table for two at 7", "a table for 2 at seven"), 0.0);
    assert_eq!(word_error_rate("order four two seven", "order 427"), 0.0);
}
