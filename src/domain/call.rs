//! Call records and their transcripts. A record exists from the first webhook on; each turn is
//! stored when it is spoken.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cost::{CallCost, CallUsage};
use super::event::Analysis;
use super::ids::{AgentId, AppId, CallId, OrgId, PhoneNumberId, PhoneProviderId};
use super::text_enum;

// Where a call is in its life, whatever the carrier: each carrier adapter maps its own statuses
// onto these (`telephony::twilio::call_status`). The doc line below is quoted by the published
// event schema v1, so it stays as it was.
text_enum!(
    /// Twilio's call statuses, which we keep as they are.
    CallStatus {
        Queued => "queued",
        Ringing => "ringing",
        InProgress => "in-progress",
        Completed => "completed",
        Busy => "busy",
        Failed => "failed",
        NoAnswer => "no-answer",
        Canceled => "canceled",
    }
);

impl CallStatus {
    /// Whether the call is over.
    pub fn is_final(self) -> bool {
        !matches!(self, CallStatus::Queued | CallStatus::Ringing | CallStatus::InProgress)
    }
}

text_enum!(
    /// Who placed the call.
    CallDirection { Inbound => "inbound", Outbound => "outbound" }
);

text_enum!(
    /// Who spoke a turn of the transcript.
    TurnRole { Agent => "agent", Caller => "caller", Tool => "tool", System => "system" }
);

/// The record of one call.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Call {
    pub id: CallId,
    #[serde(skip)]
    pub org_id: OrgId,
    pub app_id: Option<AppId>,
    pub phone_number_id: Option<PhoneNumberId>,
    pub provider_id: Option<PhoneProviderId>,
    pub agent_id: Option<AgentId>,
    pub agent_version: Option<i64>,
    /// The carrier's id for the call (`CA…` on Twilio).
    pub call_sid: String,
    pub from: String,
    pub to: String,
    pub direction: CallDirection,
    pub status: CallStatus,
    /// Sequence number of the carrier event that set `status`.
    #[serde(skip)]
    pub status_sequence: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_secs: Option<i64>,
    pub ended_by: Option<String>,
    pub ended_reason: Option<String>,
    pub outcome: Option<String>,
    /// What the call was about, from the agent (or later, from classification).
    pub summary: Option<String>,
    pub language: Option<String>,
    /// The carrier's error code when the call could not be served normally.
    pub error_code: Option<String>,
    /// The AI classification, once an automation has made one.
    pub analysis: Option<Analysis>,
    /// What the call's session used (tokens, speech), once it has ended.
    pub usage: Option<CallUsage>,
    /// What the call cost, with its breakdown, once it is final.
    pub cost: Option<CallCost>,
    /// The process whose agent session holds (or held) the call.
    #[serde(skip)]
    pub session_node: Option<String>,
    /// Until when that session's lease runs; the process renews it while it lives.
    #[serde(skip)]
    pub session_lease_until: Option<DateTime<Utc>>,
    /// Placed from the console's test call (analytics leave it out by default).
    pub is_test: bool,
}

text_enum!(
    /// Who ended a call.
    EndedBy { Caller => "caller", Agent => "agent", System => "system", Carrier => "carrier" }
);

text_enum!(
    /// Why a call ended: the vocabulary of `ended_reason`, of automation filters and analytics.
    EndReason {
        CallerHangup => "caller_hangup",
        Canceled => "canceled",
        AgentEnded => "agent_ended",
        Transferred => "transferred",
        InactivityTimeout => "inactivity_timeout",
        MaxDuration => "max_duration",
        LlmError => "llm_error",
        Error => "error",
        ServerRestart => "server_restart",
        ServerShutdown => "server_shutdown",
        Busy => "busy",
        NoAnswer => "no_answer",
        Failed => "failed",
        Abandoned => "abandoned",
        UnknownNumber => "unknown_number",
        ServiceDisabled => "service_disabled",
        ProviderInactive => "provider_inactive",
        ServerDraining => "server_draining",
        NoSpeechProvider => "no_speech_provider",
        SpeechNotReady => "speech_not_ready",
        BudgetExhausted => "budget_exhausted",
    }
);

text_enum!(
    /// What came of a conversation, as the agent saw it.
    Outcome { Completed => "completed", Transferred => "transferred" }
);

/// How a conversation ended, as the agent runtime (or restart recovery) saw it.
#[derive(Clone, Debug)]
pub struct CallEnding<'a> {
    pub ended_by: EndedBy,
    pub reason: EndReason,
    pub summary: Option<&'a str>,
    pub outcome: Option<Outcome>,
    pub language: Option<&'a str>,
}

impl CallEnding<'_> {
    /// An ending with nothing more to say than who and why.
    pub fn new(ended_by: EndedBy, reason: EndReason) -> Self {
        Self { ended_by, reason, summary: None, outcome: None, language: None }
    }
}

/// The longest call duration a carrier report is believed for, in seconds.
pub const MAX_CARRIER_DURATION_SECS: i64 = 2 * 24 * 3600;

