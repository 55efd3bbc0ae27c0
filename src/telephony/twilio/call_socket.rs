//! What the two call WebSockets (ConversationRelay's `/twilio/relay/{call_id}` and Media
//! Streams' `/twilio/media/{call_id}`) share: a handshake that checks Twilio's signature before
//! it says anything about the call and then claims the call for one session, and the end of a
//! session (a crashed session's ending recorded, and a REST hang-up when Twilio has not ended
//! the call shortly after the agent did).

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

use super::{TwilioState, call_status, provisioning, signature};
use crate::agent::call_log::StoredCallLog;
use crate::agent::session::Ending;
use crate::domain::call::{Call, CallEnding, CallStatus, EndReason, EndedBy};
use crate::domain::ids::CallId;
use crate::domain::time;
use crate::storage::{StorageError, calls, phone_providers};

const HANG_UP_GRACE: Duration = Duration::from_secs(5);

/// The open call a handshake on `/twilio/{socket}/{call_id}` is for, if it is signed with its
/// account's auth token. An unknown call is refused like a bad signature (403); a call that is
/// over is a conflict (409).
pub async fn signed_open_call(state: &TwilioState, socket: &str, call_id: CallId, headers: &HeaderMap) -> Result<Call, Response> {
    let call = match signed_call(state, socket, call_id, headers).await {
        Ok(Some(call)) => call,
        Ok(None) => {
            tracing::warn!(call = %call_id, socket, "rejected a handshake: unknown call or a signature that does not verify");
            return Err((StatusCode::FORBIDDEN, "signature does not verify").into_response());
        }
        Err(e) => return Err(internal(e)),
    };
    if call.status.is_final() || call.ended_reason.is_some() {
        return Err((StatusCode::CONFLICT, "the call is over").into_response());
    }
    Ok(call)
}

async fn signed_call(state: &TwilioState, socket: &str, call_id: CallId, headers: &HeaderMap) -> Result<Option<Call>, StorageError> {
    let Some(call) = calls::find_by_id(&state.db, call_id).await? else { return Ok(None) };
    let Some(provider) = call.provider_id else { return Ok(None) };
    let token = phone_providers::secrets(&state.db, call.org_id, provider).await?.auth_token;
    let url = format!("{}/twilio/{socket}/{call_id}", super::routes::websocket_base(&state.public_base_url));
    let signed =
        headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).is_some_and(|sig| signature::verify_websocket(&token, &url, sig));
    Ok(signed.then_some(call))
}

/// Claims `call` for a session on this node; a second socket for a call whose session is live
/// is refused (409) and starts nothing.
pub async fn claim(state: &TwilioState, call: &Call) -> Result<(), Response> {
    let lease_until = time::now() + state.live.lease();
    match calls::claim_session(&state.db, call.org_id, call.id, state.live.owner(), lease_until).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!(call = %call.id, "refused a second socket for a call whose session is live");
            Err((StatusCode::CONFLICT, "another session holds this call").into_response())
        }
        Err(e) => Err(internal(e)),
    }
}

pub fn internal(e: StorageError) -> Response {
    tracing::error!(error = ?e, "call socket handshake failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// Waits for the session's ending; a session that crashed is recorded as ended by an error.
/// What the call used is stored once more, with the agent's last words. Unless the caller hung
/// up or the call goes on to a transfer, Twilio is made sure to end it.
pub async fn conclude(state: &TwilioState, call: &Call, session: JoinHandle<Ending>, log: &StoredCallLog) -> Ending {
    let ending = match session.await {
        Ok(ending) => ending,
        Err(e) => {
            tracing::error!(call = %call.id, error = %e, "the agent session crashed");
            let crashed = CallEnding::new(EndedBy::System, EndReason::Error);
            if let Err(e) = calls::finish_conversation(&state.db, call.org_id, call.id, &crashed).await {
                tracing::error!(call = %call.id, error = ?e, "could not record the crashed session's ending");
            }
            Ending::new(EndedBy::System, EndReason::Error)
        }
    };
    log.store_usage().await;
    tracing::info!(call = %call.id, reason = %ending.reason, "session ended");
    if ending.ended_by != EndedBy::Caller && ending.transfer_to.is_none() {
        tokio::spawn(hang_up_if_still_live(state.clone(), call.clone()));
    }
    ending
}

/// The REST fallback: end a call that Twilio has not ended shortly after the session did. Our
/// record is already final by then, so Twilio is asked; when it cannot answer, the hang-up is
/// sent anyway (ending an ended call changes nothing).
async fn hang_up_if_still_live(state: TwilioState, call: Call) {
    tokio::time::sleep(HANG_UP_GRACE).await;
    let Some(provider) = call.provider_id else { return };
    let result = match provisioning::credentials(&state.db, call.org_id, provider).await {
        Ok(creds) => match state.client.fetch_call(&creds, &call.call_sid).await {
            Ok(remote) if call_status(&remote.status).is_some_and(CallStatus::is_final) => return,
            _ => state.client.hang_up(&creds, &call.call_sid).await.map_err(|e| e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(()) => tracing::info!(call = %call.id, "hung up through the REST API after the session ended"),
        Err(e) => tracing::warn!(call = %call.id, error = %e, "could not hang up through the REST API"),
    }
}
