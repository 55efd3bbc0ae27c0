//! One phone conversation with an agent. The session hears [`CallerEvent`]s and answers with
//! [`AgentCommand`]s through channels, so any transport can drive it; it thinks through a
//! [`ChatModel`] and writes the call down through a [`CallLog`], so its rules are tested with
//! neither a socket nor a database (tests below run on tokio's paused clock).
//!
//! The conversation is a state machine:
//!
//! ```text
//!            caller speaks                 first token                  reply streamed
//! Listening ─────────────► Thinking ─────────────────► Speaking ─────────────────────► Listening
//!     ▲                     │  ▲ caller speaks again:     │ caller speaks: queued,       (or Thinking
//!     │ interruption        │  └ cancel, ask again with   │   answered next               for queued
//!     └─────────────────────┴─── everything said          │ interruption: cut, Listening  words, tools)
//! goodbye, endConversation, transfer, end-call phrase, time limit, silence, model failure
//!     ──► Ending (the last words play) ──► End command;  hang-up anywhere ──► over
//! ```
//!
//! Rules:
//! - Keypresses are gathered until the caller pauses for [`KEYPAD_PAUSE`] (or presses `#`), then
//!   reach the model as one caller turn, like speech ("1234#" is one answer, not five).
//! - Nothing the caller says is dropped. Words heard while the model thinks cancel the request
//!   and it is asked again with everything said; words heard while a reply streams without an
//!   interruption (a non-interruptible reply) are queued and answered next; each utterance is
//!   stored as its own caller turn when it arrives.
//! - An interruption, whenever it arrives (usually after the reply has finished streaming: a
//!   model writes faster than a voice speaks), cuts the agent's last turn, in the transcript and
//!   in the model's history, down to what the caller heard, and marks it interrupted.
//! - Silence for `conversation_timeout_secs` after the agent stops speaking: the agent asks once
//!   whether the caller is still there; a second silence ends the call (`inactivity_timeout`).
//! - `max_call_duration_secs` holds in every state: during a reply and tool rounds too.
//! - An LLM failure (after the client's one retry) is never dead air: the agent apologises and
//!   ends the call (`llm_error`). An empty answer is logged and the caller is asked to repeat.
//! - A reply that ends with one of the agent's end-call phrases ends the call after it plays.
//! - A long call is shown to the model as a running summary plus the recent turns (`memory`).
//! - Before the session ends a call, it records why, then waits roughly as long as the last
//!   words take to speak, so they are not cut off.
//! - When the node shuts down and its grace period is over, the session is told to wind down:
//!   as soon as the agent is not mid-sentence it says a short goodbye and ends the call
//!   (`server_shutdown`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use super::call_log::CallLog;
use super::live::LiveSessions;
use super::memory::Memory;
use super::prompt::{self, CallContext};
use super::tools::{self, ToolAction};
use crate::domain::agent::AgentSpec;
use crate::domain::call::{CallEnding, EndReason, EndedBy, Outcome, TurnRole, VoiceLatency};
use crate::domain::recording::{OPT_OUT_KEY, OPTED_OUT_CONFIRMATION};
use crate::domain::time;
use crate::providers::llm::{self, Answer, ChatMessage, ChatModel, ChatRequest, LlmEvent, ToolCall, ToolSpec};
use crate::storage::calls::NewTurn;

/// What the caller did (and, from transports that do the speech, how long they waited).
#[derive(Clone, Debug, PartialEq)]
pub enum CallerEvent {
    /// A finished utterance, as text.
    Said {
        text: String,
        language: Option<String>,
    },
    /// The caller spoke over the agent; `heard` is the part of the agent's last utterance they
    /// heard.
    Interrupted {
        heard: String,
    },
    /// A key pressed on the keypad.
    Digits(String),
    /// Where the caller's wait for the answer to their last words went; it belongs to the
    /// next agent turn stored, or to the last one if it is already stored.
    Waited(VoiceLatency),
    HungUp,
}

