//! Twilio's webhooks: where a call enters. Every request is checked against the owning
//! provider's auth token (403 and no side effect otherwise), then:
//!
//! - `POST /twilio/voice`: opens the call record at once and answers TwiML that connects the
//!   caller to the agent (ConversationRelay or Media Streams), or a polite refusal that is still
//!   recorded (unknown number, disabled service, provider not active).
//! - `POST /twilio/status`: call-progress events, tolerant of duplicates and reordering.
//! - `POST /twilio/fallback`: Twilio could not use our voice answer; apologise, note the error.
//! - `POST /twilio/connect-action`: the `<Connect>` session ended; transfer or hang up.

use axum::body::Bytes;
use axum::extract::{FromRequest, OriginalUri, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::{TwilioState, call_status, signature, twiml};
use crate::agent::speech::{self, SpeechSources};
use crate::domain::agent::Agent;
use crate::domain::call::{Call, CallDirection, CallStatus, EndReason, StatusEvent};
use crate::domain::ids::{CallId, OrgId};
use crate::domain::phone_number::{PhoneNumber, ServiceMode, ServiceStatus};
use crate::domain::provider::{PhoneProvider, PhoneProviderStatus};
use crate::domain::recording::{RecordingSource, RecordingStatus};
use crate::domain::time;
use crate::models::SpeechReadiness;
use crate::storage::calls::{self, NewCall};
use crate::storage::{Db, StorageError, agents, costs, phone_numbers, phone_providers, recordings};

const SORRY_UNAVAILABLE: &str = "Sorry, this number is not taking calls right now. Please try again later. Goodbye.";
const SORRY_UNKNOWN: &str = "Sorry, this number is not in service. Goodbye.";
const SORRY_SETTING_UP: &str = "Sorry, this line is still being set up. Please call again in a few minutes. Goodbye.";
const SORRY_FAILURE: &str = "We are sorry, something went wrong on our side. Please call again later. Goodbye.";

/// A form-encoded Twilio request: the path it was sent to, its parameters (repeats kept, in
/// order) and its signature header.
pub struct TwilioRequest {
    path_and_query: String,
    params: Vec<(String, String)>,
    signature: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for TwilioRequest {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let uri = req.extensions().get::<OriginalUri>().map_or_else(|| req.uri().clone(), |o| o.0.clone());
        let signature = req.headers().get("x-twilio-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        let params = url::form_urlencoded::parse(&body).into_owned().collect();
        let path_and_query = uri.path_and_query().map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
        Ok(Self { path_and_query, params, signature })
    }
}

impl TwilioRequest {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn is_signed_by(&self, public_base_url: &str, auth_token: &str) -> bool {
        let url = format!("{public_base_url}{}", self.path_and_query);
        self.signature.as_deref().is_some_and(|sig| signature::verify(auth_token, &url, &self.params, sig))
    }
}

/// A request proven to come from Twilio on behalf of one of our providers.
struct Verified {
    org: OrgId,
    provider: PhoneProvider,
    /// The call record, when the call is already known.
    call: Option<Call>,
    /// The phone service of the dialled number, when we serve it.
    number: Option<PhoneNumber>,
}

/// Why a webhook got no TwiML.
enum Rejection {
    Forbidden,
    Malformed(&'static str),
    Storage(StorageError),
}

impl From<StorageError> for Rejection {
    fn from(e: StorageError) -> Self {
        Rejection::Storage(e)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::Forbidden => (StatusCode::FORBIDDEN, "signature does not verify").into_response(),
            Rejection::Malformed(what) => (StatusCode::BAD_REQUEST, what).into_response(),
            Rejection::Storage(StorageError::Conflict(why)) => (StatusCode::CONFLICT, why).into_response(),
            Rejection::Storage(e) => {
                tracing::error!(error = ?e, "Twilio webhook failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
        }
    }
}

fn twiml_response(document: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], document).into_response()
}

/// Finds whose request this is and checks its signature with that provider's auth token. The
/// candidates, most specific first: the call's provider, the dialled number's provider, then
/// every provider holding the request's account SID.
async fn verify(state: &TwilioState, req: &TwilioRequest) -> Result<Verified, Rejection> {
    let call = match req.param("CallSid") {
        Some(sid) => calls::find_by_sid(&state.db, sid).await?,
        None => None,
    };
    let number = match req.param("To") {
        Some(to) => phone_numbers::find_by_number(&state.db, to).await?,
        None => None,
    };
    let mut candidates: Vec<(OrgId, crate::domain::ids::PhoneProviderId)> = Vec::new();
    if let Some(call) = &call
        && let Some(provider) = call.provider_id
    {
        candidates.push((call.org_id, provider));
    }
    if let Some(number) = &number {
        candidates.push((number.org_id, number.provider_id));
    }
    if candidates.is_empty()
        && let Some(account) = req.param("AccountSid")
    {
        for provider in phone_providers::find_by_account_sid(&state.db, account).await? {
            candidates.push((provider.org_id, provider.id));
        }
    }
    let base = state.public_base_url.clone();
    for (org, provider_id) in candidates {
        let (provider, secrets) = match phone_providers::with_secrets(&state.db, org, provider_id).await {
            Ok(found) => found,
            Err(StorageError::NotFound) => continue,
            Err(e) => return Err(e.into()),
        };
        if req.is_signed_by(&base, &secrets.auth_token) {
            let call = call.filter(|c| c.org_id == org);
            let number = number.filter(|n| n.org_id == org);
            return Ok(Verified { org, provider, call, number });
        }
    }
    tracing::warn!(path = %req.path_and_query, "rejected a Twilio webhook whose signature does not verify");
    Err(Rejection::Forbidden)
}

/// The WebSocket base URL (`wss://…` for an https public URL).
pub(crate) fn websocket_base(public_base_url: &str) -> String {
    if let Some(rest) = public_base_url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = public_base_url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        public_base_url.to_owned()
    }
}

/// Why a call to a served number is refused, if it is.
fn refusal(number: &PhoneNumber, provider: &PhoneProvider) -> Option<EndReason> {
    if number.status != ServiceStatus::Active {
        Some(EndReason::ServiceDisabled)
    } else if provider.status != PhoneProviderStatus::Active {
        Some(EndReason::ProviderInactive)
    } else {
        None
    }
}

/// Incoming call: open the record, answer with TwiML.
#[utoipa::path(post, path = "/twilio/voice", tag = "twilio", security(()), responses(
    (status = 200, description = "TwiML", content_type = "text/xml"), (status = 403, description = "Bad signature")))]
