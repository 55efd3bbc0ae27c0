//! Whisper-style log-mel features: what Smart Turn v3 (the end-of-turn model) reads. Eight
//! seconds of 16 kHz audio become 80 mel bands × 800 frames (25 ms windows every 10 ms): the
//! waveform normalised to zero mean and unit variance, a centred power spectrogram (periodic
//! Hann window, reflect padding), a Slaney-scale triangular filterbank, log10 with a floor,
//! everything below the loudest band minus 80 dB raised to it, then scaled into about −1..1.
//! The arithmetic follows the published reference (Hugging Face's `WhisperFeatureExtractor`);
//! its values for a test signal are this module's golden test.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// The rate the features are computed at.
pub const MEL_RATE: u32 = 16_000;
/// Samples in the window the features cover: eight seconds.
pub const WINDOW_SAMPLES: usize = 8 * MEL_RATE as usize;
pub const MEL_BANDS: usize = 80;
/// Frames in the features: one every [`HOP`] samples.
pub const MEL_FRAMES: usize = WINDOW_SAMPLES / HOP;
const FFT_SIZE: usize = 400;
const HOP: usize = 160;
/// Frequency bins of the 400-point FFT the features are computed with.
pub const FREQUENCY_BINS: usize = FFT_SIZE / 2 + 1;

/// Computes features; keeps its FFT plan, window and filterbank between calls.
pub struct LogMel {
    fft: Arc<dyn RealToComplex<f64>>,
    window: Vec<f64>,
    /// For each mel band: its first frequency bin and the weights from there on.
    bands: Vec<(usize, Vec<f64>)>,
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

impl LogMel {
    pub fn new() -> Self {
        // Periodic Hann window.
        let window = (0..FFT_SIZE).map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / FFT_SIZE as f64).cos()).collect();
        Self { fft: RealFftPlanner::<f64>::new().plan_fft_forward(FFT_SIZE), window, bands: slaney_filterbank() }
    }

    /// The features of `audio` (16 kHz, −1..1): the last [`WINDOW_SAMPLES`] of it, preceded by
    /// silence when it is shorter. Band-major: `features[band * MEL_FRAMES + frame]`.
    pub fn features(&self, audio: &[f32]) -> Vec<f32> {
        let audio = &audio[audio.len().saturating_sub(WINDOW_SAMPLES)..];
        let mut signal = vec![0.0f64; WINDOW_SAMPLES - audio.len()];
        signal.extend(audio.iter().map(|s| f64::from(*s)));
        normalise(&mut signal);
        let padded = reflect_pad(&signal, FFT_SIZE / 2);

        let mut spectrum = self.fft.make_output_vec();
        let mut frame = self.fft.make_input_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = [0.0f64; FREQUENCY_BINS];
        let mut log_mel = vec![0.0f64; MEL_BANDS * MEL_FRAMES];
        // The reference computes one frame more and drops it.
        for index in 0..MEL_FRAMES {
            let start = index * HOP;
            for ((slot, sample), weight) in frame.iter_mut().zip(&padded[start..start + FFT_SIZE]).zip(&self.window) {
                *slot = sample * weight;
            }
            self.fft.process_with_scratch(&mut frame, &mut spectrum, &mut scratch).expect("buffers sized by the plan");
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for (band, (first, weights)) in self.bands.iter().enumerate() {
                let energy: f64 = weights.iter().zip(&power[*first..]).map(|(w, p)| w * p).sum();
                log_mel[band * MEL_FRAMES + index] = energy.max(1e-10).log10();
            }
        }
        let floor = log_mel.iter().copied().fold(f64::MIN, f64::max) - 8.0;
        log_mel.iter().map(|v| ((v.max(floor) + 4.0) / 4.0) as f32).collect()
    }
}

/// Zero mean, unit variance (the reference's epsilon keeps silence finite).
fn normalise(signal: &mut [f64]) {
    let n = signal.len() as f64;
    let mean = signal.iter().sum::<f64>() / n;
    let variance = signal.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / n;
    let scale = 1.0 / (variance + 1e-7).sqrt();
    for s in signal {
        *s = (*s - mean) * scale;
    }
}

/// `signal` with `pad` samples mirrored on each side (the edge sample not repeated).
fn reflect_pad(signal: &[f64], pad: usize) -> Vec<f64> {
    let mut padded = Vec::with_capacity(signal.len() + 2 * pad);
    padded.extend(signal[1..=pad].iter().rev());
    padded.extend_from_slice(signal);
    padded.extend(signal[signal.len() - 1 - pad..signal.len() - 1].iter().rev());
    padded
}

