//! The web console: server-rendered pages (askama templates in `templates/`, compile-time checked
//! and auto-escaped) served at `/` by the same server as the REST API. Pages work without
//! JavaScript; `static/console.js` only adds conveniences (local times).
//!
//! The console is a client of the REST API's own operations: a page handler turns its signed-in
//! [`auth::Viewer`] into the API's `Caller` and calls the API handler, so validation, roles and
//! audit are the API's, written once. A form's field error is shown next to its field
//! ([`FormErrors`]).

pub mod account;
pub mod agents;
pub mod apps;
pub mod assets;
pub mod auth;
pub mod automations;
pub mod calls;
pub mod charts;
pub mod costs;
pub mod insights;
pub mod numbers;
pub mod settings;
pub mod speech;
pub mod team;
pub mod test_call;

use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::validation::Invalid;
use crate::http::error::ApiError;
use crate::http::input::ApiQuery;
use crate::http::pagination::PageParams;

/// What every page's frame shows: navigation, who is signed in, the CSRF token of its forms.
pub struct Layout {
    pub title: String,
    /// The navigation entry to highlight: `apps` or `settings`.
    pub section: &'static str,
    pub email: String,
    pub role: String,
    pub can_change: bool,
    pub csrf: String,
    pub notice: Option<String>,
}

impl auth::Viewer {
    /// The frame of a page titled `title` in `section`.
    pub fn layout(&self, title: impl Into<String>, section: &'static str) -> Layout {
        Layout {
            title: title.into(),
            section,
            email: self.owner.email.as_str().to_owned(),
            role: self.owner.role.to_string(),
            can_change: self.owner.role.can_change(),
            csrf: self.owner.csrf_token.clone(),
            notice: self.notice.clone(),
        }
    }

    /// Renders a page for this viewer (and retires the notice it showed).
    pub fn render(&self, template: &impl Template) -> Response {
        let mut response = page(template);
        if let Some((name, value)) = auth::clear_notice(self)
            && let Ok(value) = HeaderValue::from_str(&value)
        {
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// The first 200 items of a list (the API's largest page): what a picker or a name lookup needs.
pub fn picker_page() -> ApiQuery<PageParams> {
    ApiQuery(PageParams { limit: Some(200), cursor: None })
}

/// An app's agents, for agent pickers and names.
pub async fn app_agents(
    state: &crate::http::AppState,
    viewer: &auth::Viewer,
    app: crate::domain::ids::AppId,
) -> Result<Vec<crate::domain::agent::Agent>, ApiError> {
    use axum::extract::State;
    Ok(crate::http::api::agents::list(State(state.clone()), viewer.caller(), crate::http::input::ApiPath(app), picker_page()).await?.0.data)
}

/// Where a date range starts and ends; `None` leaves that end open.
pub type DateRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The start and end of a form's `from`/`to` dates (`YYYY-MM-DD`, whole UTC days; `to` counts
/// its whole day). Empty fields leave that end open.
pub fn date_range(from: Option<&str>, to: Option<&str>) -> Result<DateRange, String> {
    let day = |field: &str, text: Option<&str>, days_after: u64| -> Result<Option<DateTime<Utc>>, String> {
        let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(None) };
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| format!("{field} must be a date like 2026-01-31."))?;
        let date = date.checked_add_days(chrono::Days::new(days_after)).ok_or_else(|| format!("{field} is too far in the future."))?;
        Ok(Some(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()))
    };
    Ok((day("From", from, 0)?, day("To", to, 1)?))
}

/// A form with nothing in it but its CSRF token.
#[derive(serde::Deserialize)]
pub struct Empty {}

/// The `?cursor=` of a paged list.
#[derive(serde::Deserialize)]
pub struct Cursor {
    pub cursor: Option<String>,
}

/// A page of a list: 50 items from `cursor` on.
pub fn first_page(cursor: Option<String>) -> ApiQuery<PageParams> {
    ApiQuery(PageParams { limit: Some(50), cursor })
}

/// A rendered template as an HTML response.
pub fn page(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => ConsoleError::Api(ApiError::Unexpected(e.into())).into_response(),
    }
}

/// The error of a form, for the page that shows the form again.
#[derive(Default)]
pub struct FormErrors {
    field: Option<Invalid>,
    /// A problem with the form as a whole (a conflict, the carrier refused).
    pub general: Option<String>,
}

impl FormErrors {
    /// The message for `field`, if the error is about it.
    pub fn on(&self, field: &str) -> Option<&str> {
        self.field.as_ref().filter(|f| f.field == field).map(|f| f.message.as_str())
    }

    /// The error about `prefix` or a field under it (`actions[0]` for `actions[0].url`), with
    /// the field's name.
    pub fn under(&self, prefix: &str) -> Option<String> {
        self.field.as_ref().filter(|f| f.field.starts_with(prefix)).map(|f| format!("{}: {}", f.field, f.message))
    }

    /// Whether there is anything to show.
    pub fn any(&self) -> bool {
        self.field.is_some() || self.general.is_some()
    }

    /// Splits API errors into those a form shows and those that need an error page.
    pub fn from_api(error: ApiError) -> Result<Self, ConsoleError> {
        match error {
            ApiError::Invalid(invalid) => Ok(FormErrors { field: Some(invalid), general: None }),
            e @ (ApiError::BadRequest(_) | ApiError::Conflict(_) | ApiError::Unprocessable(_) | ApiError::Upstream(_)) => {
                Ok(FormErrors { field: None, general: Some(sentence(&e.to_string())) })
            }
            other => Err(ConsoleError::Api(other)),
        }
    }
}

/// API messages start in lower case; on a page they read as sentences.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// Why a console request did not get its page.
#[derive(Debug)]
pub enum ConsoleError {
    /// Not signed in: go to the sign-in page, then back to this path.
    SignIn(String),
    Forbidden(String),
    BadRequest(String),
    Api(ApiError),
}

impl From<ApiError> for ConsoleError {
    fn from(error: ApiError) -> Self {
        ConsoleError::Api(error)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    title: String,
    message: String,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ConsoleError::SignIn(next) => {
                let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
                return Redirect::to(&format!("/sign-in?next={next}")).into_response();
            }
            ConsoleError::Forbidden(message) => (StatusCode::FORBIDDEN, message),
            ConsoleError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            ConsoleError::Api(ApiError::Unexpected(e)) => {
                tracing::error!(error = ?e, "console page failed unexpectedly");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side. The error is logged; please try again.".to_owned())
            }
            ConsoleError::Api(ApiError::NotFound(what)) => {
                (StatusCode::NOT_FOUND, sentence(&format!("this {what} does not exist, or it was removed")))
            }
            ConsoleError::Api(e) => (e.status(), sentence(&e.to_string())),
        };
        let title = status.canonical_reason().unwrap_or("Error").to_owned();
        let body = ErrorPage { status: status.as_u16(), title, message }.render().unwrap_or_default();
        (status, Html(body)).into_response()
    }
}

/// The Content-Security-Policy of console pages: only this server's scripts, styles and forms,
/// no inline script, never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Adds the console's security headers; pages are never cached (assets set their own caching).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// `GET /`: the console starts at the apps.
pub async fn home() -> Redirect {
    Redirect::to("/apps")
}
