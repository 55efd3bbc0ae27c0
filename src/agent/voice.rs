//! The speech layer of calls where Switchboard hears and speaks itself (Media Streams): between a
//! transport's audio (20 ms frames of 8 kHz samples in; audio to play with a mark after each
//! piece, and `clear`, out) and an agent [`Session`](super::session::Session) (caller events in,
//! commands out), so the session is the same as for ConversationRelay calls.
//!
//! - Hearing: a frame whose level reaches `speech_level_dbfs` counts as speech; the caller
//!   starts speaking after `min_speech` of it and stops after `end_of_turn_silence` without it
//!   ([`SpeechGate`]; a voice activity and end-of-turn model replace the level next). Each
//!   utterance, with the frames that confirmed it, is transcribed and reaches the session as
//!   `Said`; an empty transcript is dropped.
//! - Speaking: the session's tokens are cut into sentences; each is synthesised as soon as it is
//!   complete (the first audio leaves before the reply is), resampled to 8 kHz, and sent piece by
//!   piece, each followed by a mark; the sentence's words ride on its last mark.
//! - Barge-in: caller speech confirmed while the agent is speaking clears the transport's
//!   buffer, stops synthesis, and tells the session what the caller heard of the agent's
//!   utterance: the words of the marks that came back before the clear ([`Playback`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::session::{AgentCommand, CallerEvent, Ending};
use crate::audio::Audio;
use crate::audio::frames::{SpeechGate, Transition, level_dbfs};
use crate::audio::resample::Resampler;
use crate::domain::agent::AgentSpeech;
use crate::domain::call::VoiceLatency;
use crate::providers::speech::{SpeechToText, TextToSpeech};

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
    fn voice(&self) -> String {
        self.speech.voice_for(&self.language, &self.default_voice).to_owned()
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

/// A piece of synthesised speech at the transport's rate; the last piece of a sentence carries
/// the sentence.
struct Synthesized {
    audio: Vec<i16>,
    words: Option<String>,
}

pub struct Voice {
    pub stt: Arc<dyn SpeechToText>,
    pub tts: Arc<dyn TextToSpeech>,
    pub settings: VoiceSettings,
}

/// The channels a voice sits between.
pub struct VoiceLinks {
    pub from_transport: mpsc::Receiver<TransportIn>,
    pub to_transport: mpsc::Sender<TransportOut>,
    pub to_session: mpsc::Sender<CallerEvent>,
    pub from_session: mpsc::Receiver<AgentCommand>,
}

impl Voice {
    /// Runs until the session ends (its command channel closes) or the caller hangs up.
    pub async fn run(self, links: VoiceLinks) {
        let VoiceLinks { mut from_transport, to_transport, to_session, mut from_session } = links;
        let Voice { stt, tts, mut settings } = self;
        let end_of_turn_silence = Duration::from_millis(settings.speech.end_of_turn_silence_ms.unsigned_abs());
        let mut gate = SpeechGate::new(settings.min_speech, end_of_turn_silence);
        let mut recent: VecDeque<Vec<i16>> = VecDeque::new();
        let mut utterance: Vec<i16> = Vec::new();
        // Transcribed side by side, delivered in the order spoken.
        let mut transcriptions = FuturesOrdered::new();
        let mut playback = Playback::default();
        let mut speaker = Speaker::start(tts.clone());
        let mut sentence = String::new();
        // Where the agent's current utterance starts in what the caller heard.
        let mut utterance_heard_from = 0;
        let mut utterance_open = false;
        // Frames since the caller's last speech (audio time, whatever the network did), and the
        // wait for the answer to their last words.
        let mut frames_since_speech: u32 = 0;
        let mut wait: Option<Wait> = None;
        // The session's ending waits until its last words have gone to the transport.
        let mut ending: Option<Ending> = None;
        let mut session_open = true;
        loop {
            if ending.is_some() && speaker.is_idle() {
                // The session's last command: the voice's work is done.
                let _ = to_transport.send(TransportOut::End(ending.take().expect("checked"))).await;
                return;
            }
            tokio::select! {
                input = from_transport.recv() => match input {
                    Some(TransportIn::Audio(frame)) => {
                        let speech = level_dbfs(&frame) >= settings.speech_level_dbfs;
                        frames_since_speech = if speech { 0 } else { frames_since_speech.saturating_add(1) };
                        if gate.is_speaking() {
                            utterance.extend_from_slice(&frame);
                        } else {
                            recent.push_back(frame);
                            if recent.len() > gate.min_speech_frames() {
                                recent.pop_front();
                            }
                        }
                        match gate.frame(speech) {
                            Transition::Started => {
                                utterance = recent.drain(..).flatten().collect();
                                if playback.is_playing() || speaker.is_busy() {
                                    // Barge-in: stop the agent and say what was heard.
                                    speaker = Speaker::start(tts.clone());
                                    sentence.clear();
                                    playback.clear();
                                    let _ = to_transport.send(TransportOut::Clear).await;
                                    wait = None;
                                    let heard = playback.heard()[utterance_heard_from..].trim().to_owned();
                                    let _ = to_session.send(CallerEvent::Interrupted { heard }).await;
                                    utterance_open = false;
                                }
                            }
                            Transition::Stopped => {
                                let said = Audio { rate: TRANSPORT_RATE, samples: std::mem::take(&mut utterance) };
                                let (stt, language) = (stt.clone(), settings.language.clone());
                                let turn_ended = Instant::now();
                                let stopped_speaking = turn_ended - crate::audio::frames::FRAME * frames_since_speech;
                                transcriptions.push_back(async move {
                                    let text = stt.transcribe(&said, &language).await;
                                    (text, stopped_speaking, turn_ended)
                                });
                            }
                            Transition::None => {}
                        }
                    }
                    Some(TransportIn::Played(mark)) => {
                        playback.echoed(&mark);
                    }
                    Some(TransportIn::Sending(mark)) => {
                        if wait.as_ref().is_some_and(|w| w.first_audio.as_ref().is_some_and(|(_, first)| *first == mark))
                            && let Some(latency) = wait.take().and_then(|w| w.measured(Instant::now()))
                        {
                            let _ = to_session.send(CallerEvent::Waited(latency)).await;
                        }
                    }
                    Some(TransportIn::Digits(digits)) => {
                        let _ = to_session.send(CallerEvent::Digits(digits)).await;
                    }
                    Some(TransportIn::HungUp) | None => {
                        let _ = to_session.send(CallerEvent::HungUp).await;
                        return;
                    }
                },
                Some((done, stopped_speaking, turn_ended)) = transcriptions.next(), if !transcriptions.is_empty() => match done {
                    Ok(text) if !text.trim().is_empty() => {
                        wait = Some(Wait { stopped_speaking, turn_ended, transcribed: Instant::now(), first_token: None, first_audio: None });
                        let _ = to_session.send(CallerEvent::Said { text, language: Some(settings.language.clone()) }).await;
                    }
                    Ok(_) => tracing::debug!("an utterance had no words"),
                    Err(e) => tracing::warn!(error = %e, "could not transcribe an utterance"),
                },
                Some(piece) = speaker.output.recv() => {
                    let mark = playback.queue(piece.words.as_deref().unwrap_or_default());
                    if let Some(wait) = wait.as_mut().filter(|w| w.first_token.is_some() && w.first_audio.is_none()) {
                        wait.first_audio = Some((Instant::now(), mark.clone()));
                    }
                    let _ = to_transport.send(TransportOut::Play { audio: piece.audio, mark }).await;
                }
                // Looks again for the end of the last words while an ending waits.
                _ = tokio::time::sleep(crate::audio::frames::FRAME), if ending.is_some() => {}
                command = from_session.recv(), if session_open => match command {
                    Some(AgentCommand::Speak { token, last }) => {
                        if let Some(wait) = wait.as_mut().filter(|w| w.first_token.is_none() && !token.is_empty()) {
                            wait.first_token = Some(Instant::now());
                        }
                        if !utterance_open {
                            utterance_open = true;
                            utterance_heard_from = playback.heard().len();
                        }
                        sentence.push_str(&token);
                        if let Some(end) = last_sentence_end(&sentence) {
                            let complete: String = sentence.drain(..end).collect();
                            speaker.say(complete, settings.voice());
                        }
                        if last {
                            speaker.say(std::mem::take(&mut sentence), settings.voice());
                            utterance_open = false;
                        }
                    }
                    Some(AgentCommand::SwitchLanguage { locale }) => settings.language = locale,
                    Some(AgentCommand::End(end)) => ending = Some(end),
                    None if ending.is_some() => session_open = false,
                    None => return,
                },
            }
        }
    }
}

/// Where the last complete sentence of `text` ends (after its punctuation and space), if any.
fn last_sentence_end(text: &str) -> Option<usize> {
    let characters: Vec<(usize, char)> = text.char_indices().collect();
    characters
        .windows(2)
        .rev()
        .find(|pair| matches!(pair[0].1, '.' | '!' | '?' | ';' | ':') && pair[1].1.is_whitespace())
        .map(|pair| pair[1].0 + pair[1].1.len_utf8())
}

/// Synthesises sentences one after another, in the background; dropped (or replaced) to stop.
struct Speaker {
    /// Sentences to say, each with its voice.
    sentences: mpsc::UnboundedSender<(String, String)>,
    output: mpsc::Receiver<Synthesized>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Speaker {
    fn start(tts: Arc<dyn TextToSpeech>) -> Self {
        let (sentences, mut queue) = mpsc::unbounded_channel::<(String, String)>();
        let (out, output) = mpsc::channel(16);
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = pending.clone();
        let task = tokio::spawn(async move {
            while let Some((sentence, voice)) = queue.recv().await {
                let mut pieces = tts.synthesize(&sentence, &voice);
                let mut resampler: Option<(u32, Resampler)> = None;
                let mut last = Vec::new();
                while let Some(piece) = pieces.recv().await {
                    let piece = match piece {
                        Ok(piece) => piece,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not synthesise speech");
                            break;
                        }
                    };
                    if resampler.as_ref().is_none_or(|(rate, _)| *rate != piece.rate) {
                        match Resampler::new(piece.rate, TRANSPORT_RATE) {
                            Ok(new) => resampler = Some((piece.rate, new)),
                            Err(e) => {
                                tracing::warn!(error = %e, "speech at a rate that cannot be played");
                                break;
                            }
                        }
                    }
                    let mut audio = Vec::new();
                    resampler.as_mut().expect("set above").1.process(&piece.samples, &mut audio);
                    // Each piece goes out as it comes; the last one waits to carry the words.
                    let earlier = std::mem::replace(&mut last, audio);
                    if !earlier.is_empty() && out.send(Synthesized { audio: earlier, words: None }).await.is_err() {
                        return;
                    }
                }
                if let Some((_, resampler)) = resampler.as_mut() {
                    resampler.finish(&mut last);
                }
                if out.send(Synthesized { audio: last, words: Some(sentence) }).await.is_err() {
                    return;
                }
                counter.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        Self { sentences, output, pending, task }
    }

    fn say(&self, sentence: String, voice: String) {
        if sentence.trim().is_empty() {
            return;
        }
        self.pending.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = self.sentences.send((sentence, voice));
    }

    /// Whether sentences are still being synthesised.
    fn is_busy(&self) -> bool {
        self.pending.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// Whether everything said has been synthesised and handed over.
    fn is_idle(&self) -> bool {
        !self.is_busy() && self.output.is_empty()
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the caller heard of the agent's speech. Each piece of synthesised audio is sent with the
/// words it speaks and followed by a mark; a mark that comes back means its words were played.
/// After `clear`, Twilio returns every pending mark at once, so marks pending at a clear count as
/// not heard, whenever their echo arrives.
#[derive(Default)]
pub struct Playback {
    next_mark: u64,
    /// Marks sent and not yet echoed, with their words, in order.
    pending: VecDeque<(String, String)>,
    /// Marks cleared before their echo came back.
    cleared: Vec<String>,
    heard: String,
}

impl Playback {
    /// Notes a piece of speech about to be sent; returns the name of the mark to send after it.
    pub fn queue(&mut self, words: &str) -> String {
        self.next_mark += 1;
        let name = format!("speech-{}", self.next_mark);
        self.pending.push_back((name.clone(), words.to_owned()));
        name
    }

    /// The caller spoke over the agent: everything pending will not be heard.
    pub fn clear(&mut self) {
        self.cleared.extend(self.pending.drain(..).map(|(name, _)| name));
    }

    /// A mark came back; returns the words it confirms were played, if any.
    pub fn echoed(&mut self, name: &str) -> Option<&str> {
        if let Some(at) = self.cleared.iter().position(|n| n == name) {
            self.cleared.swap_remove(at);
            return None;
        }
        let at = self.pending.iter().position(|(n, _)| n == name)?;
        // Marks return in order; one that overtakes others confirms them too.
        let mut played = String::new();
        for (_, words) in self.pending.drain(..=at) {
            played.push_str(&words);
        }
        let start = self.heard.len();
        self.heard.push_str(&played);
        Some(&self.heard[start..])
    }

    /// Whether audio is still playing (marks pending).
    pub fn is_playing(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Every word the caller heard so far.
    pub fn heard(&self) -> &str {
        &self.heard
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::providers::speech::SpeechError;

    /// Transcribes every utterance as the next scripted text, noting how long each was.
    struct ScriptedEars {
        words: Mutex<VecDeque<&'static str>>,
        lengths: Mutex<Vec<usize>>,
    }

    impl SpeechToText for ScriptedEars {
        fn transcribe<'a>(
            &'a self,
            utterance: &'a Audio,
            _language: &'a str,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<String, SpeechError>> + Send + 'a>> {
            self.lengths.lock().unwrap().push(utterance.samples.len());
            let next = self.words.lock().unwrap().pop_front().unwrap_or_default();
            Box::pin(async move { Ok(next.to_owned()) })
        }
    }

    /// Speaks 10 ms of 16 kHz audio per character, in two pieces.
    struct Mouth;

    impl TextToSpeech for Mouth {
        fn synthesize(&self, text: &str, _voice: &str) -> mpsc::Receiver<Result<Audio, SpeechError>> {
            let (tx, rx) = mpsc::channel(4);
            let samples = text.chars().count() * 160;
            tokio::spawn(async move {
                for half in [samples / 2, samples - samples / 2] {
                    let _ = tx.send(Ok(Audio { rate: 16_000, samples: vec![1000; half] })).await;
                }
            });
            rx
        }
    }

    struct Call {
        transport_in: mpsc::Sender<TransportIn>,
        transport_out: mpsc::Receiver<TransportOut>,
        session_in: mpsc::Receiver<CallerEvent>,
        session_out: mpsc::Sender<AgentCommand>,
        ears: Arc<ScriptedEars>,
    }

    fn call(words: &[&'static str]) -> Call {
        let ears = Arc::new(ScriptedEars { words: Mutex::new(words.iter().copied().collect()), lengths: Mutex::default() });
        let (transport_in, from_transport) = mpsc::channel(64);
        let (to_transport, transport_out) = mpsc::channel(64);
        let (to_session, session_in) = mpsc::channel(64);
        let (session_out, from_session) = mpsc::channel(64);
        let settings = VoiceSettings {
            language: "en-US".into(),
            speech: AgentSpeech { end_of_turn_silence_ms: 400, ..AgentSpeech::default() },
            default_voice: "alloy".into(),
            speech_level_dbfs: -40.0,
            min_speech: Duration::from_millis(100),
        };
        let voice = Voice { stt: ears.clone(), tts: Arc::new(Mouth), settings };
        tokio::spawn(voice.run(VoiceLinks { from_transport, to_transport, to_session, from_session }));
        Call { transport_in, transport_out, session_in, session_out, ears }
    }

    const LOUD: i16 = 8000;

    impl Call {
        async fn caller(&self, level: i16, milliseconds: u64) {
            for _ in 0..milliseconds / 20 {
                self.transport_in.send(TransportIn::Audio(vec![level; 160])).await.unwrap();
            }
        }

        async fn agent_says(&self, words: &str) {
            for token in words.split_inclusive(' ') {
                self.session_out.send(AgentCommand::Speak { token: token.to_owned(), last: false }).await.unwrap();
            }
            self.session_out.send(AgentCommand::Speak { token: String::new(), last: true }).await.unwrap();
        }

        /// The next pieces played, up to and including the one that carries `count` sentences.
        async fn played(&mut self, count: usize) -> Vec<(usize, String)> {
            let mut pieces = Vec::new();
            while pieces.len() < count {
                match tokio::time::timeout(Duration::from_secs(2), self.transport_out.recv()).await.unwrap().unwrap() {
                    TransportOut::Play { audio, mark } => pieces.push((audio.len(), mark)),
                    other => panic!("expected audio, got {other:?}"),
                }
            }
            pieces
        }

        async fn event(&mut self) -> CallerEvent {
            tokio::time::timeout(Duration::from_secs(2), self.session_in.recv()).await.unwrap().unwrap()
        }
    }

    #[tokio::test]
    async fn speech_becomes_turns_and_turns_become_audio_with_marks() {
        let mut call = call(&["I need to change my order"]);
        call.agent_says("Hello, this is Ava. How can I help?").await;
        // Two sentences, two pieces each, at 8 kHz: 10 ms of audio per character, and each
        // sentence's last 0.75 ms that the resampler's filter held.
        let played = call.played(4).await;
        let samples: usize = played.iter().map(|(n, _)| n).sum();
        let expected = "Hello, this is Ava. How can I help?".chars().count() * 80 + 2 * 6;
        assert_eq!(samples, expected);
        for (_, mark) in &played {
            call.transport_in.send(TransportIn::Played(mark.clone())).await.unwrap();
        }
        // A click is not speech; 300 ms of speech then 400 ms of silence is one utterance.
        call.caller(LOUD, 40).await;
        call.caller(0, 200).await;
        call.caller(LOUD, 300).await;
        call.caller(0, 400).await;
        assert_eq!(call.event().await, CallerEvent::Said { text: "I need to change my order".into(), language: Some("en-US".into()) });
        let lengths = call.ears.lengths.lock().unwrap().clone();
        assert_eq!(lengths.len(), 1, "one utterance: {lengths:?}");
        assert!(lengths[0] >= 300 * 8, "the frames that confirmed speech are kept: {} samples", lengths[0]);
    }

    #[tokio::test]
    async fn speaking_over_the_agent_clears_it_and_says_what_was_heard() {
        let mut call = call(&["Tuesday works"]);
        call.agent_says("Your order ships on Monday. Would Tuesday suit you better?").await;
        let played = call.played(4).await;
        // The caller heard the first sentence (its marks came back), then spoke.
        for (_, mark) in &played[..2] {
            call.transport_in.send(TransportIn::Played(mark.clone())).await.unwrap();
        }
        call.caller(LOUD, 100).await;
        let mut cleared = false;
        while let Ok(Some(out)) = tokio::time::timeout(Duration::from_millis(200), call.transport_out.recv()).await {
            cleared |= out == TransportOut::Clear;
        }
        assert!(cleared, "the transport's buffer is cleared");
        assert_eq!(call.event().await, CallerEvent::Interrupted { heard: "Your order ships on Monday.".into() });
        // The marks Twilio returns after the clear do not count as heard.
        for (_, mark) in &played[2..] {
            call.transport_in.send(TransportIn::Played(mark.clone())).await.unwrap();
        }
        call.caller(LOUD, 200).await;
        call.caller(0, 400).await;
        assert_eq!(call.event().await, CallerEvent::Said { text: "Tuesday works".into(), language: Some("en-US".into()) });
    }

    #[tokio::test]
    async fn keys_and_hang_ups_pass_through_and_the_ending_waits_for_the_last_words() {
        let mut call = call(&[]);
        call.transport_in.send(TransportIn::Digits("42".into())).await.unwrap();
        assert_eq!(call.event().await, CallerEvent::Digits("42".into()));
        call.transport_in.send(TransportIn::HungUp).await.unwrap();
        assert_eq!(call.event().await, CallerEvent::HungUp);
        // The agent's last words play before its ending reaches the transport, which is the end
        // of the voice's work.
        let mut call = self::call(&[]);
        call.agent_says("Goodbye.").await;
        let ending = Ending::new(crate::domain::call::EndedBy::Agent, crate::domain::call::EndReason::AgentEnded);
        call.session_out.send(AgentCommand::End(ending.clone())).await.unwrap();
        let mut outs = Vec::new();
        while let Some(out) = call.transport_out.recv().await {
            outs.push(out);
        }
        assert!(
            matches!(outs.as_slice(), [TransportOut::Play { .. }, TransportOut::Play { .. }, TransportOut::End(end)] if *end == ending),
            "{outs:?}"
        );
    }

    #[tokio::test]
    async fn the_callers_wait_is_measured_from_their_last_word_to_the_first_frame_sent() {
        let mut call = call(&["Where is my order?"]);
        call.caller(LOUD, 300).await;
        call.caller(0, 400).await;
        assert!(matches!(call.event().await, CallerEvent::Said { .. }));
        call.agent_says("It ships today.").await;
        let played = call.played(2).await;
        call.transport_in.send(TransportIn::Sending(played[0].1.clone())).await.unwrap();
        let CallerEvent::Waited(wait) = call.event().await else { panic!("expected the wait") };
        assert_eq!(wait.end_of_turn_ms, 400, "the silence that ended the turn, in audio time");
        let parts = wait.end_of_turn_ms + wait.transcription_ms + wait.first_token_ms + wait.first_audio_ms + wait.first_frame_ms;
        assert!((parts - wait.voice_to_voice_ms).abs() <= 5, "the parts add up (to rounding): {wait:?}");
        // A mark of later audio measures nothing more.
        call.transport_in.send(TransportIn::Sending(played[1].1.clone())).await.unwrap();
        call.transport_in.send(TransportIn::Digits("1".into())).await.unwrap();
        assert_eq!(call.event().await, CallerEvent::Digits("1".into()));
    }

    #[test]
    fn the_caller_heard_what_played_before_the_clear() {
        let mut playback = Playback::default();
        let first = playback.queue("Your order ships ");
        let second = playback.queue("on Tuesday, ");
        let third = playback.queue("and the tracking number is 42.");
        assert_eq!(playback.echoed(&first), Some("Your order ships "));
        // The caller speaks: Twilio drops the rest and returns the pending marks at once.
        playback.clear();
        assert!(!playback.is_playing());
        assert_eq!(playback.echoed(&second), None);
        assert_eq!(playback.echoed(&third), None);
        assert_eq!(playback.heard(), "Your order ships ");
        // Speech after the clear plays as usual; an echo that overtakes confirms what came before.
        let fourth = playback.queue("Sure. ");
        let fifth = playback.queue("Go ahead.");
        assert_eq!(playback.echoed(&fifth), Some("Sure. Go ahead."));
        assert_eq!(playback.echoed(&fourth), None, "already confirmed");
        assert_eq!(playback.heard(), "Your order ships Sure. Go ahead.");
    }

    #[test]
    fn sentences_end_at_punctuation_followed_by_a_space() {
        assert_eq!(last_sentence_end("Hello. How"), Some(7));
        assert_eq!(last_sentence_end("It costs 3.50 dollars"), None);
        assert_eq!(last_sentence_end("Yes! Sure? Ok"), Some(11));
        assert_eq!(last_sentence_end("Hello."), None, "the end of the text waits for more or for `last`");
    }
}