pub async fn voice(State(state): State<TwilioState>, req: TwilioRequest) -> Response {
    match answer_call(&state, &req).await {
        Ok(document) => twiml_response(document),
        Err(rejection) => rejection.into_response(),
    }
}

async fn answer_call(state: &TwilioState, req: &TwilioRequest) -> Result<String, Rejection> {
    let verified = verify(state, req).await?;
    // A node that is shutting down takes no new calls; the load balancer sends them elsewhere.
    let draining = state.live.is_draining().then_some(EndReason::ServerDraining);
    // A budget with a hard stop, once reached, turns new calls away politely.
    let budget_stop = match &verified.number {
        Some(_) if draining.is_none() => costs::stop_message(&state.db, verified.org, time::now()).await?,
        _ => None,
    };
    let routing = route(state, &verified, draining.or(budget_stop.as_ref().map(|_| EndReason::BudgetExhausted))).await?;
    let status = req.param("CallStatus").and_then(call_status).unwrap_or(CallStatus::Ringing);
    let call = record_for(state, &verified, req, &routing, status).await?;
    let (Some(number), Some(agent), None) = (&verified.number, &routing.agent, routing.refused) else {
        tracing::info!(call = %call.id, reason = ?routing.refused, "refused an incoming call");
        let apology = match (&verified.number, routing.refused) {
            (None, _) => SORRY_UNKNOWN,
            (Some(_), Some(EndReason::SpeechNotReady)) => SORRY_SETTING_UP,
            (Some(_), Some(EndReason::BudgetExhausted)) => budget_stop.as_deref().unwrap_or(SORRY_UNAVAILABLE),
            (Some(_), _) => SORRY_UNAVAILABLE,
        };
        return Ok(twiml::say_and_hang_up(apology));
    };
    tracing::info!(call = %call.id, agent = %agent.id, "incoming call");
    if let Some(sources) = routing.speakers {
        speech::warm_greeting_for_call(
            state.db.clone(),
            state.egress.clone(),
            state.models.clone(),
            state.speech_cache.clone(),
            number.clone(),
            agent.spec.clone(),
            sources,
        );
    }
    // Twilio records ConversationRelay calls; Switchboard records Media Streams calls itself.
    let mut announcement =
        number.recording.announcement_for(speech::CALL_LANGUAGE).filter(|_| number.mode == ServiceMode::ConversationRelay);
    if let Some(words) = &announcement
        && let Err(e) = state.recordings.begin(&call, RecordingSource::Carrier, words).await
    {
        tracing::error!(call = %call.id, error = %e, "could not start recording the call; it goes on unrecorded");
        announcement = None;
    }
    Ok(connect_to_agent(state, &call, number, agent, announcement.as_deref()))
}

