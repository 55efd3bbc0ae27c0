//! What the caller heard of the agent's speech, from the marks that came back.

use std::collections::VecDeque;

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

    /// Whether the piece followed by mark `name` is still to be played.
    pub fn is_pending(&self, name: &str) -> bool {
        self.pending.iter().any(|(pending, _)| pending == name)
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
