//! Models Switchboard runs itself, on its own CPU: where they come from (`catalog`), how they
//! are installed from the package registry (`install`, behind `switchboard models install`),
//! the ONNX Runtime they run on (`onnx`), and the turn-taking models of Media Streams calls:
//! Silero VAD (`vad`) and Smart Turn (`turn`). Nothing here is needed to run: without the models
//! a call hears by loudness and ends turns by silence.

pub mod catalog;
pub mod install;
pub mod onnx;
pub mod turn;
pub mod vad;

use std::path::Path;
use std::sync::Arc;

use self::catalog::{ONNX_RUNTIME, ONNX_RUNTIME_LIBRARY, SILERO_VAD, SILERO_VAD_FILE, SMART_TURN, SMART_TURN_FILE};
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
