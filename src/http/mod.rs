//! The HTTP surface: REST API under `/api/v1` (bearer-token auth, JSON, problem+json errors),
//! the web console at `/` (sign-in sessions, HTML), Twilio's webhooks and health; metrics on a
//! listener of their own ([`metrics_router`]). Every route is listed in [`router`]; the OpenAPI document is generated
//! from the same list, so the two cannot drift apart.

pub mod api;
pub mod auth;
pub mod console;
pub mod error;
pub mod input;
pub mod metrics;
pub mod openapi;
pub mod pagination;
pub mod rate_limit;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::agent::call_log::TranscriptWriter;
use crate::agent::live::LiveSessions;
use crate::agent::voice::SpeechCache;
use crate::config::Config;
use crate::models::LoadedModels;
use crate::providers::egress::Egress;
use crate::recording::Recordings;
use crate::storage::Db;
use crate::telephony::twilio::TwilioState;
use crate::telephony::twilio::rest::TwilioClient;
use crate::telephony::twilio::routes as twilio;

/// Largest accepted request body.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// Runs password hashing or checking (tens of milliseconds of CPU) on the blocking pool, off
/// the async runtime.
pub async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, error::ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| error::ApiError::Unexpected(e.into()))
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub metrics: Arc<metrics::HttpMetrics>,
    pub twilio: TwilioClient,
    pub live: Arc<LiveSessions>,
    pub transcripts: TranscriptWriter,
    /// Sign-in attempts per client address (console).
    pub sign_in_limiter: Arc<console::auth::SignInLimiter>,
    /// Where requests to URLs tenants set may go.
    pub egress: Egress,
    /// The API's request rate limits.
    pub rate_limits: Arc<rate_limit::RateLimits>,
    /// Synthesised greetings and fillers of this process's Media Streams calls.
    pub speech_cache: SpeechCache,
    /// The models this server runs itself (turn-taking, embedded speech), as far as installed.
    pub models: Arc<LoadedModels>,
    /// Call recordings: their rows and where their audio is kept.
    pub recordings: Recordings,
}

/// The Twilio routes run on their own state, made from the server's.
impl FromRef<AppState> for TwilioState {
    fn from_ref(state: &AppState) -> TwilioState {
        TwilioState {
            db: state.db.clone(),
            client: state.twilio.clone(),
            public_base_url: state.config.public_base_url(),
            live: state.live.clone(),
            transcripts: state.transcripts.clone(),
            egress: state.egress.clone(),
            speech_cache: state.speech_cache.clone(),
            models: state.models.clone(),
            recordings: state.recordings.clone(),
        }
    }
}

