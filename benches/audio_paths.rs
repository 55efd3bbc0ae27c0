//! What the audio paths of a Media Streams call cost in CPU, per second of call: the caller's
//! side (μ-law decode of 50 frames, their levels and the speech gate) and the agent's side
//! (24 kHz synthesised speech resampled to 8 kHz and μ-law encoded). Prints microseconds of one
//! core per call-second and the calls one core could carry on these paths alone.
//!
//! `cargo bench --bench audio_paths` (`SECONDS=60` of audio per path).

use std::time::{Duration, Instant};

use switchboard::audio::frames::{SpeechGate, level_dbfs};
use switchboard::audio::g711;
use switchboard::audio::resample::Resampler;

fn main() {
    let seconds: usize = std::env::var("SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    // A caller: a 300 Hz tone, talking half the time.
    let caller: Vec<u8> = (0..8000 * seconds)
        .map(|i| {
            let talking = (i / 8000) % 2 == 0;
            let sample = if talking { (8000.0 * (2.0 * std::f64::consts::PI * 300.0 * i as f64 / 8000.0).sin()) as i16 } else { 0 };
            g711::encode(sample)
        })
        .collect();
    let started = Instant::now();
    let mut gate = SpeechGate::new(Duration::from_millis(100), Duration::from_millis(500));
    let mut samples = Vec::with_capacity(160);
    let mut transitions = 0;
    for frame in caller.chunks_exact(160) {
        samples.clear();
        g711::decode_into(frame, &mut samples);
        transitions += usize::from(gate.frame(level_dbfs(&samples) >= -40.0) != switchboard::audio::frames::Transition::None);
    }
    report("caller side: decode, level, gate", started.elapsed(), seconds);
    assert!(transitions >= seconds - 2, "the gate saw the caller talk and stop");

    // The agent: 24 kHz speech in 100 ms pieces, as a TTS streams it.
    let speech: Vec<i16> =
        (0..24_000 * seconds).map(|i| (6000.0 * (2.0 * std::f64::consts::PI * 220.0 * i as f64 / 24_000.0).sin()) as i16).collect();
    let started = Instant::now();
    let mut resampler = Resampler::new(24_000, 8000).unwrap();
    let (mut at8k, mut mulaw) = (Vec::new(), Vec::new());
    for piece in speech.chunks(2400) {
        at8k.clear();
        resampler.process(piece, &mut at8k);
        mulaw.clear();
        g711::encode_into(&at8k, &mut mulaw);
    }
    report("agent side: resample 24 kHz → 8 kHz, encode", started.elapsed(), seconds);
}

fn report(path: &str, took: Duration, seconds: usize) {
    let per_call_second = took.as_secs_f64() * 1e6 / seconds as f64;
    println!("{path}: {per_call_second:.1} µs of CPU per call-second ({:.0} calls per core on this path)", 1e6 / per_call_second);
}
