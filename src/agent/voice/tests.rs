//! The voice between a scripted transport and a scripted session: hearing, speaking, barge-in,
//! backchannels, fillers and the caller's wait.

use std::sync::Mutex;

use super::*;
use crate::providers::speech::{SpeakingVoice, SpeechError};

/// Transcribes every utterance as the next scripted text, noting how long each was; the rest
/// of an utterance transcribed before (its start was a partial transcription) has the same text.
struct ScriptedEars {
    words: Mutex<VecDeque<&'static str>>,
    lengths: Mutex<Vec<usize>>,
    last: Mutex<(Vec<i16>, &'static str)>,
}

impl SpeechToText for ScriptedEars {
    fn transcribe<'a>(
        &'a self,
        utterance: &'a Audio,
        _language: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String, SpeechError>> + Send + 'a>> {
        self.lengths.lock().unwrap().push(utterance.samples.len());
        let mut last = self.last.lock().unwrap();
        let continued = !last.0.is_empty() && utterance.samples.len() > last.0.len() && utterance.samples.starts_with(&last.0);
        let words = if continued { last.1 } else { self.words.lock().unwrap().pop_front().unwrap_or_default() };
        *last = (utterance.samples.clone(), words);
        Box::pin(async move { Ok(words.to_owned()) })
    }
}

/// Speaks 10 ms of 16 kHz audio per character, in two pieces.
struct Mouth;

