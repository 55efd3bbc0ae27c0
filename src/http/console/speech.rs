//! Settings → Speech providers: the vendors `media_stream` calls hear and speak through, and
//! the server's own engines (ready, being installed, or missing). The API verifies each vendor
//! before it is stored; when the vendor refuses, the page says why beside the field to fix.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Submitted, Viewer, redirect_with_notice};
use super::{ConsoleError, Cursor, Empty, FormErrors, Layout, first_page};
use crate::domain::ids::SpeechProviderId;
use crate::domain::provider::{SpeechProvider, SpeechProviderKind};
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::api::speech_engines::{self, EngineStatus, SpeechEngines};
use crate::http::api::speech_providers::{self as api, CreateSpeechProvider};
use crate::http::error::ApiError;
use crate::http::input::{ApiJson, ApiPath};

/// The add form as typed: blank fields are left out.
#[derive(Clone, Default, Deserialize)]
pub struct SpeechProviderForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    api_key: String,
    #[serde(default)]
    transcription_model: String,
    #[serde(default)]
    speech_model: String,
    #[serde(default)]
    default_voice: String,
}

impl SpeechProviderForm {
    fn into_request(self) -> Result<CreateSpeechProvider, Invalid> {
        let given = |text: String| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        Ok(CreateSpeechProvider {
            name: self.name,
            kind: self.kind.parse().map_err(|e: String| Invalid::new("kind", e))?,
            base_url: given(self.base_url),
            api_key: given(self.api_key),
            transcription_model: given(self.transcription_model),
            speech_model: given(self.speech_model),
            default_voice: given(self.default_voice),
        })
    }
}

#[derive(Template)]
#[template(path = "settings/speech_providers.html")]
struct SpeechProvidersPage {
    layout: Layout,
    providers: Vec<SpeechProvider>,
    next_cursor: Option<String>,
    kinds: &'static [SpeechProviderKind],
    form: SpeechProviderForm,
    errors: FormErrors,
    engines: SpeechEngines,
}

async fn page(
    state: AppState,
    viewer: &Viewer,
    cursor: Option<String>,
    form: SpeechProviderForm,
    errors: FormErrors,
) -> Result<Response, ConsoleError> {
    let engines = speech_engines::get(State(state.clone()), viewer.caller()).await.0;
    let list = api::list(State(state), viewer.caller(), first_page(cursor)).await?.0;
    let status = if errors.any() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = SpeechProvidersPage {
        layout: viewer.layout("Speech providers", "settings"),
        providers: list.data,
        next_cursor: list.next_cursor,
        kinds: SpeechProviderKind::ALL,
        form,
        errors,
        engines,
    };
    Ok((status, viewer.render(&page)).into_response())
}

/// `GET /settings/speech-providers`.
pub async fn list(State(state): State<AppState>, viewer: Viewer, Query(q): Query<Cursor>) -> Result<Response, ConsoleError> {
    page(state, &viewer, q.cursor, SpeechProviderForm { kind: "openai".into(), ..Default::default() }, FormErrors::default()).await
}

/// `POST /settings/speech-providers`: verified with the vendor, then stored.
pub async fn add(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<SpeechProviderForm>,
) -> Result<Response, ConsoleError> {
    let typed = SpeechProviderForm { api_key: String::new(), ..form.clone() };
    let created = match form.into_request() {
        Ok(request) => api::create(State(state.clone()), viewer.caller(), ApiJson(request)).await,
        Err(invalid) => Err(invalid.into()),
    };
    match created {
        Ok((_, created)) => Ok(redirect_with_notice(
            &viewer,
            "/settings/speech-providers",
            &format!(
                "“{}” added: it answered a test. Choose it in an agent's speech settings, or it serves agents that name none.",
                created.name
            ),
        )),
        Err(e) => page(state, &viewer, None, typed, FormErrors::from_api(e)?).await,
    }
}

/// `POST /settings/speech-providers/{id}/remove`.
pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<SpeechProviderId>,
    Submitted { viewer, .. }: Submitted<Empty>,
) -> Result<Response, ConsoleError> {
    match api::delete(State(state), viewer.caller(), ApiPath(id)).await {
        Ok(_) => Ok(redirect_with_notice(&viewer, "/settings/speech-providers", "The speech provider was removed.")),
        Err(ApiError::Conflict(why)) => Ok(redirect_with_notice(&viewer, "/settings/speech-providers", &super::sentence(&why))),
        Err(e) => Err(e.into()),
    }
}
