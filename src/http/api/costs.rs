//! What calls cost: `/cost-settings` (the organisation's currency and monthly budget),
//! `/spending` (this month against the budget) and each provider's price list
//! (`/{phone,llm,speech}-providers/{id}/prices`). Each call's cost is on the call itself.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::domain::cost::{CarrierPrices, CostSettings, ModelPrices, SpeechPrices, Spending};
use crate::domain::ids::{LlmProviderId, PhoneProviderId, SpeechProviderId};
use crate::domain::time;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiJson, ApiPath};
use crate::storage::costs::{self as store, PricedProvider};

fn storage_error(what: &'static str) -> impl Fn(crate::storage::StorageError) -> ApiError {
    move |e| ApiError::from_storage(e, what)
}

/// The organisation's currency and budget.
#[utoipa::path(get, path = "/cost-settings", tag = "costs", responses((status = 200, body = CostSettings)))]
pub async fn get_settings(State(s): State<AppState>, caller: Caller) -> Result<Json<CostSettings>, ApiError> {
    Ok(Json(store::settings(&s.db, caller.org).await.map_err(storage_error("organisation"))?))
}

/// Replace the currency and budget. Prices and costs are amounts in the currency; changing it
/// converts nothing.
#[utoipa::path(put, path = "/cost-settings", tag = "costs", request_body = CostSettings, responses(
    (status = 200, body = CostSettings), (status = 422, body = Problem)))]
pub async fn put_settings(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CostSettings>,
) -> Result<Json<CostSettings>, ApiError> {
    let settings = body.validate()?;
    store::set_settings(&s.db, caller.org, &settings, caller.actor).await.map_err(storage_error("organisation"))?;
    Ok(Json(settings))
}

/// This month's spending on calls (calendar month in UTC), against the budget.
#[utoipa::path(get, path = "/spending", tag = "costs", responses((status = 200, body = Spending)))]
pub async fn spending(State(s): State<AppState>, caller: Caller) -> Result<Json<Spending>, ApiError> {
    Ok(Json(store::spending(&s.db, caller.org, time::now()).await.map_err(storage_error("organisation"))?))
}

async fn read<P: DeserializeOwned + Default + Send + Unpin + 'static>(
    s: &AppState,
    caller: &Caller,
    kind: PricedProvider,
    id: Uuid,
    what: &'static str,
) -> Result<Json<P>, ApiError> {
    Ok(Json(store::prices(&s.db, caller.org, kind, id).await.map_err(storage_error(what))?))
}

async fn write<P: Serialize + Sync>(
    s: &AppState,
    caller: &Caller,
    kind: PricedProvider,
    id: Uuid,
    prices: P,
    what: &'static str,
) -> Result<Json<P>, ApiError> {
    store::set_prices(&s.db, caller.org, kind, id, &prices, caller.actor).await.map_err(storage_error(what))?;
    Ok(Json(prices))
}

/// A phone provider's prices (all 0 until set).
#[utoipa::path(get, path = "/phone-providers/{id}/prices", tag = "costs", params(("id" = PhoneProviderId, Path)), responses(
    (status = 200, body = CarrierPrices), (status = 404, body = Problem)))]
pub async fn get_phone_prices(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<PhoneProviderId>,
) -> Result<Json<CarrierPrices>, ApiError> {
    read(&s, &caller, PricedProvider::Phone, id.0, "phone provider").await
}

/// Replace a phone provider's prices. Calls whose cost is final keep the prices they were
/// computed with.
#[utoipa::path(put, path = "/phone-providers/{id}/prices", tag = "costs", params(("id" = PhoneProviderId, Path)), request_body = CarrierPrices,
    responses((status = 200, body = CarrierPrices), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn put_phone_prices(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<PhoneProviderId>,
    ApiJson(prices): ApiJson<CarrierPrices>,
) -> Result<Json<CarrierPrices>, ApiError> {
    write(&s, &caller, PricedProvider::Phone, id.0, prices, "phone provider").await
}

/// An LLM provider's prices (all 0 until set).
#[utoipa::path(get, path = "/llm-providers/{id}/prices", tag = "costs", params(("id" = LlmProviderId, Path)), responses(
    (status = 200, body = ModelPrices), (status = 404, body = Problem)))]
pub async fn get_model_prices(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<LlmProviderId>,
) -> Result<Json<ModelPrices>, ApiError> {
    read(&s, &caller, PricedProvider::Model, id.0, "LLM provider").await
}

/// Replace an LLM provider's prices.
#[utoipa::path(put, path = "/llm-providers/{id}/prices", tag = "costs", params(("id" = LlmProviderId, Path)), request_body = ModelPrices,
    responses((status = 200, body = ModelPrices), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn put_model_prices(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<LlmProviderId>,
    ApiJson(prices): ApiJson<ModelPrices>,
) -> Result<Json<ModelPrices>, ApiError> {
    write(&s, &caller, PricedProvider::Model, id.0, prices, "LLM provider").await
}

/// A speech provider's prices (all 0 until set).
#[utoipa::path(get, path = "/speech-providers/{id}/prices", tag = "costs", params(("id" = SpeechProviderId, Path)), responses(
    (status = 200, body = SpeechPrices), (status = 404, body = Problem)))]
pub async fn get_speech_prices(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<SpeechProviderId>,
) -> Result<Json<SpeechPrices>, ApiError> {
    read(&s, &caller, PricedProvider::Speech, id.0, "speech provider").await
}

/// Replace a speech provider's prices.
#[utoipa::path(put, path = "/speech-providers/{id}/prices", tag = "costs", params(("id" = SpeechProviderId, Path)), request_body = SpeechPrices,
    responses((status = 200, body = SpeechPrices), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn put_speech_prices(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<SpeechProviderId>,
    ApiJson(prices): ApiJson<SpeechPrices>,
) -> Result<Json<SpeechPrices>, ApiError> {
    write(&s, &caller, PricedProvider::Speech, id.0, prices, "speech provider").await
}
