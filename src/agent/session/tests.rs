//! The conversation's rules, driven through bare channels with a scripted model and an
//! in-memory call log on tokio's paused clock: no socket, no database, no waiting.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use super::*;
use crate::agent::memory::{KEEP_RECENT, SUMMARIZE_AFTER, SUMMARY_INSTRUCTION};

/// A model whose answers are scripted: each request takes the next script, whose events are
/// sent after their delays. Requests are recorded.
#[derive(Default)]
struct ScriptedModel {
    scripts: Mutex<VecDeque<Vec<(u64, LlmEvent)>>>,
    requests: Mutex<Vec<Vec<ChatMessage>>>,
    /// Requests to summarise older turns, answered apart from the script.
    summaries: Mutex<Vec<Vec<ChatMessage>>>,
}

impl ChatModel for ScriptedModel {
    fn stream(&self, request: ChatRequest) -> Answer {
        let summarising = matches!(&request.messages[0], ChatMessage::System { content } if content == SUMMARY_INSTRUCTION);
        let script = if summarising {
            self.summaries.lock().unwrap().push(request.messages);
            says("The caller is planning a party.")
        } else {
            self.requests.lock().unwrap().push(request.messages);
            self.scripts.lock().unwrap().pop_front().unwrap_or_else(|| says("Okay."))
        };
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            for (delay_ms, event) in script {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        });
        crate::providers::llm::answer_from(rx)
    }
}

/// An answer streamed at once, word by word.
fn says(text: &str) -> Vec<(u64, LlmEvent)> {
    slowly(text, 0)
}

/// An answer with `delay_ms` before each word.
fn slowly(text: &str, delay_ms: u64) -> Vec<(u64, LlmEvent)> {
    let mut events: Vec<_> = text.split_inclusive(' ').map(|w| (delay_ms, LlmEvent::Token(w.to_owned()))).collect();
    events.push((0, LlmEvent::Done));
    events
}

fn calls_tool(name: &str, arguments: &str, delay_ms: u64) -> Vec<(u64, LlmEvent)> {
    let call = ToolCall { id: "call_1".into(), name: name.into(), arguments: arguments.into() };
    vec![(delay_ms, LlmEvent::ToolCalls(vec![call])), (0, LlmEvent::Done)]
}

/// Who ended the call, why, and with what outcome.
type Recorded = (EndedBy, EndReason, Option<Outcome>);

#[derive(Clone, Default)]
struct MemoryLog {
    turns: Arc<Mutex<Vec<NewTurn>>>,
    endings: Arc<Mutex<Vec<Recorded>>>,
    measured: Arc<Mutex<Vec<(i64, VoiceLatency)>>>,
}

impl CallLog for MemoryLog {
    async fn append(&self, turn: NewTurn) -> Option<i64> {
        let mut turns = self.turns.lock().unwrap();
        turns.push(turn);
        Some(turns.len() as i64)
    }

    async fn cut(&self, sequence: i64, heard: &str) {
        let mut turns = self.turns.lock().unwrap();
        let turn = &mut turns[sequence as usize - 1];
        heard.clone_into(&mut turn.text);
        turn.interrupted = true;
    }

    async fn finish(&self, ending: &CallEnding<'_>) {
        self.endings.lock().unwrap().push((ending.ended_by, ending.reason, ending.outcome));
    }

    async fn measured(&self, sequence: i64, latency: VoiceLatency) {
        self.measured.lock().unwrap().push((sequence, latency));
    }
}

impl MemoryLog {
    fn transcript(&self) -> Vec<(TurnRole, String, bool)> {
        self.turns.lock().unwrap().iter().map(|t| (t.role, t.text.clone(), t.interrupted)).collect()
    }

    fn ending(&self) -> Recorded {
        let endings = self.endings.lock().unwrap();
        assert_eq!(endings.len(), 1, "exactly one ending is recorded: {endings:?}");
        endings[0]
    }
}

struct Call {
    live: Arc<LiveSessions>,
    events: mpsc::Sender<CallerEvent>,
    commands: mpsc::Receiver<AgentCommand>,
    log: MemoryLog,
    model: Arc<ScriptedModel>,
    session: JoinHandle<Ending>,
}

fn ava() -> AgentSpec {
    AgentSpec::named("Ava")
}