/// Where an incoming call goes: the number's agent, who hears and speaks for it on a
/// `media_stream` number, and why the call is refused, if it is.
struct Routing {
    agent: Option<Agent>,
    speakers: Option<SpeechSources>,
    refused: Option<EndReason>,
}

/// Routes a call to the dialled number's agent; `refuse_new` refuses it anyway (a draining node,
/// a spent budget).
async fn route(state: &TwilioState, verified: &Verified, refuse_new: Option<EndReason>) -> Result<Routing, Rejection> {
    let agent = match &verified.number {
        Some(number) => Some(agents::get(&state.db, verified.org, number.agent_id).await?),
        None => None,
    };
    let speakers = match (&verified.number, &agent) {
        (Some(number), Some(agent)) if number.mode == ServiceMode::MediaStream => {
            Some(speech::sources_for(&state.db, verified.org, &agent.spec).await?)
        }
        _ => None,
    };
    let refused = match (&verified.number, &agent) {
        (Some(_), _) if refuse_new.is_some() => refuse_new,
        (Some(number), Some(_)) => match refusal(number, &verified.provider) {
            // Switchboard does the speech: someone must hear and speak, now.
            None => match speakers.as_ref().map(|sources| speech::readiness(sources, &state.models)) {
                None | Some(SpeechReadiness::Ready) => None,
                Some(SpeechReadiness::Installing) => Some(EndReason::SpeechNotReady),
                Some(SpeechReadiness::Missing) => Some(EndReason::NoSpeechProvider),
            },
            refused => refused,
        },
        _ => Some(EndReason::UnknownNumber),
    };
    Ok(Routing { agent, speakers, refused })
}

/// The call's record: the one already open, else a new one made from the request (the voice
/// webhook's, or a status callback that overtook it).
async fn record_for(
    state: &TwilioState,
    verified: &Verified,
    req: &TwilioRequest,
    routing: &Routing,
    status: CallStatus,
) -> Result<Call, Rejection> {
    if let Some(call) = &verified.call {
        return Ok(call.clone());
    }
    let call_sid = req.param("CallSid").ok_or(Rejection::Malformed("CallSid is missing"))?;
    let new = NewCall {
        app_id: verified.number.as_ref().map(|n| n.app_id),
        phone_number_id: verified.number.as_ref().map(|n| n.id),
        provider_id: Some(verified.provider.id),
        agent_id: routing.agent.as_ref().map(|a| a.id),
        agent_version: routing.agent.as_ref().map(|a| a.version),
        call_sid: call_sid.to_owned(),
        from: req.param("From").unwrap_or("unknown").to_owned(),
        to: req.param("To").unwrap_or("unknown").to_owned(),
        direction: if req.param("Direction").is_some_and(|d| d.starts_with("outbound")) {
            CallDirection::Outbound
        } else {
            CallDirection::Inbound
        },
        status,
        started_at: time::now(),
        refused_reason: routing.refused,
        is_test: req.param(super::dev_phone::TEST_CALL_PARAM) == Some("true"),
    };
    Ok(calls::open(&state.db, verified.org, new).await?)
}

