//! App Details → Automations: what happens after a call. The form has the trigger, the filters
//! and ordered action slots, each with the fields of its type; it is read into the REST API's own
//! request (the same JSON an API client sends), so defaults and validation are the API's. The
//! webhook signing secret is shown once (on creation and rotation). Each automation's runs show
//! status, attempts, error and next attempt, with "Retry".

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::{Submitted, Viewer, redirect_with_notice};
use super::{ConsoleError, Empty, FormErrors, Layout, first_page};
use crate::domain::agent::Agent;
use crate::domain::app::App;
use crate::domain::automation::{Action, Automation, AutomationRun, Category, Trigger};
use crate::domain::call::{EndReason, Outcome};
use crate::domain::ids::{AppId, AutomationId, AutomationRunId};
use crate::domain::template::EXAMPLES;
use crate::domain::ticket::{TicketPriority, TicketStatus};
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::api::apps as apps_api;
use crate::http::api::automations::{self as api, CreateAutomation, UpdateAutomation};
use crate::http::error::ApiError;
use crate::http::input::{ApiJson, ApiPath};

/// Action slots the form always offers (more appear as they fill, up to the API's ten).
const MIN_SLOTS: usize = 3;
const MAX_SLOTS: usize = 10;

#[derive(Template)]
#[template(path = "automations/list.html")]
struct ListPage {
    layout: Layout,
    app: App,
    tab: &'static str,
    automations: Vec<Automation>,
}

/// `GET /apps/{id}/automations`.
pub async fn list(State(state): State<AppState>, Path(app): Path<AppId>, viewer: Viewer) -> Result<Response, ConsoleError> {
    let app = apps_api::get(State(state.clone()), viewer.caller(), ApiPath(app)).await?.0;
    let automations = api::list(State(state), viewer.caller(), ApiPath(app.id), super::picker_page()).await?.0.data;
    let layout = viewer.layout(format!("{} · Automations", app.name), "apps");
    Ok(viewer.render(&ListPage { layout, app, tab: "automations", automations }))
}

/// One action slot of the form, as text fields.
#[derive(Default)]
pub struct Slot {
    /// `webhook`, `email`, `create_record`, `ai_classify`, or empty for an unused slot.
    pub kind: String,
    pub url: String,
    /// `Name: value` per line.
    pub headers: String,
    /// Addresses separated by commas or lines.
    pub to: String,
    pub subject: String,
    pub body: String,
    pub title: String,
    pub description: String,
    pub priority: String,
    pub status: String,
    /// `name: value, value` per line.
    pub categories: String,
    pub instructions: String,
}

impl Slot {
    fn from_action(action: &Action) -> Slot {
        let kind = action.kind().to_owned();
        match action {
            Action::Webhook { url, headers } => Slot {
                kind,
                url: url.clone(),
                headers: headers.iter().map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>().join("\n"),
                ..Slot::default()
            },
            Action::Email { to, subject, body } => {
                Slot { kind, to: to.join(", "), subject: subject.clone(), body: body.clone(), ..Slot::default() }
            }
            Action::CreateRecord { title, description, priority, status } => Slot {
                kind,
                title: title.clone(),
                description: description.clone(),
                priority: priority.map(|p| p.to_string()).unwrap_or_default(),
                status: status.to_string(),
                ..Slot::default()
            },
            Action::AiClassify { categories, instructions } => Slot {
                kind,
                categories: categories.iter().map(|c| format!("{}: {}", c.name, c.values.join(", "))).collect::<Vec<_>>().join("\n"),
                instructions: instructions.clone(),
                ..Slot::default()
            },
        }
    }

