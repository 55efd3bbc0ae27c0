//! What the model is shown of a call: the recent turns in full and a running summary of the
//! older ones, so a long call costs about the same per turn as a short one and never outgrows
//! the model's context. The whole history stays here (an interruption may cut any recent agent
//! turn); only the window sent to the model is bounded.
//!
//! Once more than [`SUMMARIZE_AFTER`] messages lie outside the summary, the older ones (all but
//! the last [`KEEP_RECENT`], cut where a caller turn starts, so a tool call is never parted
//! from its result) are summarised by the model in the background, and the summary replaces
//! them when it arrives. Until then, and if summarising fails, the window still never exceeds
//! [`MAX_WINDOW_CHARS`]: the oldest turns are left out first.

use crate::providers::llm::ChatMessage;

/// Messages kept verbatim after a summary.
pub const KEEP_RECENT: usize = 16;
/// Messages outside the summary that make a new summary due.
pub const SUMMARIZE_AFTER: usize = 32;
/// The most characters of history the model is shown (about 15,000 tokens).
pub const MAX_WINDOW_CHARS: usize = 60_000;
/// The longest summary kept, in characters.
const MAX_SUMMARY_CHARS: usize = 2_000;

/// The instruction the model summarises with.
pub const SUMMARY_INSTRUCTION: &str = "Summarise the phone conversation below between an AI agent and a caller for the agent's own \
    memory, in at most 150 words. Keep names, numbers, dates, amounts, what the caller asked for, what was promised or decided, and \
    any open questions. Write plain sentences, no lists.";

#[derive(Default)]
pub struct Memory {
    history: Vec<ChatMessage>,
    summary: Option<String>,
    /// Messages before this index are covered by `summary`.
    summarized_upto: usize,
    /// The cut of the summary being written, if one is.
    summarizing: Option<usize>,
}

/// Older messages to summarise, up to `cut`.
pub struct SummaryJob {
    pub cut: usize,
    /// The instruction, the previous summary and the transcript to summarise.
    pub messages: Vec<ChatMessage>,
}

impl Memory {
    pub fn push(&mut self, message: ChatMessage) {
        self.history.push(message);
    }

    /// Index of the last message pushed.
    pub fn last_index(&self) -> usize {
        self.history.len() - 1
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut ChatMessage> {
        self.history.get_mut(index)
    }

    /// What the model is shown after its system prompt: the summary of older turns, if any,
    /// then the recent ones, at most [`MAX_WINDOW_CHARS`] in all.
    pub fn window(&self) -> Vec<ChatMessage> {
        let mut recent = &self.history[self.summarized_upto..];
        let mut total = chars(recent);
        while recent.len() > 1 && total > MAX_WINDOW_CHARS {
            let next_turn = recent[1..].iter().position(|m| matches!(m, ChatMessage::User { .. })).map_or(1, |i| i + 1);
            total -= chars(&recent[..next_turn]);
            recent = &recent[next_turn..];
        }
        let mut window = Vec::with_capacity(recent.len() + 1);
        if let Some(summary) = &self.summary {
            window.push(ChatMessage::System { content: format!("Summary of the call so far: {summary}") });
        }
        window.extend(recent.iter().cloned());
        window
    }

    /// The summary job that is due, if one is and none is running.
    pub fn summary_due(&mut self) -> Option<SummaryJob> {
        if self.summarizing.is_some() || self.history.len() - self.summarized_upto <= SUMMARIZE_AFTER {
            return None;
        }
        let latest_cut = self.history.len() - KEEP_RECENT;
        let cut = (self.summarized_upto + 1..=latest_cut).rev().find(|&i| matches!(self.history[i], ChatMessage::User { .. }))?;
        self.summarizing = Some(cut);
        let transcript: String = self.history[self.summarized_upto..cut].iter().map(line).collect::<Vec<_>>().join("\n");
        let earlier = self.summary.as_deref().map(|s| format!("Summary of what came before: {s}\n\n")).unwrap_or_default();
        Some(SummaryJob {
            cut,
            messages: vec![
                ChatMessage::System { content: SUMMARY_INSTRUCTION.to_owned() },
                ChatMessage::User { content: format!("{earlier}Conversation:\n{transcript}") },
            ],
        })
    }

    /// Takes the summary of the messages up to `cut`; `None` when summarising failed (it is
    /// tried again at the next turn).
    pub fn summarized(&mut self, cut: usize, summary: Option<String>) {
        self.summarizing = None;
        if let Some(summary) = summary.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) {
            self.summary = Some(summary.chars().take(MAX_SUMMARY_CHARS).collect());
            self.summarized_upto = cut;
        }
    }
}