/// The TwiML that hands the call to the agent, in the service's mode; a call Twilio records
/// hears `announcement` first.
fn connect_to_agent(state: &TwilioState, call: &Call, number: &PhoneNumber, agent: &Agent, announcement: Option<&str>) -> String {
    let base = state.public_base_url.clone();
    let ws = websocket_base(&base);
    let action = format!("{base}/twilio/connect-action");
    let recording_callback = format!("{base}/twilio/recording");
    let parameters = [("call_id", call.id.to_string())];
    match number.mode {
        ServiceMode::ConversationRelay => {
            let other_languages = number.other_languages();
            twiml::connect_conversation_relay(&twiml::RelaySession {
                url: &format!("{ws}/twilio/relay/{}", call.id),
                action: &action,
                welcome_greeting: Some(number.greeting(&agent.spec)),
                language: speech::CALL_LANGUAGE,
                other_languages: &other_languages,
                parameters: &parameters,
                recording: announcement.map(|announcement| twiml::CarrierRecording { callback: &recording_callback, announcement }),
            })
        }
        ServiceMode::MediaStream => twiml::connect_stream(&format!("{ws}/twilio/media/{}", call.id), &action, &parameters),
    }
}

/// Recording progress of a call Twilio records: the recording's id as it starts, then either
/// the audio ready (fetched, sealed and stored here in the background, then deleted at Twilio
/// unless the phone service keeps Twilio's copy) or why there is none.
#[utoipa::path(post, path = "/twilio/recording", tag = "twilio", security(()), responses(
    (status = 204, description = "Noted"), (status = 400, description = "Not a recording callback"),
    (status = 403, description = "Bad signature")))]
pub async fn recording(State(state): State<TwilioState>, req: TwilioRequest) -> Response {
    match note_recording(&state, &req).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

async fn note_recording(state: &TwilioState, req: &TwilioRequest) -> Result<(), Rejection> {
    let verified = verify(state, req).await?;
    let call = verified.call.ok_or(Rejection::Malformed("CallSid names no call of ours"))?;
    let sid = req
        .param("RecordingSid")
        .and_then(|sid| crate::domain::provider::twilio_sid("RecordingSid", "RE", sid).ok())
        .ok_or(Rejection::Malformed("RecordingSid is missing or not a recording SID"))?;
    let Some(recording) = recordings::for_call(&state.db, verified.org, call.id).await? else {
        // Not a recording we started (the account records calls some other way): not ours to keep.
        tracing::info!(call = %call.id, recording = %sid, "a recording callback for a recording Switchboard did not start");
        return Ok(());
    };
    let carrier = state.carrier_recordings();
    match req.param("RecordingStatus") {
        Some("in-progress") => {
            recordings::note_carrier_sid(&state.db, verified.org, recording.id, &sid).await?;
            // The caller opted out before Twilio said which recording it is.
            if recording.status == RecordingStatus::OptedOut {
                tokio::spawn(async move { carrier.opt_out(&call).await });
            }
        }
        Some("completed") => {
            if recordings::carrier_finished(&state.db, verified.org, recording.id, &sid).await? {
                tokio::spawn(async move { carrier.fetch(&call, recording.id, &sid).await });
            } else if recording.status == RecordingStatus::OptedOut {
                tokio::spawn(async move { carrier.delete_at_carrier(&call, &sid).await });
            }
        }
        Some("absent") => {
            let why = "Twilio recorded no audio (the call may have ended before the recording started)";
            recordings::give_up(&state.db, verified.org, recording.id, RecordingStatus::Absent, why).await?;
        }
        _ => return Err(Rejection::Malformed("RecordingStatus is missing or unknown")),
    }
    Ok(())
}

/// Call-progress events.
#[utoipa::path(post, path = "/twilio/status", tag = "twilio", security(()), responses(
    (status = 204, description = "Recorded"), (status = 403, description = "Bad signature")))]