/// What the agent does.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentCommand {
    /// Part of what the agent says; `last` closes the utterance.
    Speak {
        token: String,
        last: bool,
    },
    /// Words the caller hears whole, whatever they say over them (the recording announcement);
    /// an utterance of their own.
    Announce {
        words: String,
    },
    SwitchLanguage {
        locale: String,
    },
    /// The caller opted out of the recording: stop it and keep none of it.
    StopRecording,
    /// Ends the session (already recorded); the transport carries out its [`Ending::handoff`].
    End(Ending),
}

/// What happens to the call when the session ends.
#[derive(Clone, Debug, PartialEq)]
pub enum Handoff {
    HangUp,
    /// Connect the caller to this number (E.164).
    Transfer {
        to: String,
    },
}

/// How a conversation ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Ending {
    pub ended_by: EndedBy,
    pub reason: EndReason,
    pub summary: Option<String>,
    pub outcome: Option<Outcome>,
    /// A transfer target, when the call goes on to a person.
    pub transfer_to: Option<String>,
}

impl Ending {
    pub fn new(ended_by: EndedBy, reason: EndReason) -> Self {
        Self { ended_by, reason, summary: None, outcome: None, transfer_to: None }
    }

    /// What the transport should do now.
    pub fn handoff(&self) -> Handoff {
        match &self.transfer_to {
            Some(to) => Handoff::Transfer { to: to.clone() },
            None => Handoff::HangUp,
        }
    }
}

const STILL_THERE: &str = "Are you still there?";
const GOODBYE_SILENT: &str = "I haven't heard from you, so I'll end the call now. Feel free to call back anytime. Goodbye!";
const GOODBYE_TIME: &str = "We've reached the time limit for this call. Thank you for calling, goodbye!";
const GOODBYE_DEFAULT: &str = "Thank you for calling. Goodbye!";
const TRANSFERRING: &str = "Let me transfer you now. Please hold.";
const APOLOGY: &str = "I'm sorry, I'm having trouble right now. Please call back in a little while. Goodbye.";
const SAY_AGAIN: &str = "Sorry, could you say that again?";
const GOODBYE_SHUTDOWN: &str = "I'm sorry, I have to end our call now for a short maintenance. Please call us back in a minute. Goodbye!";
/// How long after the last keypress the keys pressed so far count as one answer.
pub const KEYPAD_PAUSE: Duration = Duration::from_millis(1500);
/// Rounds of tool calls the model may chain in one reply before it must speak.
const MAX_TOOL_ROUNDS: usize = 3;

/// Everything a session needs.
pub struct SessionSetup<L> {
    pub log: L,
    pub caller: String,
    pub agent: AgentSpec,
    /// The model and the model name to ask for, or `None` when the agent has no LLM provider.
    pub llm: Option<(Arc<dyn ChatModel>, String)>,
    /// The agent's first words.
    pub greeting: Option<String>,
    /// Whether the carrier speaks the greeting itself (ConversationRelay's welcomeGreeting);
    /// otherwise the session says it first.
    pub carrier_speaks_greeting: bool,
    pub other_languages: Vec<String>,
    /// When the call is recorded: what the caller is told first, and whether they may opt out.
    pub recording: Option<RecordingConsent>,
    /// This node's live sessions: the wind-down signal and the metrics.
    pub live: Arc<LiveSessions>,
}

/// How a recorded call asks for consent.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordingConsent {
    /// Spoken before the greeting (by the carrier where it speaks the greeting).
    pub announcement: String,
    /// A keypad answer of just [`OPT_OUT_KEY`] stops the recording.
    pub caller_may_opt_out: bool,
}

/// Roughly how long text takes to speak, for timers (about 15 characters a second).
fn speaking_time(text: &str) -> Duration {
    Duration::from_millis((text.chars().count() as u64 * 65).clamp(400, 15_000))
}

/// A reply on its way from the model to the caller.
struct Reply {
    stream: Answer,
    /// When the caller finished the words this answers.
    heard_at: Instant,
    started: DateTime<Utc>,
    spoken: String,
    latency_ms: Option<i64>,
    tool_calls: Vec<ToolCall>,
    /// Tool rounds before this one.
    round: usize,
}

