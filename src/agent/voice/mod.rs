//! The speech layer of calls where Switchboard hears and speaks itself (Media Streams): between a
//! transport's audio (20 ms frames of 8 kHz samples in; audio to play with a mark after each
//! piece, and `clear`, out) and an agent [`Session`](super::session::Session) (caller events in,
//! commands out), so the session is the same as for ConversationRelay calls.
//!
//! - Hearing (`hearing`): Silero VAD (else the level) tells speech frames; the end-of-turn
//!   model (else silence alone) decides when a pause ends the caller's turn, with the agent's
//!   patience for callers who pause mid-sentence. Each utterance, with the frames that
//!   confirmed it, is transcribed and reaches the session as `Said`; a transcript without a
//!   letter or digit is dropped, and one that ends mid-sentence ("I'd like to…", `unfinished`)
//!   is held for the agent's patience and joined to what the caller says next.
//! - Speaking (`speaker`): the session's tokens are cut into sentences; each is synthesised as
//!   soon as it is complete (the first audio leaves before the reply is), resampled to 8 kHz,
//!   and sent piece by piece, each followed by a mark; the sentence's words ride on its last
//!   mark. Fixed phrases (the greeting, the filler) come from a [`SpeechCache`].
//! - Barge-in: caller speech confirmed while the agent is speaking clears the transport's
//!   buffer, stops synthesis, and tells the session what the caller heard of the agent's
//!   utterance: the words of the marks that came back before the clear (`playback`). Unless the
//!   agent says otherwise, speech over the agent waits to be heard out while it is short: at
//!   its first pause (or once it is no longer short) what it said so far is transcribed; a
//!   backchannel ("mhm", "okay") lets the agent go on (`backchannel`); anything else, or
//!   anything longer than a backchannel, interrupts. Either way the caller's turn ends by the
//!   usual rules, so a pause within an interruption does not cut it in two. A hang-up over the
//!   agent cuts its turn to what had played the same way.
//! - No dead air: when the answer has not begun a moment after the caller's turn ended, a
//!   filler ("One moment.") is said aside.
//! - Measuring: the caller's wait for each answer, from their last word to the first frame of
//!   the answer sent, in parts ([`VoiceLatency`]), goes to the session as `Waited`.

mod backchannel;
pub mod hearing;
mod playback;
mod speaker;
mod unfinished;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use self::hearing::{EndOfTurn, Endpointing, Heard, SpeechDetector, TurnDetector};
use self::playback::Playback;
pub use self::speaker::SpeechCache;
use self::speaker::{Speaker, first_clause_end, last_sentence_end, sentences};
use super::session::{AgentCommand, CallerEvent, Ending};
use crate::audio::Audio;
use crate::audio::frames::{FRAME, samples_per_frame};
use crate::domain::agent::AgentSpeech;
use crate::domain::call::VoiceLatency;
use crate::models::vad::SileroVad;
use crate::models::{ModelError, TurnModels};
use crate::providers::speech::{SpeakingVoice, SpeechError, SpeechToText, TextToSpeech};

/// The rate of the audio a transport carries.
pub const TRANSPORT_RATE: u32 = 8000;

/// What the transport hears.
#[derive(Clone, Debug, PartialEq)]
pub enum TransportIn {
    /// 20 ms of the caller's audio.
    Audio(Vec<i16>),
    /// A mark came back: the audio before it has played (or was cleared).
    Played(String),
    /// The first frame of the audio before this mark went out to the caller.
    Sending(String),
    Digits(String),
    HungUp,
}

/// What the transport is told to do.
#[derive(Clone, Debug, PartialEq)]
pub enum TransportOut {
    /// Play this audio, then send back `mark`.
    Play {
        audio: Vec<i16>,
        mark: String,
    },
    /// Drop everything buffered (the caller spoke over the agent).
    Clear,
    /// The caller opted out of the recording.
    StopRecording,
    End(Ending),
}

