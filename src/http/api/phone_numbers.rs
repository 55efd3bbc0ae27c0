//! `/apps/{app_id}/phone-numbers` and `/phone-numbers/{id}`: phone services.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::domain::ids::{AgentId, AppId, PhoneNumberId};
use crate::domain::languages;
use crate::domain::phone_number::{PhoneNumber, ServiceMode, ServiceStatus};
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{ListResponse, PageParams};
use crate::storage::phone_numbers::{self as store, PhoneNumberChanges};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePhoneNumber {
    agent_id: Option<AgentId>,
    expand_languages: Option<bool>,
    languages: Option<Vec<String>>,
    generate_first_message: Option<bool>,
    mode: Option<ServiceMode>,
    /// `active` or `disabled`.
    status: Option<ServiceStatus>,
}

fn storage_error(e: crate::storage::StorageError) -> ApiError {
    ApiError::from_storage(e, "phone number")
}

/// List an app's phone numbers with their agents and status, newest first.
#[utoipa::path(get, path = "/apps/{app_id}/phone-numbers", tag = "phone-numbers", params(("app_id" = AppId, Path), PageParams), responses(
    (status = 200, body = ListResponse<PhoneNumber>), (status = 404, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<AppId>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<PhoneNumber>>, ApiError> {
    let page = store::list(&s.db, caller.org, app, page.to_request()?).await.map_err(|e| ApiError::from_storage(e, "app"))?;
    Ok(Json(page.into()))
}

/// Read a phone number.
#[utoipa::path(get, path = "/phone-numbers/{id}", tag = "phone-numbers", params(("id" = PhoneNumberId, Path)), responses(
    (status = 200, body = PhoneNumber), (status = 404, body = Problem)))]
pub async fn get(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<PhoneNumberId>) -> Result<Json<PhoneNumber>, ApiError> {
    Ok(Json(store::get(&s.db, caller.org, id).await.map_err(storage_error)?))
}

/// Change which agent answers, the language and greeting toggles, the mode or the status.
/// Changes apply from the next call.
#[utoipa::path(patch, path = "/phone-numbers/{id}", tag = "phone-numbers", params(("id" = PhoneNumberId, Path)), request_body = UpdatePhoneNumber, responses(
    (status = 200, body = PhoneNumber), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<PhoneNumberId>,
    ApiJson(body): ApiJson<UpdatePhoneNumber>,
) -> Result<Json<PhoneNumber>, ApiError> {
    if body.status == Some(ServiceStatus::Error) {
        return Err(Invalid::new("status", "can be set to `active` or `disabled`; `error` is set by the platform").into());
    }
    let changes = PhoneNumberChanges {
        agent_id: body.agent_id,
        expand_languages: body.expand_languages,
        languages: body.languages.as_deref().map(languages::validate_codes).transpose()?,
        generate_first_message: body.generate_first_message,
        mode: body.mode,
        status: body.status,
    };
    Ok(Json(store::update(&s.db, caller.org, id, changes, caller.actor).await.map_err(storage_error)?))
}

/// Remove a phone number from the platform. The number stays in the carrier account.
#[utoipa::path(delete, path = "/phone-numbers/{id}", tag = "phone-numbers", params(("id" = PhoneNumberId, Path)), responses(
    (status = 204), (status = 404, body = Problem)))]
pub async fn delete(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<PhoneNumberId>) -> Result<StatusCode, ApiError> {
    store::delete(&s.db, caller.org, id, caller.actor).await.map_err(storage_error)?;
    Ok(StatusCode::NO_CONTENT)
}
