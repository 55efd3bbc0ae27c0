//! App Details → Tickets (list, view, change status and priority) and Analytics (date range,
//! bucket, time zone and agent; charts drawn by [`super::charts`]; the per-agent table).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::auth::{Submitted, Viewer, redirect_with_notice};
use super::{ConsoleError, Cursor, Layout, charts};
use crate::domain::agent::Agent;
use crate::domain::analytics::{BucketSize, Report};
use crate::domain::app::App;
use crate::domain::ids::{AgentId, AppId, TicketId};
use crate::domain::ticket::{Ticket, TicketPriority, TicketStatus};
use crate::http::AppState;
use crate::http::api::analytics::{self as analytics_api, AnalyticsQuery};
use crate::http::api::apps as apps_api;
use crate::http::api::tickets::{self as tickets_api, TicketQuery, UpdateTicket};
use crate::http::error::ApiError;
use crate::http::input::{ApiJson, ApiPath, ApiQuery};

#[derive(Template)]
#[template(path = "insights/tickets.html")]
struct TicketsPage {
    layout: Layout,
    app: App,
    tab: &'static str,
    tickets: Vec<Ticket>,
    next_cursor: Option<String>,
    priorities: &'static [TicketPriority],
    statuses: &'static [TicketStatus],
}

/// `GET /apps/{id}/tickets`.
pub async fn tickets(
    State(state): State<AppState>,
    Path(app): Path<AppId>,
    viewer: Viewer,
    Query(q): Query<Cursor>,
) -> Result<Response, ConsoleError> {
    let app = apps_api::get(State(state.clone()), viewer.caller(), ApiPath(app)).await?.0;
    let query = TicketQuery { call_id: None, limit: Some(50), cursor: q.cursor };
    let list = tickets_api::list(State(state), viewer.caller(), ApiPath(app.id), ApiQuery(query)).await?.0;
    let layout = viewer.layout(format!("{} · Tickets", app.name), "apps");
    let page = TicketsPage {
        layout,
        app,
        tab: "tickets",
        tickets: list.data,
        next_cursor: list.next_cursor,
        priorities: TicketPriority::ALL,
        statuses: TicketStatus::ALL,
    };
    Ok(viewer.render(&page))
}

#[derive(Deserialize)]
pub struct TicketForm {
    priority: TicketPriority,
    status: TicketStatus,
}

/// `POST /tickets/{id}`: changes the status and priority.
pub async fn update_ticket(
    State(state): State<AppState>,
    Path(id): Path<TicketId>,
    Submitted { viewer, form }: Submitted<TicketForm>,
) -> Result<Response, ConsoleError> {
    let body = UpdateTicket { title: None, description: None, priority: Some(form.priority), status: Some(form.status) };
    let ticket = tickets_api::update(State(state), viewer.caller(), ApiPath(id), ApiJson(body)).await?.0;
    Ok(redirect_with_notice(
        &viewer,
        &format!("/apps/{}/tickets", ticket.app_id),
        &format!("“{}” is {} ({} priority).", ticket.title, ticket.status, ticket.priority),
    ))
}

/// The analytics form: dates as `YYYY-MM-DD` in the chosen time zone's calendar (read as UTC
/// midnight here; the report's buckets follow the zone).
#[derive(Deserialize, Default)]
pub struct AnalyticsForm {
    from: Option<String>,
    to: Option<String>,
    bucket: Option<BucketSize>,
    time_zone: Option<String>,
    agent_id: Option<AgentId>,
    #[serde(default)]
    include_test_calls: bool,
}

#[derive(Template)]
#[template(path = "insights/analytics.html")]
struct AnalyticsPage {
    layout: Layout,
    app: App,
    tab: &'static str,
    agents: Vec<Agent>,
    form: AnalyticsForm,
    buckets: &'static [BucketSize],
    report: Option<Report>,
    error: Option<String>,
}

impl AnalyticsPage {
    fn volume_chart(&self, report: &Report) -> String {
        charts::columns("Calls", &report.series.iter().map(|p| (p.bucket.clone(), p.calls as f64)).collect::<Vec<_>>(), "")
    }