/// How the agent hears and speaks.
#[derive(Clone, Debug)]
pub struct VoiceSettings {
    /// The call's language (BCP 47), for recognition and the voice; a language switch changes both.
    pub language: String,
    /// The agent's speech settings: voices per language, end-of-turn silence.
    pub speech: AgentSpeech,
    /// The voice for languages `speech` names none for.
    pub default_voice: String,
    pub speech_level_dbfs: f32,
    pub min_speech: Duration,
}

impl VoiceSettings {
    fn voice(&self) -> SpeakingVoice {
        SpeakingVoice::new(self.speech.voice_for(&self.language, &self.default_voice), &self.language)
    }
}

/// The caller's wait for the answer to their last words, as it is measured: when they stopped
/// speaking, when that was taken as the end of their turn, when the transcript came, and then
/// the answer's first token, first synthesised audio (and its mark) and first frame sent.
struct Wait {
    stopped_speaking: Instant,
    turn_ended: Instant,
    transcribed: Instant,
    first_token: Option<Instant>,
    first_audio: Option<(Instant, String)>,
}

impl Wait {
    fn measured(&self, first_frame: Instant) -> Option<VoiceLatency> {
        let (first_token, (first_audio, _)) = (self.first_token?, self.first_audio.as_ref()?);
        let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_millis() as i64;
        Some(VoiceLatency {
            end_of_turn_ms: ms(self.stopped_speaking, self.turn_ended),
            transcription_ms: ms(self.turn_ended, self.transcribed),
            first_token_ms: ms(self.transcribed, first_token),
            first_audio_ms: ms(first_token, *first_audio),
            first_frame_ms: ms(*first_audio, first_frame),
            voice_to_voice_ms: ms(self.stopped_speaking, first_frame),
        })
    }
}

/// The models a voice hears with; without them, loudness and silence.
#[derive(Clone, Default)]
pub struct Hearing {
    pub vad: Option<Arc<SileroVad>>,
    /// The end-of-turn model, and the questions it may answer at once across calls (more wait
    /// their turn here, not on threads of their own).
    pub end_of_turn: Option<(Arc<dyn EndOfTurn>, Arc<Semaphore>)>,
}

impl Hearing {
    pub fn from_models(models: Option<&TurnModels>) -> Self {
        Self {
            vad: models.map(|m| m.vad.clone()),
            end_of_turn: models.map(|m| (m.end_of_turn.clone() as Arc<dyn EndOfTurn>, m.end_of_turn_slots.clone())),
        }
    }
}

pub struct Voice {
    pub stt: Arc<dyn SpeechToText>,
    pub tts: Arc<dyn TextToSpeech>,
    /// Fixed phrases already synthesised, and the name `tts` has there.
    pub cache: SpeechCache,
    pub synthesizer: String,
    pub settings: VoiceSettings,
    pub hearing: Hearing,
}

/// The channels a voice sits between.
pub struct VoiceLinks {
    pub from_transport: mpsc::Receiver<TransportIn>,
    pub to_transport: mpsc::Sender<TransportOut>,
    pub to_session: mpsc::Sender<CallerEvent>,
    pub from_session: mpsc::Receiver<AgentCommand>,
}

/// Speech over the agent is heard out this long as a possible backchannel; then what it said so
/// far is transcribed, and unless that is only "go on" words the agent is stopped.
const SHORT_UTTERANCE: Duration = Duration::from_millis(700);
/// Speech over the agent that goes on this long stops the agent, whatever it says: the caller
/// is never ignored for longer.
const LONGEST_BACKCHANNEL: Duration = Duration::from_millis(2000);
/// Silence after the caller's last word kept in the audio to transcribe.
const KEPT_SILENCE: Duration = Duration::from_millis(200);

/// The words of a partial transcription, once it has them (never, while none is asked for).
async fn partial_words(partial: &mut Option<tokio::task::JoinHandle<Result<String, SpeechError>>>) -> Result<String, SpeechError> {
    match partial {
        Some(transcribing) => transcribing.await.unwrap_or_else(|e| Err(SpeechError::Engine(e.to_string()))),
        None => std::future::pending().await,
    }
}

