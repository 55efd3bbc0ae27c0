//! Post-call events: what Switchboard tells the outside world after a call. `call.ended` is the
//! "Agent Conversation Ended" trigger; `call.analyzed` follows an AI classification;
//! `budget.threshold_reached` tells that a call took the month's spending over a budget
//! threshold.
//!
//! The payload is versioned (`schema_version`) and published as JSON Schema under
//! `docs/events/`; a published version never changes in place (a test compares the schema the
//! types generate with the published file). The snapshot carries the whole record: ids, numbers,
//! times, the agent and its version, how the call ended, the transcript with timestamps and
//! offsets, tool calls, per-turn latency with p50/p95, and the classification once there is one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::call::{Call, CallDirection, CallStatus, Turn, TurnRole, VoiceLatency};
use super::cost::{BudgetStatus, CallCost, CallUsage};
use super::ids::{AgentId, AppId, CallId, OrgId, PhoneNumberId};
use super::text_enum;

/// The version of the payload below. Version 3 added the call's `usage` and `cost` and the
/// `budget.threshold_reached` event with its `budget`; version 2 added each agent turn's
/// `voice_latency` and the call's voice-to-voice percentiles (Media Streams calls). Earlier
/// versions stay published.
pub const SCHEMA_VERSION: i64 = 3;

text_enum!(
    /// The kinds of event.
    EventType { CallEnded => "call.ended", CallAnalyzed => "call.analyzed", BudgetThresholdReached => "budget.threshold_reached" }
);

/// One event as delivered (webhook body, template context).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallEvent {
    /// Unique per event; webhooks send it as `Idempotency-Key`.
    pub event_id: uuid::Uuid,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub schema_version: i64,
    pub created_at: DateTime<Utc>,
    pub org_id: OrgId,
    /// The call the event is about; for `budget.threshold_reached`, the call whose cost took
    /// the month's spending over the threshold.
    pub call: CallSnapshot,
    /// `budget.threshold_reached` only: where the month stands against the budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetStatus>,
}

/// The call record as it stood when the event was written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallSnapshot {
    pub id: CallId,
    pub app_id: Option<AppId>,
    pub phone_number_id: Option<PhoneNumberId>,
    pub agent: Option<AgentRef>,
    /// The carrier's id for the call (`CA…` on Twilio).
    pub call_sid: String,
    pub direction: CallDirection,
    /// The caller's number (E.164).
    pub from: String,
    pub to: String,
    pub status: CallStatus,
    pub started_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// `caller`, `agent`, `system` or `carrier`.
    pub ended_by: Option<String>,
    /// `caller_hangup`, `agent_ended`, `inactivity_timeout`, `max_duration`, `transferred`,
    /// `llm_error`, `server_restart`, `busy`, `no_answer`, `failed`, `canceled`, …
    pub ended_reason: Option<String>,
    /// `completed` or `transferred` when the agent ended the call.
    pub outcome: Option<String>,
    /// The agent's closing summary (endConversation), when it gave one.
    pub summary: Option<String>,
    /// The language the call ended in.
    pub language: Option<String>,
    /// Every language spoken on the call, in order of first use.
    pub languages_used: Vec<String>,
    pub transcript: Transcript,
    pub latency: Latency,
    /// The AI classification, once there is one.
    pub analysis: Option<Analysis>,
    /// What the call's session used (model tokens, speech).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<CallUsage>,
    /// What the call cost, line by line. Until `cost.final`, the carrier line is the price
    /// list's rate: the carrier reports its own price a while after the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CallCost>,
}

/// The agent that answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentRef {
    pub id: AgentId,
    pub name: Option<String>,
    pub version: Option<i64>,
}

/// What was said, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transcript {
    /// Spoken turns (agent and caller).
    pub turns: Vec<SpokenTurn>,
    pub tool_calls: Vec<ToolCallRecord>,
    /// The spoken turns as plain text, one `Agent: …` / `Caller: …` line each.
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SpokenTurn {
    /// `agent` or `caller`.
    pub role: TurnRole,
    pub text: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Milliseconds from the start of the call.
    pub offset_ms: i64,
    /// The caller spoke over this agent turn; `text` is what they heard.
    pub interrupted: bool,
    pub language: Option<String>,
    /// For agent turns: the caller's last words to the agent's first token, in milliseconds.
    pub latency_ms: Option<i64>,
    /// For agent turns of calls Switchboard hears and speaks itself: where the caller's wait
    /// went, up to the first sound of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_latency: Option<VoiceLatency>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolCallRecord {
    pub name: String,
    /// The arguments as the model gave them.
    pub arguments: Value,
    pub result: Option<String>,
    pub latency_ms: Option<i64>,
    pub at: DateTime<Utc>,
}