    /// The slot as the API's JSON action (fields left empty take the API's defaults).
    fn to_json(&self, index: usize) -> Result<Value, Invalid> {
        let field = |name: &str| format!("actions[{index}].{name}");
        let lines = |text: &str| text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect::<Vec<_>>();
        let mut action = json!({ "type": self.kind });
        match self.kind.as_str() {
            "webhook" => {
                let mut headers = BTreeMap::new();
                for line in lines(&self.headers) {
                    let (name, value) =
                        line.split_once(':').ok_or_else(|| Invalid::new(field("headers"), format!("`{line}` is not `Name: value`")))?;
                    headers.insert(name.trim().to_owned(), value.trim().to_owned());
                }
                action["url"] = json!(self.url.trim());
                action["headers"] = json!(headers);
            }
            "email" => {
                let to: Vec<&str> = self.to.split([',', '\n']).map(str::trim).filter(|a| !a.is_empty()).collect();
                action["to"] = json!(to);
                action["subject"] = json!(self.subject);
                action["body"] = json!(self.body);
            }
            "create_record" => {
                for (name, value) in
                    [("title", &self.title), ("description", &self.description), ("priority", &self.priority), ("status", &self.status)]
                {
                    if !value.trim().is_empty() {
                        action[name] = json!(value);
                    }
                }
            }
            "ai_classify" => {
                let mut categories = Vec::new();
                for line in lines(&self.categories) {
                    let (name, values) = line
                        .split_once(':')
                        .ok_or_else(|| Invalid::new(field("categories"), format!("`{line}` is not `name: value, value`")))?;
                    let values = values.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect();
                    categories.push(Category { name: name.trim().to_owned(), values, description: String::new() });
                }
                action["categories"] = json!(categories);
                action["instructions"] = json!(self.instructions);
            }
            other => return Err(Invalid::new(field("type"), format!("`{other}` is not an action type"))),
        }
        Ok(action)
    }
}

/// The whole form, as text.
#[derive(Default)]
pub struct Draft {
    pub name: String,
    pub trigger: String,
    pub enabled: bool,
    pub agent_ids: Vec<String>,
    pub ended_reasons: Vec<String>,
    pub outcomes: Vec<String>,
    pub min_duration_secs: String,
    pub slots: Vec<Slot>,
}

impl Draft {
    fn new_automation() -> Draft {
        Draft { trigger: Trigger::AgentConversationEnded.to_string(), enabled: true, slots: padded(Vec::new()), ..Draft::default() }
    }

    fn from_automation(automation: &Automation) -> Draft {
        let spec = &automation.spec;
        Draft {
            name: spec.name.clone(),
            trigger: spec.trigger.to_string(),
            enabled: spec.enabled,
            agent_ids: spec.filters.agent_ids.iter().map(ToString::to_string).collect(),
            ended_reasons: spec.filters.ended_reasons.clone(),
            outcomes: spec.filters.outcomes.clone(),
            min_duration_secs: spec.filters.min_duration_secs.map(|m| m.to_string()).unwrap_or_default(),
            slots: padded(spec.actions.iter().map(Slot::from_action).collect()),
        }
    }

    /// Reads the submitted fields (`action0_type`, `action0_url`, …).
    fn from_fields(fields: &[(String, String)]) -> Draft {
        let one = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
        let all = |name: &str| fields.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect::<Vec<_>>();
        let slots = (0..MAX_SLOTS)
            .map(|i| {
                let slot = |name: &str| one(&format!("action{i}_{name}"));
                Slot {
                    kind: slot("type"),
                    url: slot("url"),
                    headers: slot("headers"),
                    to: slot("to"),
                    subject: slot("subject"),
                    body: slot("body"),
                    title: slot("title"),
                    description: slot("description"),
                    priority: slot("priority"),
                    status: slot("status"),
                    categories: slot("categories"),
                    instructions: slot("instructions"),
                }
            })
            .filter(|slot| !slot.kind.is_empty())
            .collect();
        Draft {
            name: one("name"),
            trigger: one("trigger"),
            enabled: one("enabled") == "true",
            agent_ids: all("agent_ids"),
            ended_reasons: all("ended_reasons"),
            outcomes: all("outcomes"),
            min_duration_secs: one("min_duration_secs"),
            slots: padded(slots),
        }
    }

