//! 20 ms frames (Twilio's Media Streams send and expect 20 ms of 8 kHz μ-law per message), their
//! loudness, and the duration rules that keep line noise and clicks from counting as speech.

use std::time::Duration;

/// The length of one frame.
pub const FRAME: Duration = Duration::from_millis(20);

/// Samples in one frame at `rate` Hz.
pub fn samples_per_frame(rate: u32) -> usize {
    (rate / 50) as usize
}

/// Cuts a stream of samples, arriving in pieces of any size, into whole frames.
pub struct Framer {
    frame: usize,
    pending: Vec<i16>,
}

impl Framer {
    pub fn new(rate: u32) -> Self {
        Self { frame: samples_per_frame(rate), pending: Vec::new() }
    }

    /// Adds samples; calls `each` with every frame they complete, in order.
    pub fn push(&mut self, samples: &[i16], mut each: impl FnMut(&[i16])) {
        self.pending.extend_from_slice(samples);
        let whole = self.pending.len() / self.frame * self.frame;
        for frame in self.pending[..whole].chunks_exact(self.frame) {
            each(frame);
        }
        self.pending.drain(..whole);
    }

    /// What is left over, padded with silence to a whole frame (the end of an utterance); empty
    /// when nothing is left.
    pub fn flush(&mut self) -> Vec<i16> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let mut last = std::mem::take(&mut self.pending);
        last.resize(self.frame, 0);
        last
    }
}

/// A frame's loudness in dB relative to full scale (RMS); silence is −100 dBFS.
pub fn level_dbfs(frame: &[i16]) -> f32 {
    if frame.is_empty() {
        return -100.0;
    }
    let energy: f64 = frame.iter().map(|s| f64::from(*s) * f64::from(*s)).sum::<f64>() / frame.len() as f64;
    let rms = energy.sqrt() / 32768.0;
    if rms <= 1e-5 { -100.0 } else { (20.0 * rms.log10()) as f32 }
}

/// Whether the caller is speaking, by frames that are or are not speech (by level, or a voice
/// activity model): speech starts only after `min_speech` of it in a row, and ends only after
/// `min_silence` without it, so a click does not start a turn and a breath does not end one.
pub struct SpeechGate {
    min_speech: u32,
    min_silence: u32,
    speaking: bool,
    run: u32,
}

/// What a frame changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    /// Speech confirmed: it began `min_speech` ago.
    Started,
    /// Silence confirmed: speech ended `min_silence` ago.
    Stopped,
}

impl SpeechGate {
    pub fn new(min_speech: Duration, min_silence: Duration) -> Self {
        let frames = |d: Duration| (d.as_millis() / FRAME.as_millis()).max(1) as u32;
        Self { min_speech: frames(min_speech), min_silence: frames(min_silence), speaking: false, run: 0 }
    }

    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// How many frames of speech in a row confirm that the caller started speaking.
    pub fn min_speech_frames(&self) -> usize {
        self.min_speech as usize
    }

    /// Takes the next frame's verdict.
    pub fn frame(&mut self, speech: bool) -> Transition {
        if speech != self.speaking {
            self.run += 1;
        } else {
            self.run = 0;
        }
        let needed = if self.speaking { self.min_silence } else { self.min_speech };
        if self.run < needed {
            return Transition::None;
        }
        self.speaking = !self.speaking;
        self.run = 0;
        if self.speaking { Transition::Started } else { Transition::Stopped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_twenty_milliseconds_whatever_the_pieces() {
        assert_eq!((samples_per_frame(8000), samples_per_frame(16000), samples_per_frame(24000)), (160, 320, 480));
        let mut framer = Framer::new(8000);
        let mut frames = Vec::new();
        for piece in [100, 100, 300, 7] {
            framer.push(&vec![1i16; piece], |f| frames.push(f.len()));
        }
        assert_eq!(frames, [160, 160, 160]);
        let last = framer.flush();
        assert_eq!((last.len(), last.iter().filter(|s| **s == 1).count()), (160, 27));
        assert!(framer.flush().is_empty());
    }

    #[test]
    fn levels_are_decibels_of_full_scale() {
        assert_eq!(level_dbfs(&[0; 160]), -100.0);
        let full: Vec<i16> = (0..160).map(|i| if i % 2 == 0 { i16::MAX } else { -i16::MAX }).collect();
        assert!(level_dbfs(&full).abs() < 0.01);
        let tenth: Vec<i16> = full.iter().map(|s| s / 10).collect();
        assert!((level_dbfs(&tenth) + 20.0).abs() < 0.05, "{}", level_dbfs(&tenth));
    }

    #[test]
    fn clicks_do_not_start_speech_and_breaths_do_not_end_it() {
        let mut gate = SpeechGate::new(Duration::from_millis(60), Duration::from_millis(100));
        let verdicts = |gate: &mut SpeechGate, frames: &[bool]| frames.iter().map(|s| gate.frame(*s)).collect::<Vec<_>>();
        // A 40 ms click, then silence: never speech.
        assert!(verdicts(&mut gate, &[true, true, false, false]).iter().all(|t| *t == Transition::None));
        // 60 ms of speech starts it on the third frame.
        assert_eq!(verdicts(&mut gate, &[true, true, true]), [Transition::None, Transition::None, Transition::Started]);
        // An 80 ms pause does not end it; 100 ms does.
        assert!(verdicts(&mut gate, &[false, false, false, false, true]).iter().all(|t| *t == Transition::None));
        let ending = verdicts(&mut gate, &[false; 5]);
        assert_eq!(ending.last(), Some(&Transition::Stopped));
        assert!(!gate.is_speaking());
    }
}
