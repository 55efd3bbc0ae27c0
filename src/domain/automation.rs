//! Automations: what happens after a call. An automation belongs to an app, waits for a
//! trigger (`agent_conversation_ended`, `call_analyzed`, or `budget_threshold_reached`, which
//! fires the automations of every app of the organisation), checks its filters against the event
//! and runs its actions in order. Each action's output joins the template context of the next
//! (see [`template_context`]).
//!
//! Runs are jobs of the durable queue; here are only their pure rules: what a run's state
//! means, and when a failed action is tried again ([`retry_delay`]).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::call::{EndReason, Outcome};
use super::event::{CallEvent, EventType};
use super::ids::{AgentId, AppId, AutomationId, AutomationRunId, CallId, OrgId, PhoneNumberId};
use super::template::Template;
use super::text_enum;
use super::ticket::{TicketPriority, TicketStatus};
use super::validation::{Invalid, http_url, in_range, required_text};

text_enum!(
    /// What starts an automation.
    Trigger {
        AgentConversationEnded => "agent_conversation_ended",
        CallAnalyzed => "call_analyzed",
        BudgetThresholdReached => "budget_threshold_reached",
    }
);

impl Trigger {
    /// The event that fires this trigger.
    pub fn event_type(self) -> EventType {
        match self {
            Trigger::AgentConversationEnded => EventType::CallEnded,
            Trigger::CallAnalyzed => EventType::CallAnalyzed,
            Trigger::BudgetThresholdReached => EventType::BudgetThresholdReached,
        }
    }

    /// Whether the trigger is about the organisation rather than one app's calls: its
    /// automations run whichever app's call fired it.
    pub fn is_organisation_wide(self) -> bool {
        self == Trigger::BudgetThresholdReached
    }
}

/// Which calls an automation acts on; an empty list or absent value means "any".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Filters {
    pub agent_ids: Vec<AgentId>,
    pub phone_number_ids: Vec<PhoneNumberId>,
    /// Values of `ended_reason`: `caller_hangup`, `agent_ended`, `transferred`,
    /// `inactivity_timeout`, `max_duration`, `llm_error`, `server_shutdown`… (see `EndReason`).
    pub ended_reasons: Vec<String>,
    pub min_duration_secs: Option<i64>,
    /// `completed` or `transferred`.
    pub outcomes: Vec<String>,
}

impl Filters {
    /// Whether the event's call passes every filter.
    pub fn admit(&self, event: &CallEvent) -> bool {
        let call = &event.call;
        let any_or = |list: &[String], value: &Option<String>| list.is_empty() || value.as_ref().is_some_and(|v| list.contains(v));
        (self.agent_ids.is_empty() || call.agent.as_ref().is_some_and(|a| self.agent_ids.contains(&a.id)))
            && (self.phone_number_ids.is_empty() || call.phone_number_id.is_some_and(|p| self.phone_number_ids.contains(&p)))
            && any_or(&self.ended_reasons, &call.ended_reason)
            && any_or(&self.outcomes, &call.outcome)
            && self.min_duration_secs.is_none_or(|min| call.duration_ms.unwrap_or(0) >= min * 1000)
    }
}

/// A custom classification category: the model picks one of `values`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub name: String,
    pub values: Vec<String>,
    #[serde(default)]
    pub description: String,
}

/// Extra request headers of a webhook: names to text values. (A named schema, so that client
/// generators see one model, not one per place an action appears.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct WebhookHeaders(pub BTreeMap<String, String>);

