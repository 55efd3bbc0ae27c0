//! Who is using the console, and whether a form may change anything.
//!
//! - [`Viewer`]: the signed-in user of a page, from the session cookie; without one, the browser
//!   is sent to the sign-in page and brought back afterwards.
//! - [`Submitted`]: a state-changing form. It needs a viewer whose role may change things, a
//!   same-origin request, and the session's CSRF token in the `_csrf` field (or the
//!   `X-CSRF-Token` header); then the other fields are read into the handler's type (empty fields
//!   count as not given; a repeated field fills a list), exactly as the REST API would read them.
//! - Sign-in and sign-out, with a per-address rate limit and the account lockout of
//!   [`console_sessions`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::{ConsoleError, page};
use crate::domain::audit::Actor;
use crate::domain::org::Email;
use crate::domain::time;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::off_runtime;
use crate::storage::console_sessions::{self, SessionOwner};
use crate::storage::tokens::random_secret;
use crate::storage::users;

const SESSION_COOKIE: &str = "switchboard_session";
/// Double-submit token of the sign-in form (there is no session yet to hold one).
const SIGN_IN_COOKIE: &str = "switchboard_sign_in";
/// A one-line message for the next page ("Phone provider added").
const NOTICE_COOKIE: &str = "switchboard_notice";

/// The signed-in user of a console page.
pub struct Viewer {
    pub owner: SessionOwner,
    /// The message the previous action left for this page.
    pub notice: Option<String>,
    /// Whether cookies carry `Secure` (the server is reached over https).
    pub secure: bool,
}

impl Viewer {
    /// The same identity as an API caller, so console pages use the REST API's operations.
    pub fn caller(&self) -> Caller {
        Caller { org: self.owner.org_id, actor: Actor::User(self.owner.user_id), role: self.owner.role }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ConsoleError> {
        let sign_in = || ConsoleError::SignIn(parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned());
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else { return Err(sign_in()) };
        let owner = console_sessions::authenticate(&state.db, token)
            .await
            .map_err(|e| crate::http::error::ApiError::from_storage(e, "session"))?
            .ok_or_else(sign_in)?;
        let notice = cookie(&parts.headers, NOTICE_COOKIE).map(|text| {
            url::form_urlencoded::parse(format!("n={text}").as_bytes()).map(|(_, v)| v.into_owned()).next().unwrap_or_default()
        });
        Ok(Viewer { owner, notice, secure: secure_cookies(state) })
    }
}

/// A state-changing form from a signed-in user allowed to change things (see the module header).
pub struct Submitted<T> {
    pub viewer: Viewer,
    pub form: T,
}

/// A form about the user's own account (password, sessions, sign-out): every role may send it,
/// with the same origin and CSRF checks as [`Submitted`].
pub struct OwnAccount<T> {
    pub viewer: Viewer,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Submitted<T> {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ConsoleError> {
        let (viewer, form) = read_form(request, state, true).await?;
        Ok(Submitted { viewer, form })
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for OwnAccount<T> {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ConsoleError> {
        let (viewer, form) = read_form(request, state, false).await?;
        Ok(OwnAccount { viewer, form })
    }
}

async fn read_form<T: DeserializeOwned>(
    request: Request,
    state: &AppState,
    changes_organisation: bool,
) -> Result<(Viewer, T), ConsoleError> {
    let (mut parts, body) = request.into_parts();
    let viewer = Viewer::from_request_parts(&mut parts, state).await?;
    if changes_organisation && !viewer.owner.role.can_change() {
        return Err(ConsoleError::Forbidden(format!(
            "Your role in this organisation is `{}`, which can look at everything but change nothing. Ask an owner or admin.",
            viewer.owner.role
        )));
    }
    if !same_origin(&parts.headers) {
        return Err(ConsoleError::Forbidden("This form was sent from another site, so it was refused.".into()));
    }
    let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
        .await
        .map_err(|_| ConsoleError::BadRequest("The form is larger than 1 MiB.".into()))?;
    let (csrf, fields) = split_form(&bytes);
    if fields.contains("%00") {
        return Err(ConsoleError::BadRequest(
            "A field holds a NUL character, which cannot be stored. Remove it and send the form again.".into(),
        ));
    }
    let presented = csrf.or_else(|| parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned));
    if !presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(viewer.owner.csrf_token.as_bytes()))) {
        return Err(ConsoleError::Forbidden(
            "This form has expired or did not come from this console. Reload the page and try again.".into(),
        ));
    }
    let form = serde_html_form::from_str(&fields).map_err(|e| ConsoleError::BadRequest(format!("The form could not be read: {e}.")))?;
    Ok((viewer, form))
}

/// The `_csrf` field of a urlencoded body, and the other non-empty fields re-encoded.
fn split_form(body: &[u8]) -> (Option<String>, String) {
    let mut csrf = None;
    let mut fields = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in url::form_urlencoded::parse(body) {
        if name == "_csrf" {
            csrf = Some(value.into_owned());
        } else if !value.trim().is_empty() {
            fields.append_pair(&name, &value);
        }
    }
    (csrf, fields.finish())
}

/// A request is same-origin when its `Origin` (or, without one, its `Referer`) names the host it
/// was sent to. Browsers send one of them with every form post.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let source = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER)).and_then(|v| v.to_str().ok());
    match source {
        None => true,
        Some(source) => url::Url::parse(source).is_ok_and(|url| {
            let authority = match (url.host_str(), url.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                _ => return false,
            };
            authority.eq_ignore_ascii_case(host)
        }),
    }
}

