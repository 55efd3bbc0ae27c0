//! Call records and their transcripts. A record exists from the first webhook on; each turn is
//! stored when it is spoken.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ids::{AgentId, AppId, CallId, OrgId, PhoneNumberId};
use super::text_enum;

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
    pub agent_id: Option<AgentId>,
    pub agent_version: Option<i64>,
    /// The carrier's id for the call (`CA…` on Twilio).
    pub call_sid: String,
    pub from: String,
    pub to: String,
    pub direction: CallDirection,
    pub status: CallStatus,
    pub started_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_secs: Option<i64>,
    pub ended_by: Option<String>,
    pub ended_reason: Option<String>,
    pub outcome: Option<String>,
    pub language: Option<String>,
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
}
