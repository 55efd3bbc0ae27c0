//! `/phone-providers`: carrier accounts (Twilio), verified with Twilio, with number search and
//! the account's own numbers. Credentials are write-only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::nullable;
use crate::domain::ids::PhoneProviderId;
use crate::domain::phone_number::{AreaCode, NumberOffer, OwnedNumber};
use crate::domain::provider::{self, PhoneProvider, PhoneProviderKind};
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{ListResponse, PageParams};
use crate::storage::phone_providers::{self as store, ApiKey, NewPhoneProvider, PhoneProviderChanges};
use crate::telephony::twilio::provisioning;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePhoneProvider {
    // Required fields default to empty, so a missing one is named by its validation (422).
    #[serde(default)]
    #[schema(required = true)]
    pub(crate) name: String,
    #[serde(default = "twilio")]
    kind: PhoneProviderKind,
    /// `AC` followed by 32 hex digits.
    #[serde(default)]
    #[schema(required = true, pattern = "^AC[0-9a-fA-F]{32}$")]
    pub(crate) account_sid: String,
    /// The account's primary auth token; verifies webhook signatures. Never returned.
    #[serde(default)]
    #[schema(required = true)]
    auth_token: String,
    /// Optional API key (`SK` followed by 32 hex digits) for REST calls, with its secret.
    #[schema(pattern = "^SK[0-9a-fA-F]{32}$")]
    api_key_sid: Option<String>,
    api_key_secret: Option<String>,
}

fn twilio() -> PhoneProviderKind {
    PhoneProviderKind::Twilio
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePhoneProvider {
    pub(crate) name: Option<String>,
    pub(crate) auth_token: Option<String>,
    /// A new API key SID (with `api_key_secret`), or `null` to stop using an API key.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub(crate) api_key_sid: Option<Option<String>>,
    pub(crate) api_key_secret: Option<String>,
}

fn api_key(sid: &str, secret: Option<&str>) -> Result<ApiKey, Invalid> {
    let secret = secret.ok_or_else(|| Invalid::new("api_key_secret", "is required with api_key_sid"))?;
    Ok(ApiKey { sid: provider::twilio_sid("api_key_sid", "SK", sid)?, secret: provider::credential("api_key_secret", secret)? })
}

fn storage_error(e: crate::storage::StorageError) -> ApiError {
    ApiError::from_storage(e, "phone provider")
}

/// List phone providers, newest first.
#[utoipa::path(get, path = "/phone-providers", tag = "phone-providers", params(PageParams), responses((status = 200, body = ListResponse<PhoneProvider>)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<PhoneProvider>>, ApiError> {
    Ok(Json(store::list(&s.db, caller.org, page.to_request()?).await.map_err(storage_error)?.into()))
}

/// Connect a Twilio account. The credentials are checked with Twilio at once: the answer's
/// `status` is `active` when they work.
#[utoipa::path(post, path = "/phone-providers", tag = "phone-providers", request_body = CreatePhoneProvider, responses(
    (status = 201, body = PhoneProvider), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreatePhoneProvider>,
) -> Result<(StatusCode, Json<PhoneProvider>), ApiError> {
    if body.api_key_secret.is_some() && body.api_key_sid.is_none() {
        return Err(Invalid::new("api_key_sid", "is required with api_key_secret").into());
    }
    let new = NewPhoneProvider {
        name: provider::provider_name(&body.name)?,
        kind: body.kind,
        account_sid: provider::twilio_sid("account_sid", "AC", &body.account_sid)?,
        auth_token: provider::credential("auth_token", &body.auth_token)?,
        api_key: body.api_key_sid.as_deref().map(|sid| api_key(sid, body.api_key_secret.as_deref())).transpose()?,
    };
    let created = store::create(&s.db, caller.org, new, caller.actor).await.map_err(storage_error)?;
    let verified = provisioning::verify_provider(&s.db, &s.twilio, caller.org, created.id).await.map_err(storage_error)?;
    Ok((StatusCode::CREATED, Json(verified)))
}

/// Read a phone provider (never its credentials).
#[utoipa::path(get, path = "/phone-providers/{id}", tag = "phone-providers", params(("id" = PhoneProviderId, Path)), responses(
    (status = 200, body = PhoneProvider), (status = 404, body = Problem)))]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<PhoneProviderId>,
) -> Result<Json<PhoneProvider>, ApiError> {
    Ok(Json(store::get(&s.db, caller.org, id).await.map_err(storage_error)?))
}