/// The value of a cookie of the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn secure_cookies(state: &AppState) -> bool {
    state.config.public_base_url().starts_with("https://")
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path `/`, Secure over https; `max_age` of zero
/// removes the cookie.
fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}", max_age.as_secs())
}

/// Sends the browser to `to` after a change, with a message for the page it lands on.
pub fn redirect_with_notice(viewer: &Viewer, to: &str, notice: &str) -> Response {
    let text: String = url::form_urlencoded::byte_serialize(notice.as_bytes()).collect();
    let cookie = set_cookie(NOTICE_COOKIE, &text, Duration::from_secs(60), viewer.secure);
    ([(header::SET_COOKIE, cookie)], Redirect::to(to)).into_response()
}

/// The header that removes the notice once a page has shown it.
pub fn clear_notice(viewer: &Viewer) -> Option<(header::HeaderName, String)> {
    viewer.notice.as_ref().map(|_| (header::SET_COOKIE, set_cookie(NOTICE_COOKIE, "", Duration::ZERO, viewer.secure)))
}

/// Sign-in attempts allowed from one address per [`ATTEMPT_WINDOW`].
const ATTEMPTS_PER_ADDRESS: u32 = 20;
const ATTEMPT_WINDOW: Duration = Duration::from_secs(600);

/// Counts sign-in attempts per client address in fixed windows (in memory, per node).
#[derive(Default)]
pub struct SignInLimiter {
    attempts: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SignInLimiter {
    /// Counts an attempt; `false` when the address has used up its window.
    fn admit(&self, address: IpAddr) -> bool {
        let now = Instant::now();
        let mut attempts = self.attempts.lock().expect("the sign-in limiter's lock is never poisoned");
        if attempts.len() > 10_000 {
            attempts.retain(|_, (since, _)| now.duration_since(*since) < ATTEMPT_WINDOW);
        }
        let entry = attempts.entry(address).or_insert((now, 0));
        if now.duration_since(entry.0) >= ATTEMPT_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= ATTEMPTS_PER_ADDRESS
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only paths of this server are followed after sign-in (no `//host` or `/\host` tricks).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => path,
        _ => "/",
    }
}

/// `GET /sign-in`.
pub async fn sign_in_page(State(state): State<AppState>, Query(query): Query<NextQuery>) -> Response {
    show_sign_in(&state, StatusCode::OK, local_path(query.next.as_deref()), "", None)
}

fn show_sign_in(state: &AppState, status: StatusCode, next: &str, email: &str, error: Option<String>) -> Response {
    let token = random_secret(18);
    let cookie = set_cookie(SIGN_IN_COOKIE, &token, Duration::from_secs(3600), secure_cookies(state));
    let template = SignInPage { csrf: token.to_string(), next: next.to_owned(), email: email.to_owned(), error };
    (status, [(header::SET_COOKIE, cookie)], page(&template)).into_response()
}

#[derive(askama::Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    csrf: String,
    next: String,
    email: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

/// `POST /sign-in`: checks the form's token, the address's rate, the account's lockout and the
/// password (off the async runtime), then opens a session.
pub async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignInForm>,
) -> Response {
    let next = local_path(form.next.as_deref()).to_owned();
    let again = |status, error: &str| show_sign_in(&state, status, &next, &form.email, Some(error.to_owned()));
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) || !same_origin(&headers) {
        return again(StatusCode::FORBIDDEN, "The sign-in form had expired. Please try again.");
    }
    if !state.sign_in_limiter.admit(state.rate_limits.client_address(client.ip(), &headers)) {
        return again(StatusCode::TOO_MANY_REQUESTS, "Too many sign-in attempts from your network. Wait ten minutes and try again.");
    }
    let Ok(email) = Email::parse(&form.email) else {
        return again(StatusCode::UNPROCESSABLE_ENTITY, "Enter your e-mail address, like name@example.com.");
    };
    match check_password(&state, &email, form.password.clone()).await {
        Ok(Ok(candidate)) => {
            let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
            match console_sessions::start(&state.db, &candidate, user_agent, &client.ip().to_string()).await {
                Ok(token) => {
                    let cookie = set_cookie(
                        SESSION_COOKIE,
                        &token,
                        console_sessions::ABSOLUTE_LIMIT.to_std().unwrap_or_default(),
                        secure_cookies(&state),
                    );
                    let spent = set_cookie(SIGN_IN_COOKIE, "", Duration::ZERO, secure_cookies(&state));
                    (AppendHeaders([(header::SET_COOKIE, cookie), (header::SET_COOKIE, spent)]), Redirect::to(&next)).into_response()
                }
                Err(e) => ConsoleError::from(crate::http::error::ApiError::from_storage(e, "user")).into_response(),
            }
        }
        Ok(Err(Refusal::WrongPassword)) => again(StatusCode::UNAUTHORIZED, "Wrong e-mail address or password."),
        Ok(Err(Refusal::LockedUntil(until))) => again(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "This account is locked after {} failed sign-ins in a row. Try again after {} UTC, or ask an admin to reset your password.",
                console_sessions::FAILURES_BEFORE_LOCKOUT,
                until.format("%H:%M")
            ),
        ),
        Err(e) => e.into_response(),
    }
}