/// Agent response times over the call's turns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Latency {
    pub turns_ms: Vec<i64>,
    pub average_ms: Option<i64>,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    /// Media Streams calls: the caller's wait from their last word to the first sound of each
    /// answer (`voice_latency.voice_to_voice_ms`), nearest-rank percentiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_to_voice_p50_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_to_voice_p95_ms: Option<i64>,
}

text_enum!(
    /// How the caller felt.
    Sentiment { Positive => "positive", Neutral => "neutral", Negative => "negative" }
);

text_enum!(
    /// Whether the caller's matter was settled.
    Resolution { Resolved => "resolved", Unresolved => "unresolved", Escalated => "escalated" }
);

/// The AI classification of a call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    pub sentiment: Sentiment,
    pub resolution: Resolution,
    /// 1 (very unhappy) to 5 (very happy).
    pub satisfaction: i64,
    pub summary: String,
    /// The automation's own categories: category name → chosen value.
    #[serde(default)]
    pub categories: BTreeMap<String, String>,
}

/// The JSON Schema (2020-12) of the event payload at [`SCHEMA_VERSION`], generated from these
/// types. `docs/events/` publishes it; a test keeps the two equal.
pub fn json_schema() -> Value {
    use utoipa::{PartialSchema, ToSchema};
    let mut defs = Vec::new();
    CallEvent::schemas(&mut defs);
    let mut doc = serde_json::to_value(CallEvent::schema()).expect("a schema serialises");
    let definitions: serde_json::Map<String, Value> =
        defs.into_iter().map(|(name, schema)| (name, serde_json::to_value(schema).expect("a schema serialises"))).collect();
    doc["$schema"] = Value::from("https://json-schema.org/draft/2020-12/schema");
    doc["title"] = Value::from(format!(
        "Switchboard post-call event (call.ended, call.analyzed, budget.threshold_reached), schema version {SCHEMA_VERSION}"
    ));
    doc["$defs"] = Value::Object(definitions);
    let text = doc.to_string().replace("#/components/schemas/", "#/$defs/");
    serde_json::from_str(&text).expect("the rewritten schema is JSON")
}

impl CallSnapshot {
    /// The snapshot of `call` with its transcript (in spoken order) and its agent's name.
    pub fn new(call: &Call, agent_name: Option<String>, turns: &[Turn], analysis: Option<Analysis>) -> Self {
        let mut spoken = Vec::new();
        let mut tool_calls = Vec::new();
        for turn in turns {
            match turn.role {
                TurnRole::Tool => tool_calls.push(tool_call_record(turn)),
                TurnRole::Agent | TurnRole::Caller => spoken.push(SpokenTurn {
                    role: turn.role,
                    text: turn.text.clone(),
                    started_at: turn.started_at,
                    ended_at: turn.ended_at,
                    offset_ms: (turn.started_at - call.started_at).num_milliseconds().max(0),
                    interrupted: turn.interrupted,
                    language: turn.language.clone(),
                    latency_ms: turn.latency_ms,
                    voice_latency: turn.voice_latency,
                }),
                TurnRole::System => {}
            }
        }
        let mut languages_used: Vec<String> = Vec::new();
        for language in spoken.iter().filter_map(|t| t.language.as_ref()) {
            if !languages_used.contains(language) {
                languages_used.push(language.clone());
            }
        }
        let text = spoken
            .iter()
            .map(|t| format!("{}: {}", if t.role == TurnRole::Agent { "Agent" } else { "Caller" }, t.text))
            .collect::<Vec<_>>()
            .join("\n");
        let mut latencies: Vec<i64> = spoken.iter().filter_map(|t| t.latency_ms).collect();
        let turns_ms = latencies.clone();
        latencies.sort_unstable();
        let mut waits: Vec<i64> = spoken.iter().filter_map(|t| t.voice_latency.map(|l| l.voice_to_voice_ms)).collect();
        waits.sort_unstable();
        let latency = Latency {
            average_ms: (!latencies.is_empty()).then(|| latencies.iter().sum::<i64>() / latencies.len() as i64),
            p50_ms: nearest_rank(&latencies, 50),
            p95_ms: nearest_rank(&latencies, 95),
            turns_ms,
            voice_to_voice_p50_ms: nearest_rank(&waits, 50),
            voice_to_voice_p95_ms: nearest_rank(&waits, 95),
        };
        let duration_ms = call.duration_secs.map(|s| s * 1000).or_else(|| {
            let ended = call.ended_at?;
            Some((ended - call.answered_at.unwrap_or(call.started_at)).num_milliseconds().max(0))
        });
        CallSnapshot {
            id: call.id,
            app_id: call.app_id,
            phone_number_id: call.phone_number_id,
            agent: call.agent_id.map(|id| AgentRef { id, name: agent_name, version: call.agent_version }),
            call_sid: call.call_sid.clone(),
            direction: call.direction,
            from: call.from.clone(),
            to: call.to.clone(),
            status: call.status,
            started_at: call.started_at,
            answered_at: call.answered_at,
            ended_at: call.ended_at,
            duration_ms,
            ended_by: call.ended_by.clone(),
            ended_reason: call.ended_reason.clone(),
            outcome: call.outcome.clone(),
            summary: call.summary.clone(),
            language: call.language.clone(),
            languages_used,
            transcript: Transcript { turns: spoken, tool_calls, text },
            latency,
            analysis,
            usage: call.usage.clone(),
            cost: call.cost.clone(),
        }
    }
}