fn start(agent: AgentSpec, greeting: Option<&str>, scripts: Vec<Vec<(u64, LlmEvent)>>) -> Call {
    let model = Arc::new(ScriptedModel { scripts: Mutex::new(scripts.into()), ..Default::default() });
    let log = MemoryLog::default();
    let live = LiveSessions::new("test", std::time::Duration::from_secs(60));
    let setup = SessionSetup {
        live: live.clone(),
        log: log.clone(),
        caller: "+14155550123".into(),
        agent,
        llm: Some((model.clone() as Arc<dyn ChatModel>, "scripted".into())),
        greeting: greeting.map(str::to_owned),
        carrier_speaks_greeting: true,
        other_languages: vec!["fr-FR".into()],
        recording: None,
    };
    let (events, event_rx) = mpsc::channel(8);
    let (command_tx, commands) = mpsc::channel(64);
    let session = tokio::spawn(Session::new(setup, command_tx).run(event_rx));
    Call { live, events, commands, log, model, session }
}

impl Call {
    async fn send(&self, event: CallerEvent) {
        self.events.send(event).await.unwrap();
    }

    async fn say(&self, text: &str) {
        self.send(CallerEvent::Said { text: text.into(), language: None }).await;
    }

    async fn command(&mut self) -> AgentCommand {
        self.commands.recv().await.expect("the session sends a command")
    }

    /// The agent's next whole utterance.
    async fn utterance(&mut self) -> String {
        let mut words = String::new();
        loop {
            match self.command().await {
                AgentCommand::Speak { token, last } => {
                    words.push_str(&token);
                    if last {
                        return words;
                    }
                }
                other => panic!("expected speech, got {other:?}"),
            }
        }
    }

    /// Commands until the session ends, then its ending.
    async fn until_end(mut self) -> (Vec<AgentCommand>, Ending, MemoryLog) {
        let mut seen = Vec::new();
        while let Some(command) = self.commands.recv().await {
            let end = matches!(command, AgentCommand::End(_));
            seen.push(command);
            if end {
                break;
            }
        }
        (seen, self.session.await.unwrap(), self.log)
    }

    fn request(&self, n: usize) -> Vec<ChatMessage> {
        self.model.requests.lock().unwrap()[n].clone()
    }
}

fn assistant(text: &str) -> ChatMessage {
    ChatMessage::Assistant { content: text.into(), tool_calls: vec![] }
}

fn user(text: &str) -> ChatMessage {
    ChatMessage::User { content: text.into() }
}

