//! `/apps`: containers of agents and phone numbers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::domain::app::{App, AppSpec};
use crate::domain::ids::AppId;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{ListResponse, PageParams};
use crate::storage::apps;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    /// Defaults to empty, so a missing name is named by its validation (422).
    #[serde(default)]
    #[schema(required = true)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApp {
    name: Option<String>,
    description: Option<String>,
}

fn storage_error(e: crate::storage::StorageError) -> ApiError {
    ApiError::from_storage(e, "app")
}

/// List apps, newest first.
#[utoipa::path(get, path = "/apps", tag = "apps", params(PageParams), responses(
    (status = 200, body = ListResponse<App>), (status = 401, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<App>>, ApiError> {
    let page = apps::list(&s.db, caller.org, page.to_request()?).await.map_err(storage_error)?;
    Ok(Json(page.into()))
}

/// Create an app.
#[utoipa::path(post, path = "/apps", tag = "apps", request_body = CreateApp, responses(
    (status = 201, body = App), (status = 422, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateApp>,
) -> Result<(StatusCode, Json<App>), ApiError> {
    let spec = AppSpec::new(&body.name, &body.description)?;
    let app = apps::create(&s.db, caller.org, spec, caller.actor).await.map_err(storage_error)?;
    Ok((StatusCode::CREATED, Json(app)))
}

/// Read an app.
#[utoipa::path(get, path = "/apps/{app_id}", tag = "apps", params(("app_id" = AppId, Path)), responses(
    (status = 200, body = App), (status = 404, body = Problem)))]
pub async fn get(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<AppId>) -> Result<Json<App>, ApiError> {
    Ok(Json(apps::get(&s.db, caller.org, id).await.map_err(storage_error)?))
}

/// Change an app's name or description.
#[utoipa::path(patch, path = "/apps/{app_id}", tag = "apps", params(("app_id" = AppId, Path)), request_body = UpdateApp, responses(
    (status = 200, body = App), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<AppId>,
    ApiJson(body): ApiJson<UpdateApp>,
) -> Result<Json<App>, ApiError> {
    let current = apps::get(&s.db, caller.org, id).await.map_err(storage_error)?;
    let spec = AppSpec::new(body.name.as_deref().unwrap_or(&current.name), body.description.as_deref().unwrap_or(&current.description))?;
    Ok(Json(apps::update(&s.db, caller.org, id, spec, caller.actor).await.map_err(storage_error)?))
}

/// Delete an app that has no agents or phone numbers left.
#[utoipa::path(delete, path = "/apps/{app_id}", tag = "apps", params(("app_id" = AppId, Path)), responses(
    (status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<AppId>) -> Result<StatusCode, ApiError> {
    apps::delete(&s.db, caller.org, id, caller.actor).await.map_err(storage_error)?;
    Ok(StatusCode::NO_CONTENT)
}
