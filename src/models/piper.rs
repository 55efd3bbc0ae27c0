//! A Piper voice (VITS, an ONNX model): IPA phonemes in, 22.05 kHz speech out. The voice's
//! JSON config maps each phoneme to ids and gives the rate and the sampling scales; a sentence
//! is `^`, then each phoneme followed by the pad `_`, then `$`. Phonemes come from espeak-ng
//! (`espeak`), as in Piper's own training.

use std::collections::HashMap;
use std::path::Path;

use ort::environment::Environment;
use ort::value::Tensor;
use serde::Deserialize;

use super::onnx::{ModelError, SessionPool};
use crate::audio::Audio;

/// The parts of a voice's config used here.
#[derive(Deserialize)]
struct VoiceConfig {
    audio: AudioConfig,
    inference: InferenceConfig,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    espeak: EspeakConfig,
}

#[derive(Deserialize)]
struct AudioConfig {
    sample_rate: u32,
}

#[derive(Deserialize)]
struct InferenceConfig {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

#[derive(Deserialize)]
struct EspeakConfig {
    voice: String,
}

pub struct PiperVoice {
    pool: SessionPool,
    ids: HashMap<char, Vec<i64>>,
    rate: u32,
    scales: [f32; 3],
    /// The espeak-ng voice that spells its phonemes.
    pub espeak_voice: String,
}

impl PiperVoice {
    /// The voice in `model` with its `config`, `sessions` sentences at once.
    pub fn load(runtime: &Environment, model: &Path, config: &Path, sessions: usize) -> Result<Self, ModelError> {
        let unreadable = |reason: String| ModelError::Load { path: config.to_owned(), reason };
        let config: VoiceConfig = serde_json::from_slice(&std::fs::read(config).map_err(|e| unreadable(e.to_string()))?)
            .map_err(|e| unreadable(e.to_string()))?;
        let ids = config
            .phoneme_id_map
            .into_iter()
            .filter_map(|(phoneme, ids)| {
                let mut chars = phoneme.chars();
                chars.next().filter(|_| chars.next().is_none()).map(|c| (c, ids))
            })
            .collect();
        Ok(Self {
            pool: SessionPool::load(runtime, model, sessions)?,
            ids,
            rate: config.audio.sample_rate,
            scales: [config.inference.noise_scale, config.inference.length_scale, config.inference.noise_w],
            espeak_voice: config.espeak.voice,
        })
    }

    /// The ids the model reads for `phonemes`; phonemes the voice does not know are skipped.
    fn ids(&self, phonemes: &str) -> Vec<i64> {
        let (pad, start, end) = (self.ids[&'_'][0], self.ids[&'^'][0], self.ids[&'$'][0]);
        let mut ids = vec![start, pad];
        for phoneme in phonemes.chars() {
            if let Some(known) = self.ids.get(&phoneme) {
                ids.extend(known);
                ids.push(pad);
            }
        }
        ids.push(end);
        ids
    }

    /// `phonemes` (one sentence) spoken. Runs the model on this thread: call it from the
    /// blocking pool.
    pub fn speak(&self, phonemes: &str) -> Result<Audio, ModelError> {
        let ids = self.ids(phonemes);
        let length = ids.len();
        let input = Tensor::from_array(([1usize, length], ids))?;
        let lengths = Tensor::from_array(([1usize], vec![length as i64]))?;
        let scales = Tensor::from_array(([3usize], self.scales.to_vec()))?;
        let samples = self.pool.with(|session| {
            let outputs = session.run(ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales])?;
            let (_, audio) = outputs[0].try_extract_tensor::<f32>()?;
            Ok::<_, ModelError>(audio.to_vec())
        })?;
        Ok(Audio { rate: self.rate, samples: to_pcm(&samples) })
    }
}

/// The model's floats as 16-bit samples, scaled as Piper does: the loudest to just below full
/// scale (never louder than 0.01 of it would be amplified into noise).
fn to_pcm(samples: &[f32]) -> Vec<i16> {
    let peak = samples.iter().fold(0.01f32, |peak, s| peak.max(s.abs()));
    let gain = 32767.0 / peak;
    samples.iter().map(|s| (s * gain).clamp(-32768.0, 32767.0) as i16).collect()
}

#[cfg(test)]
mod tests {
    use super::to_pcm;

    #[test]
    fn output_is_scaled_to_full_scale_and_quiet_output_is_not_amplified_into_noise() {
        assert_eq!(to_pcm(&[0.5, -0.25, 0.0]), vec![32767, -16383, 0]);
        assert_eq!(to_pcm(&[0.001, -0.001]), vec![3276, -3276]);
    }
}
