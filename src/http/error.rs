//! One error type for every API handler, rendered as RFC 9457 `application/problem+json`.
//! Expected failures say what to fix; unexpected ones are logged once with their cause and shown
//! only as a generic 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::validation::Invalid;
use crate::storage::StorageError;
use crate::telephony::twilio::provisioning::ProvisioningError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad JSON, unknown field, wrong type, bad path or query).
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid API token")]
    Unauthorized,
    /// The caller may not do this (its role says so).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist in the caller's organisation (also for other tenants' rows).
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than the 1 MiB limit")]
    PayloadTooLarge,
    /// A `Range` outside the resource, whose length is given.
    #[error("the requested range lies outside the {0} bytes there are")]
    RangeNotSatisfiable(u64),
    /// Well-formed input that breaks a rule.
    #[error("{0}")]
    Invalid(Invalid),
    /// The request is understood but cannot be carried out (e.g. the carrier refused it).
    #[error("{0}")]
    Unprocessable(String),
    /// A service we depend on (the carrier) could not be reached.
    #[error("{0}")]
    Upstream(String),
    #[error("the database is unavailable")]
    Unavailable,
    /// Too many requests from one token or address; the next is let through after `retry_after`.
    #[error("too many requests from this {per}; slow down and try again in {} seconds", retry_after_secs(*retry_after))]
    RateLimited { retry_after: std::time::Duration, per: &'static str },
    /// The request ran past the server's time limit and was stopped.
    #[error("the request took longer than {0} seconds and was stopped; try again")]
    Timeout(u64),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// What each problem `type` means, served at `/problems/{slug}` (the `type` URIs point there).
pub const PROBLEM_TYPES: &[(&str, &str)] = &[
    (
        "bad-request",
        "The request is malformed: bad JSON, an unknown field, a value of the wrong type, or a bad path or query. The detail says which.",
    ),
    ("unauthorized", "No valid API token was sent. Send `Authorization: Bearer <token>` with an unrevoked token."),
    ("forbidden", "The caller may not do this: a `member` token or user can read but not change, and only owners manage owners."),
    ("not-found", "The resource does not exist in your organisation (resources of other organisations are never shown)."),
    ("conflict", "The change conflicts with the current state, e.g. a resource still in use. The detail says what to do first."),
    ("payload-too-large", "The request body is larger than 1 MiB."),
    ("range-not-satisfiable", "The `Range` asked for starts beyond the end of the resource. `Content-Range` gives its length."),
    ("validation", "A field breaks a rule. `errors` names the field and says what to fix."),
    ("unprocessable", "The request is understood but cannot be carried out, e.g. the carrier refused it."),
    ("upstream", "A service Switchboard depends on (the carrier, a model server) could not be reached or answered badly."),
    ("unavailable", "The database is unavailable. Try again shortly."),
    (
        "rate-limited",
        "Too many requests from one API token or client address. Wait the number of seconds in `Retry-After`, then go on at a slower pace.",
    ),
    ("timeout", "The request ran past the server's time limit (60 seconds) and was stopped. Try again."),
    ("internal", "Something failed on the server. The cause is logged; the request can be tried again."),
];

/// The problem document of RFC 9457, with our `errors` extension for field problems.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong and what to do about it.
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Invalid(_) | ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload-too-large",
            ApiError::RangeNotSatisfiable(_) => "range-not-satisfiable",
            ApiError::Invalid(_) => "validation",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::Upstream(_) => "upstream",
            ApiError::Unavailable => "unavailable",
            ApiError::Timeout(_) => "timeout",
            ApiError::RateLimited { .. } => "rate-limited",
            ApiError::Unexpected(_) => "internal",
        }
    }

    /// Maps a storage failure; `what` names the resource for a 404.
    pub fn from_storage(err: StorageError, what: &'static str) -> Self {
        match err {
            StorageError::NotFound => ApiError::NotFound(what),
            StorageError::Conflict(message) => ApiError::Conflict(message),
            StorageError::Invalid(invalid) => ApiError::Invalid(invalid),
            StorageError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => ApiError::Unavailable,
            other => ApiError::Unexpected(other.into()),
        }
    }
}

impl ApiError {
    /// Maps a provisioning failure; `what` names the resource for a 404.
    pub fn from_provisioning(err: ProvisioningError, what: &'static str) -> Self {
        match err {
            ProvisioningError::Storage(e) => ApiError::from_storage(e, what),
            e @ ProvisioningError::CarrierUnavailable(_) => ApiError::Upstream(e.to_string()),
            e @ (ProvisioningError::Refused(_) | ProvisioningError::CarrierRefused(_) | ProvisioningError::BadCredentials(_)) => {
                ApiError::Unprocessable(e.to_string())
            }
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        ApiError::Invalid(invalid)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Unexpected(err) => {
                tracing::error!(error = ?err, "request failed unexpectedly");
                "something went wrong on our side; the error is logged".to_owned()
            }
            other => other.to_string(),
        };
        let errors = match &self {
            ApiError::Invalid(invalid) => vec![FieldProblem { field: invalid.field.clone(), message: invalid.message.clone() }],
            _ => Vec::new(),
        };
        let problem = Problem {
            kind: format!("/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            errors,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::RateLimited { retry_after, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(retry_after)));
        }
        if let ApiError::RangeNotSatisfiable(length) = self {
            let range = HeaderValue::from_str(&format!("bytes */{length}")).expect("digits are a valid header value");
            response.headers_mut().insert(header::CONTENT_RANGE, range);
        }
        response
    }
}

/// Whole seconds, rounded up, at least one.
fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}