/// A call-progress event from the carrier (Twilio status callback).
#[derive(Clone, Debug)]
pub struct StatusEvent {
    pub status: CallStatus,
    /// Twilio's `SequenceNumber`: events are separate requests and may arrive out of order.
    pub sequence: Option<i64>,
    pub at: DateTime<Utc>,
    /// `CallDuration`, on final events.
    pub duration_secs: Option<i64>,
}

impl Call {
    /// The record after `event`. Duplicates and stale events (lower sequence) leave the status
    /// alone, and a final status is never replaced by a live one; times only fill in. A final
    /// event ends a call that nothing else ended, with the carrier's reason.
    pub fn with_status_event(&self, event: &StatusEvent) -> Call {
        let mut call = self.clone();
        let newer = match (self.status_sequence, event.sequence) {
            (Some(current), Some(incoming)) => incoming > current,
            _ => true,
        };
        let reopens = self.status.is_final() && !event.status.is_final();
        if newer && !reopens {
            call.status = event.status;
            call.status_sequence = event.sequence.or(self.status_sequence);
        }
        if event.status == CallStatus::InProgress {
            call.answered_at = call.answered_at.or(Some(event.at));
        }
        if event.status.is_final() {
            let ended_at = *call.ended_at.get_or_insert(event.at);
            // A duration no call can have (negative, or longer than two days) is ignored.
            if let Some(duration) = event.duration_secs.filter(|d| (0..=MAX_CARRIER_DURATION_SECS).contains(d)) {
                call.duration_secs = Some(duration);
                if call.answered_at.is_none() && duration > 0 {
                    call.answered_at = ended_at.checked_sub_signed(chrono::TimeDelta::seconds(duration)).or(call.answered_at);
                }
            }
            if call.ended_reason.is_none() {
                let (by, reason) = match event.status {
                    CallStatus::Busy => (EndedBy::Carrier, EndReason::Busy),
                    CallStatus::NoAnswer => (EndedBy::Carrier, EndReason::NoAnswer),
                    CallStatus::Failed => (EndedBy::Carrier, EndReason::Failed),
                    CallStatus::Canceled => (EndedBy::Caller, EndReason::Canceled),
                    _ => (EndedBy::Caller, EndReason::CallerHangup),
                };
                call.ended_by = Some(by.to_string());
                call.ended_reason = Some(reason.to_string());
            }
        }
        call
    }
}

impl Call {
    /// Whether a live agent session holds the call at `now` (claimed, and its lease not run out).
    pub fn session_alive(&self, now: DateTime<Utc>) -> bool {
        self.session_node.is_some() && self.session_lease_until.is_some_and(|until| until > now)
    }

    /// Whether the agent handed the call to a person (the call goes on without us).
    pub fn was_transferred(&self) -> bool {
        self.ended_reason.as_deref() == Some(EndReason::Transferred.as_str())
    }

    /// The record after its conversation ended at `at`. The first recorded ending wins (a later
    /// one, say the carrier's `completed` after the agent hung up, adds nothing). A call that is
    /// not already final is `completed`, unless it was transferred (it goes on with a person);
    /// its duration runs from the answer (or the start) to the end.
    pub fn with_ending(&self, ending: &CallEnding<'_>, at: DateTime<Utc>) -> Call {
        let mut call = self.clone();
        if call.ended_reason.is_none() {
            call.ended_by = Some(ending.ended_by.to_string());
            call.ended_reason = Some(ending.reason.to_string());
        }
        call.summary = call.summary.or(ending.summary.map(str::to_owned));
        call.outcome = call.outcome.or(ending.outcome.map(|o| o.to_string()));
        call.language = ending.language.map(str::to_owned).or(call.language);
        let ended_at = *call.ended_at.get_or_insert(at);
        if !call.status.is_final() && !call.was_transferred() {
            call.status = CallStatus::Completed;
        }
        if call.duration_secs.is_none() {
            call.duration_secs = Some((ended_at - call.answered_at.unwrap_or(call.started_at)).num_seconds().max(0));
        }
        call
    }
}

/// One turn of a call's transcript.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Turn {
    pub sequence: i64,
    pub role: TurnRole,
    pub text: String,
    pub language: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The caller spoke over this agent turn; `text` holds what was heard.
    pub interrupted: bool,
    /// Milliseconds from the caller's prompt to the agent's first token.
    pub latency_ms: Option<i64>,
    /// On calls Switchboard hears and speaks itself: where the caller's wait for this agent
    /// turn went.
    pub voice_latency: Option<VoiceLatency>,
}

/// Where the time went between the caller's last word and the first sound of the agent's
/// answer, in milliseconds, on calls Switchboard hears and speaks itself (Media Streams).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VoiceLatency {
    /// The caller stopped speaking → the end of their turn was decided.
    pub end_of_turn_ms: i64,
    /// End of turn → final transcript.
    pub transcription_ms: i64,
    /// Final transcript → the model's first token.
    pub first_token_ms: i64,
    /// First token → first synthesised audio.
    pub first_audio_ms: i64,
    /// First synthesised audio → its first frame sent to the caller.
    pub first_frame_ms: i64,
    /// The caller stopped speaking → the first frame of the answer sent: the caller's wait.
    pub voice_to_voice_ms: i64,
}