enum State {
    Listening { checked_in: bool },
    Thinking(Reply),
    Speaking(Reply),
    Ending { ending: Ending, until: Instant },
}

/// A finished background summary: the history index it covers up to, and its text (`None` when
/// summarising failed).
type Summarized = (usize, Option<String>);

/// The agent's last stored utterance, which the caller may still be hearing.
struct LastSpoken {
    sequence: Option<i64>,
    history_index: usize,
}

enum Step {
    Caller(Option<CallerEvent>),
    Model(Option<LlmEvent>),
    TimeUp,
    Silence,
    Played,
    WindDown,
    KeysDone,
}

pub struct Session<L: CallLog> {
    setup: SessionSetup<L>,
    commands: mpsc::Sender<AgentCommand>,
    memory: Memory,
    /// Where the background summary of older turns lands.
    summary_slot: Arc<Mutex<Option<Summarized>>>,
    tools: Vec<ToolSpec>,
    language: String,
    state: State,
    deadline: Instant,
    quiet_until: Instant,
    /// Caller words heard while a reply streamed, answered when it has finished.
    queued: Vec<String>,
    last_spoken: Option<LastSpoken>,
    wind_down: watch::Receiver<bool>,
    /// The node is shutting down: end the call as soon as the agent is not mid-sentence.
    winding_down: bool,
    /// Keys pressed since the caller's last pause, and when that answer is complete.
    keys: String,
    keys_done: Option<Instant>,
    /// The last agent turn stored, and a wait measured for an agent turn not stored yet.
    last_agent_turn: Option<i64>,
    unstored_wait: Option<VoiceLatency>,
    /// The system prompt, fixed for the call (it names the moment the session began).
    system_prompt: String,
}

impl<L: CallLog> Session<L> {
    pub fn new(setup: SessionSetup<L>, commands: mpsc::Sender<AgentCommand>) -> Self {
        let tools = tools::offered(&setup.agent, &setup.other_languages);
        let now = Instant::now();
        let wind_down = setup.live.wind_down_signal();
        let winding_down = *wind_down.borrow();
        let context = CallContext { caller: &setup.caller, now: time::now(), other_languages: &setup.other_languages };
        let system_prompt = prompt::system_prompt(&setup.agent, &context);
        Self {
            winding_down,
            wind_down,
            deadline: now + Duration::from_secs(setup.agent.max_call_duration_secs.max(0) as u64),
            quiet_until: now + silence(&setup.agent),
            setup,
            commands,
            memory: Memory::default(),
            summary_slot: Arc::default(),
            tools,
            language: "en-US".to_owned(),
            state: State::Listening { checked_in: false },
            queued: Vec::new(),
            last_spoken: None,
            keys: String::new(),
            keys_done: None,
            last_agent_turn: None,
            unstored_wait: None,
            system_prompt,
        }
    }

    /// The conversation so far as the model reads it: the system prompt, the remembered turns
    /// and the tools, asking `model`.
    fn conversation(&self, model: String) -> ChatRequest {
        let mut messages = vec![ChatMessage::System { content: self.system_prompt.clone() }];
        messages.extend(self.memory.window());
        ChatRequest { model, temperature: self.setup.agent.temperature, messages, tools: self.tools.clone(), response_format: None }
    }

