//! `/apps/{app_id}/automations`, `/automations/{id}` and their runs: what happens after a call.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::domain::automation::{Action, Automation, AutomationRun, AutomationSpec, Filters, Trigger};
use crate::domain::ids::{AppId, AutomationId, AutomationRunId};
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{ListResponse, PageParams};
use crate::providers::egress::Egress;
use crate::storage::automations as store;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAutomation {
    name: String,
    /// `agent_conversation_ended` (default) or `call_analyzed`.
    #[serde(default = "default_trigger")]
    trigger: Trigger,
    #[serde(default)]
    filters: Filters,
    /// Done in order; each one's output is available to the next as template variables.
    actions: Vec<Action>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn default_trigger() -> Trigger {
    Trigger::AgentConversationEnded
}

fn yes() -> bool {
    true
}

/// Changes; absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAutomation {
    name: Option<String>,
    trigger: Option<Trigger>,
    filters: Option<Filters>,
    actions: Option<Vec<Action>>,
    enabled: Option<bool>,
}

/// A new automation with its webhook signing secret, which is shown only here.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedAutomation {
    #[serde(flatten)]
    pub(crate) automation: Automation,
    /// Key of the `Switchboard-Signature` HMAC; store it with the receiver.
    pub(crate) signing_secret: String,
}

fn storage_error(e: crate::storage::StorageError) -> ApiError {
    ApiError::from_storage(e, "automation")
}

/// List an app's automations, newest first.
#[utoipa::path(get, path = "/apps/{app_id}/automations", tag = "automations", params(("app_id" = AppId, Path), PageParams), responses(
    (status = 200, body = ListResponse<Automation>), (status = 404, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<AppId>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<Automation>>, ApiError> {
    crate::storage::apps::get(&s.db, caller.org, app).await.map_err(|e| ApiError::from_storage(e, "app"))?;
    Ok(Json(store::list(&s.db, caller.org, app, page.to_request()?).await.map_err(storage_error)?.into()))
}

/// Create an automation in an app. The answer carries the webhook signing secret, once.
#[utoipa::path(post, path = "/apps/{app_id}/automations", tag = "automations", params(("app_id" = AppId, Path)), request_body = CreateAutomation, responses(
    (status = 201, body = CreatedAutomation), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(app): ApiPath<AppId>,
    ApiJson(body): ApiJson<CreateAutomation>,
) -> Result<(StatusCode, Json<CreatedAutomation>), ApiError> {
    let spec =
        AutomationSpec { name: body.name, trigger: body.trigger, filters: body.filters, actions: body.actions, enabled: body.enabled }
            .validate()?;
    webhook_targets_reachable(&s.egress, &spec.actions).await?;
    let (automation, signing_secret) =
        store::create(&s.db, caller.org, app, spec, caller.actor).await.map_err(|e| ApiError::from_storage(e, "app"))?;
    Ok((StatusCode::CREATED, Json(CreatedAutomation { automation, signing_secret })))
}

/// Read an automation.
#[utoipa::path(get, path = "/automations/{id}", tag = "automations", params(("id" = AutomationId, Path)), responses(
    (status = 200, body = Automation), (status = 404, body = Problem)))]
pub async fn get(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<AutomationId>) -> Result<Json<Automation>, ApiError> {
    Ok(Json(store::get(&s.db, caller.org, id).await.map_err(storage_error)?))
}

/// Change an automation. Runs already queued go on with the new actions.
#[utoipa::path(patch, path = "/automations/{id}", tag = "automations", params(("id" = AutomationId, Path)), request_body = UpdateAutomation, responses(
    (status = 200, body = Automation), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<AutomationId>,
    ApiJson(body): ApiJson<UpdateAutomation>,
) -> Result<Json<Automation>, ApiError> {
    let current = store::get(&s.db, caller.org, id).await.map_err(storage_error)?.spec;
    if let Some(actions) = &body.actions {
        webhook_targets_reachable(&s.egress, actions).await?;
    }
    let spec = AutomationSpec {
        name: body.name.unwrap_or(current.name),
        trigger: body.trigger.unwrap_or(current.trigger),
        filters: body.filters.unwrap_or(current.filters),
        actions: body.actions.unwrap_or(current.actions),
        enabled: body.enabled.unwrap_or(current.enabled),
    }
    .validate()?;
    Ok(Json(store::update(&s.db, caller.org, id, spec, caller.actor).await.map_err(storage_error)?))
}

/// Refuses webhook actions whose targets the egress policy would refuse at delivery.
async fn webhook_targets_reachable(egress: &Egress, actions: &[Action]) -> Result<(), Invalid> {
    for (index, action) in actions.iter().enumerate() {
        if let Action::Webhook { url, .. } = action {
            super::reachable_url(egress, &format!("actions[{index}].url"), url).await?;
        }
    }
    Ok(())
}

/// A new webhook signing secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SigningSecret {
    pub(crate) signing_secret: String,
}

/// Replace the webhook signing secret; the answer shows the new one, once. Deliveries from now
/// on are signed with it.
#[utoipa::path(post, path = "/automations/{id}/signing-secret", tag = "automations", params(("id" = AutomationId, Path)), responses(
    (status = 200, body = SigningSecret), (status = 404, body = Problem)))]
pub async fn rotate_secret(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<AutomationId>,
) -> Result<Json<SigningSecret>, ApiError> {
    let signing_secret = store::rotate_secret(&s.db, caller.org, id, caller.actor).await.map_err(storage_error)?;
    Ok(Json(SigningSecret { signing_secret }))
}

/// Delete an automation and its runs.
#[utoipa::path(delete, path = "/automations/{id}", tag = "automations", params(("id" = AutomationId, Path)), responses(
    (status = 204), (status = 404, body = Problem)))]
pub async fn delete(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<AutomationId>) -> Result<StatusCode, ApiError> {
    store::delete(&s.db, caller.org, id, caller.actor).await.map_err(storage_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// An automation's runs, newest first: status, attempts, last error, next attempt, outputs.
#[utoipa::path(get, path = "/automations/{id}/runs", tag = "automations", params(("id" = AutomationId, Path), PageParams), responses(
    (status = 200, body = ListResponse<AutomationRun>), (status = 404, body = Problem)))]
pub async fn runs(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<AutomationId>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<AutomationRun>>, ApiError> {
    store::get(&s.db, caller.org, id).await.map_err(storage_error)?;
    Ok(Json(store::runs(&s.db, caller.org, id, page.to_request()?).await.map_err(storage_error)?.into()))
}

/// Queue a failed or dead run again, now; it resumes at the action that failed.
#[utoipa::path(post, path = "/automation-runs/{id}/retry", tag = "automations", params(("id" = AutomationRunId, Path)), responses(
    (status = 200, body = AutomationRun), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn retry(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<AutomationRunId>,
) -> Result<Json<AutomationRun>, ApiError> {
    Ok(Json(store::retry(&s.db, caller.org, id, caller.actor).await.map_err(|e| ApiError::from_storage(e, "automation run"))?))
}
