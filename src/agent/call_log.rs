//! Where a session writes down its call: a small interface, so the conversation's rules are
//! tested without a database ([`StoredCallLog`] writes to storage; tests keep turns in memory).
//! A failed write is logged by the implementation and never stops the conversation: the caller
//! is still on the line.

use std::future::Future;

use crate::domain::call::CallEnding;
use crate::domain::ids::{CallId, OrgId};
use crate::storage::Db;
use crate::storage::calls::{self, NewTurn};

/// The session's record of its call.
pub trait CallLog: Send + Sync + 'static {
    /// Appends a finished turn; returns its sequence number when it was stored.
    fn append(&self, turn: NewTurn) -> impl Future<Output = Option<i64>> + Send;
    /// Cuts a stored turn down to what the caller heard, and marks it interrupted.
    fn cut(&self, sequence: i64, heard: &str) -> impl Future<Output = ()> + Send;
    /// Records how the call ended (the first ending recorded wins), finalising the call.
    fn finish(&self, ending: &CallEnding<'_>) -> impl Future<Output = ()> + Send;
}

/// The call's record in storage.
#[derive(Clone)]
pub struct StoredCallLog {
    pub db: Db,
    pub org: OrgId,
    pub call: CallId,
}

impl CallLog for StoredCallLog {
    async fn append(&self, turn: NewTurn) -> Option<i64> {
        match calls::append_turn(&self.db, self.org, self.call, &turn).await {
            Ok(sequence) => Some(sequence),
            Err(e) => {
                tracing::error!(call = %self.call, error = ?e, "could not store a transcript turn");
                None
            }
        }
    }

    async fn cut(&self, sequence: i64, heard: &str) {
        if let Err(e) = calls::cut_turn(&self.db, self.org, self.call, sequence, heard).await {
            tracing::error!(call = %self.call, error = ?e, "could not cut an interrupted turn");
        }
    }

    async fn finish(&self, ending: &CallEnding<'_>) {
        if let Err(e) = calls::finish_conversation(&self.db, self.org, self.call, ending).await {
            tracing::error!(call = %self.call, error = ?e, "could not record how the call ended");
        }
    }
}
