//! Sample-rate conversion between the rates of telephony and speech engines (8, 16, 22.05 and
//! 24 kHz), streamed chunk by chunk: a polyphase FIR filter over the rational ratio `up/down`
//! (8 kHz → 22.05 kHz is 441/160). The prototype low-pass is a Blackman-windowed sinc cutting at
//! 90% of the lower rate's Nyquist frequency, [`TAPS_PER_PHASE`] taps per output sample. How the
//! input is split into chunks never changes the output.

/// Filter taps that make one output sample.
pub const TAPS_PER_PHASE: usize = 24;
/// The largest interpolation factor accepted (after reducing the ratio).
const MAX_UP: u32 = 1000;

/// A conversion from one rate to another, keeping the input it still needs between chunks.
pub struct Resampler {
    up: u64,
    down: u64,
    /// Phase-major, each phase's taps oldest input first: output = Σ taps[j] × window[j] over
    /// the last [`TAPS_PER_PHASE`] input samples, a plain loop that stays fast in debug builds.
    filter: Vec<[f32; TAPS_PER_PHASE]>,
    /// Input samples still needed; `history[0]` is input sample number `base` (negative before
    /// the start, where the input counts as silence).
    history: Vec<f32>,
    base: i64,
    /// The next output sample's position, in input samples × `up`.
    position: u64,
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("cannot convert {from} Hz to {to} Hz: rates must be positive and their ratio reduce to at most {MAX_UP}/{MAX_UP}")]
pub struct UnsupportedRates {
    pub from: u32,
    pub to: u32,
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Result<Self, UnsupportedRates> {
        let unsupported = UnsupportedRates { from, to };
        if from == 0 || to == 0 {
            return Err(unsupported);
        }
        let common = gcd(from, to);
        let (up, down) = (to / common, from / common);
        if up > MAX_UP || down > MAX_UP {
            return Err(unsupported);
        }
        Ok(Self {
            up: u64::from(up),
            down: u64::from(down),
            filter: polyphase_filter(up as usize, f64::from(from.min(to)) / f64::from(from) / f64::from(up)),
            history: vec![0.0; TAPS_PER_PHASE - 1],
            base: -(TAPS_PER_PHASE as i64 - 1),
            position: 0,
        })
    }

    /// Ends the input: appends the last samples, which the filter's delay (half its length)
    /// still holds, to `out`. Without this a piece of speech would lose its last twelve input
    /// samples (1.5 ms at 8 kHz).
    pub fn finish(&mut self, out: &mut Vec<i16>) {
        self.process(&[0; TAPS_PER_PHASE / 2], out);
    }

    /// Converts the next chunk of input, appending what it yields to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.history.extend(input.iter().map(|s| f32::from(*s)));
        let available = self.base + self.history.len() as i64;
        loop {
            let newest = (self.position / self.up) as i64;
            if newest >= available {
                break;
            }
            let phase = (self.position % self.up) as usize;
            let taps = &self.filter[phase];
            let end = (newest - self.base) as usize;
            let window: &[f32; TAPS_PER_PHASE] = self.history[end + 1 - TAPS_PER_PHASE..=end].try_into().expect("a whole window");
            // Four running sums (independent additions a processor overlaps), then combined.
            let mut sums = [0.0f32; 4];
            for (taps, window) in taps.chunks_exact(4).zip(window.chunks_exact(4)) {
                for lane in 0..4 {
                    sums[lane] += taps[lane] * window[lane];
                }
            }
            let sum = (sums[0] + sums[1]) + (sums[2] + sums[3]);
            out.push(sum.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16);
            self.position += self.down;
        }
        // Keep only what the next output still needs.
        let oldest_needed = (self.position / self.up) as i64 - (TAPS_PER_PHASE as i64 - 1);
        let drop = (oldest_needed - self.base).clamp(0, self.history.len() as i64) as usize;
        self.history.drain(..drop);
        self.base += drop as i64;
    }
}

