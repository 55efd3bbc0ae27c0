//! `/speech-engines`: the speech engines inside this server, which hear and speak for agents no
//! speech provider serves: whether they are ready, being installed in the background (and how
//! far along), or missing, and which voices they have.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::http::AppState;
use crate::http::auth::Caller;
use crate::models::Installation;
use crate::providers::speech::embedded::{ESPEAK_VOICE, NEURAL_VOICE};

/// The embedded speech engines of this server.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SpeechEngines {
    pub status: EngineStatus,
    /// The latest step of a background installation, or why it failed.
    pub detail: Option<String>,
    /// The voices agents may name: `joe` (Piper's neural English voice; other languages are
    /// spoken by espeak-ng) and `espeak` (espeak-ng in every language). Empty until ready.
    pub voices: Vec<&'static str>,
    /// Whether a call that needs the engines installs them in the background.
    pub auto_install: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EngineStatus {
    Ready,
    Installing,
    Failed,
    NotInstalled,
}

/// The embedded speech engines: ready, being installed, or missing.
#[utoipa::path(get, path = "/speech-engines", tag = "speech-engines", responses((status = 200, body = SpeechEngines)))]
pub async fn get(State(s): State<AppState>, _caller: Caller) -> Json<SpeechEngines> {
    Json(engines(&s))
}

fn engines(s: &AppState) -> SpeechEngines {
    let auto_install = s.config.models_auto_install;
    if let Some(engines) = s.models.speech() {
        let voices = if engines.voice.is_some() { vec![NEURAL_VOICE, ESPEAK_VOICE] } else { vec![ESPEAK_VOICE] };
        return SpeechEngines { status: EngineStatus::Ready, detail: None, voices, auto_install };
    }
    let (status, detail) = match s.models.installation() {
        Installation::Running(step) => (EngineStatus::Installing, Some(step)),
        Installation::Failed { reason, .. } => (EngineStatus::Failed, Some(reason)),
        Installation::NotStarted | Installation::Done => (EngineStatus::NotInstalled, None),
    };
    SpeechEngines { status, detail, voices: Vec::new(), auto_install }
}