impl std::ops::Deref for WebhookHeaders {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// One step of an automation. Text fields are templates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// POST the event JSON, signed, to `url`.
    Webhook {
        url: String,
        #[serde(default)]
        headers: WebhookHeaders,
    },
    /// Send an e-mail through the configured SMTP server.
    Email { to: Vec<String>, subject: String, body: String },
    /// Create a ticket in the app, linked to the call.
    CreateRecord {
        #[serde(default = "default_ticket_title")]
        title: String,
        #[serde(default = "default_ticket_description")]
        description: String,
        /// Absent: `high` when an earlier classification found a negative or escalated call,
        /// else `normal`.
        #[serde(default)]
        priority: Option<TicketPriority>,
        #[serde(default = "open")]
        status: TicketStatus,
    },
    /// Ask the LLM to classify the call: sentiment, resolution, satisfaction, summary and the
    /// custom categories.
    AiClassify {
        #[serde(default)]
        categories: Vec<Category>,
        /// Extra guidance for the model.
        #[serde(default)]
        instructions: String,
    },
}

fn default_ticket_title() -> String {
    "Call from {{ caller }}".to_owned()
}

fn default_ticket_description() -> String {
    "{{ summary }}\n\n{{ transcript }}".to_owned()
}

fn open() -> TicketStatus {
    TicketStatus::Open
}

impl Action {
    /// The action's name in outputs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Webhook { .. } => "webhook",
            Action::Email { .. } => "email",
            Action::CreateRecord { .. } => "create_record",
            Action::AiClassify { .. } => "ai_classify",
        }
    }

    fn validate(&self, field: &str, trigger: Trigger) -> Result<(), Invalid> {
        let template = |name: &str, text: &str| Template::parse(&format!("{field}.{name}"), text).map(|_| ());
        match self {
            Action::Webhook { url, headers } => {
                http_url(&format!("{field}.url"), url)?;
                for (name, value) in headers.iter() {
                    let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                    let reserved = ["content-type", "switchboard-signature", "idempotency-key", "host", "content-length"]
                        .contains(&name.to_ascii_lowercase().as_str());
                    if !valid_name || reserved || value.contains(['\r', '\n']) {
                        return Err(Invalid::new(
                            format!("{field}.headers"),
                            format!("`{name}` cannot be set (letters, digits and `-` only; not a header Switchboard sets)"),
                        ));
                    }
                }
                Ok(())
            }
            Action::Email { to, subject, body } => {
                if to.is_empty() || to.len() > 20 {
                    return Err(Invalid::new(format!("{field}.to"), "needs 1 to 20 addresses"));
                }
                for address in to {
                    super::org::Email::parse(address)
                        .map_err(|_| Invalid::new(format!("{field}.to"), format!("`{address}` is not an e-mail address")))?;
                }
                template("subject", subject)?;
                template("body", body)
            }
            Action::CreateRecord { title, description, .. } => {
                template("title", title)?;
                template("description", description)
            }
            Action::AiClassify { categories, instructions } => {
                if trigger == Trigger::CallAnalyzed {
                    return Err(Invalid::new(field, "ai_classify cannot run on `call_analyzed`: it would classify its own result again"));
                }
                if trigger == Trigger::BudgetThresholdReached {
                    return Err(Invalid::new(field, "ai_classify classifies calls; it cannot run on `budget_threshold_reached`"));
                }
                for category in categories {
                    let name_ok = !category.name.is_empty() && category.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !name_ok || category.values.is_empty() || category.values.iter().any(|v| v.trim().is_empty()) {
                        return Err(Invalid::new(
                            format!("{field}.categories"),
                            "each category needs a name (letters, digits, `_`) and at least one non-empty value",
                        ));
                    }
                }
                if instructions.chars().count() > 5_000 {
                    return Err(Invalid::new(format!("{field}.instructions"), "is longer than 5000 characters"));
                }
                Ok(())
            }
        }
    }
}

/// Everything a user edits about an automation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AutomationSpec {
    pub name: String,
    pub trigger: Trigger,
    pub filters: Filters,
    pub actions: Vec<Action>,
    pub enabled: bool,
}

