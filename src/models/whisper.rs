//! Speech recognition with Whisper through whisper.cpp (`whisper-rs`), on the model
//! `models install` converted. One model in memory serves every call; each decode has its own
//! state and one thread (ggml's threads spin while they wait, which starves a busy machine), and
//! as many decodes run at once as there are cores: the rest wait their turn in order.
//! Utterances are short, so the encoder reads only as much of its 30-second window as the
//! utterance fills (plus a margin), which makes a decode several times faster.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState};

use super::ModelError;
use crate::audio::Audio;

/// The rate Whisper hears at.
const WHISPER_RATE: u32 = 16_000;
/// Encoder positions per second of audio, and the margin kept beyond the utterance (fewer
/// positions than the words need make the model invent an ending).
const POSITIONS_PER_SECOND: f64 = 50.0;
const POSITIONS_MARGIN: i32 = 64;
/// Tokens per second of speech at most: fast speech is some four words a second, and a word
/// rarely takes more than three tokens.
const TOKENS_PER_SECOND: f64 = 12.0;
/// The encoder's whole window: 30 seconds.
const FULL_WINDOW: i32 = 1500;

/// Whisper, loaded once, with a state per concurrent decode.
pub struct Whisper {
    states: Mutex<Vec<WhisperState>>,
    /// One permit per state: decodes beyond them wait here, first come first served.
    slots: Arc<Semaphore>,
}

impl Whisper {
    /// The model in `path`, able to decode `concurrent` utterances at once.
    pub fn load(path: &Path, concurrent: usize) -> Result<Self, ModelError> {
        whisper_rs::install_logging_hooks();
        let failed = |reason: String| ModelError::Load { path: path.to_owned(), reason };
        let file = path.to_str().ok_or_else(|| failed("the path is not UTF-8".into()))?;
        let context = WhisperContext::new_with_params(file, WhisperContextParameters::default()).map_err(|e| failed(e.to_string()))?;
        let states =
            (0..concurrent.max(1)).map(|_| context.create_state().map_err(|e| failed(e.to_string()))).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { slots: Arc::new(Semaphore::new(states.len())), states: Mutex::new(states) })
    }

    /// The words of `utterance`, in `language` (an ISO 639-1 code such as `en`, or `auto`).
    /// Waits for a free decoder; the decode itself runs on the blocking pool.
    pub async fn transcribe(self: &Arc<Self>, utterance: &Audio, language: &str) -> Result<String, ModelError> {
        let samples = utterance.at_rate(WHISPER_RATE).map_err(|e| ModelError::Inference(e.to_string()))?.to_floats();
        let permit = Arc::clone(&self.slots).acquire_owned().await.expect("the semaphore is never closed");
        let (whisper, language) = (Arc::clone(self), language.to_owned());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut state = whisper.states.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop().expect("a state per permit");
            let text = decode(&mut state, &samples, &language);
            whisper.states.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(state);
            text
        })
        .await
        .map_err(|e| ModelError::Inference(format!("the decode stopped: {e}")))?
    }
}

fn decode(state: &mut WhisperState, samples: &[f32], language: &str) -> Result<String, ModelError> {
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    params.set_n_threads(1);
    params.set_language(Some(language));
    params.set_audio_ctx(encoder_positions(samples.len()));
    params.set_max_tokens(most_tokens(samples.len()));
    // No second tries at higher temperatures: they sample at random, and on line noise each
    // fails again, so a turn would wait for six decodes.
    params.set_temperature_inc(0.0);
    params.set_no_context(true);
    params.set_single_segment(true);
    params.set_no_timestamps(true);
    params.set_suppress_nst(true);
    params.set_print_special(false);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_timestamps(false);
    state.full(params, samples).map_err(|e| ModelError::Inference(e.to_string()))?;
    let mut text = String::new();
    for segment in 0..state.full_n_segments() {
        if let Some(segment) = state.get_segment(segment) {
            text.push_str(&segment.to_str_lossy().map_err(|e| ModelError::Inference(e.to_string()))?);
        }
    }
    Ok(without_repeats(text.trim()))
}

/// `text` with each sentence that repeats the one before it dropped: when Whisper loops it says
/// the same sentence again until its token budget runs out (the last copy often cut short).
fn without_repeats(text: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(['.', '?', '!']).map_or(rest.len(), |i| i + 1);
        let (sentence, tail) = rest.split_at(end);
        let sentence = sentence.trim();
        let repeats = kept.last().is_some_and(|last| *last == sentence || (tail.trim().is_empty() && last.starts_with(sentence)));
        if !repeats && !sentence.is_empty() {
            kept.push(sentence);
        }
        rest = tail;
    }
    kept.join(" ")
}

/// The most tokens an utterance of `samples` (16 kHz) can hold: a fast talker's words, as
/// tokens, with room to spare. A decode that loops (Whisper repeats itself at times) stops here.
fn most_tokens(samples: usize) -> i32 {
    let seconds = samples as f64 / f64::from(WHISPER_RATE);
    (seconds * TOKENS_PER_SECOND).ceil() as i32 + 16
}

/// The encoder positions an utterance of `samples` (16 kHz) needs.
fn encoder_positions(samples: usize) -> i32 {
    let seconds = samples as f64 / f64::from(WHISPER_RATE);
    ((seconds * POSITIONS_PER_SECOND).ceil() as i32 + POSITIONS_MARGIN).min(FULL_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_looping_decode_keeps_one_copy_and_budgets_follow_the_utterance() {
        assert_eq!(without_repeats("My order is late. My order is late. My order is late. My ord"), "My order is late.");
        assert_eq!(without_repeats("Yes. No. Yes."), "Yes. No. Yes.");
        assert_eq!(without_repeats("Hello there how are you"), "Hello there how are you");
        assert_eq!(without_repeats(""), "");
        assert_eq!(most_tokens(16_000 * 2), 40);
        assert_eq!(encoder_positions(16_000 * 2), 164);
        assert_eq!(encoder_positions(16_000 * 60), FULL_WINDOW);
    }
}