/// The windowed-sinc low-pass for `up` phases, cutting at `0.9 × cutoff` (cycles per
/// upsampled sample, `cutoff` being the lower rate's Nyquist frequency), scaled by `up` to make up
/// for the zeros interpolation inserts; rearranged phase by phase, oldest input first.
fn polyphase_filter(up: usize, lower_rate_per_upsampled: f64) -> Vec<[f32; TAPS_PER_PHASE]> {
    let length = up * TAPS_PER_PHASE;
    let cutoff = 0.5 * lower_rate_per_upsampled * 0.9;
    let center = (length as f64 - 1.0) / 2.0;
    let prototype: Vec<f64> = (0..length)
        .map(|j| {
            let t = j as f64 - center;
            let sinc =
                if t == 0.0 { 1.0 } else { (2.0 * std::f64::consts::PI * cutoff * t).sin() / (std::f64::consts::PI * t) / (2.0 * cutoff) };
            let phase = 2.0 * std::f64::consts::PI * j as f64 / (length as f64 - 1.0);
            let blackman = 0.42 - 0.5 * phase.cos() + 0.08 * (2.0 * phase).cos();
            2.0 * cutoff * sinc * blackman * up as f64
        })
        .collect();
    // Unit gain at 0 Hz for every phase, so silence stays silent and a level stays its level.
    (0..up)
        .map(|phase| {
            // Tap k of a phase weighs the input sample k places before the newest.
            let taps: Vec<f64> = (0..TAPS_PER_PHASE).map(|k| prototype[phase + k * up]).collect();
            let gain: f64 = taps.iter().sum();
            let mut oldest_first = [0.0f32; TAPS_PER_PHASE];
            for (k, tap) in taps.iter().enumerate() {
                oldest_first[TAPS_PER_PHASE - 1 - k] = (tap / gain) as f32;
            }
            oldest_first
        })
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hertz: f64, seconds: f64, amplitude: f64) -> Vec<i16> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n).map(|i| (amplitude * (2.0 * std::f64::consts::PI * hertz * i as f64 / f64::from(rate)).sin()) as i16).collect()
    }

    fn convert(from: u32, to: u32, input: &[i16]) -> Vec<i16> {
        let mut out = Vec::new();
        Resampler::new(from, to).unwrap().process(input, &mut out);
        out
    }

    /// The level of `hertz` in `samples` (Goertzel), as an amplitude.
    fn level(samples: &[i16], rate: u32, hertz: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * hertz / f64::from(rate);
        let (mut s1, mut s2) = (0.0, 0.0);
        for x in samples {
            let s = f64::from(*x) + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2).sqrt() * 2.0 / samples.len() as f64
    }

    #[test]
    fn every_pair_of_speech_rates_keeps_a_tone_and_its_length() {
        let rates = [8000, 16000, 22050, 24000];
        for from in rates {
            for to in rates {
                let input = tone(from, 440.0, 1.0, 10_000.0);
                let out = convert(from, to, &input);
                let expected = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
                assert!(out.len().abs_diff(expected) <= 1, "{from}→{to}: {} samples, expected {expected}", out.len());
                let steady = &out[out.len() / 4..];
                let kept = level(steady, to, 440.0);
                assert!((kept - 10_000.0).abs() < 300.0, "{from}→{to}: 440 Hz came out at {kept:.0}");
            }
        }
    }

    #[test]
    fn what_the_lower_rate_cannot_carry_is_filtered_out() {
        // 6 kHz is above 8 kHz's Nyquist frequency: it must not fold back as 2 kHz.
        let out = convert(16000, 8000, &tone(16000, 6000.0, 1.0, 10_000.0));
        let folded = level(&out[out.len() / 4..], 8000, 2000.0);
        assert!(folded < 100.0, "6 kHz folded back at {folded:.0} (−40 dB is 100)");
        let out = convert(8000, 24000, &tone(8000, 1000.0, 1.0, 10_000.0));
        let image = level(&out[out.len() / 4..], 24000, 7000.0);
        assert!(image < 100.0, "the 7 kHz image of 1 kHz came out at {image:.0}");
    }

    #[test]
    fn finishing_lets_the_last_samples_out() {
        let mut resampler = Resampler::new(16000, 8000).unwrap();
        let mut out = Vec::new();
        resampler.process(&[10_000; 1000], &mut out);
        let before = out.len();
        resampler.finish(&mut out);
        assert_eq!((before, out.len()), (500, 506), "half the filter, at the output rate");
        // The level held to the end: the samples the delay held are the signal, not silence.
        assert!(out[490..500].iter().all(|s| (9_900..=10_100).contains(s)), "{:?}", &out[490..506]);
        assert!(out[500..].iter().any(|s| *s > 5_000), "{:?}", &out[500..]);
    }

    #[test]
    fn unusable_rates_are_refused() {
        assert!(Resampler::new(0, 8000).is_err());
        assert!(Resampler::new(8000, 44_101).is_err());
        assert_eq!(Resampler::new(7, 0).err(), Some(UnsupportedRates { from: 7, to: 0 }));
    }

    /// Property: however the input arrives in chunks, the output is the same.
    #[test]
    fn fuzz_chunking_never_changes_the_output() {
        bolero::check!().with_type::<(u8, Vec<i16>, Vec<u8>)>().for_each(|(pair, input, cuts)| {
            let pairs = [(8000, 16000), (16000, 8000), (8000, 22050), (24000, 8000), (22050, 16000)];
            let (from, to) = pairs[usize::from(*pair) % pairs.len()];
            let whole = convert(from, to, input);
            let mut resampler = Resampler::new(from, to).unwrap();
            let (mut pieces, mut rest) = (Vec::new(), input.as_slice());
            for cut in cuts {
                let (piece, tail) = rest.split_at(usize::from(*cut).min(rest.len()));
                resampler.process(piece, &mut pieces);
                rest = tail;
            }
            resampler.process(rest, &mut pieces);
            assert_eq!(pieces, whole);
        });
    }
}