/// The end-of-turn model's answer, once it has one (never, while it is not asked).
async fn model_answer(verdict: &mut Option<tokio::task::JoinHandle<Result<f32, ModelError>>>) -> Result<f32, ModelError> {
    match verdict {
        Some(thinking) => thinking.await.unwrap_or_else(|e| Err(ModelError::Inference(e.to_string()))),
        None => std::future::pending().await,
    }
}

/// An utterance being transcribed: its words, when the caller stopped speaking and when that
/// was taken as the end of their turn, and whether it came over the agent's speech.
type Transcription = Pin<Box<dyn Future<Output = (Result<String, SpeechError>, Instant, Instant, bool)> + Send>>;

/// Everything a voice keeps track of during a call.
struct Voicing {
    stt: Arc<dyn SpeechToText>,
    tts: Arc<dyn TextToSpeech>,
    cache: SpeechCache,
    synthesizer: String,
    settings: VoiceSettings,
    to_transport: mpsc::Sender<TransportOut>,
    to_session: mpsc::Sender<CallerEvent>,
    turn: TurnDetector,
    end_of_turn_slots: Option<Arc<Semaphore>>,
    /// The end-of-turn model thinking about the utterance so far.
    verdict: Option<tokio::task::JoinHandle<Result<f32, ModelError>>>,
    /// The frames before speech was confirmed (they belong to the utterance), and the utterance.
    recent: VecDeque<Vec<i16>>,
    utterance: Vec<i16>,
    /// The current utterance came over the agent's speech and may be a backchannel.
    over_agent: bool,
    /// What that utterance said so far, being transcribed to tell a long backchannel from an
    /// interruption; whether it was asked for.
    partial: Option<tokio::task::JoinHandle<Result<String, SpeechError>>>,
    partial_asked: bool,
    /// Transcribed side by side, delivered in the order spoken.
    transcriptions: FuturesOrdered<Transcription>,
    playback: Playback,
    speaker: Speaker,
    /// The agent's words not yet a whole sentence.
    sentence: String,
    /// Where the agent's current utterance starts in what the caller heard.
    utterance_heard_from: usize,
    utterance_open: bool,
    /// Whether the current utterance's first piece has gone to the speaker.
    first_piece_said: bool,
    /// An announcement plays whole: the letters of it not yet sent as audio, and the marks of
    /// the pieces sent and not yet played. Until both are done, nothing the caller says stops it.
    unbroken_letters: usize,
    unbroken_marks: Vec<String>,
    /// Words that ended mid-sentence, held until the caller goes on or the agent's patience is
    /// up, and when that is.
    held: Option<(String, Instant)>,
    /// The caller's wait for the answer to their last words, and when a filler is due.
    wait: Option<Wait>,
    filler_at: Option<Instant>,
}

