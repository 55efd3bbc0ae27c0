//! Request extractors that answer bad input with problem+json instead of axum's plain text:
//! JSON bodies (unknown fields rejected by the types, 413 past the body limit, 422 for a NUL
//! character anywhere, which no store can keep), paths and query strings.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use crate::domain::validation::Invalid;

/// A JSON request body.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::BadRequest("send the body as JSON with `Content-Type: application/json`".into()));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            _ => ApiError::BadRequest(e.body_text()),
        })?;
        if let Some(field) = field_with_nul(&bytes) {
            return Err(Invalid::new(field, "contains a NUL character (\\u0000), which cannot be stored; remove it").into());
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

/// `application/json` or a `+json` type, as axum's own JSON extractor accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The dotted path of the first string (or key) in a JSON body that holds a NUL character.
fn field_with_nul(body: &[u8]) -> Option<String> {
    fn walk(value: &Value, path: &str) -> Option<String> {
        let here = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
        match value {
            Value::String(text) if text.contains('\0') => Some(if path.is_empty() { "body".to_owned() } else { path.to_owned() }),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| walk(item, &format!("{path}[{i}]"))),
            Value::Object(fields) => {
                fields.iter().find_map(|(key, item)| if key.contains('\0') { Some(here(key)) } else { walk(item, &here(key)) })
            }
            _ => None,
        }
    }
    // Only a body that spells a NUL escape can hold one (a raw NUL is not valid JSON).
    if !body.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000")) {
        return None;
    }
    walk(&serde_json::from_slice(body).ok()?, "")
}

fn json_problem(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge;
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::BadRequest("send the body as JSON with `Content-Type: application/json`".into())
        }
        JsonRejection::JsonDataError(e) => ApiError::BadRequest(format!("the JSON body does not fit: {}", e.body_text())),
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(format!("the body is not valid JSON: {}", e.body_text())),
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|e: PathRejection| ApiError::BadRequest(format!("bad path: {}; ids are UUIDs", e.body_text())))
    }
}

/// Query-string parameters.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|e: QueryRejection| ApiError::BadRequest(format!("bad query string: {}", e.body_text())))
    }
}
