//! Recovery of calls whose agent session is gone. Sessions hold a lease on their call that their
//! process renews while it lives (`agent::live`), so recovery never touches a live process's
//! calls, even a second process on the same host (blue/green deploys). In the background after
//! start-up (the listener never waits for Twilio), and every minute after that, every call whose
//! lease ran out (and, at start-up, every call no session ever took) is settled:
//! - Twilio says it is over: its status, end time and duration are applied (which finalises it);
//! - Twilio says it is still live and a session had held it: the session died with its process,
//!   so the call is hung up and finalised with `server_restart`;
//! - Twilio says it is still live and no session ever took it (its WebSocket has yet to connect,
//!   or it is not a conversation): it is left alone; Twilio's final status callback ends it;
//! - Twilio cannot be asked (no provider, bad credentials, unreachable): finalised with
//!   `server_restart`.
//!
//! Finalisation writes the call's one `call.ended` event, so none is lost and none is doubled.
//!
//! A sweep every 15 minutes asks Twilio about calls still open long after any call could last
//! (a lost final status callback, say) and applies its answer when the call is over; a call
//! Twilio cannot be asked about is settled as `abandoned` after a day.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::rest::{CallResource, Credentials, TwilioClient};
use super::{call_status, provisioning};
use crate::domain::call::{Call, CallEnding, EndReason, EndedBy, StatusEvent};
use crate::domain::time;
use crate::storage::{Db, StorageError, calls};

const SERVER_RESTART: CallEnding<'static> =
    CallEnding { ended_by: EndedBy::System, reason: EndReason::ServerRestart, summary: None, outcome: None, language: None };

/// How long one round of recovery may spend asking Twilio; what is left waits for the next round.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);
/// Orphaned calls asked about at once.
const CONCURRENCY: usize = 8;

/// Settles calls whose agent session died with its process (its lease ran out) and, with
/// `untaken` (at start-up), calls no session ever took: Twilio says over → its status and
/// duration; Twilio says live and a session had held it → REST hang-up and `server_restart`;
/// live but never taken → left to Twilio's final callback; Twilio cannot be asked →
/// `server_restart`. Calls run concurrently under a total deadline. Returns how many were settled.
pub async fn recover_orphaned_calls(db: &Db, twilio: &TwilioClient, untaken: bool) -> Result<usize, StorageError> {
    let orphans = calls::orphaned(db, time::now(), untaken).await?;
    let settled = AtomicUsize::new(0);
    let work = futures_util::stream::iter(orphans).for_each_concurrent(CONCURRENCY, |call| {
        let settled = &settled;
        async move {
            match settle_orphan(db, twilio, &call).await {
                Ok(true) => {
                    settled.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(call = %call.id, "finalised a call whose session was gone");
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(call = %call.id, error = ?e, "could not settle a call whose session was gone"),
            }
        }
    });
    if tokio::time::timeout(RECOVERY_DEADLINE, work).await.is_err() {
        tracing::warn!("recovery ran out of time; the remaining calls wait for its next round");
    }
    Ok(settled.into_inner())
}

/// Settles one orphaned call; returns whether it did.
async fn settle_orphan(db: &Db, twilio: &TwilioClient, call: &Call) -> Result<bool, StorageError> {
    let credentials = credentials(db, call).await;
    match twilio_view(twilio, credentials.as_ref(), call).await {
        Some(remote) if remote.status.is_final() => {
            calls::apply_status_event(db, call.org_id, call.id, &remote).await?;
        }
        Some(_) if call.session_node.is_none() => return Ok(false),
        remote => {
            if let (Some(_), Some(credentials)) = (remote, &credentials)
                && let Err(e) = twilio.hang_up(credentials, &call.call_sid).await
            {
                tracing::warn!(call = %call.id, error = %e, "could not hang up a call whose session was gone");
            }
            calls::finish_conversation(db, call.org_id, call.id, &SERVER_RESTART).await?;
        }
    }
    Ok(true)
}

/// How long after its start an open call counts as stale: longer than the longest call allowed.
pub const STALE_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(6);
/// How long after its start a stale call Twilio cannot be asked about (its provider was deleted,
/// its credentials revoked) is settled as `abandoned`, ending at its last known activity.
pub const ABANDON_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Settles stale open calls (a final callback was lost): with Twilio's answer when it says the
/// call is over, or as `abandoned` once [`ABANDON_AFTER`] has passed and Twilio cannot be asked.
/// Returns how many were settled.
pub async fn settle_stale_calls(db: &Db, twilio: &TwilioClient) -> Result<usize, StorageError> {
    let now = time::now();
    let mut settled = 0;
    for call in calls::unfinalized(db, now - STALE_AFTER).await? {
        let credentials = credentials(db, &call).await;
        match twilio_view(twilio, credentials.as_ref(), &call).await {
            Some(remote) if remote.status.is_final() => {
                calls::apply_status_event(db, call.org_id, call.id, &remote).await?;
                tracing::info!(call = %call.id, "finalised a stale call with Twilio's answer");
            }
            None if call.started_at < now - ABANDON_AFTER => {
                let last_activity = last_activity(db, &call).await?;
                let abandoned = CallEnding::new(EndedBy::System, EndReason::Abandoned);
                calls::finish_conversation_at(db, call.org_id, call.id, &abandoned, last_activity).await?;
                tracing::warn!(call = %call.id, "settled a stale call Twilio cannot be asked about as abandoned");
            }
            _ => continue,
        }
        settled += 1;
    }
    Ok(settled)
}

/// When anything last happened on the call: its last turn, else its answer, else its start.
async fn last_activity(db: &Db, call: &Call) -> Result<DateTime<Utc>, StorageError> {
    let transcript = calls::transcript(db, call.org_id, call.id).await?;
    let last_turn = transcript.last().map(|turn| turn.ended_at.unwrap_or(turn.started_at));
    Ok(last_turn.or(call.answered_at).unwrap_or(call.started_at))
}

/// The credentials of the call's provider, when it still has one.
async fn credentials(db: &Db, call: &Call) -> Option<Credentials> {
    provisioning::credentials(db, call.org_id, call.provider_id?).await.ok()
}

/// What Twilio says of the call, as a status event; `None` when it cannot be asked.
async fn twilio_view(twilio: &TwilioClient, credentials: Option<&Credentials>, call: &Call) -> Option<StatusEvent> {
    match twilio.fetch_call(credentials?, &call.call_sid).await {
        Ok(resource) => status_event(&resource),
        Err(e) => {
            tracing::warn!(call = %call.id, error = %e, "could not ask Twilio about a call left open");
            None
        }
    }
}

fn status_event(resource: &CallResource) -> Option<StatusEvent> {
    let status = call_status(&resource.status)?;
    let ended: Option<DateTime<Utc>> =
        resource.end_time.as_deref().and_then(|t| DateTime::parse_from_rfc2822(t).ok()).map(|t| t.with_timezone(&Utc));
    Some(StatusEvent { status, sequence: None, at: ended.unwrap_or_else(time::now), duration_secs: resource.duration })
}