    /// The API's request body for this draft.
    fn to_json(&self) -> Result<Value, Invalid> {
        let min_duration = match self.min_duration_secs.trim() {
            "" => None,
            text => Some(text.parse::<i64>().map_err(|_| Invalid::new("filters.min_duration_secs", "must be a whole number of seconds"))?),
        };
        let actions =
            self.slots.iter().enumerate().filter(|(_, s)| !s.kind.is_empty()).map(|(i, s)| s.to_json(i)).collect::<Result<Vec<_>, _>>()?;
        Ok(json!({
            "name": self.name,
            "trigger": self.trigger,
            "enabled": self.enabled,
            "filters": { "agent_ids": self.agent_ids, "ended_reasons": self.ended_reasons, "outcomes": self.outcomes, "min_duration_secs": min_duration },
            "actions": actions,
        }))
    }
}

/// The slots given, then empty ones up to [`MIN_SLOTS`] (and one spare, up to [`MAX_SLOTS`]).
fn padded(mut slots: Vec<Slot>) -> Vec<Slot> {
    let wanted = (slots.len() + 1).clamp(MIN_SLOTS, MAX_SLOTS);
    slots.resize_with(wanted.max(slots.len()), Slot::default);
    slots
}

/// Reads a request body from the draft, naming a malformed part as a field error.
fn request<T: serde::de::DeserializeOwned>(draft: &Draft) -> Result<T, ApiError> {
    let body = draft.to_json()?;
    serde_json::from_value(body).map_err(|e| ApiError::Invalid(Invalid::new("form", e.to_string())))
}

#[derive(Template)]
#[template(path = "automations/edit.html")]
struct EditPage {
    layout: Layout,
    app: App,
    /// `None` while creating.
    automation: Option<Automation>,
    runs: Vec<AutomationRun>,
    draft: Draft,
    agents: Vec<Agent>,
    reasons: &'static [EndReason],
    outcomes: &'static [Outcome],
    triggers: &'static [Trigger],
    priorities: &'static [TicketPriority],
    statuses: &'static [TicketStatus],
    fields: &'static [(&'static str, &'static str)],
    /// The signing secret, on the one page that shows it.
    secret: Option<String>,
    errors: FormErrors,
}

impl EditPage {
    /// Whether `value` is among the ticked `list`.
    fn picked(&self, list: &[String], value: &impl ToString) -> bool {
        list.contains(&value.to_string())
    }

    /// The error about action slot `index`, if any.
    fn slot_error(&self, index: &usize) -> Option<String> {
        self.errors.under(&format!("actions[{index}]"))
    }
}

struct Shown {
    automation: Option<Automation>,
    draft: Draft,
    secret: Option<String>,
    errors: FormErrors,
}

async fn edit_page(state: AppState, viewer: &Viewer, app: AppId, shown: Shown) -> Result<Response, ConsoleError> {
    let caller = viewer.caller();
    let app = apps_api::get(State(state.clone()), caller, ApiPath(app)).await?.0;
    let agents = super::app_agents(&state, viewer, app.id).await?;
    let runs = match &shown.automation {
        Some(automation) => api::runs(State(state), caller, ApiPath(automation.id), first_page(None)).await?.0.data,
        None => Vec::new(),
    };
    let title = shown.automation.as_ref().map_or_else(|| "New automation".to_owned(), |a| a.spec.name.clone());
    let status = if shown.errors.any() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = EditPage {
        layout: viewer.layout(title, "apps"),
        app,
        automation: shown.automation,
        runs,
        draft: shown.draft,
        agents,
        reasons: EndReason::ALL,
        outcomes: Outcome::ALL,
        triggers: Trigger::ALL,
        priorities: TicketPriority::ALL,
        statuses: TicketStatus::ALL,
        fields: EXAMPLES,
        secret: shown.secret,
        errors: shown.errors,
    };
    Ok((status, viewer.render(&page)).into_response())
}

/// `GET /apps/{id}/automations/new`.
pub async fn new(State(state): State<AppState>, Path(app): Path<AppId>, viewer: Viewer) -> Result<Response, ConsoleError> {
    edit_page(state, &viewer, app, Shown { automation: None, draft: Draft::new_automation(), secret: None, errors: FormErrors::default() })
        .await
}

