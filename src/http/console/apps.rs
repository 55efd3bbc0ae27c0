//! Apps and App Details: the list of apps with "New app", and each app's tabs (Phone Numbers and
//! Agents so far).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::auth::{Submitted, Viewer, redirect_with_notice};
use super::{ConsoleError, Cursor, FormErrors, Layout, first_page};
use crate::domain::agent::Agent;
use crate::domain::app::App;
use crate::domain::ids::AppId;
use crate::http::AppState;
use crate::http::api::agents as agents_api;
use crate::http::api::apps::{self as apps_api, CreateApp};
use crate::http::api::phone_numbers::{self as numbers_api, PhoneNumberListing};
use crate::http::input::{ApiJson, ApiPath};

#[derive(Template)]
#[template(path = "apps/list.html")]
struct AppsPage {
    layout: Layout,
    apps: Vec<App>,
    next_cursor: Option<String>,
    name: String,
    description: String,
    errors: FormErrors,
}

async fn apps_page(
    state: AppState,
    viewer: &Viewer,
    cursor: Option<String>,
    form: (String, String, FormErrors),
) -> Result<Response, ConsoleError> {
    let list = apps_api::list(State(state), viewer.caller(), first_page(cursor)).await?.0;
    let (name, description, errors) = form;
    let status = if errors.any() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let template =
        AppsPage { layout: viewer.layout("Apps", "apps"), apps: list.data, next_cursor: list.next_cursor, name, description, errors };
    Ok((status, viewer.render(&template)).into_response())
}

/// `GET /apps`.
pub async fn list(State(state): State<AppState>, viewer: Viewer, Query(q): Query<Cursor>) -> Result<Response, ConsoleError> {
    apps_page(state, &viewer, q.cursor, Default::default()).await
}

/// `POST /apps`: creates an app and opens it.
pub async fn create(State(state): State<AppState>, Submitted { viewer, form }: Submitted<CreateApp>) -> Result<Response, ConsoleError> {
    let (name, description) = (form.name.clone(), form.description.clone());
    match apps_api::create(State(state.clone()), viewer.caller(), ApiJson(form)).await {
        Ok((_, created)) => Ok(redirect_with_notice(&viewer, &format!("/apps/{}/numbers", created.0.id), "App created.")),
        Err(e) => apps_page(state, &viewer, None, (name, description, FormErrors::from_api(e)?)).await,
    }
}

/// `GET /apps/{id}`: an app opens on its phone numbers.
pub async fn show(Path(id): Path<AppId>) -> Redirect {
    Redirect::to(&format!("/apps/{id}/numbers"))
}

#[derive(Template)]
#[template(path = "apps/numbers.html")]
struct NumbersPage {
    layout: Layout,
    app: App,
    tab: &'static str,
    numbers: Vec<PhoneNumberListing>,
    next_cursor: Option<String>,
}

/// `GET /apps/{id}/numbers`: the Phone Numbers tab.
pub async fn numbers(
    State(state): State<AppState>,
    Path(id): Path<AppId>,
    viewer: Viewer,
    Query(q): Query<Cursor>,
) -> Result<Response, ConsoleError> {
    let app = apps_api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
    let list = numbers_api::list(State(state), viewer.caller(), ApiPath(id), first_page(q.cursor)).await?.0;
    let template = NumbersPage {
        layout: viewer.layout(format!("{} · Phone Numbers", app.name), "apps"),
        app,
        tab: "numbers",
        numbers: list.data,
        next_cursor: list.next_cursor,
    };
    Ok(viewer.render(&template))
}

#[derive(Template)]
#[template(path = "apps/agents.html")]
struct AgentsPage {
    layout: Layout,
    app: App,
    tab: &'static str,
    agents: Vec<Agent>,
    next_cursor: Option<String>,
}

/// `GET /apps/{id}/agents`: the Agents tab.
pub async fn agents(
    State(state): State<AppState>,
    Path(id): Path<AppId>,
    viewer: Viewer,
    Query(q): Query<Cursor>,
) -> Result<Response, ConsoleError> {
    let app = apps_api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
    let list = agents_api::list(State(state), viewer.caller(), ApiPath(id), first_page(q.cursor)).await?.0;
    let template = AgentsPage {
        layout: viewer.layout(format!("{} · Agents", app.name), "apps"),
        app,
        tab: "agents",
        agents: list.data,
        next_cursor: list.next_cursor,
    };
    Ok(viewer.render(&template))
}