impl Voice {
    /// Runs until the session ends (its ending has gone to the transport after the last words)
    /// or the caller hangs up.
    pub async fn run(self, links: VoiceLinks) {
        let VoiceLinks { mut from_transport, to_transport, to_session, mut from_session } = links;
        let speech = &self.settings.speech;
        let endpointing = Endpointing {
            silence: Duration::from_millis(speech.end_of_turn_silence_ms.unsigned_abs()),
            patience: Duration::from_millis(speech.patience_ms.unsigned_abs()),
        };
        let detector = match self.hearing.vad {
            Some(vad) => {
                SpeechDetector::Model { vad: crate::models::vad::VadStream::new(vad), fallback_level: self.settings.speech_level_dbfs }
            }
            None => SpeechDetector::Level(self.settings.speech_level_dbfs),
        };
        let speaker = Speaker::start(self.tts.clone(), self.cache.clone(), self.synthesizer.clone());
        let mut voicing = Voicing {
            turn: TurnDetector::new(
                detector,
                self.hearing.end_of_turn.as_ref().map(|(model, _)| model.clone()),
                self.settings.min_speech,
                endpointing,
            ),
            end_of_turn_slots: self.hearing.end_of_turn.map(|(_, slots)| slots),
            verdict: None,
            stt: self.stt,
            tts: self.tts,
            cache: self.cache,
            synthesizer: self.synthesizer,
            settings: self.settings,
            to_transport,
            to_session,
            recent: VecDeque::new(),
            utterance: Vec::new(),
            over_agent: false,
            partial: None,
            partial_asked: false,
            transcriptions: FuturesOrdered::new(),
            playback: Playback::default(),
            speaker,
            sentence: String::new(),
            utterance_heard_from: 0,
            utterance_open: false,
            unbroken_letters: 0,
            unbroken_marks: Vec::new(),
            first_piece_said: false,
            held: None,
            wait: None,
            filler_at: None,
        };
        voicing.warm_filler();
        // The session's ending waits until its last words have gone to the transport.
        let mut ending: Option<Ending> = None;
        let mut session_open = true;
        loop {
            if ending.is_some() && voicing.speaker.is_idle() {
                // The session's last command: the voice's work is done.
                let _ = voicing.to_transport.send(TransportOut::End(ending.take().expect("checked"))).await;
                return;
            }
            let (filler_at, held_until) = (voicing.filler_at, voicing.held.as_ref().map(|(_, until)| *until));
            tokio::select! {
                input = from_transport.recv() => match input {
                    Some(TransportIn::Audio(frame)) => voicing.heard_frame(frame).await,
                    Some(TransportIn::Played(mark)) => {
                        voicing.playback.echoed(&mark);
                        let playback = &voicing.playback;
                        voicing.unbroken_marks.retain(|mark| playback.is_pending(mark));
                    }
                    Some(TransportIn::Sending(mark)) => voicing.sending(&mark).await,
                    Some(TransportIn::Digits(digits)) => {
                        let _ = voicing.to_session.send(CallerEvent::Digits(digits)).await;
                    }
                    Some(TransportIn::HungUp) | None => {
                        // Hung up over the agent: its turn keeps what had played.
                        if voicing.agent_speaking() {
                            voicing.tell_what_was_heard().await;
                        }
                        // Words held for more are still the caller's turn.
                        if let Some((text, _)) = voicing.held.take() {
                            voicing.say_to_session(text).await;
                        }
                        let _ = voicing.to_session.send(CallerEvent::HungUp).await;
                        return;
                    }
                },
                words = partial_words(&mut voicing.partial) => {
                    voicing.partial = None;
                    voicing.heard_partly(words).await;
                }
                completion = model_answer(&mut voicing.verdict) => {
                    voicing.verdict = None;
                    if let Heard::Ended { silence } = voicing.turn.answered(completion) {
                        voicing.end_turn(silence);
                    }
                }
                Some((words, stopped_speaking, turn_ended, over_agent)) = voicing.transcriptions.next(), if !voicing.transcriptions.is_empty() => {
                    voicing.transcribed(words, stopped_speaking, turn_ended, over_agent).await;
                }
                Some(piece) = voicing.speaker.output.recv() => {
                    let words = piece.words.as_deref().unwrap_or_default();
                    let mark = voicing.playback.queue(words);
                    if voicing.unbroken_letters > 0 {
                        voicing.unbroken_letters = voicing.unbroken_letters.saturating_sub(letters(words));
                        voicing.unbroken_marks.push(mark.clone());
                    }
                    if let Some(wait) = voicing.wait.as_mut().filter(|w| w.first_token.is_some() && w.first_audio.is_none()) {
                        wait.first_audio = Some((Instant::now(), mark.clone()));
                    }
                    let _ = voicing.to_transport.send(TransportOut::Play { audio: piece.audio, mark }).await;
                }
                () = tokio::time::sleep_until(filler_at.unwrap_or_else(Instant::now)), if filler_at.is_some() => {
                    voicing.filler_at = None;
                    if !voicing.speaker.is_busy() && !voicing.playback.is_playing() {
                        voicing.speaker.say_aside(voicing.settings.speech.filler.clone(), voicing.settings.voice());
                    }
                }
                () = tokio::time::sleep_until(held_until.unwrap_or_else(Instant::now)), if held_until.is_some() => {
                    voicing.patience_up().await;
                }
                // Looks again for the end of the last words while an ending waits.
                _ = tokio::time::sleep(FRAME), if ending.is_some() => {}
                command = from_session.recv(), if session_open => match command {
                    Some(AgentCommand::Speak { token, last }) => voicing.speak(&token, last),
                    Some(AgentCommand::Announce { words }) => {
                        voicing.unbroken_letters += letters(&words);
                        voicing.speak(&words, true);
                    }
                    Some(AgentCommand::SwitchLanguage { locale }) => voicing.settings.language = locale,
                    Some(AgentCommand::StopRecording) => {
                        let _ = voicing.to_transport.send(TransportOut::StopRecording).await;
                    }
                    Some(AgentCommand::End(end)) => ending = Some(end),
                    None if ending.is_some() => session_open = false,
                    None => return,
                },
            }
        }
    }
}