/// `POST /apps/{id}/automations`: creates it and shows the signing secret, once.
pub async fn create(
    State(state): State<AppState>,
    Path(app): Path<AppId>,
    Submitted { viewer, form }: Submitted<Vec<(String, String)>>,
) -> Result<Response, ConsoleError> {
    let draft = Draft::from_fields(&form);
    let created = match request::<CreateAutomation>(&draft) {
        Ok(body) => api::create(State(state.clone()), viewer.caller(), ApiPath(app), ApiJson(body)).await,
        Err(e) => Err(e),
    };
    match created {
        Ok((_, created)) => {
            let created = created.0;
            let draft = Draft::from_automation(&created.automation);
            let shown =
                Shown { automation: Some(created.automation), draft, secret: Some(created.signing_secret), errors: FormErrors::default() };
            edit_page(state, &viewer, app, shown).await
        }
        Err(e) => edit_page(state, &viewer, app, Shown { automation: None, draft, secret: None, errors: FormErrors::from_api(e)? }).await,
    }
}

/// `GET /automations/{id}`: the form and the runs.
pub async fn show(State(state): State<AppState>, Path(id): Path<AutomationId>, viewer: Viewer) -> Result<Response, ConsoleError> {
    let automation = api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
    let draft = Draft::from_automation(&automation);
    let app = automation.app_id;
    edit_page(state, &viewer, app, Shown { automation: Some(automation), draft, secret: None, errors: FormErrors::default() }).await
}

/// `POST /automations/{id}`.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<AutomationId>,
    Submitted { viewer, form }: Submitted<Vec<(String, String)>>,
) -> Result<Response, ConsoleError> {
    let current = api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
    let draft = Draft::from_fields(&form);
    let saved = match request::<UpdateAutomation>(&draft) {
        Ok(body) => api::update(State(state.clone()), viewer.caller(), ApiPath(id), ApiJson(body)).await,
        Err(e) => Err(e),
    };
    match saved {
        Ok(_) => Ok(redirect_with_notice(&viewer, &format!("/automations/{id}"), "Automation saved.")),
        Err(e) => {
            let app = current.app_id;
            edit_page(state, &viewer, app, Shown { automation: Some(current), draft, secret: None, errors: FormErrors::from_api(e)? }).await
        }
    }
}

/// `POST /automations/{id}/signing-secret`: a new secret, shown once.
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<AutomationId>,
    Submitted { viewer, .. }: Submitted<Empty>,
) -> Result<Response, ConsoleError> {
    let secret = api::rotate_secret(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0.signing_secret;
    let automation = api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
    let draft = Draft::from_automation(&automation);
    let app = automation.app_id;
    edit_page(state, &viewer, app, Shown { automation: Some(automation), draft, secret: Some(secret), errors: FormErrors::default() }).await
}

/// `POST /automations/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<AutomationId>,
    Submitted { viewer, .. }: Submitted<Empty>,
) -> Result<Response, ConsoleError> {
    let automation = api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
    api::delete(State(state), viewer.caller(), ApiPath(id)).await?;
    Ok(redirect_with_notice(&viewer, &format!("/apps/{}/automations", automation.app_id), "The automation and its runs were deleted."))
}

/// `POST /automations/{id}/runs/{run}/retry`.
pub async fn retry(
    State(state): State<AppState>,
    Path((id, run)): Path<(AutomationId, AutomationRunId)>,
    Submitted { viewer, .. }: Submitted<Empty>,
) -> Result<Response, ConsoleError> {
    let notice = match api::retry(State(state), viewer.caller(), ApiPath(run)).await {
        Ok(_) => "The run is queued again; it resumes at the action that failed.".to_owned(),
        Err(ApiError::Conflict(why)) => super::sentence(&why),
        Err(e) => return Err(e.into()),
    };
    Ok(redirect_with_notice(&viewer, &format!("/automations/{id}"), &notice))
}

/// A trigger as the console names it.
pub fn trigger_label(trigger: &Trigger) -> &'static str {
    match trigger {
        Trigger::AgentConversationEnded => "Agent Conversation Ended",
        Trigger::CallAnalyzed => "Call Analyzed (after an ai_classify step)",
        Trigger::BudgetThresholdReached => "Budget Threshold Reached (any app's calls; no filters)",
    }
}
