//! App Details → Calls (filters; the list refreshes itself while calls are live) and the call
//! record: who called, when, how it ended, the classification, linked tickets, delivered events
//! and the automation runs they started,
//! and the Voice conversation — a chat-style transcript with timestamps, offsets, interruptions,
//! tool calls and response latencies, which streams in while the call is live. Erasing a call
//! asks first.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::auth::{Submitted, Viewer, redirect_with_notice};
use super::{ConsoleError, Layout};
use crate::domain::agent::Agent;
use crate::domain::app::App;
use crate::domain::automation::AutomationRun;
use crate::domain::call::{Call, CallStatus, EndReason, Turn, TurnRole};
use crate::domain::event::{ToolCallRecord, tool_call_record};
use crate::domain::ids::{AgentId, AppId, CallId, PhoneNumberId};
use crate::domain::recording::{Recording, RecordingStatus};
use crate::domain::ticket::Ticket;
use crate::http::AppState;
use crate::http::api::calls::{self as api, CallQuery, EventDetail};
use crate::http::api::phone_numbers::{self as numbers_api, PhoneNumberListing};
use crate::http::api::tickets::{self as tickets_api, TicketQuery};
use crate::http::api::{agents as agents_api, apps as apps_api};
use crate::http::error::ApiError;
use crate::http::input::{ApiPath, ApiQuery};

/// The filters of the calls list, as the form sends them (dates as `YYYY-MM-DD`, in UTC).
#[derive(Deserialize, Default)]
pub struct CallFilters {
    agent_id: Option<AgentId>,
    phone_number_id: Option<PhoneNumberId>,
    status: Option<CallStatus>,
    ended_reason: Option<EndReason>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

impl CallFilters {
    /// The query string of these filters without the cursor, for the next-page link.
    fn query(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        let pairs = [
            ("agent_id", self.agent_id.map(|a| a.to_string())),
            ("phone_number_id", self.phone_number_id.map(|p| p.to_string())),
            ("status", self.status.map(|s| s.to_string())),
            ("ended_reason", self.ended_reason.map(|r| r.to_string())),
            ("from", self.from.clone()),
            ("to", self.to.clone()),
        ];
        for (name, value) in pairs {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                query.append_pair(name, &value);
            }
        }
        query.finish()
    }
}

#[derive(Template)]
#[template(path = "calls/list.html")]
struct CallsPage {
    layout: Layout,
    app: App,
    tab: &'static str,
    calls: Vec<Call>,
    next_cursor: Option<String>,
    agents: Vec<Agent>,
    numbers: Vec<PhoneNumberListing>,
    statuses: &'static [CallStatus],
    reasons: &'static [EndReason],
    filters: CallFilters,
    filter_error: Option<String>,
    live: bool,
}

impl CallsPage {
    fn agent_name(&self, id: &Option<AgentId>) -> String {
        let found = id.and_then(|id| self.agents.iter().find(|a| a.id == id));
        found.map_or_else(|| "—".to_owned(), |a| a.spec.name.clone())
    }

    fn filters_query(&self) -> String {
        self.filters.query()
    }
}

/// `GET /apps/{id}/calls`.
pub async fn list(
    State(state): State<AppState>,
    Path(app): Path<AppId>,
    viewer: Viewer,
    Query(filters): Query<CallFilters>,
) -> Result<Response, ConsoleError> {
    let caller = viewer.caller();
    let app = apps_api::get(State(state.clone()), caller, ApiPath(app)).await?.0;
    let agents = super::app_agents(&state, &viewer, app.id).await?;
    let numbers = numbers_api::list(State(state.clone()), caller, ApiPath(app.id), super::picker_page()).await?.0.data;
    let range = super::date_range(filters.from.as_deref(), filters.to.as_deref());
    let (calls, next_cursor, filter_error) = match range {
        Ok((from, to)) => {
            let query = CallQuery {
                app_id: Some(app.id),
                agent_id: filters.agent_id,
                phone_number_id: filters.phone_number_id,
                status: filters.status,
                from,
                to,
                ended_reason: filters.ended_reason,
                limit: Some(50),
                cursor: filters.cursor.clone(),
            };
            match api::list(State(state), caller, ApiQuery(query)).await {
                Ok(list) => (list.0.data, list.0.next_cursor, None),
                Err(ApiError::BadRequest(why)) => (Vec::new(), None, Some(super::sentence(&why))),
                Err(e) => return Err(e.into()),
            }
        }
        Err(why) => (Vec::new(), None, Some(why)),
    };
    let live = calls.iter().any(|c| !c.status.is_final());
    let layout = viewer.layout(format!("{} · Calls", app.name), "apps");
    let page = CallsPage {
        layout,
        app,
        tab: "calls",
        calls,
        next_cursor,
        agents,
        numbers,
        statuses: CallStatus::ALL,
        reasons: EndReason::ALL,
        filters,
        filter_error,
        live,
    };
    Ok(viewer.render(&page))
}