impl Voicing {
    /// Whether the agent is speaking (or about to).
    fn agent_speaking(&self) -> bool {
        self.playback.is_playing() || self.speaker.is_busy()
    }

    /// Synthesises the filler ahead, so it starts at once when it is needed.
    fn warm_filler(&self) {
        let filler = self.settings.speech.filler.clone();
        if filler.is_empty() {
            return;
        }
        let (cache, tts, synthesizer, voice) = (self.cache.clone(), self.tts.clone(), self.synthesizer.clone(), self.settings.voice());
        tokio::spawn(async move {
            if let Err(e) = cache.warm(tts.as_ref(), &synthesizer, &voice, &filler).await {
                tracing::debug!(error = %e, "could not synthesise the filler ahead");
            }
        });
    }

    async fn heard_frame(&mut self, frame: Vec<i16>) {
        if self.turn.in_turn() {
            self.utterance.extend_from_slice(&frame);
        } else {
            self.recent.push_back(frame.clone());
            if self.recent.len() > self.turn.min_speech_frames() {
                self.recent.pop_front();
            }
        }
        match self.turn.frame(&frame) {
            Heard::Started => {
                self.utterance = self.recent.drain(..).flatten().collect();
                self.filler_at = None;
                if self.agent_speaking() {
                    if self.settings.speech.backchannels_interrupt {
                        self.barge_in().await;
                    } else {
                        // Heard out while it is short: it may only be "mhm".
                        self.over_agent = true;
                    }
                }
            }
            Heard::Ask => {
                if self.over_agent {
                    // A pause in speech over the agent: whether it was only "go on" is decided
                    // now, while the turn itself ends by the usual rules ("Tuesday, … please"
                    // is one turn, not two).
                    self.check_words_so_far();
                }
                if let (Some(model), Some(slots)) = (self.turn.end_of_turn(), self.end_of_turn_slots.clone()) {
                    let utterance = Audio { rate: TRANSPORT_RATE, samples: self.utterance.clone() };
                    self.verdict = Some(tokio::spawn(async move {
                        let _slot = slots.acquire_owned().await.map_err(|e| ModelError::Inference(e.to_string()))?;
                        tokio::task::spawn_blocking(move || model.completion(&utterance))
                            .await
                            .unwrap_or_else(|e| Err(ModelError::Inference(e.to_string())))
                    }));
                }
            }
            Heard::Resumed => {
                self.forget_verdict();
            }
            Heard::Ended { silence } => self.end_turn(silence),
            Heard::Nothing if self.over_agent && self.turn.is_speaking() => {
                let spoken = FRAME * (self.utterance.len() / samples_per_frame(TRANSPORT_RATE)) as u32;
                if spoken > LONGEST_BACKCHANNEL {
                    self.stop_for_the_caller().await;
                } else if spoken > SHORT_UTTERANCE && !self.partial_asked {
                    self.check_words_so_far();
                }
            }
            Heard::Nothing => {}
        }
    }