impl AutomationSpec {
    /// Checks every rule; the first problem found names its field.
    pub fn validate(mut self) -> Result<Self, Invalid> {
        self.name = required_text("name", &self.name, 100)?;
        if self.actions.is_empty() || self.actions.len() > 10 {
            return Err(Invalid::new("actions", "needs 1 to 10 actions"));
        }
        for (i, action) in self.actions.iter().enumerate() {
            action.validate(&format!("actions[{i}]"), self.trigger)?;
        }
        if self.trigger.is_organisation_wide() && self.filters != Filters::default() {
            return Err(Invalid::new(
                "filters",
                "filters pick calls; `budget_threshold_reached` is about the whole organisation, so leave them empty",
            ));
        }
        if let Some(min) = self.filters.min_duration_secs {
            in_range("filters.min_duration_secs", min, 0, 86_400, "seconds")?;
        }
        for reason in &self.filters.ended_reasons {
            reason.parse::<EndReason>().map_err(|e| Invalid::new("filters.ended_reasons", e))?;
        }
        for outcome in &self.filters.outcomes {
            outcome.parse::<Outcome>().map_err(|e| Invalid::new("filters.outcomes", e))?;
        }
        Ok(self)
    }
}

/// A stored automation.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Automation {
    pub id: AutomationId,
    #[serde(skip)]
    pub org_id: OrgId,
    pub app_id: AppId,
    #[serde(flatten)]
    pub spec: AutomationSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

text_enum!(
    /// Where a run stands. `pending` waits for its (next) attempt, `running` is claimed under a
    /// lease, `failed` hit an error that trying again cannot fix, `dead` ran out of retry time.
    RunStatus { Pending => "pending", Running => "running", Succeeded => "succeeded", Failed => "failed", Dead => "dead" }
);

/// One run of an automation for one event.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AutomationRun {
    pub id: AutomationRunId,
    #[serde(skip)]
    pub org_id: OrgId,
    pub automation_id: AutomationId,
    #[schema(value_type = String, format = Uuid)]
    pub event_id: uuid::Uuid,
    pub call_id: Option<CallId>,
    pub status: RunStatus,
    /// Attempts so far (each claim counts).
    pub attempts: i64,
    /// Index of the next action to run; the ones before it are done.
    pub next_step: i64,
    /// What each finished action produced, in order.
    pub outputs: Vec<Value>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// After this time a failing action is not tried again (the run is `dead`).
    pub give_up_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// How long failing actions keep being retried.
pub const RETRY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// The longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// The wait before attempt `attempts + 1`: `base` doubled per attempt, capped at an hour, with
/// ±20% jitter (`jitter` in 0..1) so failed deliveries do not retry in lockstep.
pub fn retry_delay(base: Duration, attempts: i64, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 20) as u32;
    let delay = base.saturating_mul(1 << doublings).min(MAX_RETRY_DELAY);
    delay.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

