//! Restart recovery: calls a crash left open. On start, before serving, every call that was not
//! finalised and whose session this node held (or that no session took) is settled:
//! - Twilio says it is over: its status, end time and duration are applied (which finalises it);
//! - Twilio says it is still live and this node held its agent session: the session died with the
//!   old process, so the call is hung up and finalised with `server_restart`;
//! - Twilio says it is still live and no session ever took it (its WebSocket has yet to connect,
//!   or it is not a conversation): it is left alone; Twilio's final status callback ends it;
//! - Twilio cannot be asked (no provider, bad credentials, unreachable): finalised with
//!   `server_restart`.
//!
//! Finalisation writes the call's one `call.ended` event, so none is lost and none is doubled.
//!
//! While serving, a sweep asks Twilio about calls still open long after any call could last
//! (a lost final status callback, say) and applies its answer when the call is over.

use chrono::{DateTime, Utc};

use super::provisioning;
use super::rest::{CallResource, Credentials, TwilioClient};
use crate::domain::call::{Call, CallEnding, CallStatus, EndReason, EndedBy, StatusEvent};
use crate::domain::time;
use crate::storage::{Db, StorageError, calls};

const SERVER_RESTART: CallEnding<'static> =
    CallEnding { ended_by: EndedBy::System, reason: EndReason::ServerRestart, summary: None, outcome: None, language: None };

/// Settles every call `node` left open; returns how many.
pub async fn recover_open_calls(db: &Db, twilio: &TwilioClient, node: &str) -> Result<usize, StorageError> {
    let mut settled = 0;
    for open in calls::unfinalized(db, Some(node), time::now()).await? {
        let call = &open.call;
        let credentials = credentials(db, call).await;
        match twilio_view(twilio, credentials.as_ref(), call).await {
            Some(remote) if remote.status.is_final() => {
                calls::apply_status_event(db, call.org_id, call.id, &remote).await?;
            }
            Some(_) if !open.session_here => continue,
            remote => {
                if let (Some(_), Some(credentials)) = (remote, &credentials)
                    && let Err(e) = twilio.hang_up(credentials, &call.call_sid).await
                {
                    tracing::warn!(call = %call.id, error = %e, "could not hang up a call left open");
                }
                calls::finish_conversation(db, call.org_id, call.id, &SERVER_RESTART).await?;
            }
        }
        settled += 1;
        tracing::info!(call = %call.id, "finalised a call left open by a previous run");
    }
    Ok(settled)
}

/// How long after its start an open call counts as stale: longer than the longest call allowed.
pub const STALE_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(6);

/// Applies Twilio's answer to every stale open call that Twilio says is over; returns how many.
pub async fn settle_stale_calls(db: &Db, twilio: &TwilioClient) -> Result<usize, StorageError> {
    let mut settled = 0;
    for open in calls::unfinalized(db, None, time::now() - STALE_AFTER).await? {
        let call = &open.call;
        let credentials = credentials(db, call).await;
        if let Some(remote) = twilio_view(twilio, credentials.as_ref(), call).await.filter(|remote| remote.status.is_final()) {
            calls::apply_status_event(db, call.org_id, call.id, &remote).await?;
            settled += 1;
            tracing::info!(call = %call.id, "finalised a stale call with Twilio's answer");
        }
    }
    Ok(settled)
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
    let status: CallStatus = resource.status.parse().ok()?;
    let ended: Option<DateTime<Utc>> =
        resource.end_time.as_deref().and_then(|t| DateTime::parse_from_rfc2822(t).ok()).map(|t| t.with_timezone(&Utc));
    Some(StatusEvent { status, sequence: None, at: ended.unwrap_or_else(time::now), duration_secs: resource.duration })
}
