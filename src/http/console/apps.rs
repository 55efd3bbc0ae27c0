//! Apps: the list with "New app". Each app's tabs have their own modules (`numbers.rs`,
//! `agents.rs`).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::auth::{Submitted, Viewer, redirect_with_notice};
use super::{ConsoleError, Cursor, FormErrors, Layout, first_page};
use crate::domain::app::App;
use crate::domain::ids::AppId;
use crate::http::AppState;
use crate::http::api::apps::{self as apps_api, CreateApp};
use crate::http::input::ApiJson;

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