    /// Runs the conversation until it ends, and returns how it ended (already recorded).
    pub async fn run(mut self, mut events: mpsc::Receiver<CallerEvent>) -> Ending {
        if let Some(consent) = &self.setup.recording {
            let announcement = consent.announcement.clone();
            if !self.setup.carrier_speaks_greeting {
                self.send(AgentCommand::Announce { words: announcement.clone() }).await;
            }
            self.store_agent_turn(&announcement, time::now(), false, None).await;
            self.quiet_until += speaking_time(&announcement);
        }
        if let Some(greeting) = self.setup.greeting.clone().filter(|g| !g.trim().is_empty()) {
            if self.setup.carrier_speaks_greeting {
                self.store_agent_turn(&greeting, time::now(), false, None).await;
            } else {
                self.say(&greeting).await;
            }
            self.quiet_until += speaking_time(&greeting);
        }
        if let Some((model, name)) = &self.setup.llm {
            model.warm(self.conversation(name.clone()));
        }
        loop {
            let (deadline, quiet_until, winding_down) = (self.deadline, self.quiet_until, self.winding_down);
            let keys_done = self.keys_done.unwrap_or(deadline);
            let keys_pending = self.keys_done.is_some();
            let wind_down = &mut self.wind_down;
            let step = match &mut self.state {
                State::Listening { .. } => tokio::select! {
                    biased;
                    event = events.recv() => Step::Caller(event),
                    Ok(()) = wind_down.changed(), if !winding_down => Step::WindDown,
                    () = sleep_until(keys_done), if keys_pending => Step::KeysDone,
                    () = sleep_until(deadline) => Step::TimeUp,
                    () = sleep_until(quiet_until) => Step::Silence,
                },
                State::Thinking(reply) | State::Speaking(reply) => tokio::select! {
                    biased;
                    event = events.recv() => Step::Caller(event),
                    Ok(()) = wind_down.changed(), if !winding_down => Step::WindDown,
                    () = sleep_until(keys_done), if keys_pending => Step::KeysDone,
                    () = sleep_until(deadline) => Step::TimeUp,
                    item = reply.stream.next() => Step::Model(item),
                },
                State::Ending { until, .. } => tokio::select! {
                    event = events.recv() => Step::Caller(event),
                    () = sleep_until(*until) => Step::Played,
                },
            };
            if let Some(ending) = self.step(step).await {
                return ending;
            }
            if self.winding_down && matches!(self.state, State::Listening { .. } | State::Thinking(_)) {
                self.end_with_words(GOODBYE_SHUTDOWN, Ending::new(EndedBy::System, EndReason::ServerShutdown)).await;
            }
        }
    }

    /// One transition; returns the ending when the session is over.
    async fn step(&mut self, step: Step) -> Option<Ending> {
        match step {
            Step::Caller(None | Some(CallerEvent::HungUp)) => return Some(self.caller_hung_up().await),
            Step::Caller(Some(CallerEvent::Interrupted { heard })) => self.interrupted(&heard).await,
            Step::Caller(Some(CallerEvent::Said { text, language })) => self.heard(text, language).await,
            Step::Caller(Some(CallerEvent::Waited(latency))) => match (&self.state, self.last_agent_turn) {
                (State::Listening { .. } | State::Ending { .. }, Some(sequence)) => self.setup.log.measured(sequence, latency).await,
                _ => self.unstored_wait = Some(latency),
            },
            Step::Caller(Some(CallerEvent::Digits(digits))) => {
                self.keys.push_str(&digits);
                self.keys_done = Some(if digits.contains('#') { Instant::now() } else { Instant::now() + KEYPAD_PAUSE });
                self.quiet_until = self.quiet_until.max(Instant::now() + KEYPAD_PAUSE + silence(&self.setup.agent));
            }
            Step::KeysDone
                if self.keys.trim_end_matches('#') == OPT_OUT_KEY
                    && self.setup.recording.as_ref().is_some_and(|r| r.caller_may_opt_out) =>
            {
                self.take_keys();
                self.opt_out_of_recording().await;
            }
            Step::KeysDone => {
                if let Some(keys) = self.take_keys() {
                    self.heard(keys, None).await;
                }
            }
            Step::Model(item) => self.model_said(item).await,
            Step::WindDown => self.winding_down = true,
            Step::TimeUp => self.end_with_words(GOODBYE_TIME, Ending::new(EndedBy::Agent, EndReason::MaxDuration)).await,
            Step::Silence => {
                let State::Listening { checked_in } = self.state else { return None };
                if checked_in {
                    self.end_with_words(GOODBYE_SILENT, Ending::new(EndedBy::Agent, EndReason::InactivityTimeout)).await;
                } else {
                    self.say(STILL_THERE).await;
                    self.listen(STILL_THERE);
                    self.state = State::Listening { checked_in: true };
                }
            }
            Step::Played => {
                let State::Ending { ending, .. } = std::mem::replace(&mut self.state, State::Listening { checked_in: false }) else {
                    return None;
                };
                self.send(AgentCommand::End(ending.clone())).await;
                return Some(ending);
            }
        }
        None
    }