/// Why a sign-in was refused.
enum Refusal {
    WrongPassword,
    LockedUntil(chrono::DateTime<chrono::Utc>),
}

async fn check_password(
    state: &AppState,
    email: &Email,
    password: String,
) -> Result<Result<console_sessions::SignInCandidate, Refusal>, ConsoleError> {
    let storage = |e| ConsoleError::from(crate::http::error::ApiError::from_storage(e, "user"));
    let candidate = console_sessions::sign_in_candidate(&state.db, email).await.map_err(storage)?;
    if let Some(until) = candidate.as_ref().and_then(|c| c.locked_until).filter(|until| *until > time::now()) {
        return Ok(Err(Refusal::LockedUntil(until)));
    }
    let hash = candidate.as_ref().map_or_else(|| users::DECOY_HASH.clone(), |c| c.password_hash.clone());
    let matches = off_runtime(move || users::verify_password(&hash, &password)).await?;
    match candidate {
        Some(candidate) if matches => Ok(Ok(candidate)),
        Some(candidate) => match console_sessions::record_failed_sign_in(&state.db, &candidate).await.map_err(storage)? {
            Some(until) => Ok(Err(Refusal::LockedUntil(until))),
            None => Ok(Err(Refusal::WrongPassword)),
        },
        None => Ok(Err(Refusal::WrongPassword)),
    }
}

/// `POST /sign-out`: ends this browser's session.
pub async fn sign_out(State(state): State<AppState>, OwnAccount { viewer, .. }: OwnAccount<HashMap<String, String>>) -> Response {
    if let Err(e) = console_sessions::revoke(&state.db, viewer.owner.org_id, viewer.owner.user_id, viewer.owner.session_id).await {
        return ConsoleError::from(crate::http::error::ApiError::from_storage(e, "session")).into_response();
    }
    let cookie = set_cookie(SESSION_COOKIE, "", Duration::ZERO, viewer.secure);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/sign-in")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_drop_their_token_and_empty_fields() {
        let (csrf, rest) = split_form(b"_csrf=abc&name=Main+line&api_key_sid=&note=%20&x=a%26b");
        assert_eq!(csrf.as_deref(), Some("abc"));
        assert_eq!(rest, "name=Main+line&x=a%26b");
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/apps?x=1")), "/apps?x=1");
        for bad in ["//evil.example", "https://evil.example", "/\\evil.example", ""] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
    }

    #[test]
    fn origins_must_name_the_host() {
        let headers = |origin: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "console.example:8080".parse().unwrap());
            h.insert(header::ORIGIN, origin.parse().unwrap());
            h
        };
        assert!(same_origin(&headers("http://console.example:8080")));
        assert!(!same_origin(&headers("http://evil.example:8080")));
        assert!(!same_origin(&headers("null")));
    }

    #[test]
    fn the_limiter_counts_per_address() {
        let limiter = SignInLimiter::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..ATTEMPTS_PER_ADDRESS).all(|_| limiter.admit(a)));
        assert!(!limiter.admit(a));
        assert!(limiter.admit("192.0.2.2".parse().unwrap()));
    }
}
