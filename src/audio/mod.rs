//! Audio for the Media Streams pipeline, pure computation with no I/O (DESIGN invariant 1):
//! G.711 μ-law (`g711`), sample-rate conversion (`resample`), and 20 ms frames with their
//! loudness and speech duration rules (`frames`). Voice activity and end-of-turn models join
//! here next.

pub mod frames;
pub mod g711;
pub mod resample;