    /// Transcribes what the caller has said over the agent so far, to tell "go on" from an
    /// interruption (unless a transcription of it is already under way).
    fn check_words_so_far(&mut self) {
        if self.partial.is_some() {
            return;
        }
        self.partial_asked = true;
        let (stt, language) = (self.stt.clone(), self.settings.language.clone());
        let so_far = Audio { rate: TRANSPORT_RATE, samples: self.utterance.clone() };
        self.partial = Some(tokio::spawn(async move { stt.transcribe(&so_far, &language).await }));
    }

    /// What the caller has said over the agent so far: "go on" words let it go on, and if the
    /// caller has paused they were all of it (no turn, and what they say next is a new
    /// utterance); anything else (or nothing understood) stops the agent.
    async fn heard_partly(&mut self, words: Result<String, SpeechError>) {
        if !self.over_agent {
            return;
        }
        match words {
            Ok(text) if backchannel::is_backchannel(&text) => {
                tracing::debug!(%text, "a backchannel: the agent goes on");
                if self.turn.in_turn() && !self.turn.is_speaking() {
                    self.turn.end_now();
                    self.utterance.clear();
                    self.over_agent = false;
                    self.forget_partial();
                    self.forget_verdict();
                }
            }
            _ => self.stop_for_the_caller().await,
        }
    }

    /// Speech over the agent is no backchannel: the agent stops and the caller has the turn.
    async fn stop_for_the_caller(&mut self) {
        self.over_agent = false;
        self.forget_partial();
        if self.agent_speaking() {
            self.barge_in().await;
        }
    }

    fn forget_verdict(&mut self) {
        if let Some(thinking) = self.verdict.take() {
            thinking.abort();
        }
    }

    fn forget_partial(&mut self) {
        if let Some(transcribing) = self.partial.take() {
            transcribing.abort();
        }
        self.partial_asked = false;
    }

    /// The caller's turn is over, their last speech `silence` ago: transcribe the utterance
    /// (with no more than [`KEPT_SILENCE`] of the silence after it).
    fn end_turn(&mut self, silence: Duration) {
        self.forget_verdict();
        let mut samples = std::mem::take(&mut self.utterance);
        let trailing = (silence.saturating_sub(KEPT_SILENCE).as_millis() as usize) * TRANSPORT_RATE as usize / 1000;
        samples.truncate(samples.len().saturating_sub(trailing));
        let said = Audio { rate: TRANSPORT_RATE, samples };
        let (stt, language) = (self.stt.clone(), self.settings.language.clone());
        let turn_ended = Instant::now();
        let stopped_speaking = turn_ended - silence;
        let over_agent = std::mem::take(&mut self.over_agent);
        self.forget_partial();
        self.transcriptions.push_back(Box::pin(async move {
            let words = stt.transcribe(&said, &language).await;
            (words, stopped_speaking, turn_ended, over_agent)
        }));
    }

    /// The caller spoke over the agent: stop it, and tell the session what was heard. An
    /// announcement still playing is not stopped: the caller's words wait for their turn.
    async fn barge_in(&mut self) {
        if self.unbroken_letters > 0 || !self.unbroken_marks.is_empty() {
            return tracing::debug!("the caller spoke over an announcement; it plays on");
        }
        self.speaker = Speaker::start(self.tts.clone(), self.cache.clone(), self.synthesizer.clone());
        self.sentence.clear();
        self.playback.clear();
        let _ = self.to_transport.send(TransportOut::Clear).await;
        self.wait = None;
        self.tell_what_was_heard().await;
    }

    /// Tells the session the agent was cut off, and what the caller heard of its utterance:
    /// the words of the marks that came back.
    async fn tell_what_was_heard(&mut self) {
        let heard = self.playback.heard()[self.utterance_heard_from..].trim().to_owned();
        let _ = self.to_session.send(CallerEvent::Interrupted { heard }).await;
        self.utterance_open = false;
    }