    /// The keys pressed since the last pause, as the caller's words.
    fn take_keys(&mut self) -> Option<String> {
        self.keys_done = None;
        let keys = std::mem::take(&mut self.keys);
        (!keys.is_empty()).then(|| format!("(The caller pressed {keys} on the keypad.)"))
    }

    /// The caller pressed the opt-out key: the transport stops the recording, and the agent
    /// confirms it when it is not in the middle of something (the key is no answer to the model).
    async fn opt_out_of_recording(&mut self) {
        self.setup.recording = None;
        self.send(AgentCommand::StopRecording).await;
        if matches!(self.state, State::Listening { .. }) {
            self.say(OPTED_OUT_CONFIRMATION).await;
        }
    }

    async fn caller_hung_up(&mut self) -> Ending {
        if let Some(keys) = self.take_keys() {
            self.store(TurnRole::Caller, &keys, time::now(), false, None).await;
        }
        match std::mem::replace(&mut self.state, State::Listening { checked_in: false }) {
            State::Ending { ending, .. } => ending,
            state => {
                if let State::Speaking(reply) = state {
                    // The caller hung up mid-sentence: they heard at most what was streamed.
                    self.store_agent_turn(&reply.spoken, reply.started, true, reply.latency_ms).await;
                }
                self.record(Ending::new(EndedBy::Caller, EndReason::CallerHangup)).await
            }
        }
    }

    /// The caller spoke over the agent: the reply stops, and the agent's last utterance keeps
    /// only what was heard.
    async fn interrupted(&mut self, heard: &str) {
        match std::mem::replace(&mut self.state, State::Listening { checked_in: false }) {
            State::Speaking(reply) => {
                self.store_agent_turn(heard, reply.started, true, reply.latency_ms).await;
                self.last_spoken = None;
            }
            State::Ending { ending, .. } => {
                self.cut_last_spoken(heard).await;
                self.state = State::Ending { ending, until: Instant::now() };
            }
            State::Thinking(_) | State::Listening { .. } => self.cut_last_spoken(heard).await,
        }
        if matches!(self.state, State::Listening { .. }) {
            self.quiet_until = Instant::now() + silence(&self.setup.agent);
        }
    }

    async fn cut_last_spoken(&mut self, heard: &str) {
        let Some(last) = self.last_spoken.take() else { return };
        if let Some(ChatMessage::Assistant { content, .. }) = self.memory.get_mut(last.history_index) {
            heard.clone_into(content);
        }
        if let Some(sequence) = last.sequence {
            self.setup.log.cut(sequence, heard).await;
        }
    }

    /// The caller finished an utterance.
    async fn heard(&mut self, text: String, language: Option<String>) {
        if let Some(language) = language {
            self.language = language;
        }
        let at = time::now();
        match &self.state {
            State::Listening { .. } | State::Thinking(_) => {
                if matches!(self.state, State::Thinking(_)) {
                    tracing::debug!("the caller spoke again before the reply began; asking again with everything said");
                }
                self.memory.push(ChatMessage::User { content: text.clone() });
                if self.setup.llm.is_some() {
                    // The request goes out first; the caller's turn is stored while the model thinks.
                    self.think(Instant::now(), 0).await;
                    self.store(TurnRole::Caller, &text, at, false, None).await;
                } else {
                    self.store(TurnRole::Caller, &text, at, false, None).await;
                    self.think(Instant::now(), 0).await;
                }
                return;
            }
            State::Speaking(_) => self.queued.push(text.clone()),
            State::Ending { .. } => tracing::debug!("the caller spoke while the call was ending"),
        }
        self.store(TurnRole::Caller, &text, at, false, None).await;
    }