/// Every route the server serves, and the OpenAPI document describing them.
pub fn router(state: AppState) -> Router {
    let api = OpenApiRouter::new()
        .routes(routes!(api::phone_providers::list, api::phone_providers::create))
        .routes(routes!(api::phone_providers::get, api::phone_providers::update, api::phone_providers::delete))
        .routes(routes!(api::phone_providers::verify))
        .routes(routes!(api::phone_providers::available_numbers))
        .routes(routes!(api::phone_providers::incoming_numbers))
        .routes(routes!(api::llm_providers::list, api::llm_providers::create))
        .routes(routes!(api::llm_providers::get, api::llm_providers::update, api::llm_providers::delete))
        .routes(routes!(api::llm_providers::test))
        .routes(routes!(api::llm_providers::embedded))
        .routes(routes!(api::speech_engines::get))
        .routes(routes!(api::speech_providers::list, api::speech_providers::create))
        .routes(routes!(api::speech_providers::get, api::speech_providers::update, api::speech_providers::delete))
        .routes(routes!(api::apps::list, api::apps::create))
        .routes(routes!(api::apps::get, api::apps::update, api::apps::delete))
        .routes(routes!(api::agents::list, api::agents::create))
        .routes(routes!(api::agents::get, api::agents::update, api::agents::delete))
        .routes(routes!(api::agents::versions))
        .routes(routes!(api::agents::prompt_preview))
        .routes(routes!(api::phone_numbers::list, api::phone_numbers::create))
        .routes(routes!(api::phone_numbers::get, api::phone_numbers::update, api::phone_numbers::delete))
        .routes(routes!(api::calls::list))
        .routes(routes!(api::calls::get, api::calls::delete))
        .routes(routes!(api::calls::events))
        .routes(routes!(api::calls::automation_runs))
        .routes(routes!(api::recordings::get, api::recordings::delete))
        .routes(routes!(api::recordings::audio))
        .routes(routes!(api::automations::list, api::automations::create))
        .routes(routes!(api::automations::get, api::automations::update, api::automations::delete))
        .routes(routes!(api::automations::runs))
        .routes(routes!(api::automations::rotate_secret))
        .routes(routes!(api::automations::retry))
        .routes(routes!(api::tickets::list))
        .routes(routes!(api::tickets::get, api::tickets::update))
        .routes(routes!(api::retention::get, api::retention::put))
        .routes(routes!(api::costs::get_settings, api::costs::put_settings))
        .routes(routes!(api::costs::spending))
        .routes(routes!(api::costs::get_phone_prices, api::costs::put_phone_prices))
        .routes(routes!(api::costs::get_model_prices, api::costs::put_model_prices))
        .routes(routes!(api::costs::get_speech_prices, api::costs::put_speech_prices))
        .routes(routes!(api::analytics::report))
        .routes(routes!(api::languages::list))
        .routes(routes!(api::audit_log::list))
        .routes(routes!(api::api_tokens::list, api::api_tokens::create))
        .routes(routes!(api::api_tokens::revoke))
        .routes(routes!(api::users::list, api::users::add))
        .routes(routes!(api::users::change_role, api::users::remove))
        .routes(routes!(openapi::openapi_json))
        .layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit::by_address));
    let (router, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/api/v1", api)
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(twilio::voice))
        .routes(routes!(twilio::status))
        .routes(routes!(twilio::recording))
        .routes(routes!(twilio::fallback))
        .routes(routes!(twilio::connect_action))
        .routes(routes!(crate::telephony::twilio::relay::relay))
        .routes(routes!(crate::telephony::twilio::media::media))
        .split_for_parts();
    let doc = Arc::new(openapi::finish(doc));
    let console = Router::new()
        .route("/", get(console::home))
        .route("/sign-in", get(console::auth::sign_in_page).post(console::auth::sign_in))
        .route("/sign-out", post(console::auth::sign_out))
        .route("/assets/{file}", get(console::assets::serve))
        .route("/apps", get(console::apps::list).post(console::apps::create))
        .route("/apps/{id}", get(console::apps::show))
        .route("/apps/{id}/numbers", get(console::numbers::list).post(console::numbers::create))
        .route("/apps/{id}/numbers/new", get(console::numbers::add))
        .route("/numbers/{id}/edit", get(console::numbers::edit).post(console::numbers::update))
        .route("/numbers/{id}/test-call", get(console::test_call::page))
        .route("/numbers/{id}/test-call/socket", get(console::test_call::socket))
        .route("/numbers/{id}/remove", get(console::numbers::confirm_remove).post(console::numbers::remove))
        .route("/apps/{id}/agents", get(console::agents::list).post(console::agents::create))
        .route("/agents/{id}", get(console::agents::show).post(console::agents::update))
        .route("/agents/{id}/versions/{version}/restore", post(console::agents::restore))
        .route("/apps/{id}/calls", get(console::calls::list))
        .route("/calls/{id}", get(console::calls::show))
        .route("/calls/{id}/recording.wav", get(console::calls::recording_audio))
        .route("/calls/{id}/erase", get(console::calls::confirm_erase).post(console::calls::erase))
        .route("/apps/{id}/automations", get(console::automations::list).post(console::automations::create))
        .route("/apps/{id}/automations/new", get(console::automations::new))
        .route("/automations/{id}", get(console::automations::show).post(console::automations::update))
        .route("/automations/{id}/signing-secret", post(console::automations::rotate_secret))
        .route("/automations/{id}/delete", post(console::automations::delete))
        .route("/automations/{id}/runs/{run}/retry", post(console::automations::retry))
        .route("/apps/{id}/tickets", get(console::insights::tickets))
        .route("/tickets/{id}", post(console::insights::update_ticket))
        .route("/apps/{id}/analytics", get(console::insights::analytics))
        .route("/settings", get(console::settings::index))
        .route("/settings/phone-providers", get(console::settings::phone_providers).post(console::settings::add_phone_provider))
        .route("/settings/phone-providers/{id}/verify", post(console::settings::verify_phone_provider))
        .route(
            "/settings/phone-providers/{id}/edit",
            get(console::settings::edit_phone_provider).post(console::settings::update_phone_provider),
        )
        .route(
            "/settings/phone-providers/{id}/remove",
            get(console::settings::confirm_remove_phone_provider).post(console::settings::remove_phone_provider),
        )
        .route("/settings/llm-providers", get(console::settings::llm_providers).post(console::settings::add_llm_provider))
        .route("/settings/llm-providers/{id}/test", post(console::settings::test_llm_provider))
        .route("/settings/llm-providers/{id}/remove", post(console::settings::remove_llm_provider))
        .route("/settings/speech-providers", get(console::speech::list).post(console::speech::add))
        .route("/settings/speech-providers/{id}/remove", post(console::speech::remove))
        .route("/settings/retention", get(console::settings::retention).post(console::settings::set_retention))
        .route("/settings/costs", get(console::costs::costs).post(console::costs::save_settings))
        .route("/settings/costs/{kind}/{id}", post(console::costs::save_prices))
        .route("/settings/users", get(console::team::users).post(console::team::add_user))
        .route("/settings/users/{id}/role", post(console::team::change_role))
        .route("/settings/users/{id}/remove", get(console::team::confirm_remove_user).post(console::team::remove_user))
        .route("/settings/api-tokens", get(console::team::api_tokens).post(console::team::create_api_token))
        .route("/settings/api-tokens/{id}/revoke", post(console::team::revoke_api_token))
        .route("/settings/audit-log", get(console::team::audit_log))
        .route("/settings/sessions", get(console::account::sessions))
        .route("/settings/sessions/{id}/end", post(console::account::end_session))
        .route("/settings/password", get(console::account::password).post(console::account::change_password))
        .layer(axum::middleware::from_fn(console::security_headers));
    router
        .merge(console)
        .route("/problems/{slug}", get(problem_type))
        .layer(axum::middleware::from_fn(catch_panic))
        .layer(axum::middleware::from_fn(limit_time))
        .layer(axum::Extension(doc))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::record))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(state)
}

