//! When the caller speaks and when their turn ends, frame by frame (no clock, no I/O: the voice
//! feeds it frames and the end-of-turn model's answers, the turn-detection benchmark does the
//! same from files).
//!
//! Each frame is speech or not, by Silero VAD when the models are installed, else by loudness
//! ([`SpeechDetector`]); a [`SpeechGate`] turns that into speech starting and pausing, so a click
//! is not a turn and a breath does not end one. How a pause becomes the end of the turn:
//! - With the end-of-turn model: after a short pause ([`MODEL_PAUSE`]) the model is asked
//!   whether the utterance so far sounds finished. If it does, the turn ends there; if not (a
//!   pause mid-sentence, a number read out in groups), the caller has the agent's patience to
//!   go on before the turn ends anyway. Speech during the pause continues the same utterance.
//! - Without it (or when it fails): the agent's end-of-turn silence ends the turn.

use std::sync::Arc;
use std::time::Duration;

use crate::audio::Audio;
use crate::audio::frames::{FRAME, SpeechGate, Transition, level_dbfs};
use crate::models::ModelError;
use crate::models::turn::{COMPLETE, SmartTurn};
use crate::models::vad::VadStream;

/// The pause after which the end-of-turn model is asked.
pub const MODEL_PAUSE: Duration = Duration::from_millis(200);

/// Whether an utterance sounds finished: a probability (the end-of-turn model).
pub trait EndOfTurn: Send + Sync + 'static {
    fn completion(&self, utterance: &Audio) -> Result<f32, ModelError>;
}

impl EndOfTurn for SmartTurn {
    fn completion(&self, utterance: &Audio) -> Result<f32, ModelError> {
        SmartTurn::completion(self, utterance)
    }
}

/// Tells speech frames from the rest.
pub enum SpeechDetector {
    /// A frame at or above this level (dBFS) is speech.
    Level(f32),
    /// Silero VAD; the level decides if the model fails.
    Model { vad: VadStream, fallback_level: f32 },
}

impl SpeechDetector {
    fn is_speech(&mut self, frame: &[i16]) -> bool {
        match self {
            Self::Level(threshold) => level_dbfs(frame) >= *threshold,
            Self::Model { vad, fallback_level } => match vad.is_speech(frame) {
                Ok(speech) => speech,
                Err(e) => {
                    tracing::warn!(error = %e, "voice activity detection failed; hearing by level");
                    let level = *fallback_level;
                    *self = Self::Level(level);
                    level_dbfs(frame) >= level
                }
            },
        }
    }
}

/// How long the caller may pause.
#[derive(Clone, Copy, Debug)]
pub struct Endpointing {
    /// Silence that ends a turn when no model decides.
    pub silence: Duration,
    /// Silence that ends a turn the model heard as unfinished.
    pub patience: Duration,
}

/// What a frame, or the model's answer, changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    Nothing,
    /// The caller started speaking (confirmed by the minimum speech).
    Started,
    /// The caller paused: ask the end-of-turn model about the utterance so far, and hand its
    /// answer to [`TurnDetector::answered`].
    Ask,
    /// The caller went on after a pause: the same utterance continues.
    Resumed,
    /// The caller's turn is over; their last speech was `silence` ago.
    Ended {
        silence: Duration,
    },
}

/// Where the caller is in their turn.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Turn {
    Quiet,
    Speaking,
    /// Paused mid-turn: the model's verdict (`None` while it thinks; `Some(false)` unfinished).
    Paused {
        complete: Option<bool>,
    },
}

pub struct TurnDetector {
    detector: SpeechDetector,
    gate: SpeechGate,
    end_of_turn: Option<Arc<dyn EndOfTurn>>,
    endpointing: Endpointing,
    turn: Turn,
    /// Frames since the last speech frame.
    silent_frames: u32,
}

impl TurnDetector {
    pub fn new(
        detector: SpeechDetector,
        end_of_turn: Option<Arc<dyn EndOfTurn>>,
        min_speech: Duration,
        mut endpointing: Endpointing,
    ) -> Self {
        let pause = if end_of_turn.is_some() { MODEL_PAUSE } else { endpointing.silence };
        if end_of_turn.is_none() {
            // Without the model every pause is unfinished until the silence is up.
            endpointing.patience = endpointing.silence;
        }
        Self { detector, gate: SpeechGate::new(min_speech, pause), end_of_turn, endpointing, turn: Turn::Quiet, silent_frames: 0 }
    }

    /// The model to ask when [`Heard::Ask`] comes.
    pub fn end_of_turn(&self) -> Option<Arc<dyn EndOfTurn>> {
        self.end_of_turn.clone()
    }

    /// Frames of speech that confirm the caller started speaking.
    pub fn min_speech_frames(&self) -> usize {
        self.gate.min_speech_frames()
    }

    /// Whether the caller's turn is open (speaking, or pausing within it).
    pub fn in_turn(&self) -> bool {
        self.turn != Turn::Quiet
    }

    /// Whether the caller is speaking now (not pausing).
    pub fn is_speaking(&self) -> bool {
        self.turn == Turn::Speaking
    }

    pub fn frame(&mut self, frame: &[i16]) -> Heard {
        let speech = self.detector.is_speech(frame);
        self.silent_frames = if speech { 0 } else { self.silent_frames.saturating_add(1) };
        match (self.gate.frame(speech), self.turn) {
            (Transition::Started, Turn::Quiet) => {
                self.turn = Turn::Speaking;
                Heard::Started
            }
            (Transition::Started, _) => {
                self.turn = Turn::Speaking;
                Heard::Resumed
            }
            (Transition::Stopped, _) if self.end_of_turn.is_some() => {
                self.turn = Turn::Paused { complete: None };
                Heard::Ask
            }
            (Transition::Stopped, _) => {
                self.turn = Turn::Paused { complete: Some(false) };
                self.ends_after_waiting()
            }
            (Transition::None, Turn::Paused { .. }) => self.ends_after_waiting(),
            (Transition::None, _) => Heard::Nothing,
        }
    }

    /// Ends a paused turn once the caller has been silent long enough: the patience when the
    /// model heard the turn unfinished, the longer of patience and silence while it thinks.
    fn ends_after_waiting(&mut self) -> Heard {
        let limit = match self.turn {
            Turn::Paused { complete: Some(false) } => self.endpointing.patience,
            _ => self.endpointing.silence.max(self.endpointing.patience),
        };
        if FRAME * self.silent_frames >= limit { self.end_now() } else { Heard::Nothing }
    }

    /// The end-of-turn model's answer to the last [`Heard::Ask`]; ignored if the caller has
    /// gone on since.
    pub fn answered(&mut self, completion: Result<f32, ModelError>) -> Heard {
        if self.turn != (Turn::Paused { complete: None }) {
            return Heard::Nothing;
        }
        let complete = match completion {
            Ok(probability) => probability >= COMPLETE,
            Err(e) => {
                tracing::warn!(error = %e, "the end-of-turn model failed; ending turns by silence");
                self.end_of_turn = None;
                self.endpointing.patience = self.endpointing.silence;
                false
            }
        };
        if complete {
            return self.end_now();
        }
        self.turn = Turn::Paused { complete: Some(false) };
        self.ends_after_waiting()
    }

    /// Ends the turn at this pause.
    pub fn end_now(&mut self) -> Heard {
        self.turn = Turn::Quiet;
        Heard::Ended { silence: FRAME * self.silent_frames }
    }
}