    /// Asks the model for the next reply (replacing any request in flight).
    async fn think(&mut self, heard_at: Instant, round: usize) {
        let Some((model, name)) = self.setup.llm.clone() else {
            tracing::warn!("the agent has no LLM provider");
            self.end_with_words(APOLOGY, Ending::new(EndedBy::System, EndReason::LlmError)).await;
            return;
        };
        if let Some((cut, summary)) = self.summary_slot.lock().expect("summary slot lock").take() {
            self.memory.summarized(cut, summary);
        }
        let request = self.conversation(name.clone());
        let reply = Reply {
            stream: model.stream(request),
            heard_at,
            started: time::now(),
            spoken: String::new(),
            latency_ms: None,
            tool_calls: Vec::new(),
            round,
        };
        self.state = State::Thinking(reply);
        if let Some(job) = self.memory.summary_due() {
            let slot = self.summary_slot.clone();
            tokio::spawn(async move {
                let request =
                    ChatRequest { model: name, temperature: Some(0.2), messages: job.messages, tools: vec![], response_format: None };
                let summary = match llm::complete(model.as_ref(), request).await {
                    Ok(summary) => Some(summary),
                    Err(error) => {
                        tracing::warn!(%error, "could not summarise the older part of a long call; trying again later");
                        None
                    }
                };
                *slot.lock().expect("summary slot lock") = Some((job.cut, summary));
            });
        }
    }

    async fn model_said(&mut self, item: Option<LlmEvent>) {
        let mut reply = match std::mem::replace(&mut self.state, State::Listening { checked_in: false }) {
            State::Thinking(reply) | State::Speaking(reply) => reply,
            other => {
                self.state = other;
                return;
            }
        };
        match item {
            Some(LlmEvent::Token(token)) => {
                reply.latency_ms.get_or_insert_with(|| reply.heard_at.elapsed().as_millis() as i64);
                reply.spoken.push_str(&token);
                self.send(AgentCommand::Speak { token, last: false }).await;
                self.state = streaming(reply);
            }
            Some(LlmEvent::ToolCalls(calls)) => {
                reply.tool_calls = calls;
                self.state = streaming(reply);
            }
            // Usage is the meter's business (`agent::usage`), not the conversation's.
            Some(LlmEvent::Usage(_)) => self.state = streaming(reply),
            Some(LlmEvent::Done) | None => self.reply_finished(reply).await,
            Some(LlmEvent::Failed(error)) => {
                tracing::error!(%error, "the LLM failed");
                self.state = streaming(reply);
                self.end_with_words(APOLOGY, Ending::new(EndedBy::System, EndReason::LlmError)).await;
            }
        }
    }

    /// The model has said all it will say this round.
    async fn reply_finished(&mut self, reply: Reply) {
        self.setup.live.record_reply(reply.latency_ms.map(|ms| Duration::from_millis(ms as u64)));
        if !reply.tool_calls.is_empty() {
            return self.run_tools(reply).await;
        }
        if reply.spoken.trim().is_empty() {
            tracing::warn!("the model answered with neither words nor a tool call; asking the caller to repeat");
            self.say(SAY_AGAIN).await;
            return self.after_speaking(SAY_AGAIN, reply.heard_at).await;
        }
        self.send(AgentCommand::Speak { token: String::new(), last: true }).await;
        self.store_agent_turn(&reply.spoken, reply.started, false, reply.latency_ms).await;
        if self.setup.agent.ends_the_call(&reply.spoken) {
            let ending = Ending { outcome: Some(Outcome::Completed), ..Ending::new(EndedBy::Agent, EndReason::AgentEnded) };
            return self.end_after(&reply.spoken, ending).await;
        }
        self.after_speaking(&reply.spoken, reply.heard_at).await;
    }

    /// After an utterance: answer queued words, or listen.
    async fn after_speaking(&mut self, spoken: &str, heard_at: Instant) {
        if self.queued.is_empty() {
            self.listen(spoken);
        } else {
            self.flush_queue();
            self.think(heard_at.max(Instant::now()), 0).await;
        }
    }