impl Call {
    /// Whether an agent session is still talking on this call: it holds a lease and the
    /// conversation has not ended.
    pub fn has_live_session(&self, now: DateTime<Utc>) -> bool {
        self.session_lease_until.is_some_and(|until| until > now) && self.ended_reason.is_none()
    }

    /// A ringing inbound call with no service, for tests.
    #[cfg(test)]
    pub(crate) fn example() -> Call {
        Call {
            id: CallId::generate(),
            org_id: OrgId::generate(),
            app_id: None,
            phone_number_id: None,
            provider_id: None,
            agent_id: None,
            agent_version: None,
            call_sid: "CA1".into(),
            from: "+14155550123".into(),
            to: "+14155550100".into(),
            direction: CallDirection::Inbound,
            status: CallStatus::Ringing,
            status_sequence: None,
            started_at: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 1, 1, 12, 0, 0).unwrap(),
            answered_at: None,
            ended_at: None,
            duration_secs: None,
            ended_by: None,
            ended_reason: None,
            outcome: None,
            summary: None,
            language: None,
            error_code: None,
            analysis: None,
            usage: None,
            cost: None,
            session_node: None,
            session_lease_until: None,
            is_test: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn ringing() -> Call {
        Call::example()
    }

    fn event(status: CallStatus, sequence: i64, secs: i64, duration: Option<i64>) -> StatusEvent {
        StatusEvent {
            status,
            sequence: Some(sequence),
            at: Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs),
            duration_secs: duration,
        }
    }

    #[test]
    fn in_order_events_answer_and_complete() {
        let call = ringing().with_status_event(&event(CallStatus::InProgress, 1, 3, None)).with_status_event(&event(
            CallStatus::Completed,
            2,
            63,
            Some(60),
        ));
        assert_eq!(call.status, CallStatus::Completed);
        assert_eq!(call.answered_at.unwrap().timestamp() - call.started_at.timestamp(), 3);
        assert_eq!(call.duration_secs, Some(60));
        assert_eq!(call.ended_reason.as_deref(), Some("caller_hangup"));
    }

    #[test]
    fn late_and_duplicate_events_do_not_regress() {
        let done = ringing().with_status_event(&event(CallStatus::Completed, 2, 63, Some(60)));
        let late = done.with_status_event(&event(CallStatus::InProgress, 1, 3, None));
        assert_eq!(late.status, CallStatus::Completed);
        assert_eq!(late.answered_at, done.answered_at, "derived from the duration, not overwritten");
        let again = late.with_status_event(&event(CallStatus::Completed, 2, 99, Some(60)));
        assert_eq!(again.ended_at, late.ended_at);
        assert_eq!(again.status_sequence, Some(2));
    }

    #[test]
    fn an_ending_completes_the_call_once() {
        let answered = ringing().with_status_event(&event(CallStatus::InProgress, 1, 2, None));
        let at = answered.started_at + chrono::Duration::seconds(32);
        let agent = CallEnding { summary: Some("Booked"), ..CallEnding::new(EndedBy::Agent, EndReason::AgentEnded) };
        let ended = answered.with_ending(&agent, at);
        assert_eq!((ended.status, ended.duration_secs, ended.ended_at), (CallStatus::Completed, Some(30), Some(at)));
        let later = ended.with_ending(&CallEnding::new(EndedBy::Caller, EndReason::CallerHangup), at + chrono::Duration::seconds(5));
        assert_eq!(
            (later.ended_reason.as_deref(), later.summary.as_deref(), later.ended_at),
            (Some("agent_ended"), Some("Booked"), Some(at))
        );
        let transfer = CallEnding::new(EndedBy::Agent, EndReason::Transferred);
        assert_eq!(answered.with_ending(&transfer, at).status, CallStatus::InProgress, "the call goes on with a person");
    }

    #[test]
    fn impossible_durations_are_ignored_not_fatal() {
        for duration in [i64::MAX, i64::MIN, -5, MAX_CARRIER_DURATION_SECS + 1] {
            let done = ringing().with_status_event(&event(CallStatus::Completed, 2, 63, Some(duration)));
            assert_eq!(done.status, CallStatus::Completed);
            assert_ne!(done.duration_secs, Some(duration), "{duration}");
        }
    }

    #[test]
    fn an_earlier_ending_is_kept() {
        let mut call = ringing();
        call.ended_by = Some("agent".into());
        call.ended_reason = Some("agent_ended".into());
        let done = call.with_status_event(&event(CallStatus::Completed, 3, 30, Some(27)));
        assert_eq!(done.ended_reason.as_deref(), Some("agent_ended"));
        let busy = ringing().with_status_event(&event(CallStatus::Busy, 1, 5, Some(0)));
        assert_eq!((busy.ended_by.as_deref(), busy.ended_reason.as_deref()), (Some("carrier"), Some("busy")));
        assert_eq!(busy.answered_at, None);
    }
}