pub async fn status(State(state): State<TwilioState>, req: TwilioRequest) -> Response {
    match record_status(&state, &req).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

async fn record_status(state: &TwilioState, req: &TwilioRequest) -> Result<(), Rejection> {
    let verified = verify(state, req).await?;
    let status: CallStatus =
        req.param("CallStatus").and_then(call_status).ok_or(Rejection::Malformed("CallStatus is missing or unknown"))?;
    // A callback can overtake the voice webhook (a caller who hangs up at once): it opens the
    // record itself, as the webhook would have, and applies its status to it.
    let call = match &verified.call {
        Some(call) => call.clone(),
        None => {
            tracing::info!(call_sid = req.param("CallSid"), "a status callback came before the call's voice webhook; opening the record");
            let routing = route(state, &verified, None).await?;
            record_for(state, &verified, req, &routing, CallStatus::Ringing).await?
        }
    };
    let event = StatusEvent {
        status,
        sequence: req.param("SequenceNumber").and_then(|s| s.parse().ok()),
        at: req.param("Timestamp").and_then(parse_rfc2822).unwrap_or_else(time::now),
        duration_secs: req.param("CallDuration").and_then(|s| s.parse().ok()),
    };
    if calls::apply_status_callback(&state.db, verified.org, call.id, &event).await? {
        tokio::spawn(finalize_after_session(state.db.clone(), verified.org, call.id));
    }
    Ok(())
}

/// How long a call's final status waits for its agent session to finalise the call (normally
/// milliseconds after the hang-up) before it is finalised without it.
const SESSION_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

async fn finalize_after_session(db: Db, org: OrgId, call: CallId) {
    tokio::time::sleep(SESSION_GRACE).await;
    if let Err(e) = calls::finalize_if_open(&db, org, call).await {
        tracing::error!(%call, error = ?e, "could not finalise a call its session left open");
    }
}

fn parse_rfc2822(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(value).ok().map(|t| t.with_timezone(&Utc))
}

/// Twilio could not use our voice answer: apologise and hang up, noting the error code.
#[utoipa::path(post, path = "/twilio/fallback", tag = "twilio", security(()), responses(
    (status = 200, description = "TwiML", content_type = "text/xml"), (status = 403, description = "Bad signature")))]
pub async fn fallback(State(state): State<TwilioState>, req: TwilioRequest) -> Response {
    let verified = match verify(&state, &req).await {
        Ok(verified) => verified,
        Err(rejection) => return rejection.into_response(),
    };
    let code = req.param("ErrorCode").unwrap_or("unknown");
    tracing::warn!(call_sid = req.param("CallSid"), error_code = code, error_url = req.param("ErrorUrl"), "Twilio used the fallback URL");
    if let Some(call) = verified.call
        && let Err(e) = calls::record_error_code(&state.db, verified.org, call.id, code).await
    {
        tracing::error!(error = ?e, "could not record the fallback error code");
    }
    twiml_response(twiml::say_and_hang_up(SORRY_FAILURE))
}

/// The `<Connect>` session ended: dial the transfer target the agent chose, else hang up.
#[utoipa::path(post, path = "/twilio/connect-action", tag = "twilio", security(()), responses(
    (status = 200, description = "TwiML", content_type = "text/xml"), (status = 403, description = "Bad signature")))]
pub async fn connect_action(State(state): State<TwilioState>, req: TwilioRequest) -> Response {
    if let Err(rejection) = verify(&state, &req).await {
        return rejection.into_response();
    }
    tracing::info!(call_sid = req.param("CallSid"), session_status = req.param("SessionStatus"), "connect session ended");
    let transfer_to = req
        .param("HandoffData")
        .and_then(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .filter(|handoff| handoff["action"] == "transfer")
        .and_then(|handoff| handoff["to"].as_str().map(str::to_owned));
    match transfer_to {
        Some(number) => twiml_response(twiml::dial(&number)),
        None => twiml_response(twiml::hang_up()),
    }
}
