//! Where a session writes down its call: a small interface, so the conversation's rules are
//! tested without a database ([`StoredCallLog`] writes to storage; tests keep turns in memory).
//! A failed write is logged by the implementation and never stops the conversation: the caller
//! is still on the line.
//!
//! Turns of all the calls of a process go through one [`TranscriptWriter`], which writes
//! whatever queued while its previous write ran in one statement (group commit): alone, a turn
//! is written at once; under load, hundreds of small writes a second become a few dozen. A write
//! that fails is tried again (the database may be busy with a long purge), then turn by turn.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::usage::UsageMeter;
use crate::domain::call::{CallEnding, VoiceLatency};
use crate::domain::ids::{CallId, OrgId};
use crate::storage::calls::{self, MAX_TURNS_PER_APPEND, NewTurn};
use crate::storage::{Db, costs};

/// The session's record of its call.
pub trait CallLog: Send + Sync + 'static {
    /// Appends a finished turn; returns its sequence number when it was stored.
    fn append(&self, turn: NewTurn) -> impl Future<Output = Option<i64>> + Send;
    /// Cuts a stored turn down to what the caller heard, and marks it interrupted.
    fn cut(&self, sequence: i64, heard: &str) -> impl Future<Output = ()> + Send;
    /// Records how the call ended (the first ending recorded wins), finalising the call.
    fn finish(&self, ending: &CallEnding<'_>) -> impl Future<Output = ()> + Send;
    /// Records where the caller's wait for a stored agent turn went.
    fn measured(&self, sequence: i64, latency: VoiceLatency) -> impl Future<Output = ()> + Send;
}

/// A turn waiting to be written, and who waits for its sequence number.
struct PendingTurn {
    org: OrgId,
    call: CallId,
    turn: NewTurn,
    stored: oneshot::Sender<Option<i64>>,
}

/// The process's writer of transcript turns (see the module's header).
#[derive(Clone)]
pub struct TranscriptWriter {
    queue: mpsc::UnboundedSender<PendingTurn>,
    waiting: Arc<AtomicUsize>,
}

impl TranscriptWriter {
    /// Starts the writer's task.
    pub fn start(db: Db) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write_batches(db, pending, waiting.clone()));
        Self { queue, waiting }
    }

    /// Turns waiting to be written (a queue depth `/metrics` shows).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Appends a turn; its sequence number once written, `None` if it could not be.
    async fn append(&self, org: OrgId, call: CallId, turn: NewTurn) -> Option<i64> {
        let (stored, sequence) = oneshot::channel();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if self.queue.send(PendingTurn { org, call, turn, stored }).is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        sequence.await.ok().flatten()
    }
}

/// How long the writer lets turns gather after the first of a batch arrives. Writes are off the
/// caller's critical path (the model is already thinking), and a statement costs far more than
/// a row.
const GATHER: std::time::Duration = std::time::Duration::from_millis(3);

async fn write_batches(db: Db, mut pending: mpsc::UnboundedReceiver<PendingTurn>, waiting: Arc<AtomicUsize>) {
    let mut batch = Vec::with_capacity(MAX_TURNS_PER_APPEND);
    while pending.recv_many(&mut batch, MAX_TURNS_PER_APPEND).await > 0 {
        let gathered = tokio::time::Instant::now() + GATHER;
        while batch.len() < MAX_TURNS_PER_APPEND {
            let room = MAX_TURNS_PER_APPEND - batch.len();
            match tokio::time::timeout_at(gathered, pending.recv_many(&mut batch, room)).await {
                Ok(received) if received > 0 => continue,
                _ => break,
            }
        }
        let turns: Vec<(OrgId, CallId, &NewTurn)> = batch.iter().map(|p| (p.org, p.call, &p.turn)).collect();
        let sequences = store(&db, &turns).await;
        waiting.fetch_sub(batch.len(), Ordering::Relaxed);
        for (turn, sequence) in batch.drain(..).zip(sequences) {
            if sequence.is_none() {
                tracing::error!(call = %turn.call, "a transcript turn was not stored");
            }
            let _ = turn.stored.send(sequence);
        }
    }
}

/// Waits before each new try of a batch whose write failed (the database busy past its timeout,
/// a connection lost): a turn is not lost to a passing problem.
const RETRY_DELAYS: [std::time::Duration; 3] =
    [std::time::Duration::from_millis(200), std::time::Duration::from_secs(1), std::time::Duration::from_secs(3)];

/// Writes a batch, trying again after each of [`RETRY_DELAYS`]; if the batch as a whole still
/// fails, each turn is written alone, so one turn that cannot be stored (its call was erased)
/// does not take the others with it.
async fn store(db: &Db, turns: &[(OrgId, CallId, &NewTurn)]) -> Vec<Option<i64>> {
    for delay in std::iter::once(std::time::Duration::ZERO).chain(RETRY_DELAYS) {
        tokio::time::sleep(delay).await;
        match calls::append_turns(db, turns).await {
            Ok(sequences) => return sequences,
            Err(e) => tracing::warn!(turns = turns.len(), error = ?e, "could not store transcript turns; trying again"),
        }
    }
    let mut sequences = Vec::with_capacity(turns.len());
    for turn in turns {
        sequences
            .push(calls::append_turns(db, std::slice::from_ref(turn)).await.ok().and_then(|stored| stored.into_iter().next().flatten()));
    }
    sequences
}

/// The call's record in storage.
#[derive(Clone)]
pub struct StoredCallLog {
    pub db: Db,
    pub org: OrgId,
    pub call: CallId,
    pub transcripts: TranscriptWriter,
    /// What the call has used, stored as the call ends.
    pub meter: UsageMeter,
}

impl StoredCallLog {
    /// Stores what the call has used so far (before it is finalised, so its cost counts it; and
    /// again after the session, for the agent's last words).
    pub async fn store_usage(&self) {
        if let Err(e) = costs::record_usage(&self.db, self.org, self.call, &self.meter.usage()).await {
            tracing::error!(call = %self.call, error = ?e, "could not store what the call used");
        }
    }
}

impl CallLog for StoredCallLog {
    async fn append(&self, turn: NewTurn) -> Option<i64> {
        self.transcripts.append(self.org, self.call, turn).await
    }

    async fn cut(&self, sequence: i64, heard: &str) {
        if let Err(e) = calls::cut_turn(&self.db, self.org, self.call, sequence, heard).await {
            tracing::error!(call = %self.call, error = ?e, "could not cut an interrupted turn");
        }
    }

    async fn finish(&self, ending: &CallEnding<'_>) {
        self.store_usage().await;
        if let Err(e) = calls::finish_conversation(&self.db, self.org, self.call, ending).await {
            tracing::error!(call = %self.call, error = ?e, "could not record how the call ended");
        }
    }

    async fn measured(&self, sequence: i64, latency: VoiceLatency) {
        if let Err(e) = calls::set_voice_latency(&self.db, self.org, self.call, sequence, &latency).await {
            tracing::warn!(call = %self.call, error = ?e, "could not record a turn's latency");
        }
    }
}
