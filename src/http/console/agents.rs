//! App Details → Agents: the list with "New agent", and each agent's page: every setting in one
//! form, the prompt preview (exactly what the model receives), the version history with what
//! changed in each version and "restore this version", and a test call to any of its numbers.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::auth::{Submitted, Viewer, redirect_with_notice};
use super::{ConsoleError, Cursor, FormErrors, Layout, first_page};
use crate::domain::agent::{Agent, AgentSpec, AgentSpeech, AgentTool, AgentVersion};
use crate::domain::app::App;
use crate::domain::ids::{AgentId, AppId, LlmProviderId, SpeechProviderId};
use crate::domain::phone_number::PhoneNumber;
use crate::domain::provider::{LlmProvider, SpeechProvider};
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::api::agents::{self as api, AgentFields, PreviewQuery, PromptPreview};
use crate::http::api::{apps as apps_api, llm_providers as llm_api, phone_numbers as numbers_api, speech_providers as speech_api};
use crate::http::error::ApiError;
use crate::http::input::{ApiJson, ApiPath, ApiQuery};

#[derive(Template)]
#[template(path = "apps/agents.html")]
struct AgentsPage {
    layout: Layout,
    app: App,
    tab: &'static str,
    agents: Vec<Agent>,
    next_cursor: Option<String>,
    name: String,
    errors: FormErrors,
}

async fn agents_page(
    state: AppState,
    viewer: &Viewer,
    app: AppId,
    cursor: Option<String>,
    name: String,
    errors: FormErrors,
) -> Result<Response, ConsoleError> {
    let app = apps_api::get(State(state.clone()), viewer.caller(), ApiPath(app)).await?.0;
    let list = api::list(State(state), viewer.caller(), ApiPath(app.id), first_page(cursor)).await?.0;
    let status = if errors.any() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let layout = viewer.layout(format!("{} · Agents", app.name), "apps");
    let page = AgentsPage { layout, app, tab: "agents", agents: list.data, next_cursor: list.next_cursor, name, errors };
    Ok((status, viewer.render(&page)).into_response())
}

/// `GET /apps/{id}/agents`: the Agents tab.
pub async fn list(
    State(state): State<AppState>,
    Path(app): Path<AppId>,
    viewer: Viewer,
    Query(q): Query<Cursor>,
) -> Result<Response, ConsoleError> {
    agents_page(state, &viewer, app, q.cursor, String::new(), FormErrors::default()).await
}

#[derive(Deserialize)]
pub struct NewAgent {
    #[serde(default)]
    name: String,
}

/// `POST /apps/{id}/agents`: creates an agent with the defaults and opens it.
pub async fn create(
    State(state): State<AppState>,
    Path(app): Path<AppId>,
    Submitted { viewer, form }: Submitted<NewAgent>,
) -> Result<Response, ConsoleError> {
    let mut fields = AgentFields::from_spec(AgentSpec::named(""));
    fields.name = Some(form.name.clone());
    match api::create(State(state.clone()), viewer.caller(), ApiPath(app), ApiJson(fields)).await {
        Ok((_, created)) => {
            Ok(redirect_with_notice(&viewer, &format!("/agents/{}", created.id), "Agent created. Give it instructions below."))
        }
        Err(e) => agents_page(state, &viewer, app, None, form.name, FormErrors::from_api(e)?).await,
    }
}

/// One setting that differs between two versions.
pub struct Change {
    pub field: String,
    pub before: String,
    pub after: String,
}

/// A version with what it changed from the one before it.
pub struct VersionEntry {
    pub version: AgentVersion,
    pub changes: Vec<Change>,
}

