//! One phone conversation with an agent. The session hears [`CallerEvent`]s and answers with
//! [`AgentCommand`]s through channels, so any transport can drive it. Where the agent thinks:
//! `respond` streams the model's reply token by token to the caller while listening for
//! interruptions, and carries out tool calls.
//!
//! Every finished turn is written to storage at once (so a crash loses no finished turn), with
//! its timing and, for agent turns, the latency from the caller's words to the first token.
//!
//! Rules of the conversation:
//! - An interruption stops the reply at once; the turn is stored as what the caller heard and
//!   only that goes into the model's context.
//! - Silence for `conversation_timeout_secs` after the agent stops speaking: the agent asks once
//!   whether the caller is still there; a second silence ends the call (`inactivity_timeout`).
//! - `max_call_duration_secs` ends the call politely (`max_duration`).
//! - An LLM failure (after the client's one retry) is never dead air: the agent apologises and
//!   ends the call (`llm_error`), since a caller cannot be helped without the model.
//! - Before the session asks to end, it records why, then waits roughly as long as the goodbye
//!   takes to speak, so the goodbye is not cut off.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::prompt::{self, CallContext};
use super::tools::{self, ToolAction};
use crate::domain::agent::AgentSpec;
use crate::domain::call::{CallEnding, REASON_TRANSFERRED, TurnRole};
use crate::domain::ids::{CallId, OrgId};
use crate::domain::time;
use crate::providers::llm::{ChatMessage, ChatRequest, LlmClient, LlmEvent, ToolCall, ToolSpec};
use crate::storage::Db;
use crate::storage::calls::{self, NewTurn};

/// What the caller did.
#[derive(Clone, Debug, PartialEq)]
pub enum CallerEvent {
    /// A finished utterance, as text.
    Said {
        text: String,
        language: Option<String>,
    },
    /// The caller spoke over the agent; `heard` is the part of the reply they heard.
    Interrupted {
        heard: String,
    },
    /// A key pressed on the keypad.
    Digits(String),
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
    SwitchLanguage {
        locale: String,
    },
    /// Ends the session; the handoff tells the transport what follows (hang up, transfer).
    End {
        handoff: Value,
    },
}

/// How a conversation ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Ending {
    pub ended_by: &'static str,
    pub reason: &'static str,
    pub summary: Option<String>,
    pub outcome: Option<String>,
    /// A transfer target, when the call goes on to a person.
    pub transfer_to: Option<String>,
}

impl Ending {
    fn new(ended_by: &'static str, reason: &'static str) -> Self {
        Self { ended_by, reason, summary: None, outcome: None, transfer_to: None }
    }
}

const STILL_THERE: &str = "Are you still there?";
const GOODBYE_SILENT: &str = "I haven't heard from you, so I'll end the call now. Feel free to call back anytime. Goodbye!";
const GOODBYE_TIME: &str = "We've reached the time limit for this call. Thank you for calling, goodbye!";
const GOODBYE_DEFAULT: &str = "Thank you for calling. Goodbye!";
const TRANSFERRING: &str = "Let me transfer you now. Please hold.";
const APOLOGY: &str = "I'm sorry, I'm having trouble right now. Please call back in a little while. Goodbye.";
/// Rounds of tool calls the model may chain in one reply before it must speak.
const MAX_TOOL_ROUNDS: usize = 3;

/// Everything a session needs.
pub struct SessionSetup {
    pub db: Db,
    pub org: OrgId,
    pub call: CallId,
    pub caller: String,
    pub agent: AgentSpec,
    /// The model to use, or `None` when the agent has no LLM provider.
    pub llm: Option<(LlmClient, String)>,
    /// The greeting the transport already speaks (ConversationRelay's welcomeGreeting).
    pub greeting: Option<String>,
    pub other_languages: Vec<String>,
}

/// Roughly how long text takes to speak, for timers (about 15 characters a second).
fn speaking_time(text: &str) -> Duration {
    Duration::from_millis((text.chars().count() as u64 * 65).clamp(400, 15_000))
}

/// A caller utterance on its way to the model.
struct Heard {
    at: Instant,
    time: DateTime<Utc>,
    text: String,
}

enum Reply {
    /// The agent finished speaking this text; the conversation goes on.
    Spoke(String),
    Ended(Ending),
}

pub struct Session {
    setup: SessionSetup,
    commands: mpsc::Sender<AgentCommand>,
    history: Vec<ChatMessage>,
    tools: Vec<ToolSpec>,
    language: String,
}

