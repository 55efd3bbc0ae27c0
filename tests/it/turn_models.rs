//! The turn-taking models as installed by `switchboard models install` (scripts/test.sh installs
//! them and names the folder in `SWITCHBOARD_TEST_MODELS`), on sentences espeak-ng speaks and the
//! phone line carries (8 kHz, μ-law both ways): Silero VAD hears speech and not line noise, and
//! Smart Turn hears a finished question as finished and a sentence cut off after "and" as not.

use std::path::PathBuf;
use std::sync::Arc;

use switchboard::audio::{Audio, g711, wav};
use switchboard::models::TurnModels;
use switchboard::models::vad::VadStream;

/// Where scripts/test.sh installed the models.
pub fn installed_models_dir() -> PathBuf {
    std::env::var("SWITCHBOARD_TEST_MODELS")
        .expect("SWITCHBOARD_TEST_MODELS is not set: run the suite with scripts/test.sh, which installs the models")
        .into()
}

/// A server (on SQLite) whose data folder has the installed models.
pub async fn app_with_the_models() -> crate::support::TestApp {
    let models = installed_models_dir();
    crate::support::spawn_app_with(crate::support::Backend::Sqlite, |config| {
        std::os::unix::fs::symlink(&models, config.data_dir.join("models")).unwrap();
    })
    .await
}

fn models() -> TurnModels {
    TurnModels::load(&installed_models_dir()).expect("the models load").expect("the models are installed")
}

/// `text` spoken by espeak-ng as a caller sounds on the phone: 8 kHz through μ-law.
pub fn spoken(text: &str) -> Audio {
    let output = std::process::Command::new("espeak-ng").args(["-v", "en-us", "--stdout", text]).output().expect("espeak-ng runs");
    assert!(output.status.success(), "espeak-ng: {}", String::from_utf8_lossy(&output.stderr));
    let mut heard = over_the_phone(&wav::decode(&output.stdout).expect("espeak-ng writes WAV"));
    // Trimmed to the speech, as a caller's turn is when their pause begins.
    let end = heard.samples.iter().rposition(|s| s.unsigned_abs() > 300).unwrap_or(0);
    heard.samples.truncate(end + 1);
    heard
}

/// `voice` as the other end of a phone line hears it: 8 kHz through μ-law.
pub fn over_the_phone(voice: &Audio) -> Audio {
    let samples = voice.at_rate(8000).unwrap().samples;
    let mut line = Vec::new();
    g711::encode_into(&samples, &mut line);
    let mut heard = Vec::new();
    g711::decode_into(&line, &mut heard);
    Audio { rate: 8000, samples: heard }
}

/// Frames of `audio` the VAD heard as speech, of all its frames.
fn speech_frames(vad: &Arc<switchboard::models::vad::SileroVad>, audio: &[i16]) -> (usize, usize) {
    let mut stream = VadStream::new(vad.clone());
    let frames: Vec<bool> = audio.chunks_exact(160).map(|frame| stream.is_speech(frame).unwrap()).collect();
    (frames.iter().filter(|s| **s).count(), frames.len())
}

#[test]
fn silero_hears_speech_and_not_line_noise() {
    let models = models();
    let speech = spoken("Hello, I would like to book a table for two people tonight.");
    let (heard, all) = speech_frames(&models.vad, &speech.samples);
    assert!(heard * 10 >= all * 6, "most of a spoken sentence is speech: {heard} of {all} frames");
    // White noise at about -30 dBFS and a steady 50 Hz hum: line noise, never speech.
    let mut seed = 0x2545_f491_u32;
    let noise: Vec<i16> = (0..8000 * 2)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            ((seed % 2000) as i32 - 1000) as i16
        })
        .collect();
    assert_eq!(speech_frames(&models.vad, &noise).0, 0, "white noise is not speech");
    let hum: Vec<i16> = (0..8000 * 2).map(|i| (3000.0 * (2.0 * std::f64::consts::PI * 50.0 * i as f64 / 8000.0).sin()) as i16).collect();
    assert_eq!(speech_frames(&models.vad, &hum).0, 0, "hum is not speech");
}

#[test]
fn smart_turn_hears_a_finished_question_and_an_unfinished_sentence() {
    let models = models();
    let finished = models.end_of_turn.completion(&spoken("Can you tell me when you open tomorrow?")).unwrap();
    let unfinished = models.end_of_turn.completion(&spoken("I want a pizza with cheese and")).unwrap();
    assert!(finished >= 0.5, "a question is a finished turn: {finished}");
    assert!(unfinished < 0.5, "a sentence cut off after \"and\" is not: {unfinished}");
    // Operators see how long it takes and what it heard.
    let mut metrics = String::new();
    models.end_of_turn.render(&mut metrics);
    assert!(metrics.contains("switchboard_end_of_turn_seconds_count 2"), "{metrics}");
    assert!(metrics.contains("switchboard_end_of_turn_finished_total 1"), "{metrics}");
}