/// The size of messages, in bytes of text (tool plumbing included, since it can be long).
fn chars(messages: &[ChatMessage]) -> usize {
    messages
        .iter()
        .map(|m| match m {
            ChatMessage::System { content } | ChatMessage::User { content } | ChatMessage::Tool { content, .. } => content.len(),
            ChatMessage::Assistant { content, tool_calls } => {
                content.len() + tool_calls.iter().map(|c| c.name.len() + c.arguments.len()).sum::<usize>()
            }
        })
        .sum()
}

/// A message as a line of the transcript to summarise.
fn line(message: &ChatMessage) -> String {
    match message {
        ChatMessage::System { content } => format!("System: {content}"),
        ChatMessage::User { content } => format!("Caller: {content}"),
        ChatMessage::Assistant { content, tool_calls } => {
            let calls: String = tool_calls.iter().map(|c| format!(" [{}({})]", c.name, c.arguments)).collect();
            format!("Agent: {content}{calls}")
        }
        ChatMessage::Tool { content, .. } => format!("Tool result: {content}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::llm::ToolCall;

    fn talk(memory: &mut Memory, turns: usize) {
        for i in 0..turns {
            memory.push(ChatMessage::User { content: format!("question {i}") });
            memory.push(ChatMessage::Assistant { content: format!("answer {i}"), tool_calls: vec![] });
        }
    }

    #[test]
    fn short_calls_are_shown_whole() {
        let mut memory = Memory::default();
        talk(&mut memory, 10);
        assert!(memory.summary_due().is_none());
        assert_eq!(memory.window().len(), 20);
    }

    #[test]
    fn older_turns_are_replaced_by_their_summary() {
        let mut memory = Memory::default();
        talk(&mut memory, 17);
        let job = memory.summary_due().expect("34 messages make a summary due");
        assert!(matches!(memory.history[job.cut], ChatMessage::User { .. }), "cut where a caller turn starts");
        assert!(memory.summary_due().is_none(), "one summary at a time");
        memory.summarized(job.cut, Some("The caller asked sixteen questions.".into()));
        let window = memory.window();
        assert_eq!(window[0], ChatMessage::System { content: "Summary of the call so far: The caller asked sixteen questions.".into() });
        assert_eq!(window.len(), 1 + 34 - job.cut);
        assert!(window.len() <= KEEP_RECENT + 1);
        talk(&mut memory, 40);
        let next = memory.summary_due().expect("due again");
        let ChatMessage::User { content } = &next.messages[1] else { panic!() };
        assert!(content.starts_with("Summary of what came before: The caller asked sixteen questions."), "{content}");
    }

    #[test]
    fn a_failed_summary_leaves_the_history_and_is_tried_again() {
        let mut memory = Memory::default();
        talk(&mut memory, 20);
        let job = memory.summary_due().unwrap();
        memory.summarized(job.cut, None);
        assert_eq!(memory.window().len(), 40);
        assert!(memory.summary_due().is_some());
    }

    #[test]
    fn the_window_never_exceeds_its_budget_and_keeps_tool_results_with_their_calls() {
        let mut memory = Memory::default();
        let long = "x".repeat(10_000);
        for i in 0..12 {
            memory.push(ChatMessage::User { content: long.clone() });
            memory.push(ChatMessage::Assistant {
                content: String::new(),
                tool_calls: vec![ToolCall { id: format!("c{i}"), name: "lookup".into(), arguments: "{}".into() }],
            });
            memory.push(ChatMessage::Tool { tool_call_id: format!("c{i}"), content: "found".into() });
        }
        let window = memory.window();
        assert!(chars(&window) <= MAX_WINDOW_CHARS, "{}", chars(&window));
        assert!(matches!(window[0], ChatMessage::User { .. }), "starts at a caller turn, never at a tool result");
        assert!(matches!(window.last(), Some(ChatMessage::Tool { .. })));
    }
}