    fn flush_queue(&mut self) {
        for text in self.queued.drain(..) {
            self.memory.push(ChatMessage::User { content: text });
        }
    }

    fn listen(&mut self, spoken: &str) {
        self.state = State::Listening { checked_in: false };
        self.quiet_until = Instant::now() + speaking_time(spoken) + silence(&self.setup.agent);
    }

    /// Carries out the reply's tool calls: an ending tool ends the call, others lead to another
    /// round of thinking.
    async fn run_tools(&mut self, reply: Reply) {
        let spoken = reply.spoken.clone();
        self.memory.push(ChatMessage::Assistant { content: spoken.clone(), tool_calls: reply.tool_calls.clone() });
        let assistant_index = self.memory.last_index();
        let mut finale = None;
        for call in &reply.tool_calls {
            let started_tool = Instant::now();
            let action = tools::parse(call);
            let result = match &action {
                Ok(ToolAction::SwitchLanguage { locale }) if self.setup.other_languages.contains(locale) || locale == "en-US" => {
                    self.language = locale.clone();
                    self.send(AgentCommand::SwitchLanguage { locale: locale.clone() }).await;
                    format!("Switched to {locale}. Continue in that language.")
                }
                Ok(ToolAction::SwitchLanguage { locale }) => format!("{locale} is not offered on this call."),
                Ok(ToolAction::Transfer { .. }) if self.setup.agent.transfer_number.is_none() => "No transfer number is set.".to_owned(),
                Ok(_) => "ok".to_owned(),
                Err(problem) => format!("error: {problem}"),
            };
            let record = json!({ "tool": call.name, "arguments": call.arguments, "result": result, "latency_ms": started_tool.elapsed().as_millis() as i64 });
            self.store(TurnRole::Tool, &record.to_string(), time::now(), false, None).await;
            self.memory.push(ChatMessage::Tool { tool_call_id: call.id.clone(), content: result });
            if finale.is_none() {
                finale = self.ending_for(action, &spoken);
            }
        }
        if let Some((closing, ending)) = finale {
            let said = join_words(&spoken, &closing);
            let lead = if spoken.is_empty() || closing.is_empty() { "" } else { " " };
            self.send(AgentCommand::Speak { token: format!("{lead}{closing}"), last: true }).await;
            let sequence = self.store(TurnRole::Agent, &said, reply.started, false, reply.latency_ms).await;
            self.last_spoken = Some(LastSpoken { sequence, history_index: assistant_index });
            return self.end_after(&said, ending).await;
        }
        if !spoken.is_empty() {
            self.send(AgentCommand::Speak { token: String::new(), last: true }).await;
            let sequence = self.store(TurnRole::Agent, &spoken, reply.started, false, reply.latency_ms).await;
            self.last_spoken = Some(LastSpoken { sequence, history_index: assistant_index });
        }
        if reply.round + 1 >= MAX_TOOL_ROUNDS {
            tracing::warn!("the model kept calling tools without answering");
            return self.end_with_words(APOLOGY, Ending::new(EndedBy::System, EndReason::LlmError)).await;
        }
        self.flush_queue();
        self.think(reply.heard_at, reply.round + 1).await;
    }

    /// The closing words and ending a tool action asks for, if it ends the call.
    fn ending_for(&self, action: Result<ToolAction, String>, spoken: &str) -> Option<(String, Ending)> {
        match action {
            Ok(ToolAction::End { summary, next_steps, closing }) => {
                let summary = if next_steps.is_empty() { summary } else { format!("{summary} Next steps: {next_steps}") };
                let ending = Ending {
                    summary: Some(summary),
                    outcome: Some(Outcome::Completed),
                    ..Ending::new(EndedBy::Agent, EndReason::AgentEnded)
                };
                let closing = if closing.is_empty() && spoken.is_empty() { GOODBYE_DEFAULT.to_owned() } else { closing };
                Some((closing, ending))
            }
            Ok(ToolAction::Transfer { reason, closing }) => {
                let number = self.setup.agent.transfer_number.as_ref()?;
                let ending = Ending {
                    summary: (!reason.is_empty()).then_some(reason),
                    outcome: Some(Outcome::Transferred),
                    transfer_to: Some(number.as_str().to_owned()),
                    ..Ending::new(EndedBy::Agent, EndReason::Transferred)
                };
                Some((if closing.is_empty() { TRANSFERRING.to_owned() } else { closing }, ending))
            }
            _ => None,
        }
    }