impl Session {
    pub fn new(setup: SessionSetup, commands: mpsc::Sender<AgentCommand>) -> Self {
        let tools = tools::offered(&setup.agent, &setup.other_languages);
        Self { setup, commands, history: Vec::new(), tools, language: "en-US".to_owned() }
    }

    /// The system prompt this session gives the model.
    pub fn system_prompt(&self) -> String {
        let context = CallContext { caller: &self.setup.caller, now: time::now(), other_languages: &self.setup.other_languages };
        prompt::system_prompt(&self.setup.agent, &context)
    }

    /// Runs the conversation until it ends, and returns how it ended (already recorded).
    pub async fn run(mut self, mut events: mpsc::Receiver<CallerEvent>) -> Ending {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(self.setup.agent.max_call_duration_secs as u64);
        let silence = Duration::from_secs(self.setup.agent.conversation_timeout_secs as u64);
        let mut quiet_until = started + silence;
        if let Some(greeting) = self.setup.greeting.clone().filter(|g| !g.trim().is_empty()) {
            let now = time::now();
            self.store_turn(TurnRole::Agent, &greeting, now, Some(now), false, None).await;
            self.history.push(ChatMessage::Assistant { content: greeting.clone(), tool_calls: vec![] });
            quiet_until += speaking_time(&greeting);
        }
        let mut checked_in = false;
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                () = sleep_until(quiet_until) => {
                    if checked_in {
                        return self.end_with_words(&mut events, GOODBYE_SILENT, Ending::new("agent", "inactivity_timeout")).await;
                    }
                    checked_in = true;
                    self.say(STILL_THERE).await;
                    quiet_until = Instant::now() + speaking_time(STILL_THERE) + silence;
                    continue;
                }
                () = sleep_until(deadline) => {
                    return self.end_with_words(&mut events, GOODBYE_TIME, Ending::new("agent", "max_duration")).await;
                }
            };
            let (text, language) = match event {
                None | Some(CallerEvent::HungUp) => return self.record(Ending::new("caller", "caller_hangup")).await,
                Some(CallerEvent::Interrupted { .. }) => continue,
                Some(CallerEvent::Said { text, language }) => (text, language),
                Some(CallerEvent::Digits(digits)) => (format!("(The caller pressed {digits} on the keypad.)"), None),
            };
            checked_in = false;
            let heard = Heard { at: Instant::now(), time: time::now(), text: text.clone() };
            if let Some(language) = language {
                self.language = language;
            }
            self.history.push(ChatMessage::User { content: text });
            match self.respond(&mut events, heard).await {
                Reply::Spoke(spoken) => quiet_until = Instant::now() + speaking_time(&spoken) + silence,
                Reply::Ended(ending) => return ending,
            }
        }
    }

    /// Streams the model's answer to the caller and carries out its tool calls. The caller's
    /// turn is stored while the model thinks, so storage adds nothing to the response time.
    async fn respond(&mut self, events: &mut mpsc::Receiver<CallerEvent>, heard: Heard) -> Reply {
        let heard_at = heard.at;
        let mut unsaved = Some(heard);
        let Some((llm, model)) = self.setup.llm.clone() else {
            self.store_caller_turn(unsaved.take()).await;
            tracing::warn!(call = %self.setup.call, "the agent has no LLM provider");
            return Reply::Ended(self.end_with_words(events, APOLOGY, Ending::new("system", "llm_error")).await);
        };
        for _ in 0..MAX_TOOL_ROUNDS {
            let mut messages = vec![ChatMessage::System { content: self.system_prompt() }];
            messages.extend(self.history.iter().cloned());
            let request = ChatRequest {
                model: model.clone(),
                temperature: self.setup.agent.temperature,
                messages,
                tools: self.tools.clone(),
                response_format: None,
            };
            let mut stream = llm.stream(request);
            self.store_caller_turn(unsaved.take()).await;
            let started = time::now();
            let mut spoken = String::new();
            let mut latency_ms = None;
            let mut tool_calls = Vec::new();
            loop {
                tokio::select! {
                    biased;
                    event = events.recv() => match event {
                        Some(CallerEvent::Interrupted { heard }) => {
                            self.store_turn(TurnRole::Agent, &heard, started, Some(time::now()), true, latency_ms).await;
                            self.history.push(ChatMessage::Assistant { content: heard.clone(), tool_calls: vec![] });
                            return Reply::Spoke(String::new());
                        }
                        None | Some(CallerEvent::HungUp) => {
                            if !spoken.is_empty() {
                                self.store_turn(TurnRole::Agent, &spoken, started, Some(time::now()), true, latency_ms).await;
                            }
                            return Reply::Ended(self.record(Ending::new("caller", "caller_hangup")).await);
                        }
                        // The caller cannot be heard while the agent speaks (ConversationRelay's
                        // default); anything else waits for the reply to finish.
                        Some(other) => tracing::debug!(?other, "caller input during the agent's reply ignored"),
                    },
                    item = stream.recv() => match item {
                        Some(LlmEvent::Token(token)) => {
                            latency_ms.get_or_insert_with(|| heard_at.elapsed().as_millis() as i64);
                            spoken.push_str(&token);
                            self.send(AgentCommand::Speak { token, last: false }).await;
                        }
                        Some(LlmEvent::ToolCalls(calls)) => tool_calls = calls,
                        Some(LlmEvent::Done) | None => break,
                        Some(LlmEvent::Failed(error)) => {
                            tracing::error!(call = %self.setup.call, %error, "the LLM failed");
                            if !spoken.is_empty() {
                                self.send(AgentCommand::Speak { token: " ".into(), last: false }).await;
                            }
                            return Reply::Ended(self.end_with_words(events, APOLOGY, Ending::new("system", "llm_error")).await);
                        }
                    },
                }
            }
            if tool_calls.is_empty() {
                self.send(AgentCommand::Speak { token: String::new(), last: true }).await;
                self.store_turn(TurnRole::Agent, &spoken, started, Some(time::now()), false, latency_ms).await;
                self.history.push(ChatMessage::Assistant { content: spoken.clone(), tool_calls: vec![] });
                return Reply::Spoke(spoken);
            }
            self.history.push(ChatMessage::Assistant { content: spoken.clone(), tool_calls: tool_calls.clone() });
            if let Some(ending) = self.run_tools(events, &tool_calls, &spoken, started, latency_ms).await {
                return Reply::Ended(ending);
            }
            if !spoken.is_empty() {
                self.send(AgentCommand::Speak { token: String::new(), last: true }).await;
                self.store_turn(TurnRole::Agent, &spoken, started, Some(time::now()), false, latency_ms).await;
            }
        }
        Reply::Ended(self.end_with_words(events, APOLOGY, Ending::new("system", "llm_error")).await)
    }

    /// Carries out tool calls; returns the ending when one of them ends the call.
    async fn run_tools(
        &mut self,
        events: &mut mpsc::Receiver<CallerEvent>,
        calls: &[ToolCall],
        spoken: &str,
        started: DateTime<Utc>,
        latency_ms: Option<i64>,
    ) -> Option<Ending> {
        for call in calls {
            let started_tool = Instant::now();
            let action = tools::parse(call);
            let result = match &action {
                Ok(ToolAction::SwitchLanguage { locale }) if self.setup.other_languages.contains(locale) || locale == "en-US" => {
                    self.language = locale.clone();
                    self.send(AgentCommand::SwitchLanguage { locale: locale.clone() }).await;
                    format!("Switched to {locale}. Continue in that language.")
                }
                Ok(ToolAction::SwitchLanguage { locale }) => format!("{locale} is not offered on this call."),
                Ok(_) => "ok".to_owned(),
                Err(problem) => format!("error: {problem}"),
            };
            let record = json!({ "tool": call.name, "arguments": call.arguments, "result": result, "latency_ms": started_tool.elapsed().as_millis() as i64 });
            let now = time::now();
            self.store_turn(TurnRole::Tool, &record.to_string(), now, Some(now), false, None).await;
            self.history.push(ChatMessage::Tool { tool_call_id: call.id.clone(), content: result });
            let (closing, mut ending) = match action {
                Ok(ToolAction::End { summary, next_steps, closing }) => {
                    let mut ending = Ending::new("agent", "agent_ended");
                    ending.summary = Some(if next_steps.is_empty() { summary } else { format!("{summary} Next steps: {next_steps}") });
                    ending.outcome = Some("completed".into());
                    (if closing.is_empty() && spoken.is_empty() { GOODBYE_DEFAULT.to_owned() } else { closing }, ending)
                }
                Ok(ToolAction::Transfer { reason, closing }) => {
                    let Some(number) = self.setup.agent.transfer_number.clone() else { continue };
                    let mut ending = Ending::new("agent", REASON_TRANSFERRED);
                    ending.summary = (!reason.is_empty()).then_some(reason);
                    ending.outcome = Some(REASON_TRANSFERRED.into());
                    ending.transfer_to = Some(number.as_str().to_owned());
                    (if closing.is_empty() { TRANSFERRING.to_owned() } else { closing }, ending)
                }
                _ => continue,
            };
            let said = format!("{spoken}{}{closing}", if spoken.is_empty() || closing.is_empty() { "" } else { " " });
            if !closing.is_empty() {
                let lead = if spoken.is_empty() { "" } else { " " };
                self.send(AgentCommand::Speak { token: format!("{lead}{closing}"), last: true }).await;
            } else {
                self.send(AgentCommand::Speak { token: String::new(), last: true }).await;
            }
            self.store_turn(TurnRole::Agent, &said, started, Some(time::now()), false, latency_ms).await;
            ending = self.record(ending).await;
            self.let_words_play(events, &said).await;
            self.send(AgentCommand::End { handoff: handoff(&ending) }).await;
            return Some(ending);
        }
        None
    }

    async fn store_caller_turn(&self, heard: Option<Heard>) {
        if let Some(heard) = heard {
            self.store_turn(TurnRole::Caller, &heard.text, heard.time, Some(heard.time), false, None).await;
        }
    }

    /// Says `words` as a whole utterance.
    async fn say(&mut self, words: &str) {
        self.send(AgentCommand::Speak { token: words.to_owned(), last: true }).await;
        let now = time::now();
        self.store_turn(TurnRole::Agent, words, now, Some(now), false, None).await;
        self.history.push(ChatMessage::Assistant { content: words.to_owned(), tool_calls: vec![] });
    }

    /// Says goodbye words, records the ending, lets the words play, then ends the session.
    async fn end_with_words(&mut self, events: &mut mpsc::Receiver<CallerEvent>, words: &str, ending: Ending) -> Ending {
        self.say(words).await;
        let ending = self.record(ending).await;
        self.let_words_play(events, words).await;
        self.send(AgentCommand::End { handoff: handoff(&ending) }).await;
        ending
    }

    /// Waits about as long as `words` take to speak, or until the caller hangs up.
    async fn let_words_play(&self, events: &mut mpsc::Receiver<CallerEvent>, words: &str) {
        let until = Instant::now() + speaking_time(words);
        loop {
            tokio::select! {
                () = sleep_until(until) => return,
                event = events.recv() => if matches!(event, None | Some(CallerEvent::HungUp)) { return },
            }
        }
    }

    /// Stores how the call ended (the first recorded ending wins), which finalises the call and
    /// emits its `call.ended` event, and returns it.
    async fn record(&self, ending: Ending) -> Ending {
        let stored = CallEnding {
            ended_by: ending.ended_by,
            reason: ending.reason,
            summary: ending.summary.as_deref(),
            outcome: ending.outcome.as_deref(),
            language: Some(&self.language),
        };
        if let Err(e) = calls::finish_conversation(&self.setup.db, self.setup.org, self.setup.call, &stored).await {
            tracing::error!(call = %self.setup.call, error = ?e, "could not record how the call ended");
        }
        ending
    }

    async fn send(&self, command: AgentCommand) {
        // A closed channel means the transport is gone; the caller's hang-up event follows.
        let _ = self.commands.send(command).await;
    }

    async fn store_turn(
        &self,
        role: TurnRole,
        text: &str,
        started_at: DateTime<Utc>,
        ended_at: Option<DateTime<Utc>>,
        interrupted: bool,
        latency_ms: Option<i64>,
    ) {
        let turn =
            NewTurn { role, text: text.to_owned(), language: Some(self.language.clone()), started_at, ended_at, interrupted, latency_ms };
        if let Err(e) = calls::append_turn(&self.setup.db, self.setup.org, self.setup.call, &turn).await {
            tracing::error!(call = %self.setup.call, error = ?e, "could not store a transcript turn");
        }
    }
}

/// What the transport is told when the session ends.
fn handoff(ending: &Ending) -> Value {
    match &ending.transfer_to {
        Some(number) => json!({ "action": "transfer", "to": number, "reason": ending.reason }),
        None => json!({ "action": "hangup", "reason": ending.reason }),
    }
}
