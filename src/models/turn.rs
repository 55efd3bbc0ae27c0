//! Smart Turn v3.2: whether what the caller said so far sounds finished, from the audio alone
//! (intonation and rhythm as well as words: "my number is four one five…" is not). It reads the
//! last eight seconds as Whisper-style log-mel features and answers with a probability.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use ort::environment::Environment;
use ort::value::Tensor;

use super::onnx::{ModelError, SessionPool};
use crate::audio::Audio;
use crate::audio::mel::{LogMel, MEL_BANDS, MEL_FRAMES, MEL_RATE, WINDOW_SAMPLES};
use crate::telemetry::Histogram;

/// At or above this the turn counts as complete.
pub const COMPLETE: f32 = 0.5;

pub struct SmartTurn {
    pool: SessionPool,
    mel: LogMel,
    /// How long each answer took (features and inference), and how many said finished.
    timings: Mutex<(Histogram, u64)>,
}

impl SmartTurn {
    pub fn load(runtime: &Environment, path: &Path, sessions: usize) -> Result<Self, ModelError> {
        Ok(Self { pool: SessionPool::load(runtime, path, sessions)?, mel: LogMel::new(), timings: Mutex::default() })
    }

    /// The probability that the caller has finished their turn with `utterance` (any rate).
    /// Takes tens of milliseconds of CPU: call it off the async threads.
    pub fn completion(&self, utterance: &Audio) -> Result<f32, ModelError> {
        let started = Instant::now();
        let probability = self.infer(utterance)?;
        let mut timings = self.timings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        timings.0.observe(started.elapsed().as_secs_f64());
        timings.1 += u64::from(probability >= COMPLETE);
        Ok(probability)
    }

    /// Its Prometheus metrics: answer time, and answers that heard a finished turn.
    pub fn render(&self, out: &mut String) {
        let timings = self.timings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        out.push_str("# HELP switchboard_end_of_turn_seconds Time the end-of-turn model took to answer.\n");
        out.push_str("# TYPE switchboard_end_of_turn_seconds histogram\n");
        timings.0.render("switchboard_end_of_turn_seconds", "", out);
        out.push_str("# HELP switchboard_end_of_turn_finished_total Answers that heard the caller finished.\n");
        out.push_str("# TYPE switchboard_end_of_turn_finished_total counter\n");
        out.push_str(&format!("switchboard_end_of_turn_finished_total {}\n", timings.1));
    }

    fn infer(&self, utterance: &Audio) -> Result<f32, ModelError> {
        let keep = utterance.samples.len().saturating_sub(WINDOW_SAMPLES * utterance.rate as usize / MEL_RATE as usize + 1);
        let tail = Audio { rate: utterance.rate, samples: utterance.samples[keep..].to_vec() };
        let audio = tail.at_rate(MEL_RATE).map_err(|e| ModelError::Inference(e.to_string()))?.to_floats();
        let features = Tensor::from_array(([1usize, MEL_BANDS, MEL_FRAMES], self.mel.features(&audio)))?;
        self.pool.with(|session| {
            let outputs = session.run(ort::inputs!["input_features" => features])?;
            let (_, probability) = outputs[0].try_extract_tensor::<f32>()?;
            Ok(probability.first().copied().unwrap_or(0.0))
        })
    }
}