#[tokio::test(start_paused = true)]
async fn a_late_interruption_cuts_the_turn_and_the_history_to_what_was_heard() {
    let mut call = start(ava(), None, vec![says("Our hours are nine to five, Monday to Friday."), says("Closed on Saturdays.")]);
    call.say("When are you open?").await;
    assert_eq!(call.utterance().await, "Our hours are nine to five, Monday to Friday.");
    // The reply has finished streaming; the caller is still hearing it and speaks over it.
    call.send(CallerEvent::Interrupted { heard: "Our hours are nine".into() }).await;
    call.say("What about Saturday?").await;
    assert_eq!(call.utterance().await, "Closed on Saturdays.");
    let history = call.request(1);
    assert_eq!(history[1..], [user("When are you open?"), assistant("Our hours are nine"), user("What about Saturday?")]);
    assert_eq!(
        call.log.transcript()[..3],
        [
            (TurnRole::Caller, "When are you open?".into(), false),
            (TurnRole::Agent, "Our hours are nine".into(), true),
            (TurnRole::Caller, "What about Saturday?".into(), false),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn interrupting_the_greeting_cuts_it_too() {
    let mut call = start(ava(), Some("Hello, you've reached Ava at Bella's Bistro. How can I help?"), vec![says("Sure.")]);
    call.send(CallerEvent::Interrupted { heard: "Hello, you've reached".into() }).await;
    call.say("Book a table").await;
    assert_eq!(call.utterance().await, "Sure.");
    assert_eq!(call.request(0)[1..], [assistant("Hello, you've reached"), user("Book a table")]);
    assert_eq!(call.log.transcript()[0], (TurnRole::Agent, "Hello, you've reached".into(), true));
}

#[tokio::test(start_paused = true)]
async fn an_interruption_while_streaming_stops_the_reply() {
    let mut call = start(ava(), None, vec![slowly("One two three four five six", 200), says("Yes?")]);
    call.say("Count").await;
    assert!(matches!(call.command().await, AgentCommand::Speak { ref token, last: false } if token == "One "));
    call.send(CallerEvent::Interrupted { heard: "One".into() }).await;
    call.say("Stop").await;
    assert_eq!(call.utterance().await, "Yes?", "the rest of the first reply is never sent");
    assert_eq!(call.request(1)[1..], [user("Count"), assistant("One"), user("Stop")]);
}

#[tokio::test(start_paused = true)]
async fn speech_while_the_agent_thinks_is_asked_again_with_everything_said() {
    let mut call = start(ava(), None, vec![slowly("A table for two?", 2_000), says("Two people at seven, noted.")]);
    call.say("I'd like a table").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    call.say("for two at seven").await;
    assert_eq!(call.utterance().await, "Two people at seven, noted.", "the first request was cancelled");
    assert_eq!(call.request(1)[1..], [user("I'd like a table"), user("for two at seven")]);
    let transcript = call.log.transcript();
    assert_eq!(transcript.iter().filter(|t| t.0 == TurnRole::Caller).count(), 2, "each caller turn is stored: {transcript:?}");
    assert_eq!(transcript.iter().filter(|t| t.0 == TurnRole::Agent).count(), 1);
}

#[tokio::test(start_paused = true)]
async fn keypresses_reach_the_model_as_one_answer_after_a_pause() {
    let mut call = start(ava(), None, vec![says("Thanks, that's account 4417."), says("Sales it is.")]);
    for key in ["4", "4", "1", "7"] {
        call.send(CallerEvent::Digits(key.into())).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let pressed = Instant::now();
    assert_eq!(call.utterance().await, "Thanks, that's account 4417.");
    assert!(pressed.elapsed() >= KEYPAD_PAUSE - Duration::from_millis(400), "the caller's pause ends the answer");
    assert_eq!(call.request(0)[1..], [user("(The caller pressed 4417 on the keypad.)")]);
    call.send(CallerEvent::Digits("1#".into())).await;
    assert_eq!(call.utterance().await, "Sales it is.", "`#` ends the answer at once");
    assert_eq!(call.request(1).last(), Some(&user("(The caller pressed 1# on the keypad.)")));
    assert_eq!(call.log.transcript().iter().filter(|t| t.0 == TurnRole::Caller).count(), 2);
}

#[tokio::test(start_paused = true)]
async fn keys_pressed_while_the_agent_speaks_are_answered_next() {
    let mut call = start(ava(), None, vec![slowly("Please enter your account number now.", 500), says("Account 12 found.")]);
    call.say("I want my balance").await;
    assert!(matches!(call.command().await, AgentCommand::Speak { .. }));
    call.send(CallerEvent::Digits("12".into())).await;
    assert_eq!(call.utterance().await, "enter your account number now.");
    assert_eq!(call.utterance().await, "Account 12 found.");
    assert_eq!(call.request(1).last(), Some(&user("(The caller pressed 12 on the keypad.)")));
}

#[tokio::test(start_paused = true)]
async fn words_during_a_non_interruptible_reply_are_answered_next() {
    let mut call = start(ava(), None, vec![slowly("We open at nine every day.", 300), says("Parking is free.")]);
    call.say("When do you open?").await;
    assert!(matches!(call.command().await, AgentCommand::Speak { .. }));
    call.say("And parking?").await; // no interruption: the reply plays on
    assert_eq!(call.utterance().await, "open at nine every day.");
    assert_eq!(call.utterance().await, "Parking is free.");
    assert_eq!(call.request(1)[1..], [user("When do you open?"), assistant("We open at nine every day."), user("And parking?")]);
}

#[tokio::test(start_paused = true)]
async fn the_time_limit_holds_during_a_reply() {
    let mut agent = ava();
    agent.max_call_duration_secs = 30;
    let endless = slowly(&"word ".repeat(200), 1_000);
    let call = start(agent, None, vec![endless]);
    let started = Instant::now();
    call.say("Tell me a long story").await;
    let (commands, ending, log) = call.until_end().await;
    assert_eq!(ending.reason, EndReason::MaxDuration);
    assert_eq!(log.ending(), (EndedBy::Agent, EndReason::MaxDuration, None));
    assert!(started.elapsed() < Duration::from_secs(40), "ended at {:?}", started.elapsed());
    let words: String =
        commands.iter().filter_map(|c| if let AgentCommand::Speak { token, .. } = c { Some(token.as_str()) } else { None }).collect();
    assert!(words.ends_with(GOODBYE_TIME), "{words}");
    let agent_turns: Vec<_> = log.transcript().into_iter().filter(|t| t.0 == TurnRole::Agent).map(|t| t.1).collect();
    assert!(agent_turns[0].starts_with("word word"), "what was streamed is stored: {agent_turns:?}");
    assert_eq!(agent_turns[1], GOODBYE_TIME);
}

#[tokio::test(start_paused = true)]
async fn the_time_limit_holds_during_tool_rounds() {
    let mut agent = ava();
    agent.max_call_duration_secs = 30;
    agent.tools.push(crate::domain::agent::AgentTool::SwitchLanguage);
    let slow_tool = || calls_tool("switchLanguage", r#"{"language":"fr-FR"}"#, 20_000);
    let call = start(agent, None, vec![slow_tool(), slow_tool(), slow_tool()]);
    call.say("Parlez-vous français ?").await;
    let (_, ending, _) = call.until_end().await;
    assert_eq!(ending.reason, EndReason::MaxDuration, "not a model failure after three rounds");
}

#[tokio::test(start_paused = true)]
async fn an_end_call_phrase_ends_the_call_after_it_plays() {
    let mut agent = ava();
    agent.end_call_phrases = vec!["Goodbye".into()];
    let call = start(agent, None, vec![says("You're all set for Friday. Goodbye!")]);
    call.say("That's all, thanks").await;
    let started = Instant::now();
    let (commands, ending, log) = call.until_end().await;
    assert!(matches!(commands.last(), Some(AgentCommand::End(e)) if e.handoff() == Handoff::HangUp));
    assert_eq!(log.ending(), (EndedBy::Agent, EndReason::AgentEnded, Some(Outcome::Completed)));
    assert_eq!(ending.reason, EndReason::AgentEnded);
    assert!(started.elapsed() >= speaking_time("You're all set for Friday. Goodbye!"), "the words play before the end");
}

#[tokio::test(start_paused = true)]
async fn end_conversation_speaks_the_closing_then_ends() {
    let tool = calls_tool("endConversation", r#"{"summary":"Booked","next_steps":"Email","closing_message":"Bye now!"}"#, 0);
    let call = start(ava(), None, vec![tool]);
    call.say("Thanks, that's all").await;
    let (commands, ending, log) = call.until_end().await;
    assert_eq!(commands[0], AgentCommand::Speak { token: "Bye now!".into(), last: true });
    assert_eq!(ending.summary.as_deref(), Some("Booked Next steps: Email"));
    assert_eq!(log.ending(), (EndedBy::Agent, EndReason::AgentEnded, Some(Outcome::Completed)));
    assert_eq!(log.transcript().iter().map(|t| t.0).collect::<Vec<_>>(), [TurnRole::Caller, TurnRole::Tool, TurnRole::Agent]);
}

#[tokio::test(start_paused = true)]
async fn silence_gets_one_check_in_then_ends_the_call() {
    let mut call = start(ava(), None, vec![]);
    let started = Instant::now();
    assert_eq!(call.utterance().await, STILL_THERE);
    assert_eq!(started.elapsed().as_secs(), 30);
    let (_, ending, _) = call.until_end().await;
    assert_eq!(ending.reason, EndReason::InactivityTimeout);
    assert!(started.elapsed() > Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn hanging_up_mid_sentence_keeps_what_was_streamed() {
    let mut call = start(ava(), None, vec![slowly("Let me look that up for you", 500)]);
    call.say("Where is my order?").await;
    assert!(matches!(call.command().await, AgentCommand::Speak { .. }));
    call.send(CallerEvent::HungUp).await;
    let (_, ending, log) = call.until_end().await;
    assert_eq!((ending.ended_by, ending.reason), (EndedBy::Caller, EndReason::CallerHangup));
    assert_eq!(log.transcript()[1], (TurnRole::Agent, "Let ".into(), true));
}

#[tokio::test(start_paused = true)]
async fn an_empty_answer_is_never_silence() {
    let mut call = start(ava(), None, vec![vec![(0, LlmEvent::Done)]]);
    call.say("Hello?").await;
    assert_eq!(call.utterance().await, SAY_AGAIN);
    assert!(log_has_no_empty_agent_turn(&call.log));
}

fn log_has_no_empty_agent_turn(log: &MemoryLog) -> bool {
    log.transcript().iter().all(|t| t.0 != TurnRole::Agent || !t.1.is_empty())
}

#[tokio::test(start_paused = true)]
async fn a_model_failure_apologises_and_ends() {
    let failure = vec![(0, LlmEvent::Failed(crate::providers::llm::LlmError::Timeout("no first token")))];
    let call = start(ava(), None, vec![failure]);
    call.say("Hi").await;
    let (commands, ending, _) = call.until_end().await;
    assert_eq!(commands[0], AgentCommand::Speak { token: APOLOGY.into(), last: true });
    assert_eq!((ending.ended_by, ending.reason), (EndedBy::System, EndReason::LlmError));
}

#[tokio::test(start_paused = true)]
async fn winding_down_lets_the_sentence_finish_then_says_goodbye() {
    let mut call = start(ava(), None, vec![slowly("Your order ships on Monday morning.", 300)]);
    call.say("When does my order ship?").await;
    assert!(matches!(call.command().await, AgentCommand::Speak { .. }));
    call.live.wind_down();
    assert_eq!(call.utterance().await, "order ships on Monday morning.", "the sentence is not cut");
    let (commands, ending, log) = call.until_end().await;
    assert_eq!(commands[0], AgentCommand::Speak { token: GOODBYE_SHUTDOWN.into(), last: true });
    assert_eq!(log.ending(), (EndedBy::System, EndReason::ServerShutdown, None));
    assert_eq!(ending.reason, EndReason::ServerShutdown);
}

#[tokio::test(start_paused = true)]
async fn winding_down_while_listening_says_goodbye_at_once() {
    let call = start(ava(), Some("Hi, Ava here."), vec![]);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    call.live.wind_down();
    let (commands, ending, _) = call.until_end().await;
    assert_eq!(commands[0], AgentCommand::Speak { token: GOODBYE_SHUTDOWN.into(), last: true });
    assert_eq!(ending.reason, EndReason::ServerShutdown);
    assert!(started.elapsed() < Duration::from_secs(3) + speaking_time(GOODBYE_SHUTDOWN) + Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_long_call_shows_the_model_a_summary_and_the_recent_turns() {
    let mut call = start(ava(), None, vec![]);
    for turn in 0..40 {
        call.say(&format!("Detail number {turn} about the party")).await;
        assert_eq!(call.utterance().await, "Okay.");
    }
    let summaries = call.model.summaries.lock().unwrap().len();
    assert!(summaries >= 1, "older turns were summarised");
    let last = call.request(39);
    // The system prompt, the summary, and what came since the last summary (a new one is due
    // after SUMMARIZE_AFTER messages, and keeps KEEP_RECENT): not the 80 messages of the call.
    assert!(last.len() <= 2 + SUMMARIZE_AFTER + 2, "bounded: {} messages", last.len());
    assert!(last.len() >= 2 + KEEP_RECENT);
    assert_eq!(last[1], ChatMessage::System { content: "Summary of the call so far: The caller is planning a party.".into() });
    assert_eq!(last.last(), Some(&user("Detail number 39 about the party")));
    assert!(!last.contains(&user("Detail number 0 about the party")), "the oldest turns are in the summary only");
    assert_eq!(call.log.transcript().len(), 80, "the transcript keeps everything");
}

/// A wait as a transport that does the speech measures it.
fn wait_of(voice_to_voice_ms: i64) -> VoiceLatency {
    VoiceLatency {
        end_of_turn_ms: 300,
        transcription_ms: 100,
        first_token_ms: voice_to_voice_ms - 450,
        first_audio_ms: 30,
        first_frame_ms: 20,
        voice_to_voice_ms,
    }
}

#[tokio::test(start_paused = true)]
async fn a_measured_wait_belongs_to_the_answer_it_came_before_or_after() {
    let mut call = start(ava(), None, vec![slowly("We open at nine, and close at five.", 100), says("Yes, on Saturdays too.")]);
    call.say("When are you open?").await;
    // The first sound went out while the answer was still streaming: it waits for the turn.
    call.send(CallerEvent::Waited(wait_of(900))).await;
    assert_eq!(call.utterance().await, "We open at nine, and close at five.");
    call.say("Saturdays as well?").await;
    assert_eq!(call.utterance().await, "Yes, on Saturdays too.");
    // This answer streamed at once and is stored before its first sound is sent.
    tokio::time::sleep(Duration::from_millis(10)).await;
    call.send(CallerEvent::Waited(wait_of(700))).await;
    call.send(CallerEvent::HungUp).await;
    let (_, _, log) = call.until_end().await;
    let agent_turns: Vec<i64> =
        log.transcript().iter().enumerate().filter(|(_, (role, _, _))| *role == TurnRole::Agent).map(|(i, _)| i as i64 + 1).collect();
    let measured = log.measured.lock().unwrap().clone();
    assert_eq!(measured, vec![(agent_turns[0], wait_of(900)), (agent_turns[1], wait_of(700))]);
}
