//! Models Switchboard runs itself, on its own CPU: where they come from (`catalog`), how they
//! are installed from the package registry (`install`, behind `switchboard models install`,
//! converting Whisper for whisper.cpp in `whisper_ggml`), the ONNX Runtime they run on (`onnx`),
//! the turn-taking models of Media Streams calls, Silero VAD (`vad`) and Smart Turn (`turn`),
//! and the embedded speech engines: Whisper (`whisper`), Piper's neural voice (`piper`) and
//! espeak-ng (`espeak`). Nothing here is needed to run: without the models a call hears by
//! loudness, ends turns by silence, and needs a speech provider.

pub mod catalog;
pub mod espeak;
pub mod install;
pub mod onnx;
pub mod piper;
pub mod turn;
pub mod vad;
pub mod whisper;
pub mod whisper_ggml;

use std::path::Path;
use std::sync::Arc;

use self::catalog::{
    ONNX_RUNTIME, ONNX_RUNTIME_LIBRARY, PIPER_JOE, PIPER_JOE_CONFIG, PIPER_JOE_FILE, SILERO_VAD, SILERO_VAD_FILE, SMART_TURN,
    SMART_TURN_FILE, WHISPER_BASE, WHISPER_BASE_FILE,
};
use self::install::Manifest;
pub use self::onnx::ModelError;

/// Voice activity and end-of-turn detection, shared by every call.
pub struct TurnModels {
    pub vad: Arc<vad::SileroVad>,
    pub end_of_turn: Arc<turn::SmartTurn>,
    /// One per session of the end-of-turn model: the questions it answers at once.
    pub end_of_turn_slots: Arc<tokio::sync::Semaphore>,
}

impl TurnModels {
    /// The models installed in `models_dir`, or `None` when they are not (all three, runtime
    /// included, must be).
    pub fn load(models_dir: &Path) -> Result<Option<Self>, ModelError> {
        let manifest = Manifest::read(models_dir).map_err(|e| ModelError::Load { path: models_dir.to_owned(), reason: e.to_string() })?;
        if [ONNX_RUNTIME, SILERO_VAD, SMART_TURN].iter().any(|name| manifest.get(name).is_none()) {
            return Ok(None);
        }
        let runtime = onnx::load_runtime(&models_dir.join(ONNX_RUNTIME_LIBRARY))?;
        // A session per core: inference runs on the call's own task (VAD) or a blocking thread.
        let sessions = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Ok(Some(Self {
            vad: Arc::new(vad::SileroVad::load(runtime, &models_dir.join(SILERO_VAD_FILE), sessions)?),
            end_of_turn: Arc::new(turn::SmartTurn::load(runtime, &models_dir.join(SMART_TURN_FILE), sessions)?),
            end_of_turn_slots: Arc::new(tokio::sync::Semaphore::new(sessions)),
        }))
    }
}

/// The speech engines inside the server: Whisper hears every language; Piper's voice speaks
/// English when it is installed, and espeak-ng speaks every language.
pub struct SpeechEngines {
    pub whisper: Arc<whisper::Whisper>,
    pub voice: Option<Arc<piper::PiperVoice>>,
}

impl SpeechEngines {
    /// The engines installed in `models_dir`, or `None` when Whisper is not (or espeak-ng
    /// cannot be run: every voice needs it).
    pub async fn load(models_dir: &Path) -> Result<Option<Self>, ModelError> {
        let manifest = Manifest::read(models_dir).map_err(|e| ModelError::Load { path: models_dir.to_owned(), reason: e.to_string() })?;
        if manifest.get(WHISPER_BASE).is_none() {
            return Ok(None);
        }
        if !espeak::available().await {
            return Err(ModelError::Load {
                path: "espeak-ng".into(),
                reason: "it could not be run (Debian: `apt-get install espeak-ng`)".into(),
            });
        }
        let sessions = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let whisper_file = models_dir.join(WHISPER_BASE_FILE);
        let whisper = tokio::task::spawn_blocking(move || whisper::Whisper::load(&whisper_file, sessions))
            .await
            .map_err(|e| ModelError::Inference(e.to_string()))??;
        let voice = match (manifest.get(PIPER_JOE), manifest.get(ONNX_RUNTIME)) {
            (Some(_), Some(_)) => {
                let runtime = onnx::load_runtime(&models_dir.join(ONNX_RUNTIME_LIBRARY))?;
                Some(Arc::new(piper::PiperVoice::load(
                    runtime,
                    &models_dir.join(PIPER_JOE_FILE),
                    &models_dir.join(PIPER_JOE_CONFIG),
                    sessions,
                )?))
            }
            _ => None,
        };
        Ok(Some(Self { whisper: Arc::new(whisper), voice }))
    }
}

/// What the models folder held when the server started, loaded; a part is absent when it is
/// not installed (or could not be loaded, which the server logs).
#[derive(Default)]
pub struct LoadedModels {
    pub turn: Option<TurnModels>,
    pub speech: Option<Arc<SpeechEngines>>,
}
