//! Silero VAD: whether the caller is speaking, 32 ms at a time, on the 8 kHz audio as it
//! arrives. The model keeps a recurrent state and reads each window with the last 32 samples
//! before it; a stream per call holds both. Speech starts when the probability reaches
//! [`SPEECH_STARTS`] and goes on while it stays above [`SPEECH_GOES_ON`], so a syllable's dip
//! does not end it.

use std::path::Path;
use std::sync::Arc;

use ort::environment::Environment;
use ort::value::Tensor;

use super::onnx::{ModelError, SessionPool};

const RATE: i64 = 8000;
/// Samples the model reads at 8 kHz, and the samples before them it reads too.
const WINDOW: usize = 256;
const CONTEXT: usize = 32;
const STATE: usize = 2 * 128;
pub const SPEECH_STARTS: f32 = 0.5;
pub const SPEECH_GOES_ON: f32 = 0.35;

pub struct SileroVad {
    pool: SessionPool,
}

impl SileroVad {
    pub fn load(runtime: &Environment, path: &Path, sessions: usize) -> Result<Self, ModelError> {
        Ok(Self { pool: SessionPool::load(runtime, path, sessions)? })
    }

    /// The probability that `window` (with the `CONTEXT` samples before it) is speech, and the
    /// state after it.
    fn infer(&self, input: Vec<f32>, state: Vec<f32>) -> Result<(f32, Vec<f32>), ModelError> {
        let input = Tensor::from_array(([1usize, CONTEXT + WINDOW], input))?;
        let state = Tensor::from_array(([2usize, 1, 128], state))?;
        let rate = Tensor::from_array(((), vec![RATE]))?;
        self.pool.with(|session| {
            let outputs = session.run(ort::inputs!["input" => input, "state" => state, "sr" => rate])?;
            let (_, probability) = outputs["output"].try_extract_tensor::<f32>()?;
            let (_, state) = outputs["stateN"].try_extract_tensor::<f32>()?;
            Ok((probability.first().copied().unwrap_or(0.0), state.to_vec()))
        })
    }
}

/// One call's audio through the model.
pub struct VadStream {
    model: Arc<SileroVad>,
    state: Vec<f32>,
    /// The last `CONTEXT` samples read, then the samples not yet read.
    pending: Vec<f32>,
    speaking: bool,
}

impl VadStream {
    pub fn new(model: Arc<SileroVad>) -> Self {
        Self { model, state: vec![0.0; STATE], pending: vec![0.0; CONTEXT], speaking: false }
    }

    /// Takes the next frame; whether the caller is speaking, as of the last whole window.
    pub fn is_speech(&mut self, frame: &[i16]) -> Result<bool, ModelError> {
        self.pending.extend(frame.iter().map(|s| f32::from(*s) / 32768.0));
        while self.pending.len() >= CONTEXT + WINDOW {
            let input = self.pending[..CONTEXT + WINDOW].to_vec();
            let (probability, state) = self.model.infer(input, std::mem::take(&mut self.state))?;
            self.state = state;
            self.pending.drain(..WINDOW);
            self.speaking = probability >= if self.speaking { SPEECH_GOES_ON } else { SPEECH_STARTS };
        }
        Ok(self.speaking)
    }
}