/// The settings that differ from `before` to `after`, as they read in JSON.
fn changes(before: &AgentSpec, after: &AgentSpec) -> Vec<Change> {
    let (Ok(Value::Object(before)), Ok(Value::Object(after))) = (serde_json::to_value(before), serde_json::to_value(after)) else {
        return Vec::new();
    };
    let shown = |value: Option<&Value>| match value {
        None | Some(Value::Null) => "(none)".to_owned(),
        Some(Value::String(text)) if text.is_empty() => "(empty)".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    after
        .iter()
        .filter(|(field, value)| before.get(*field) != Some(*value))
        .map(|(field, value)| Change { field: field.replace('_', " "), before: shown(before.get(field)), after: shown(Some(value)) })
        .collect()
}

#[derive(Template)]
#[template(path = "agents/show.html")]
struct AgentPage {
    layout: Layout,
    app: App,
    agent: Agent,
    providers: Vec<LlmProvider>,
    speech_providers: Vec<SpeechProvider>,
    tools: &'static [AgentTool],
    history: Vec<VersionEntry>,
    /// The numbers that reach this agent, for a test call.
    numbers: Vec<PhoneNumber>,
    preview: PromptPreview,
    /// Whether this server has the turn-taking models (which setting ends turns depends on it).
    hears_with_models: bool,
    errors: FormErrors,
}

impl AgentPage {
    fn phrases(&self) -> String {
        self.agent.spec.end_call_phrases.join("\n")
    }

    /// The voices per language, one `language=voice` a line.
    fn voices(&self) -> String {
        self.agent.spec.speech.voices.iter().map(|(language, voice)| format!("{language}={voice}")).collect::<Vec<_>>().join("\n")
    }

    fn preview_tools(&self) -> String {
        serde_json::to_string_pretty(&self.preview.tools).unwrap_or_default()
    }
}

async fn agent_page(state: AppState, viewer: &Viewer, agent: Agent, errors: FormErrors) -> Result<Response, ConsoleError> {
    let caller = viewer.caller();
    let app = apps_api::get(State(state.clone()), caller, ApiPath(agent.app_id)).await?.0;
    let providers = llm_api::list(State(state.clone()), caller, first_page(None)).await?.0.data;
    let speech_providers = speech_api::list(State(state.clone()), caller, first_page(None)).await?.0.data;
    let versions = api::versions(State(state.clone()), caller, ApiPath(agent.id)).await?.0.data;
    let history = versions
        .iter()
        .enumerate()
        .map(|(i, version)| VersionEntry {
            version: version.clone(),
            changes: versions.get(i + 1).map(|older| changes(&older.spec, &version.spec)).unwrap_or_default(),
        })
        .collect();
    let listings = numbers_api::list(State(state.clone()), caller, ApiPath(agent.app_id), super::picker_page()).await?.0.data;
    let numbers = listings.into_iter().map(|l| l.number).filter(|n| n.agent_id == agent.id).collect();
    let hears_with_models = state.models.turn().is_some();
    let preview =
        api::prompt_preview(State(state), caller, ApiPath(agent.id), ApiQuery(PreviewQuery { caller: None, languages: None })).await?.0;
    let status = if errors.any() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let layout = viewer.layout(agent.spec.name.clone(), "apps");
    let page = AgentPage {
        layout,
        app,
        agent,
        providers,
        speech_providers,
        tools: AgentTool::ALL,
        history,
        numbers,
        preview,
        hears_with_models,
        errors,
    };
    Ok((status, viewer.render(&page)).into_response())
}

/// `GET /agents/{id}`.
pub async fn show(State(state): State<AppState>, Path(id): Path<AgentId>, viewer: Viewer) -> Result<Response, ConsoleError> {
    let agent = api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
    agent_page(state, &viewer, agent, FormErrors::default()).await
}

/// The agent form. Every field is sent: an empty one clears the setting, an unticked tool is off.
#[derive(Deserialize)]
pub struct AgentForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    instructions: String,
    #[serde(default)]
    phone_instructions: String,
    #[serde(default)]
    first_message: String,
    #[serde(default)]
    conversation_timeout_secs: String,
    #[serde(default)]
    max_call_duration_secs: String,
    #[serde(default)]
    end_call_instructions: String,
    /// One phrase per line.
    #[serde(default)]
    end_call_phrases: String,
    llm_provider_id: Option<LlmProviderId>,
    model: Option<String>,
    #[serde(default)]
    temperature: String,
    transfer_number: Option<String>,
    #[serde(default)]
    tools: Vec<AgentTool>,
    speech_to_text_provider_id: Option<SpeechProviderId>,
    text_to_speech_provider_id: Option<SpeechProviderId>,
    /// One `language=voice` a line.
    #[serde(default)]
    voices: String,
    #[serde(default)]
    end_of_turn_silence_ms: String,
    #[serde(default)]
    patience_ms: String,
    /// A ticked checkbox.
    backchannels_interrupt: Option<String>,
    #[serde(default)]
    filler: String,
    #[serde(default)]
    filler_after_ms: String,
}