/// How long a request may run. WebSockets are not limited: their handshake answers at once.
const REQUEST_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A request that runs past [`REQUEST_TIME_LIMIT`] is stopped and answered 503.
async fn limit_time(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    match tokio::time::timeout(REQUEST_TIME_LIMIT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error::ApiError::Timeout(REQUEST_TIME_LIMIT.as_secs()).into_response(),
    }
}

/// A handler that panics answers a logged 500 problem instead of dropping the connection.
async fn catch_panic(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use futures_util::FutureExt;
    // Cheap copies (shared bytes), kept only to name the request if it panics.
    let (method, uri) = (request.method().clone(), request.uri().clone());
    match std::panic::AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            error::ApiError::Unexpected(anyhow::anyhow!("handler panicked on {method} {}: {what}", uri.path())).into_response()
        }
    }
}

/// `GET /problems/{slug}`: what a problem `type` means.
async fn problem_type(axum::extract::Path(slug): axum::extract::Path<String>) -> impl IntoResponse {
    match error::PROBLEM_TYPES.iter().find(|(s, _)| *s == slug) {
        Some((slug, meaning)) => (StatusCode::OK, format!("{slug}: {meaning}\n")).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()), responses((status = 200, description = "Up")))]
async fn healthz() -> &'static str {
    "ok"
}

/// The node takes calls: it is not draining for a shutdown and reaches its database.
#[utoipa::path(get, path = "/readyz", tag = "meta", security(()), responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "Draining for a shutdown, or the database does not answer"),
))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.live.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if state.db.ping().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
    }
}

/// The metrics listener's routes: `/metrics` only, on `metrics_listen`, never on the public port.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(prometheus_metrics)).with_state(state)
}

/// Prometheus metrics in the text exposition format.
async fn prometheus_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let due_runs = match crate::storage::automations::due_count(&state.db, crate::domain::time::now()).await {
        Ok(due) => due.to_string(),
        Err(e) => {
            tracing::warn!(error = ?e, "could not count due automation runs for /metrics");
            "NaN".to_owned()
        }
    };
    let mut models = String::new();
    if let Some(turn_models) = state.models.turn() {
        turn_models.end_of_turn.render(&mut models);
    }
    if let Some(language_model) = state.models.language_model() {
        language_model.stats().render(&mut models);
    }
    let text = format!(
        "{}{}{models}# HELP switchboard_transcript_turns_waiting Transcript turns queued for writing.\n# TYPE switchboard_transcript_turns_waiting gauge\n\
         switchboard_transcript_turns_waiting {}\n# HELP switchboard_automation_runs_due Automation runs due now, across nodes.\n\
         # TYPE switchboard_automation_runs_due gauge\nswitchboard_automation_runs_due {due_runs}\n",
        state.metrics.render(),
        state.live.render(),
        state.transcripts.waiting(),
    );
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `router` on a loopback port; returns its address.
    async fn serve(router: Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        address
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_problem_instead_of_dropping_the_connection() {
        async fn boom() -> &'static str {
            panic!("input nobody expected")
        }
        let address = serve(Router::new().route("/boom", get(boom)).layer(axum::middleware::from_fn(catch_panic))).await;
        let response = reqwest::get(format!("http://{address}/boom")).await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/internal");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_time_limit_is_stopped_with_a_problem() {
        async fn stuck() -> &'static str {
            tokio::time::sleep(REQUEST_TIME_LIMIT * 2).await;
            "too late"
        }
        let address = serve(Router::new().route("/stuck", get(stuck)).layer(axum::middleware::from_fn(limit_time))).await;
        let response = reqwest::get(format!("http://{address}/stuck")).await.unwrap();
        assert_eq!(response.status(), 503);
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/timeout");
    }
}
