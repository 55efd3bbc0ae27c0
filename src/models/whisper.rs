//! Speech recognition with Whisper through whisper.cpp (`whisper-rs`), on the model
//! `models install` converted. One model in memory serves every call; each decode has its own
//! state and one thread (ggml's threads spin while they wait, which starves a busy machine), and
//! as many decodes run at once as there are cores: the rest wait their turn in order.
//! Utterances are short, so the encoder reads only as much of its 30-second window as the
//! utterance fills (plus a margin), which makes a decode several times faster; a decode that
//! looks looped there (Whisper repeating itself) is done again on the whole window.

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
/// A phrase of this many words said again, or any word said three times running, is more likely
/// Whisper looping than a caller repeating themselves ("please, please, please" for "Tuesday,
/// please"): the utterance is decoded again on the whole window to tell.
const LOOPED_PHRASE: usize = 3;
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

/// The words of `samples`: decoded on the encoder window trimmed to the utterance; when that
/// decode looks looped (it used its whole token budget, or its last words repeat a phrase),
/// decoded again on the whole 30-second window, which is slower but does not loop on the
/// silence after the words.
fn decode(state: &mut WhisperState, samples: &[f32], language: &str) -> Result<String, ModelError> {
    let budget = most_tokens(samples.len());
    let (text, tokens) = decode_once(state, samples, language, encoder_positions(samples.len()), budget)?;
    if tokens < budget && !looks_looped(&text) {
        return Ok(text);
    }
    let (text, tokens) = decode_once(state, samples, language, FULL_WINDOW, budget)?;
    // Whisper can still fail to stop and say the same words again: one round is what was said.
    Ok(without_loop(&text, if tokens >= budget { 2 } else { 3 }))
}

/// One greedy decode reading `positions` of the encoder's window, at most `budget` tokens: its
/// text and the tokens it took.
fn decode_once(
    state: &mut WhisperState,
    samples: &[f32],
    language: &str,
    positions: i32,
    budget: i32,
) -> Result<(String, i32), ModelError> {
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    params.set_n_threads(1);
    params.set_language(Some(language));
    params.set_audio_ctx(positions);
    params.set_max_tokens(budget);
    // No second tries at higher temperatures: they sample at random, and on line noise each
    // fails again, so a turn would wait for six decodes.
    params.set_temperature_inc(0.0);
    params.set_no_context(true);
    params.set_single_segment(true);
    // With timestamps the model marks where speech ends, which keeps it from repeating itself
    // on a window trimmed to the utterance.
    params.set_no_timestamps(false);
    params.set_suppress_nst(true);
    params.set_print_special(false);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_timestamps(false);
    state.full(params, samples).map_err(|e| ModelError::Inference(e.to_string()))?;
    let (mut text, mut tokens) = (String::new(), 0);
    for segment in 0..state.full_n_segments() {
        if let Some(segment) = state.get_segment(segment) {
            tokens += segment.n_tokens();
            text.push_str(&segment.to_str_lossy().map_err(|e| ModelError::Inference(e.to_string()))?);
        }
    }
    Ok((text.trim().to_owned(), tokens))
}

/// Whether `text` repeats itself as Whisper does when it loops: a phrase said twice running (the
/// second time perhaps cut short), a word three times running, or its last words said before.
fn looks_looped(text: &str) -> bool {
    let words = normalised_words(text);
    let ends_as_before = words.len() > LOOPED_PHRASE
        && words[..words.len() - 1].windows(LOOPED_PHRASE).any(|run| run == &words[words.len() - LOOPED_PHRASE..]);
    ends_as_before || loop_start(text, 2, LOOPED_PHRASE).is_some() || loop_start(text, 3, 1).is_some()
}

/// The words of `text` without case and punctuation.
fn normalised_words(text: &str) -> Vec<String> {
    text.split_whitespace().map(|word| word.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()).collect()
}

/// `text` up to the end of the first round of a loop at its end: the words from some point on
/// repeat a run of words at least `rounds` times (the last round perhaps cut short).
fn without_loop(text: &str, rounds: usize) -> String {
    match loop_start(text, rounds, 1) {
        Some(end) => text.split_whitespace().take(end).collect::<Vec<_>>().join(" "),
        None => text.to_owned(),
    }
}

/// Where the first round of a loop at the end of `text` ends, in words: a run of at least
/// `shortest` words repeated at least `rounds` times up to the end (the last round perhaps cut
/// short). Words compare without case and punctuation.
fn loop_start(text: &str, rounds: usize, shortest: usize) -> Option<usize> {
    let words = normalised_words(text);
    for period in shortest.max(1)..=words.len() / rounds {
        for start in 0..=words.len() - rounds * period {
            let tail = &words[start..];
            let repeats = (period..tail.len())
                .all(|i| tail[i] == tail[i - period] || (i == tail.len() - 1 && tail[i - period].starts_with(&tail[i])));
            if repeats {
                return Some(start + period);
            }
        }
    }
    None
}

/// The most tokens an utterance of `samples` (16 kHz) can hold: a fast talker's words, as
/// tokens, with room to spare.
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
    fn a_looping_decode_keeps_one_round_and_budgets_follow_the_utterance() {
        assert_eq!(without_loop("My order is late. My order is late. My order is late. My ord", 3), "My order is late.");
        let looped = "Hello, this is Ava. How can I help? Hello, this is Ava. How can I help? Hello, this";
        assert_eq!(without_loop(looped, 2), "Hello, this is Ava. How can I help?");
        assert_eq!(without_loop(looped, 3), looped, "twice is a loop only when the budget ran out");
        assert_eq!(without_loop("Yes, I do. Tan Goodbye Tan Goodbye Tan Goodbye Tan", 3), "Yes, I do. Tan Goodbye");
        assert_eq!(without_loop("Tuesday, Thursday, Thursday, Thursday, Thursday,", 3), "Tuesday, Thursday,");
        assert_eq!(without_loop("No, no. I said Tuesday.", 3), "No, no. I said Tuesday.");
        assert_eq!(without_loop("Hello there how are you", 2), "Hello there how are you");
        assert_eq!(without_loop("", 2), "");
        assert_eq!(loop_start("I need to change my order. I need to change my order.", 2, LOOPED_PHRASE), Some(6));
        assert_eq!(loop_start("Yes. Yes.", 2, LOOPED_PHRASE), None, "short words said twice are usual");
        assert_eq!(loop_start("Please, please, please.", 3, 1), Some(1), "case and punctuation aside");
        assert_eq!(without_loop("Please, please, please.", 3), "Please,");
        assert!(looks_looped("need to change my order. I need to change my order."), "a loop that does not start at a round's start");
        assert!(looks_looped("Tuesday, please, please, please."));
        assert!(!looks_looped("No, no. I said Tuesday, not Thursday."));
        assert!(!looks_looped("I need to change my order."));
        assert_eq!(most_tokens(16_000 * 2), 40);
        assert_eq!(encoder_positions(16_000 * 2), 164);
        assert_eq!(encoder_positions(16_000 * 60), FULL_WINDOW);
    }
}