/// One entry of the Voice conversation.
pub enum Entry {
    Said(Turn),
    Tool(Turn, ToolCallRecord),
}

#[derive(Template)]
#[template(path = "calls/show.html")]
struct CallPage {
    layout: Layout,
    call: Call,
    agent_name: Option<String>,
    conversation: Vec<Entry>,
    events: Vec<EventDetail>,
    runs: Vec<AutomationRun>,
    tickets: Vec<Ticket>,
    recording: Option<Recording>,
}

impl CallPage {
    /// Seconds from the start of the call to `at`, as `m:ss`.
    fn offset(&self, at: &DateTime<Utc>) -> String {
        let seconds = (*at - self.call.started_at).num_seconds().max(0);
        format!("{}:{:02}", seconds / 60, seconds % 60)
    }

    /// Whether the recording's audio can be played.
    fn playable(&self) -> bool {
        self.recording.as_ref().is_some_and(|r| r.status == RecordingStatus::Stored)
    }

    /// Milliseconds from the start of the recording to `at`, where the player finds a turn.
    fn recording_offset_ms(&self, at: &DateTime<Utc>) -> i64 {
        self.recording.as_ref().map_or(0, |r| (*at - r.created_at).num_milliseconds().max(0))
    }

    fn pretty(&self, value: &serde_json::Value) -> String {
        serde_json::to_string_pretty(value).unwrap_or_default()
    }
}

/// `GET /calls/{id}`: the call record.
pub async fn show(State(state): State<AppState>, Path(id): Path<CallId>, viewer: Viewer) -> Result<Response, ConsoleError> {
    let caller = viewer.caller();
    let detail = api::get(State(state.clone()), caller, ApiPath(id)).await?.0;
    let events = api::events(State(state.clone()), caller, ApiPath(id)).await?.0;
    let runs = api::automation_runs(State(state.clone()), caller, ApiPath(id)).await?.0;
    let agent_name = match detail.call.agent_id {
        Some(agent) => agents_api::get(State(state.clone()), caller, ApiPath(agent)).await.ok().map(|a| a.0.spec.name),
        None => None,
    };
    let tickets = match detail.call.app_id {
        Some(app) => {
            let query = TicketQuery { call_id: Some(id), limit: Some(50), cursor: None };
            tickets_api::list(State(state), caller, ApiPath(app), ApiQuery(query)).await?.0.data
        }
        None => Vec::new(),
    };
    let conversation = detail
        .transcript
        .into_iter()
        .map(|turn| match turn.role {
            TurnRole::Tool => {
                let record = tool_call_record(&turn);
                Entry::Tool(turn, record)
            }
            _ => Entry::Said(turn),
        })
        .collect();
    let layout = viewer.layout(format!("Call from {}", detail.call.from), "apps");
    let recording = detail.recording;
    Ok(viewer.render(&CallPage { layout, call: detail.call, agent_name, conversation, events, runs, tickets, recording }))
}

/// `GET /calls/{id}/recording.wav`: the recording's audio for the page's player (byte ranges
/// pass through, so it seeks), to signed-in users of the call's organisation only.
pub async fn recording_audio(
    State(state): State<AppState>,
    Path(id): Path<CallId>,
    viewer: Viewer,
    headers: axum::http::HeaderMap,
) -> Result<Response, ConsoleError> {
    Ok(crate::http::api::recordings::audio(State(state), viewer.caller(), ApiPath(id), headers).await?)
}

#[derive(Template)]
#[template(path = "calls/erase.html")]
struct ErasePage {
    layout: Layout,
    call: Call,
}

/// `GET /calls/{id}/erase`: asks for confirmation.
pub async fn confirm_erase(State(state): State<AppState>, Path(id): Path<CallId>, viewer: Viewer) -> Result<Response, ConsoleError> {
    let call = api::get(State(state), viewer.caller(), ApiPath(id)).await?.0.call;
    Ok(viewer.render(&ErasePage { layout: viewer.layout("Erase call", "apps"), call }))
}

/// `POST /calls/{id}/erase`.
pub async fn erase(
    State(state): State<AppState>,
    Path(id): Path<CallId>,
    Submitted { viewer, .. }: Submitted<super::Empty>,
) -> Result<Response, ConsoleError> {
    let call = api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0.call;
    api::delete(State(state), viewer.caller(), ApiPath(id)).await?;
    let back = call.app_id.map_or_else(|| "/apps".to_owned(), |app| format!("/apps/{app}/calls"));
    Ok(redirect_with_notice(&viewer, &back, "The call, its transcript, recording and events were erased."))
}