/// A whole number of seconds typed into `field`.
fn seconds(field: &str, text: &str) -> Result<i64, Invalid> {
    text.trim().parse().map_err(|_| Invalid::new(field, "must be a whole number of seconds"))
}

/// A whole number of milliseconds typed into `field`.
fn milliseconds(field: &str, text: &str) -> Result<i64, Invalid> {
    text.trim().parse().map_err(|_| Invalid::new(field, "must be a whole number of milliseconds"))
}

/// `language=voice` lines.
fn voices(text: &str) -> Result<std::collections::BTreeMap<String, String>, Invalid> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once('=') {
            Some((language, voice)) => Ok((language.trim().to_owned(), voice.trim().to_owned())),
            None => Err(Invalid::new("speech.voices", format!("`{line}`: write one `language=voice` a line, e.g. fr=juliette"))),
        })
        .collect()
}

impl AgentForm {
    fn into_fields(self) -> Result<AgentFields, Invalid> {
        let temperature = match self.temperature.trim() {
            "" => None,
            text => Some(text.parse().map_err(|_| Invalid::new("temperature", "must be a number such as 0.7"))?),
        };
        Ok(AgentFields {
            name: Some(self.name),
            description: Some(self.description),
            instructions: Some(self.instructions),
            phone_instructions: Some(self.phone_instructions),
            first_message: Some(self.first_message),
            conversation_timeout_secs: Some(seconds("conversation_timeout_secs", &self.conversation_timeout_secs)?),
            max_call_duration_secs: Some(seconds("max_call_duration_secs", &self.max_call_duration_secs)?),
            end_call_instructions: Some(self.end_call_instructions),
            end_call_phrases: Some(self.end_call_phrases.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()),
            llm_provider_id: Some(self.llm_provider_id),
            model: Some(self.model),
            temperature: Some(temperature),
            voice: None,
            tools: Some(self.tools),
            transfer_number: Some(self.transfer_number),
            speech: Some(AgentSpeech {
                speech_to_text_provider_id: self.speech_to_text_provider_id,
                text_to_speech_provider_id: self.text_to_speech_provider_id,
                voices: voices(&self.voices)?,
                end_of_turn_silence_ms: milliseconds("speech.end_of_turn_silence_ms", &self.end_of_turn_silence_ms)?,
                patience_ms: milliseconds("speech.patience_ms", &self.patience_ms)?,
                backchannels_interrupt: self.backchannels_interrupt.is_some(),
                filler: self.filler,
                filler_after_ms: milliseconds("speech.filler_after_ms", &self.filler_after_ms)?,
            }),
        })
    }
}

/// `POST /agents/{id}`: saves the form as a new version (when something changed).
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<AgentId>,
    Submitted { viewer, form }: Submitted<AgentForm>,
) -> Result<Response, ConsoleError> {
    let result = match form.into_fields() {
        Ok(fields) => api::update(State(state.clone()), viewer.caller(), ApiPath(id), ApiJson(fields)).await,
        Err(invalid) => Err(ApiError::Invalid(invalid)),
    };
    match result {
        Ok(saved) => Ok(redirect_with_notice(&viewer, &format!("/agents/{id}"), &format!("Saved as version {}.", saved.version))),
        Err(e) => {
            let errors = FormErrors::from_api(e)?;
            let agent = api::get(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0;
            agent_page(state, &viewer, agent, errors).await
        }
    }
}

/// `POST /agents/{id}/versions/{version}/restore`: makes that version's settings current again
/// (as a new version, so nothing is lost).
pub async fn restore(
    State(state): State<AppState>,
    Path((id, version)): Path<(AgentId, i64)>,
    Submitted { viewer, .. }: Submitted<super::Empty>,
) -> Result<Response, ConsoleError> {
    let versions = api::versions(State(state.clone()), viewer.caller(), ApiPath(id)).await?.0.data;
    let old = versions.into_iter().find(|v| v.version == version).ok_or(ApiError::NotFound("agent version"))?;
    let saved = api::update(State(state), viewer.caller(), ApiPath(id), ApiJson(AgentFields::from_spec(old.spec))).await?.0;
    Ok(redirect_with_notice(&viewer, &format!("/agents/{id}"), &format!("Version {version} restored as version {}.", saved.version)))
}