fn hertz_to_mel(hertz: f64) -> f64 {
    // Slaney: linear below 1 kHz, logarithmic above.
    if hertz < 1000.0 { 3.0 * hertz / 200.0 } else { 15.0 + (hertz / 1000.0).ln() * 27.0 / 6.4f64.ln() }
}

fn mel_to_hertz(mel: f64) -> f64 {
    if mel < 15.0 { 200.0 * mel / 3.0 } else { 1000.0 * (6.4f64.ln() / 27.0 * (mel - 15.0)).exp() }
}

/// Triangular filters evenly spaced in mels from 0 Hz to the Nyquist frequency, each scaled to
/// equal area (Slaney normalisation), stored sparsely.
/// The filterbank as a dense matrix, band-major ([`MEL_BANDS`] × 201 frequency bins of a
/// 400-point FFT at 16 kHz): what Whisper's own models carry beside their weights.
pub fn filterbank() -> Vec<f32> {
    let mut dense = vec![0.0f32; MEL_BANDS * FREQUENCY_BINS];
    for (band, (first, weights)) in slaney_filterbank().into_iter().enumerate() {
        for (offset, weight) in weights.into_iter().enumerate() {
            dense[band * FREQUENCY_BINS + first + offset] = weight as f32;
        }
    }
    dense
}

fn slaney_filterbank() -> Vec<(usize, Vec<f64>)> {
    let top = hertz_to_mel(f64::from(MEL_RATE) / 2.0);
    let edges: Vec<f64> = (0..MEL_BANDS + 2).map(|i| mel_to_hertz(top * i as f64 / (MEL_BANDS + 1) as f64)).collect();
    let bin_hertz = |bin: usize| bin as f64 * f64::from(MEL_RATE / 2) / (FREQUENCY_BINS - 1) as f64;
    (0..MEL_BANDS)
        .map(|band| {
            let (low, centre, high) = (edges[band], edges[band + 1], edges[band + 2]);
            let area = 2.0 / (high - low);
            let weights: Vec<f64> = (0..FREQUENCY_BINS)
                .map(|bin| {
                    let f = bin_hertz(bin);
                    ((f - low) / (centre - low)).min((high - f) / (high - centre)).max(0.0) * area
                })
                .collect();
            let first = weights.iter().position(|w| *w > 0.0).unwrap_or(0);
            let last = weights.iter().rposition(|w| *w > 0.0).unwrap_or(0);
            (first, weights[first..=last].to_vec())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three seconds at 16 kHz: a 440 Hz tone growing louder, joined by a 2 kHz tone for the
    /// last second, quantised to 16 bits.
    fn test_signal() -> Vec<f32> {
        (0..3 * MEL_RATE as usize)
            .map(|i| {
                let t = i as f64 / f64::from(MEL_RATE);
                let high = if t >= 2.0 { 0.2 * (2.0 * std::f64::consts::PI * 2000.0 * t).sin() } else { 0.0 };
                let x = 0.3 * (2.0 * std::f64::consts::PI * 440.0 * t).sin() * (t / 3.0) + high;
                ((x * 32767.0).round() / 32768.0) as f32
            })
            .collect()
    }

    #[test]
    fn features_match_the_reference_implementation() {
        // Values printed by pipecat 1.14's numpy port of WhisperFeatureExtractor for the same
        // signal (padded at the start to eight seconds).
        let features = LogMel::new().features(&test_signal());
        assert_eq!(features.len(), MEL_BANDS * MEL_FRAMES);
        let at = |band: usize, frame: usize| features[band * MEL_FRAMES + frame];
        let expected = [
            (0, 0, -0.151_630_1),
            (5, 799, 0.940_201_46),
            (10, 700, 1.672_363_8),
            (11, 600, 1.611_261_2),
            (11, 780, 1.834_839_9),
            (44, 650, -0.151_630_1),
            (44, 750, 1.715_516_6),
            (79, 799, 0.085_615_78),
        ];
        for (band, frame, value) in expected {
            assert!((at(band, frame) - value).abs() < 1e-3, "band {band} frame {frame}: {} not {value}", at(band, frame));
        }
        let sum: f64 = features.iter().map(|v| f64::from(*v)).sum();
        assert!((sum + 6939.33).abs() < 1.0, "sum {sum}");
    }

    #[test]
    fn only_the_last_eight_seconds_count() {
        let signal = test_signal();
        let mut longer = vec![0.25f32; WINDOW_SAMPLES + 5 * MEL_RATE as usize];
        let len = longer.len();
        longer[len - signal.len()..].copy_from_slice(&signal);
        let mel = LogMel::new();
        assert_eq!(mel.features(&longer), mel.features(&longer[len - WINDOW_SAMPLES..]));
        assert_ne!(mel.features(&longer), mel.features(&signal));
    }
}