/// A tool turn is stored as `{"tool", "arguments", "result", "latency_ms"}` (see the session).
/// A stored tool turn read back as the call it records.
pub fn tool_call_record(turn: &Turn) -> ToolCallRecord {
    let stored: Value = serde_json::from_str(&turn.text).unwrap_or(Value::Null);
    let arguments = match &stored["arguments"] {
        Value::String(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
        other => other.clone(),
    };
    ToolCallRecord {
        name: stored["tool"].as_str().unwrap_or("unknown").to_owned(),
        arguments,
        result: stored["result"].as_str().map(str::to_owned),
        latency_ms: stored["latency_ms"].as_i64(),
        at: turn.started_at,
    }
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `p`% of the
/// values at or below it. Analytics computes the same rule in SQL.
#[cfg(test)]
impl CallEvent {
    /// The `call.ended` event of `call`, for tests.
    pub(crate) fn ended(call: &crate::domain::call::Call, agent_name: Option<&str>) -> CallEvent {
        CallEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: EventType::CallEnded,
            schema_version: SCHEMA_VERSION,
            created_at: call.started_at,
            org_id: call.org_id,
            call: CallSnapshot::new(call, agent_name.map(str::to_owned), &[], None),
            budget: None,
        }
    }
}

pub fn nearest_rank(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn turn(sequence: i64, role: TurnRole, text: &str, at_secs: i64, latency: Option<i64>) -> Turn {
        let at = Call::example().started_at + Duration::seconds(at_secs);
        Turn {
            sequence,
            role,
            text: text.into(),
            language: Some("en-US".into()),
            started_at: at,
            ended_at: Some(at),
            interrupted: false,
            latency_ms: latency,
            voice_latency: None,
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 95), Some(7));
        let values: Vec<i64> = (1..=20).collect();
        assert_eq!(nearest_rank(&values, 50), Some(10));
        assert_eq!(nearest_rank(&values, 95), Some(19));
        assert_eq!(nearest_rank(&values, 100), Some(20));
    }

    #[test]
    fn snapshot_splits_spoken_turns_and_tool_calls() {
        let mut call = Call::example();
        call.agent_id = Some(AgentId::generate());
        call.ended_at = Some(call.started_at + Duration::seconds(42));
        let tool = r#"{"tool":"endConversation","arguments":"{\"summary\":\"Done\"}","result":"ok","latency_ms":3}"#;
        let turns = [
            turn(1, TurnRole::Agent, "Hello!", 0, None),
            turn(2, TurnRole::Caller, "Hi", 5, None),
            turn(3, TurnRole::Agent, "How can I help?", 6, Some(300)),
            turn(4, TurnRole::Caller, "Bye", 10, None),
            turn(5, TurnRole::Tool, tool, 11, None),
            turn(6, TurnRole::Agent, "Goodbye", 11, Some(500)),
        ];
        let snapshot = CallSnapshot::new(&call, Some("Ada".into()), &turns, None);
        assert_eq!(snapshot.transcript.turns.len(), 5);
        assert_eq!(snapshot.transcript.turns[1].offset_ms, 5_000);
        assert_eq!(snapshot.transcript.text.lines().next(), Some("Agent: Hello!"));
        assert_eq!(snapshot.transcript.tool_calls[0].name, "endConversation");
        assert_eq!(snapshot.transcript.tool_calls[0].arguments["summary"], "Done");
        assert_eq!(snapshot.latency.turns_ms, vec![300, 500]);
        assert_eq!((snapshot.latency.p50_ms, snapshot.latency.p95_ms, snapshot.latency.average_ms), (Some(300), Some(500), Some(400)));
        assert_eq!(snapshot.duration_ms, Some(42_000));
        assert_eq!(snapshot.agent.unwrap().name.as_deref(), Some("Ada"));
        assert_eq!(snapshot.languages_used, ["en-US"]);
    }
}