/// The template context of a run's next action: the event, handy shorthands, the outputs of
/// earlier actions as `steps.N` (0-based), and the latest classification and ticket by name.
pub fn template_context(event: &CallEvent, outputs: &[Value]) -> Value {
    let call = &event.call;
    let mut classification = call.analysis.as_ref().map(|a| json!(a)).unwrap_or(Value::Null);
    let mut ticket = Value::Null;
    for output in outputs {
        match output["action"].as_str() {
            Some("ai_classify") => classification = output["classification"].clone(),
            Some("create_record") => ticket = output["ticket"].clone(),
            _ => {}
        }
    }
    json!({
        "event": { "id": event.event_id, "type": event.event_type, "created_at": event.created_at },
        "call": call,
        "caller": call.from,
        "agent_name": call.agent.as_ref().and_then(|a| a.name.clone()),
        "duration_secs": call.duration_ms.map(|ms| ms / 1000),
        "transcript": call.transcript.text,
        "summary": classification.get("summary").and_then(Value::as_str).map(str::to_owned).or_else(|| call.summary.clone()),
        "classification": classification,
        "ticket": ticket,
        "budget": event.budget,
        "steps": outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::call::Call;
    use crate::domain::ids::AgentId;

    fn event() -> CallEvent {
        let mut call = Call::example();
        call.agent_id = Some(AgentId::generate());
        call.duration_secs = Some(90);
        call.ended_reason = Some("agent_ended".into());
        call.summary = Some("Booked a table".into());
        CallEvent::ended(&call, Some("Ada"))
    }

    #[test]
    fn filters_admit_only_matching_calls() {
        let e = event();
        assert!(Filters::default().admit(&e));
        assert!(Filters { ended_reasons: vec!["agent_ended".into()], min_duration_secs: Some(90), ..Default::default() }.admit(&e));
        assert!(!Filters { min_duration_secs: Some(91), ..Default::default() }.admit(&e));
        assert!(!Filters { agent_ids: vec![AgentId::generate()], ..Default::default() }.admit(&e));
        assert!(!Filters { outcomes: vec!["completed".into()], ..Default::default() }.admit(&e), "no outcome recorded");
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter() {
        let base = Duration::from_secs(10);
        assert_eq!(retry_delay(base, 1, 0.5), Duration::from_secs(10));
        assert_eq!(retry_delay(base, 3, 0.5), Duration::from_secs(40));
        assert_eq!(retry_delay(base, 30, 0.5), Duration::from_secs(3600));
        assert_eq!(retry_delay(base, 1, 0.0), Duration::from_secs(8));
        assert_eq!(retry_delay(base, 1, 1.0), Duration::from_secs(12));
    }

    #[test]
    fn outputs_of_earlier_actions_reach_later_templates() {
        let outputs =
            vec![json!({ "action": "ai_classify", "classification": { "sentiment": "negative", "summary": "Angry about a bill" } })];
        let context = template_context(&event(), &outputs);
        let t = Template::parse(
            "t",
            "{{ agent_name }}: {{ classification.sentiment }} / {{ summary }} / {{ steps.0.action }} / {{ duration_secs }}s",
        )
        .unwrap();
        assert_eq!(t.render(&context), "Ada: negative / Angry about a bill / ai_classify / 90s");
        assert_eq!(Template::parse("t", "{{ summary }}").unwrap().render(&template_context(&event(), &[])), "Booked a table");
    }

    #[test]
    fn specs_are_validated_with_field_names() {
        let spec = |actions: Value| -> Result<AutomationSpec, Invalid> {
            let spec: AutomationSpec = serde_json::from_value(json!({
                "name": "x", "trigger": "agent_conversation_ended", "filters": {}, "actions": actions, "enabled": true
            }))
            .unwrap();
            spec.validate()
        };
        assert!(spec(json!([{ "type": "webhook", "url": "https://example.com/hook" }])).is_ok());
        assert_eq!(spec(json!([])).unwrap_err().field, "actions");
        assert_eq!(spec(json!([{ "type": "webhook", "url": "ftp://x" }])).unwrap_err().field, "actions[0].url");
        let err = spec(json!([{ "type": "email", "to": ["ops@example.com"], "subject": "{{ nope }}", "body": "" }])).unwrap_err();
        assert_eq!(err.field, "actions[0].subject");
        assert_eq!(spec(json!([{ "type": "email", "to": ["not-mail"], "subject": "", "body": "" }])).unwrap_err().field, "actions[0].to");
    }

    #[test]
    fn filters_use_the_ending_vocabulary() {
        let spec = |filters: Value| {
            let spec: AutomationSpec = serde_json::from_value(json!({
                "name": "x", "trigger": "agent_conversation_ended", "filters": filters,
                "actions": [{ "type": "webhook", "url": "https://example.com/hook" }], "enabled": true
            }))
            .unwrap();
            spec.validate()
        };
        assert!(spec(json!({ "ended_reasons": ["agent_ended", "server_shutdown"], "outcomes": ["transferred"] })).is_ok());
        let err = spec(json!({ "ended_reasons": ["agent_hung_up"] })).unwrap_err();
        assert_eq!(err.field, "filters.ended_reasons");
        assert!(err.message.contains("caller_hangup"), "names the allowed values: {}", err.message);
        assert_eq!(spec(json!({ "outcomes": ["done"] })).unwrap_err().field, "filters.outcomes");
    }
}
