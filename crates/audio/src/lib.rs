//! Audio for the Media Streams pipeline, pure computation with no I/O (DESIGN invariant 1):
//! G.711 μ-law (`g711`), sample-rate conversion (`resample`), 20 ms frames with their loudness
//! and speech duration rules (`frames`), WAV files (`wav`), and the log-mel features the
//! end-of-turn model reads (`mel`).
//!
//! Its own crate (re-exported as `switchboard::audio`) so that debug builds compile it optimised:
//! these paths run for every 20 ms of every call, also in the tests.

pub mod frames;
pub mod g711;
pub mod mel;
pub mod resample;
pub mod wav;

/// Mono 16-bit samples at `rate` Hz.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    pub rate: u32,
    pub samples: Vec<i16>,
}

impl Audio {
    /// The same sound at `rate`, converted whole (the filter's tail included).
    pub fn at_rate(&self, rate: u32) -> Result<Audio, resample::UnsupportedRates> {
        if rate == self.rate {
            return Ok(self.clone());
        }
        let mut resampler = resample::Resampler::new(self.rate, rate)?;
        let mut samples = Vec::with_capacity(self.samples.len() * rate as usize / self.rate as usize + resample::TAPS_PER_PHASE);
        resampler.process(&self.samples, &mut samples);
        resampler.finish(&mut samples);
        Ok(Audio { rate, samples })
    }

    /// The samples as floats in −1..1, as models read them.
    pub fn to_floats(&self) -> Vec<f32> {
        self.samples.iter().map(|s| f32::from(*s) / 32768.0).collect()
    }
}