    /// Says `words` (after whatever part of a reply was already streamed), records the ending
    /// and lets the words play.
    async fn end_with_words(&mut self, words: &str, ending: Ending) {
        let state = std::mem::replace(&mut self.state, State::Listening { checked_in: false });
        if let State::Speaking(reply) = state {
            // Finish the streamed part as its own turn; the goodbye continues the utterance.
            self.send(AgentCommand::Speak { token: " ".into(), last: false }).await;
            self.store_agent_turn(&reply.spoken, reply.started, false, reply.latency_ms).await;
        }
        self.say(words).await;
        self.end_after(words, ending).await;
    }

    /// Records the ending and waits while `words` play.
    async fn end_after(&mut self, words: &str, ending: Ending) {
        let ending = self.record(ending).await;
        self.queued.clear();
        self.state = State::Ending { ending, until: Instant::now() + speaking_time(words) };
    }

    /// Says `words` as a whole utterance.
    async fn say(&mut self, words: &str) {
        self.send(AgentCommand::Speak { token: words.to_owned(), last: true }).await;
        self.store_agent_turn(words, time::now(), false, None).await;
    }

    /// Stores an agent utterance and adds it to the model's history.
    async fn store_agent_turn(&mut self, text: &str, started_at: DateTime<Utc>, interrupted: bool, latency_ms: Option<i64>) {
        let sequence = self.store(TurnRole::Agent, text, started_at, interrupted, latency_ms).await;
        self.memory.push(ChatMessage::Assistant { content: text.to_owned(), tool_calls: vec![] });
        self.last_spoken = (!interrupted).then_some(LastSpoken { sequence, history_index: self.memory.last_index() });
    }

    /// Stores how the call ended (the first recorded ending wins), which finalises the call and
    /// emits its `call.ended` event, and returns it.
    async fn record(&self, ending: Ending) -> Ending {
        let stored = CallEnding {
            ended_by: ending.ended_by,
            reason: ending.reason,
            summary: ending.summary.as_deref(),
            outcome: ending.outcome,
            language: Some(&self.language),
        };
        self.setup.log.finish(&stored).await;
        ending
    }

    async fn send(&self, command: AgentCommand) {
        // A closed channel means the transport is gone; the caller's hang-up event follows.
        let _ = self.commands.send(command).await;
    }

    async fn store(
        &mut self,
        role: TurnRole,
        text: &str,
        started_at: DateTime<Utc>,
        interrupted: bool,
        latency_ms: Option<i64>,
    ) -> Option<i64> {
        let turn = NewTurn {
            role,
            text: text.to_owned(),
            language: Some(self.language.clone()),
            started_at,
            ended_at: Some(time::now()),
            interrupted,
            latency_ms,
        };
        let sequence = self.setup.log.append(turn).await;
        if role == TurnRole::Agent && sequence.is_some() {
            self.last_agent_turn = sequence;
            if let (Some(sequence), Some(wait)) = (sequence, self.unstored_wait.take()) {
                self.setup.log.measured(sequence, wait).await;
            }
        }
        sequence
    }
}

/// A reply in flight is `Speaking` once the caller hears any of it, `Thinking` before.
fn streaming(reply: Reply) -> State {
    if reply.spoken.is_empty() { State::Thinking(reply) } else { State::Speaking(reply) }
}

fn silence(agent: &AgentSpec) -> Duration {
    Duration::from_secs(agent.conversation_timeout_secs.max(1) as u64)
}

fn join_words(first: &str, second: &str) -> String {
    match (first.is_empty(), second.is_empty()) {
        (true, _) => second.to_owned(),
        (_, true) => first.to_owned(),
        _ => format!("{first} {second}"),
    }
}

#[cfg(test)]
mod tests;