    fn cost_chart(&self, report: &Report) -> String {
        let points = report.series.iter().map(|p| (p.bucket.clone(), p.cost.units())).collect::<Vec<_>>();
        charts::columns(&format!("Cost ({})", report.currency.as_str()), &points, "")
    }

    /// An optional amount as the page shows it.
    fn money(&self, amount: &Option<crate::domain::cost::Money>) -> String {
        amount.map_or_else(|| "—".to_owned(), |a| a.to_string())
    }

    fn duration_chart(&self, report: &Report) -> String {
        let points = report.series.iter().map(|p| (p.bucket.clone(), p.average_duration_secs.unwrap_or(0.0).round())).collect::<Vec<_>>();
        charts::columns("Average duration (seconds)", &points, " s")
    }

    fn sentiment_chart(&self, report: &Report) -> String {
        charts::breakdown("Sentiment", &report.sentiment.iter().map(|(k, v)| (k.clone(), *v as f64)).collect::<Vec<_>>())
    }

    fn reasons_chart(&self, report: &Report) -> String {
        charts::breakdown("Ended reasons", &report.ended_reasons.iter().map(|(k, v)| (k.clone(), *v as f64)).collect::<Vec<_>>())
    }

    /// One bar per agent with a value; `None` when no agent has one.
    fn per_agent(
        &self,
        report: &Report,
        title: &str,
        value: impl Fn(&crate::domain::analytics::CallFigures) -> Option<f64>,
    ) -> Option<String> {
        let parts: Vec<(String, f64)> = report
            .agents
            .iter()
            .filter_map(|row| Some((row.name.clone().unwrap_or_else(|| "deleted agent".to_owned()), value(&row.figures)?)))
            .collect();
        (!parts.is_empty()).then(|| charts::breakdown(title, &parts))
    }

    fn response_chart(&self, report: &Report) -> Option<String> {
        self.per_agent(report, "Response time p95 (ms) by agent", |f| f.response_time.p95_ms.map(|ms| ms as f64))
    }

    fn resolution_chart(&self, report: &Report) -> Option<String> {
        self.per_agent(report, "Resolution rate (%) by agent", |f| f.resolution_rate.map(|r| (r * 100.0).round()))
    }

    fn satisfaction_chart(&self, report: &Report) -> Option<String> {
        self.per_agent(report, "Satisfaction (1–5) by agent", |f| f.average_satisfaction.map(|s| (s * 10.0).round() / 10.0))
    }

    fn percent(&self, rate: &Option<f64>) -> String {
        rate.map_or_else(|| "—".to_owned(), |r| format!("{:.0}%", r * 100.0))
    }

    fn one_decimal(&self, value: &Option<f64>) -> String {
        value.map_or_else(|| "—".to_owned(), |v| format!("{v:.1}"))
    }
}

/// `GET /apps/{id}/analytics`.
pub async fn analytics(
    State(state): State<AppState>,
    Path(app): Path<AppId>,
    viewer: Viewer,
    Query(form): Query<AnalyticsForm>,
) -> Result<Response, ConsoleError> {
    let caller = viewer.caller();
    let app = apps_api::get(State(state.clone()), caller, ApiPath(app)).await?.0;
    let agents = super::app_agents(&state, &viewer, app.id).await?;
    let range = super::date_range(form.from.as_deref(), form.to.as_deref());
    let (report, error) = match range {
        Ok((from, to)) => {
            let query = AnalyticsQuery {
                from,
                to,
                bucket: form.bucket,
                time_zone: form.time_zone.clone().filter(|z| !z.trim().is_empty()),
                agent_id: form.agent_id,
                include_test_calls: form.include_test_calls,
            };
            match analytics_api::report(State(state), caller, ApiPath(app.id), ApiQuery(query)).await {
                Ok(report) => (Some(report.0), None),
                Err(ApiError::Invalid(invalid)) => {
                    (None, Some(super::sentence(&format!("{} {}", invalid.field.replace('_', " "), invalid.message))))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(why) => (None, Some(why)),
    };
    let layout = viewer.layout(format!("{} · Analytics", app.name), "apps");
    Ok(viewer.render(&AnalyticsPage { layout, app, tab: "analytics", agents, form, buckets: BucketSize::ALL, report, error }))
}