impl TextToSpeech for Mouth {
    fn synthesize(&self, text: &str, _voice: &SpeakingVoice) -> mpsc::Receiver<Result<Audio, SpeechError>> {
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
    call_with(words, AgentSpeech { end_of_turn_silence_ms: 400, ..AgentSpeech::default() })
}

fn call_with(words: &[&'static str], speech: AgentSpeech) -> Call {
    call_hearing(words, speech, Hearing::default())
}

fn call_hearing(words: &[&'static str], speech: AgentSpeech, hearing: Hearing) -> Call {
    let ears =
        Arc::new(ScriptedEars { words: Mutex::new(words.iter().copied().collect()), lengths: Mutex::default(), last: Mutex::default() });
    let (transport_in, from_transport) = mpsc::channel(64);
    let (to_transport, transport_out) = mpsc::channel(64);
    let (to_session, session_in) = mpsc::channel(64);
    let (session_out, from_session) = mpsc::channel(64);
    let settings = VoiceSettings {
        language: "en-US".into(),
        speech,
        default_voice: "alloy".into(),
        speech_level_dbfs: -40.0,
        min_speech: Duration::from_millis(100),
    };
    let voice =
        Voice { stt: ears.clone(), tts: Arc::new(Mouth), cache: SpeechCache::default(), synthesizer: "mouth".into(), settings, hearing };
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
    // The first clause (heard sooner), then the rest of the sentence and the next one: two
    // pieces each at 8 kHz, 10 ms of audio per character, and each one's last 0.75 ms that the
    // resampler's filter held.
    let played = call.played(6).await;
    let samples: usize = played.iter().map(|(n, _)| n).sum();
    let expected = "Hello, this is Ava. How can I help?".chars().count() * 80 + 3 * 6;
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
async fn words_that_end_mid_sentence_wait_for_the_rest() {
    let speech = AgentSpeech { end_of_turn_silence_ms: 400, patience_ms: 1000, ..AgentSpeech::default() };
    let mut call = call_with(&["I'd like to", "um, change my order."], speech);
    call.caller(LOUD, 300).await;
    call.caller(0, 400).await;
    assert!(quiet_for(&mut call, Duration::from_millis(300)).await, "\"I'd like to\" is held");
    call.caller(LOUD, 300).await;
    call.caller(0, 400).await;
    assert_eq!(call.event().await, CallerEvent::Said { text: "I'd like to um, change my order.".into(), language: Some("en-US".into()) });
}

#[tokio::test]
async fn held_words_go_on_when_the_patience_is_up_or_the_caller_hangs_up() {
    let speech = AgentSpeech { end_of_turn_silence_ms: 400, patience_ms: 500, ..AgentSpeech::default() };
    let mut call = call_with(&["Can I book a table for", "It's for the"], speech);
    call.caller(LOUD, 300).await;
    call.caller(0, 400).await;
    let held_at = tokio::time::Instant::now();
    assert_eq!(call.event().await, CallerEvent::Said { text: "Can I book a table for".into(), language: Some("en-US".into()) });
    assert!(held_at.elapsed() >= Duration::from_millis(400), "not before the patience is up");
    call.caller(LOUD, 300).await;
    call.caller(0, 400).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    call.transport_in.send(TransportIn::HungUp).await.unwrap();
    assert_eq!(call.event().await, CallerEvent::Said { text: "It's for the".into(), language: Some("en-US".into()) });
    assert_eq!(call.event().await, CallerEvent::HungUp);
}

#[tokio::test]
async fn transcripts_without_words_are_not_turns() {
    let mut call = call(&["...", "\u{1}\u{2}", " Hello? "]);
    for _ in 0..3 {
        call.caller(LOUD, 300).await;
        call.caller(0, 400).await;
    }
    assert_eq!(call.event().await, CallerEvent::Said { text: "Hello?".into(), language: Some("en-US".into()) });
    assert_eq!(call.ears.lengths.lock().unwrap().len(), 3);
}

/// Whether the transport is told to clear within `within`, skipping audio.
async fn cleared(call: &mut Call, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(out)) = tokio::time::timeout_at(deadline, call.transport_out.recv()).await {
        if out == TransportOut::Clear {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn speaking_over_the_agent_clears_it_and_says_what_was_heard() {
    let mut call = call(&["Tuesday would suit me better, to be honest"]);
    call.agent_says("Your order ships on Monday. Would Tuesday suit you better?").await;
    let played = call.played(4).await;
    // The caller heard the first sentence (its marks came back), then spoke, on and on.
    for (_, mark) in &played[..2] {
        call.transport_in.send(TransportIn::Played(mark.clone())).await.unwrap();
    }
    call.caller(LOUD, 600).await;
    assert!(!cleared(&mut call, Duration::from_millis(100)).await, "a short utterance over the agent is heard out first");
    call.caller(LOUD, 200).await;
    assert!(cleared(&mut call, Duration::from_millis(200)).await, "longer than a backchannel: the transport's buffer is cleared");
    assert_eq!(call.event().await, CallerEvent::Interrupted { heard: "Your order ships on Monday.".into() });
    // The marks Twilio returns after the clear do not count as heard.
    for (_, mark) in &played[2..] {
        call.transport_in.send(TransportIn::Played(mark.clone())).await.unwrap();
    }
    call.caller(0, 400).await;
    assert_eq!(
        call.event().await,
        CallerEvent::Said { text: "Tuesday would suit me better, to be honest".into(), language: Some("en-US".into()) }
    );
}

/// "Mhm" over the agent, then (after `pause`) an answer: the backchannel lets the agent go on and
/// is no turn; the answer stops the agent once transcribed and is a turn of its own.
async fn a_backchannel_then_an_answer(mut call: Call, pause: u64) {
    call.agent_says("Your order ships on Monday. Would Tuesday suit you better? We deliver all week long.").await;
    let played = call.played(2).await;
    call.caller(LOUD, 240).await;
    call.caller(0, pause).await;
    assert!(!cleared(&mut call, Duration::from_millis(100)).await, "\"mhm\" does not stop the agent");
    assert!(call.session_in.try_recv().is_err(), "nor is it a turn");
    call.caller(LOUD, 240).await;
    call.caller(0, 400).await;
    assert!(cleared(&mut call, Duration::from_millis(300)).await);
    assert!(matches!(call.event().await, CallerEvent::Interrupted { .. }));
    assert_eq!(call.event().await, CallerEvent::Said { text: "No, Tuesday.".into(), language: Some("en-US".into()) });
    assert!(!played.is_empty());
}

#[tokio::test]
async fn a_backchannel_lets_the_agent_go_on_and_a_short_answer_stops_it() {
    a_backchannel_then_an_answer(call(&["Mhm.", "No, Tuesday."]), 400).await;
}

#[tokio::test]
async fn a_long_backchannel_is_transcribed_partway_and_nothing_longer_than_two_seconds_is_ignored() {
    let mut call = call(&["Yeah, okay, sure.", "Mhm, mhm."]);
    call.agent_says("Your order ships on Monday. Would Tuesday suit you better? We deliver all week long, nine to five.").await;
    call.played(2).await;
    // Longer than a short utterance: what it said so far is only "go on".
    call.caller(LOUD, 900).await;
    assert!(!cleared(&mut call, Duration::from_millis(150)).await, "\"yeah, okay, sure\" does not stop the agent");
    call.caller(0, 400).await;
    assert!(call.session_in.try_recv().is_err(), "nor is it a turn");
    // Speech that goes on past two seconds stops the agent, whatever it says.
    call.caller(LOUD, 2100).await;
    assert!(cleared(&mut call, Duration::from_millis(200)).await, "the caller is not ignored for longer");
    assert!(matches!(call.event().await, CallerEvent::Interrupted { .. }));
}

#[tokio::test]
async fn agents_may_be_stopped_by_any_speech_at_once() {
    let speech = AgentSpeech { end_of_turn_silence_ms: 400, backchannels_interrupt: true, ..AgentSpeech::default() };
    let mut call = call_with(&["Mhm."], speech);
    call.agent_says("Your order ships on Monday. Would Tuesday suit you better?").await;
    call.played(2).await;
    call.caller(LOUD, 120).await;
    assert!(cleared(&mut call, Duration::from_millis(100)).await, "confirmed speech clears at once");
    assert_eq!(call.event().await, CallerEvent::Interrupted { heard: String::new() });
}

#[tokio::test]
async fn a_slow_answer_gets_a_filler_the_transcript_never_sees() {
    let speech = AgentSpeech { end_of_turn_silence_ms: 400, filler_after_ms: 300, ..AgentSpeech::default() };
    let mut call = call_with(&["Where is my order?"], speech);
    call.caller(LOUD, 300).await;
    call.caller(0, 400).await;
    assert!(matches!(call.event().await, CallerEvent::Said { .. }));
    // The model is slow: after 300 ms the caller hears "One moment." (11 characters, 110 ms).
    let started = tokio::time::Instant::now();
    let filler = call.played(1).await;
    assert!(started.elapsed() >= Duration::from_millis(250), "not before its delay");
    let samples: usize = filler.iter().map(|(n, _)| n).sum();
    assert_eq!(samples, "One moment.".len() * 80 + 6, "from the cache, whole");
    // Its mark confirms no words: were the caller to speak over the answer, it is not what they heard.
    call.transport_in.send(TransportIn::Played(filler[0].1.clone())).await.unwrap();
    call.agent_says("It ships today.").await;
    let answer = call.played(2).await;
    call.transport_in.send(TransportIn::Played(answer[0].1.clone())).await.unwrap();
    call.caller(LOUD, 800).await;
    assert!(cleared(&mut call, Duration::from_millis(200)).await);
    assert_eq!(call.event().await, CallerEvent::Interrupted { heard: String::new() });
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

/// An end-of-turn model that hears every utterance as finished or as unfinished, and notes the
/// length of each it was asked about.
struct ScriptedTurnEnd {
    finished: bool,
    asked: Mutex<Vec<usize>>,
}

impl EndOfTurn for ScriptedTurnEnd {
    fn completion(&self, utterance: &Audio) -> Result<f32, ModelError> {
        self.asked.lock().unwrap().push(utterance.samples.len());
        Ok(if self.finished { 0.9 } else { 0.1 })
    }
}

fn with_turn_model(words: &[&'static str], finished: bool, speech: AgentSpeech) -> (Call, Arc<ScriptedTurnEnd>) {
    let model = Arc::new(ScriptedTurnEnd { finished, asked: Mutex::default() });
    let hearing = Hearing { vad: None, end_of_turn: Some((model.clone(), Arc::new(Semaphore::new(1)))) };
    (call_hearing(words, speech, hearing), model)
}

/// Whether the session hears anything within `within`.
async fn quiet_for(call: &mut Call, within: Duration) -> bool {
    tokio::time::timeout(within, call.session_in.recv()).await.is_err()
}

#[tokio::test]
async fn a_turn_the_model_hears_finished_ends_at_a_short_pause() {
    // Silence alone would wait 700 ms; the model is asked after 200 ms.
    let (mut call, model) = with_turn_model(&["Where is my order?"], true, AgentSpeech::default());
    call.caller(LOUD, 600).await;
    call.caller(0, 300).await;
    assert_eq!(call.event().await, CallerEvent::Said { text: "Where is my order?".into(), language: Some("en-US".into()) });
    let asked = model.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert!(asked[0] >= 600 * 8, "asked about the whole utterance: {asked:?}");
    let transcribed = call.ears.lengths.lock().unwrap()[0];
    assert!(transcribed <= (600 + 200 + 20) * 8, "not much of the silence is transcribed: {transcribed}");
}

#[tokio::test]
async fn a_caller_who_pauses_mid_sentence_gets_the_agents_patience() {
    let speech = AgentSpeech { patience_ms: 1200, ..AgentSpeech::default() };
    let (mut call, model) = with_turn_model(&["My number is 415 555 0123"], false, speech);
    // "My number is 415…" a pause longer than the silence rule's 700 ms "…555 0123".
    call.caller(LOUD, 500).await;
    call.caller(0, 900).await;
    assert!(quiet_for(&mut call, Duration::from_millis(200)).await, "an unfinished turn waits");
    call.caller(LOUD, 500).await;
    call.caller(0, 1000).await;
    assert!(quiet_for(&mut call, Duration::from_millis(200)).await, "the patience counts from the last word");
    call.caller(0, 200).await;
    assert_eq!(call.event().await, CallerEvent::Said { text: "My number is 415 555 0123".into(), language: Some("en-US".into()) });
    let lengths = call.ears.lengths.lock().unwrap().clone();
    assert_eq!(lengths.len(), 1, "one utterance, pause and all: {lengths:?}");
    assert!(lengths[0] >= (500 + 900 + 500) * 8, "{lengths:?}");
    assert_eq!(model.asked.lock().unwrap().len(), 2, "asked at each pause");
}

#[tokio::test]
async fn over_the_agent_a_pause_decides_the_interruption_and_the_turn_goes_on_to_its_end() {
    // "Tuesday, … please." over the agent, the model hearing the pause unfinished.
    let speech = AgentSpeech { patience_ms: 600, ..AgentSpeech::default() };
    let (mut call, _) = with_turn_model(&["Tuesday, please."], false, speech);
    call.agent_says("Your order ships on Monday. Would Tuesday suit you better? We deliver all week long.").await;
    call.played(2).await;
    call.caller(LOUD, 300).await;
    call.caller(0, 240).await;
    assert!(cleared(&mut call, Duration::from_millis(200)).await, "the words at the pause are no backchannel: the agent stops");
    assert!(matches!(call.event().await, CallerEvent::Interrupted { .. }));
    call.caller(LOUD, 300).await;
    call.caller(0, 800).await;
    assert_eq!(call.event().await, CallerEvent::Said { text: "Tuesday, please.".into(), language: Some("en-US".into()) });
    assert!(quiet_for(&mut call, Duration::from_millis(300)).await, "one turn, not two");
    let lengths = call.ears.lengths.lock().unwrap().clone();
    assert!(lengths.last().is_some_and(|&whole| whole >= (300 + 240 + 300) * 8), "the turn is transcribed whole: {lengths:?}");
}

#[tokio::test]
async fn over_the_agent_a_backchannel_ends_at_its_pause_and_what_follows_is_a_turn_of_its_own() {
    // The model hears "mhm" unfinished; the patience would join what comes next to it.
    let speech = AgentSpeech { patience_ms: 1000, ..AgentSpeech::default() };
    let (mut call, _) = with_turn_model(&["Mhm.", "No, Tuesday."], false, speech);
    call.agent_says("Your order ships on Monday. Would Tuesday suit you better? We deliver all week long.").await;
    call.played(2).await;
    call.caller(LOUD, 240).await;
    call.caller(0, 400).await;
    assert!(!cleared(&mut call, Duration::from_millis(200)).await, "\"mhm\" does not stop the agent");
    assert!(call.session_in.try_recv().is_err(), "nor is it a turn");
    // "No, … Tuesday."
    call.caller(LOUD, 300).await;
    call.caller(0, 240).await;
    assert!(cleared(&mut call, Duration::from_millis(300)).await);
    assert!(matches!(call.event().await, CallerEvent::Interrupted { .. }));
    call.caller(LOUD, 200).await;
    call.caller(0, 1200).await;
    assert_eq!(call.event().await, CallerEvent::Said { text: "No, Tuesday.".into(), language: Some("en-US".into()) });
    let lengths = call.ears.lengths.lock().unwrap().clone();
    let answer = (300 + 240 + 200) * 8;
    assert!(
        lengths.last().is_some_and(|&heard| (answer..answer + 400 * 8).contains(&heard)),
        "\"mhm\" is not part of the turn: {lengths:?}"
    );
}

#[tokio::test]
async fn questions_to_the_end_of_turn_model_wait_for_a_free_slot() {
    let model = Arc::new(ScriptedTurnEnd { finished: true, asked: Mutex::default() });
    let slots = Arc::new(Semaphore::new(1));
    // Another call's question holds the only slot.
    let busy = slots.clone().acquire_owned().await.unwrap();
    let hearing = Hearing { vad: None, end_of_turn: Some((model.clone(), slots)) };
    let mut call = call_hearing(&["Where is my order?"], AgentSpeech::default(), hearing);
    call.caller(LOUD, 600).await;
    call.caller(0, 300).await;
    assert!(quiet_for(&mut call, Duration::from_millis(200)).await);
    assert!(model.asked.lock().unwrap().is_empty(), "not asked while the slot is taken");
    drop(busy);
    assert_eq!(call.event().await, CallerEvent::Said { text: "Where is my order?".into(), language: Some("en-US".into()) });
    assert_eq!(model.asked.lock().unwrap().len(), 1);
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

/// What the transport is told within `within`: the marks of the pieces played, and whether it
/// was cleared.
async fn sent(call: &mut Call, within: Duration) -> (Vec<String>, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let (mut marks, mut cleared) = (Vec::new(), false);
    while let Ok(Some(out)) = tokio::time::timeout_at(deadline, call.transport_out.recv()).await {
        match out {
            TransportOut::Play { mark, .. } => marks.push(mark),
            TransportOut::Clear => cleared = true,
            _ => {}
        }
    }
    (marks, cleared)
}

#[tokio::test]
async fn an_announcement_plays_whole_whatever_the_caller_says() {
    let mut call = call(&["Hello? Is anyone there?", "Wait, stop."]);
    call.session_out.send(AgentCommand::Announce { words: "This call is recorded. Press 9 to opt out.".into() }).await.unwrap();
    let mut marks = call.played(2).await.into_iter().map(|(_, mark)| mark).collect::<Vec<_>>();
    // Longer than any backchannel, over the announcement: it plays on, and the words are a turn.
    call.caller(LOUD, 2_500).await;
    call.caller(0, 400).await;
    let (rest, cleared) = sent(&mut call, Duration::from_millis(300)).await;
    assert!(!cleared, "the announcement is not cut");
    assert_eq!(call.event().await, CallerEvent::Said { text: "Hello? Is anyone there?".into(), language: Some("en-US".into()) });
    marks.extend(rest);
    assert_eq!(marks.len(), 4, "two sentences, two pieces each: {marks:?}");
    // Once it has played, speech over the agent stops it again.
    for mark in marks {
        call.transport_in.send(TransportIn::Played(mark)).await.unwrap();
    }
    call.agent_says("Hi, this is Ava. How can I help you today?").await;
    call.played(2).await;
    call.caller(LOUD, 2_500).await;
    assert!(sent(&mut call, Duration::from_millis(300)).await.1, "the agent's own words are interrupted as before");
    assert!(matches!(call.event().await, CallerEvent::Interrupted { .. }));
}
