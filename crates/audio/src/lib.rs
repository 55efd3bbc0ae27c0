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