/// Rename a provider or change its credentials (which are checked with Twilio at once).
#[utoipa::path(patch, path = "/phone-providers/{id}", tag = "phone-providers", params(("id" = PhoneProviderId, Path)), request_body = UpdatePhoneProvider, responses(
    (status = 200, body = PhoneProvider), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<PhoneProviderId>,
    ApiJson(body): ApiJson<UpdatePhoneProvider>,
) -> Result<Json<PhoneProvider>, ApiError> {
    let api_key = match (&body.api_key_sid, &body.api_key_secret) {
        (None, Some(_)) => return Err(Invalid::new("api_key_sid", "is required with api_key_secret").into()),
        (None, None) => None,
        (Some(None), _) => Some(None),
        (Some(Some(sid)), secret) => Some(Some(api_key(sid, secret.as_deref())?)),
    };
    let changes = PhoneProviderChanges {
        name: body.name.as_deref().map(provider::provider_name).transpose()?,
        auth_token: body.auth_token.as_deref().map(|t| provider::credential("auth_token", t)).transpose()?,
        api_key,
    };
    let new_credentials = changes.auth_token.is_some() || changes.api_key.is_some();
    let updated = store::update(&s.db, caller.org, id, changes, caller.actor).await.map_err(storage_error)?;
    if new_credentials {
        return Ok(Json(provisioning::verify_provider(&s.db, &s.twilio, caller.org, id).await.map_err(storage_error)?));
    }
    Ok(Json(updated))
}

/// Remove a provider that serves no phone numbers.
#[utoipa::path(delete, path = "/phone-providers/{id}", tag = "phone-providers", params(("id" = PhoneProviderId, Path)), responses(
    (status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<PhoneProviderId>) -> Result<StatusCode, ApiError> {
    store::delete(&s.db, caller.org, id, caller.actor).await.map_err(storage_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Check the provider's credentials with Twilio now and record the result.
#[utoipa::path(post, path = "/phone-providers/{id}/verify", tag = "phone-providers", params(("id" = PhoneProviderId, Path)), responses(
    (status = 200, body = PhoneProvider), (status = 404, body = Problem)))]
pub async fn verify(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<PhoneProviderId>,
) -> Result<Json<PhoneProvider>, ApiError> {
    Ok(Json(provisioning::verify_provider(&s.db, &s.twilio, caller.org, id).await.map_err(storage_error)?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NumberSearch {
    /// Three-digit area code, e.g. 415.
    #[param(pattern = "^[0-9]{3}$")]
    pub(crate) area_code: Option<String>,
    /// ISO 3166 country code (default US).
    #[param(pattern = "^[A-Za-z]{2}$")]
    pub(crate) country: Option<String>,
}

fn country_code(value: Option<&str>) -> Result<String, Invalid> {
    let country = value.unwrap_or("US").trim().to_uppercase();
    if country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(country)
    } else {
        Err(Invalid::new("country", format!("`{country}` is not a two-letter ISO country code like US or GB")))
    }
}

/// Numbers for sale through this provider, by area code.
#[utoipa::path(get, path = "/phone-providers/{id}/available-numbers", tag = "phone-providers", params(("id" = PhoneProviderId, Path), NumberSearch), responses(
    (status = 200, body = ListResponse<NumberOffer>), (status = 422, body = Problem), (status = 502, body = Problem)))]
pub async fn available_numbers(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<PhoneProviderId>,
    ApiQuery(q): ApiQuery<NumberSearch>,
) -> Result<Json<ListResponse<NumberOffer>>, ApiError> {
    let area_code = q.area_code.as_deref().map(AreaCode::parse).transpose()?;
    let country = country_code(q.country.as_deref())?;
    let numbers = provisioning::numbers_for_sale(&s.db, &s.twilio, caller.org, id, &country, area_code.as_ref())
        .await
        .map_err(|e| ApiError::from_provisioning(e, "phone provider"))?;
    Ok(Json(ListResponse { data: numbers, next_cursor: None }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IncomingQuery {
    /// How many numbers per page, 1 to 200 (default 50).
    pub(crate) limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// The numbers the Twilio account already owns, to attach one to an agent.
#[utoipa::path(get, path = "/phone-providers/{id}/incoming-numbers", tag = "phone-providers", params(("id" = PhoneProviderId, Path), IncomingQuery), responses(
    (status = 200, body = ListResponse<OwnedNumber>), (status = 422, body = Problem), (status = 502, body = Problem)))]
pub async fn incoming_numbers(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<PhoneProviderId>,
    ApiQuery(q): ApiQuery<IncomingQuery>,
) -> Result<Json<ListResponse<OwnedNumber>>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and 200, got {limit}")));
    }
    let page = q
        .cursor
        .as_deref()
        .map(|c| URL_SAFE_NO_PAD.decode(c).ok().and_then(|b| String::from_utf8(b).ok()))
        .map(|decoded| {
            decoded.ok_or_else(|| ApiError::BadRequest("cursor is not one this API issued; pass next_cursor back unchanged".into()))
        })
        .transpose()?;
    let (numbers, next_page) = provisioning::owned_numbers(&s.db, &s.twilio, caller.org, id, page.as_deref(), limit)
        .await
        .map_err(|e| ApiError::from_provisioning(e, "phone provider"))?;
    Ok(Json(ListResponse { data: numbers, next_cursor: next_page.map(|p| URL_SAFE_NO_PAD.encode(p)) }))
}