    async fn transcribed(&mut self, words: Result<String, SpeechError>, stopped_speaking: Instant, turn_ended: Instant, over_agent: bool) {
        let text = match words {
            // Punctuation or control characters alone ("...", what recognisers return for a
            // breath or noise) are no words.
            Ok(text) if text.chars().any(char::is_alphanumeric) => text.trim().to_owned(),
            Ok(_) => return tracing::debug!("an utterance had no words"),
            Err(e) => return tracing::warn!(error = %e, "could not transcribe an utterance"),
        };
        if over_agent && backchannel::is_backchannel(&text) {
            return tracing::debug!(%text, "a backchannel: the agent goes on");
        }
        if over_agent && self.agent_speaking() {
            // A short utterance that is not a backchannel ("No, Tuesday.") interrupts.
            self.barge_in().await;
        }
        let text = match self.held.take() {
            Some((before, _)) => format!("{before} {text}"),
            None => text,
        };
        self.wait = Some(Wait { stopped_speaking, turn_ended, transcribed: Instant::now(), first_token: None, first_audio: None });
        if unfinished::sounds_unfinished(&text, &self.settings.language) {
            tracing::debug!(%text, "the caller stopped mid-sentence: waiting for more");
            self.held = Some((text, Instant::now() + Duration::from_millis(self.settings.speech.patience_ms.unsigned_abs())));
            return;
        }
        self.say_to_session(text).await;
    }

    /// The agent's patience with words that ended mid-sentence is up: they go to the session as
    /// they are, unless the caller is speaking again (then they join what comes).
    async fn patience_up(&mut self) {
        if self.turn.in_turn() {
            if let Some((_, until)) = self.held.as_mut() {
                *until = Instant::now() + Duration::from_millis(self.settings.speech.patience_ms.unsigned_abs());
            }
            return;
        }
        if let Some((text, _)) = self.held.take() {
            // The end of the turn was decided now.
            if let Some(wait) = self.wait.as_mut() {
                wait.turn_ended = Instant::now();
            }
            self.say_to_session(text).await;
        }
    }

    /// The caller's words go to the session; the wait for the answer (and the filler) starts.
    async fn say_to_session(&mut self, text: String) {
        if let Some(wait) = self.wait.as_mut() {
            wait.transcribed = Instant::now();
        }
        if !self.settings.speech.filler.is_empty() {
            self.filler_at = Some(Instant::now() + Duration::from_millis(self.settings.speech.filler_after_ms.unsigned_abs()));
        }
        let _ = self.to_session.send(CallerEvent::Said { text, language: Some(self.settings.language.clone()) }).await;
    }

    /// The first frame of a piece went out: the end of the caller's wait, if it is that piece.
    async fn sending(&mut self, mark: &str) {
        if self.wait.as_ref().is_some_and(|w| w.first_audio.as_ref().is_some_and(|(_, first)| first == mark))
            && let Some(latency) = self.wait.take().and_then(|w| w.measured(Instant::now()))
        {
            let _ = self.to_session.send(CallerEvent::Waited(latency)).await;
        }
    }

    fn speak(&mut self, token: &str, last: bool) {
        if !token.is_empty() {
            self.filler_at = None;
            if let Some(wait) = self.wait.as_mut().filter(|w| w.first_token.is_none()) {
                wait.first_token = Some(Instant::now());
            }
        }
        if !self.utterance_open {
            self.utterance_open = true;
            self.utterance_heard_from = self.playback.heard().len();
            self.first_piece_said = false;
        }
        self.sentence.push_str(token);
        // The answer's first piece may be a clause: the caller hears it while the rest is made.
        let first_clause = || if self.first_piece_said { None } else { first_clause_end(&self.sentence) };
        if let Some(end) = last_sentence_end(&self.sentence).or_else(first_clause) {
            let complete: String = self.sentence.drain(..end).collect();
            for sentence in sentences(&complete) {
                self.speaker.say(sentence, self.settings.voice());
            }
            self.first_piece_said = true;
        }
        if last {
            self.speaker.say(std::mem::take(&mut self.sentence), self.settings.voice());
            self.utterance_open = false;
        }
    }
}

#[cfg(test)]
mod tests;

/// The letters and digits of `text`: what an announcement's pieces are counted by, whatever
/// spaces the speaker trims.
fn letters(text: &str) -> usize {
    text.chars().filter(|c| c.is_alphanumeric()).count()
}
