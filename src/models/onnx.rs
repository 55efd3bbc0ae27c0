//! ONNX Runtime, loaded at run time from the shared library `models install` put in the models
//! folder (the `ort` crate with `load-dynamic`: nothing is downloaded or linked at build time),
//! and a pool of sessions per model so that calls on different cores infer side by side.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("ONNX Runtime could not be loaded from {path}: {reason}")]
    Runtime { path: PathBuf, reason: String },
    #[error("the model {path} could not be loaded: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
}

impl From<ort::Error> for ModelError {
    fn from(e: ort::Error) -> Self {
        Self::Inference(e.to_string())
    }
}

/// The process's one ONNX Runtime environment, from the first library loaded.
static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime from `library` once per process; later calls reuse it.
pub fn load_runtime(library: &Path) -> Result<&'static Environment, ModelError> {
    let loaded = RUNTIME.get_or_init(|| {
        ort::init_from(library)
            .map_err(|e| e.to_string())?
            .with_name("switchboard")
            .with_telemetry(false)
            .build()
            .map_err(|e| e.to_string())
    });
    loaded.as_ref().map_err(|reason| ModelError::Runtime { path: library.to_owned(), reason: reason.clone() })
}

/// Sessions of one model, each used by one inference at a time.
pub struct SessionPool {
    sessions: Vec<Mutex<Session>>,
}

impl SessionPool {
    /// `size` sessions of the model in `path`, each on one thread (calls are the parallelism).
    pub fn load(runtime: &Environment, path: &Path, size: usize) -> Result<Self, ModelError> {
        let failed = |e: String| ModelError::Load { path: path.to_owned(), reason: e };
        let session = || -> Result<Session, String> {
            let builder = Session::builder(runtime).map_err(|e| e.to_string())?;
            let builder = builder.with_optimization_level(GraphOptimizationLevel::Level3).map_err(|e| e.to_string())?;
            let builder = builder.with_intra_threads(1).map_err(|e| e.to_string())?;
            let builder = builder.with_inter_threads(1).map_err(|e| e.to_string())?;
            let mut builder = builder.with_config_entry("session.x64quantprecision", "1").map_err(|e| e.to_string())?;
            builder.commit_from_file(path).map_err(|e| e.to_string())
        };
        let sessions = (0..size.max(1)).map(|_| session().map(Mutex::new).map_err(failed)).collect::<Result<_, _>>()?;
        Ok(Self { sessions })
    }

    /// Runs `infer` on a free session, or waits for one.
    pub fn with<R>(&self, infer: impl FnOnce(&mut Session) -> R) -> R {
        for session in &self.sessions {
            if let Ok(mut session) = session.try_lock() {
                return infer(&mut session);
            }
        }
        let mut session = self.sessions[0].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        infer(&mut session)
    }
}
