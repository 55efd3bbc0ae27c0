//! The embedded speech engines as installed by `switchboard models install` (scripts/test.sh
//! installs them and names the folder in `SWITCHBOARD_TEST_MODELS`): Whisper hears sentences
//! spoken down a phone line, what the embedded voices say transcribes back, and a whole call
//! runs with no speech vendor at all.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchboard::audio::Audio;
use switchboard::models::SpeechEngines;
use switchboard::models::scoring::{word_edits, word_error_rate};
use switchboard::providers::speech::embedded::{ESPEAK_VOICE, EmbeddedSpeech, NEURAL_VOICE};
use switchboard::providers::speech::{SpeakingVoice, SpeechToText, TextToSpeech};

use switchboard::telephony::twilio::dev_phone::{self, CallerAction, PhoneEvent};
use tokio::sync::mpsc;

use crate::media_streams::{agent_says, dial_speaking_with, hear, interrupted};
use crate::support::LINE_NUMBER;
use crate::support::fake_index::FakeIndex;
use crate::support::fake_llm::{FakeLlm, Reply};
use crate::turn_models::{installed_models_dir, over_the_phone, spoken};

/// What was said and what was heard across a call: the word error rate over all of it (one
/// short phrase misheard says little; the call as a whole does).
#[derive(Default)]
struct Listening {
    edits: usize,
    words: usize,
    pairs: Vec<(String, String)>,
}

impl Listening {
    /// Notes a phrase; one heard as nothing like what was said fails at once.
    fn heard(&mut self, said: &str, heard: &str) {
        let (edits, words) = word_edits(said, heard);
        assert!(edits * 2 <= words, "said {said:?}, heard {heard:?}");
        (self.edits, self.words) = (self.edits + edits, self.words + words);
        self.pairs.push((said.to_owned(), heard.to_owned()));
    }

    /// Notes what the phone hears of the agent saying `said`: its utterances until about as
    /// many words have come (the phone hears one utterance as two when a loaded synthesiser
    /// pauses between its pieces).
    async fn hears(&mut self, said: &str, events: &mut mpsc::Receiver<PhoneEvent>) {
        let wanted = said.split_whitespace().count() * 3 / 4;
        let mut heard = agent_says(events).await;
        while heard.split_whitespace().count() < wanted {
            heard = format!("{heard} {}", agent_says(events).await);
        }
        self.heard(said, &heard);
    }

    fn word_error_rate(&self) -> f64 {
        self.edits as f64 / self.words.max(1) as f64
    }
}

/// The engines as the server loads them, once for the whole test binary.
pub async fn engines() -> Arc<SpeechEngines> {
    static ENGINES: tokio::sync::OnceCell<Arc<SpeechEngines>> = tokio::sync::OnceCell::const_new();
    ENGINES
        .get_or_init(|| async {
            Arc::new(SpeechEngines::load(&installed_models_dir()).await.expect("the engines load").expect("the engines are installed"))
        })
        .await
        .clone()
}

/// What the embedded speech says for `text` in `voice` and `language`, whole.
pub async fn said(speech: &EmbeddedSpeech, text: &str, voice: &str, language: &str) -> Audio {
    let mut pieces = speech.synthesize(text, &SpeakingVoice::new(voice, language));
    let mut audio = Audio { rate: 0, samples: Vec::new() };
    while let Some(piece) = pieces.recv().await {
        let piece = piece.expect("speech is synthesised");
        audio.rate = piece.rate;
        audio.samples.extend(piece.samples);
    }
    audio
}

/// Measured over several sentences, as the benchmark does: the voice's samples vary a little
/// with the processor (ONNX Runtime chooses its kernels by the instruction set at run time), so
/// how one sentence is heard does too, and one misheard word in a short sentence says little.
#[tokio::test]
async fn whisper_hears_a_caller_on_the_phone_line() {
    let speech = EmbeddedSpeech::new(engines().await);
    let mut neural = Listening::default();
    for sentence in [
        "I would like to book a table for two people tonight.",
        "My order number is four two seven and it has not arrived.",
        "Could you move my appointment to Thursday afternoon?",
    ] {
        let caller = over_the_phone(&said(&speech, sentence, NEURAL_VOICE, "en-US").await);
        neural.heard(sentence, &speech.transcribe(&caller, "en-US").await.unwrap());
    }
    assert!(neural.word_error_rate() <= 0.15, "WER {} over {:?}", neural.word_error_rate(), neural.pairs);
    // espeak-ng's robotic voice is harder to hear, but still understood.
    let sentence = "Can you tell me when you open tomorrow?";
    let heard = speech.transcribe(&spoken(sentence), "en-US").await.unwrap();
    assert!(word_error_rate(sentence, &heard) <= 0.3, "heard {heard:?} for {sentence:?}");
}

#[tokio::test]
async fn what_the_english_voices_say_transcribes_back() {
    let speech = EmbeddedSpeech::new(engines().await);
    // espeak-ng's robotic voice is harder to hear than the neural one.
    for (voice, bound) in [(NEURAL_VOICE, 0.15), (ESPEAK_VOICE, 0.4)] {
        let text = "Your table for two is booked for seven this evening.";
        let audio = said(&speech, text, voice, "en-US").await;
        assert_eq!(audio.rate, 22_050, "{voice}");
        let heard = speech.transcribe(&over_the_phone(&audio), "en-US").await.unwrap();
        let wer = word_error_rate(text, &heard);
        assert!(wer <= bound, "{voice} said {text:?}, heard {heard:?}: WER {wer}");
    }
}

#[tokio::test]
async fn every_language_is_spoken_and_the_neural_voice_leaves_other_languages_to_espeak() {
    let speech = EmbeddedSpeech::new(engines().await);
    let english = said(&speech, "1 2 3 4 5", NEURAL_VOICE, "en-US").await;
    for language in switchboard::domain::languages::all() {
        for locale in &language.locales {
            let audio = said(&speech, "1 2 3 4 5", NEURAL_VOICE, locale).await;
            let seconds = audio.samples.len() as f64 / f64::from(audio.rate);
            assert!((1.0..8.0).contains(&seconds), "{locale}: {seconds} s of audio for five numbers");
            if language.id != "en" {
                assert_ne!(audio, english, "{locale} is not spoken in English");
            }
        }
    }
}

/// A whole call with no speech vendor at all: the server hears and speaks with the embedded
/// engines (and the turn-taking models), the caller is the dev phone speaking with Piper's voice
/// and listening through Whisper. What the agent heard, what the caller heard, a backchannel
/// over the agent, keys, a barge-in and endConversation.
#[tokio::test]
async fn a_whole_call_heard_and_spoken_by_the_embedded_engines() {
    let app = crate::turn_models::app_with_the_models().await;
    let llm = FakeLlm::start().await;
    let provider = json!({ "name": "fake", "base_url": llm.base_url, "default_model": "fake-model" });
    let greeting = "Hello, this is Ava. How can I help?";
    let agent = json!({ "name": "Ava", "first_message": greeting,
        "llm_provider_id": app.post("/api/v1/llm-providers", provider).await.expect(201)["id"].clone() });
    let line = app.phone_line(agent).await;
    // No speech provider: the embedded engines hear and speak.
    let number = format!("/api/v1/phone-numbers/{}", line.number_id);
    assert_eq!(app.patch(&number, json!({ "mode": "media_stream" })).await.expect(200)["mode"], "media_stream");
    let long_answer = "Order forty two found. I can move it to Tuesday, Wednesday or Friday, whichever suits you best. \
                       If none of those days work, I can hold it at our depot for you to collect. \
                       Our couriers deliver between nine in the morning and five in the afternoon, every day of the week.";
    llm.script([
        Reply::says("Your order ships on Monday."),
        Reply::says(long_answer),
        Reply::calls(
            "endConversation",
            json!({ "summary": "Moved order 42 to Tuesday.", "closing_message": "All set, thank you for calling." }),
        ),
    ]);

    let speech = Arc::new(EmbeddedSpeech::new(engines().await));
    // The words said over the answer are synthesised ahead, so they start when the test says
    // however busy the machine is.
    let on_the_line = |audio: Audio| audio.at_rate(8000).expect("speech resamples").samples;
    let backchannel = on_the_line(said(&speech, "Yeah, okay.", NEURAL_VOICE, "en-US").await);
    let answer = on_the_line(said(&speech, "Tuesday, please.", NEURAL_VOICE, "en-US").await);
    let dial = dial_speaking_with(&app, &line, speech.clone(), speech, NEURAL_VOICE);
    let (act, actions) = mpsc::channel(8);
    let (tell, mut events) = mpsc::channel(64);
    let call = tokio::spawn(dev_phone::call(dial, actions, tell));

    // What the caller heard of the agent, through the phone's own Whisper.
    let mut phone = Listening::default();
    phone.hears(greeting, &mut events).await;
    act.send(CallerAction::Say("I need to change my order.".into())).await.unwrap();
    phone.hears("Your order ships on Monday.", &mut events).await;
    act.send(CallerAction::Digits("42#".into())).await.unwrap();
    // Over the long answer (some seventeen seconds from its first word, however loaded the
    // machine) the caller says "yeah, okay", which lets it go on, then answers, which cuts it
    // off (once heard out and transcribed: a short utterance may be a backchannel).
    hear(&mut events, |event| matches!(event, PhoneEvent::Speaking).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    act.send(CallerAction::Audio(backchannel)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    act.send(CallerAction::Audio(answer)).await.unwrap();
    let heard = interrupted(&mut events).await;
    assert!(!heard.contains("afternoon"), "the phone heard only the start of the answer: {heard:?}");
    phone.hears("All set, thank you for calling.", &mut events).await;
    tokio::time::timeout(Duration::from_secs(30), call).await.unwrap().unwrap().unwrap();
    assert!(phone.word_error_rate() <= 0.25, "the agent's words transcribe back: {:?}", phone.pairs);

    let id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let detail = app.until(&format!("/api/v1/calls/{id}"), |d| d["ended_reason"].is_string()).await;
    assert_eq!(detail["ended_reason"], "agent_ended", "{detail}");
    let turns: Vec<(String, String, bool)> = detail["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["role"].as_str().unwrap().to_owned(), t["text"].as_str().unwrap().to_owned(), t["interrupted"] == true))
        .collect();
    let callers: Vec<&str> = turns.iter().filter(|(role, ..)| role == "caller").map(|(_, text, _)| text.as_str()).collect();
    assert_eq!(callers.len(), 3, "the backchannel is no turn: {turns:?}");
    // What the agent heard of the caller, through the server's Whisper.
    let mut agent = Listening::default();
    agent.heard("I need to change my order.", callers[0]);
    assert!(callers[1].contains("42#"), "{turns:?}");
    agent.heard("Tuesday, please.", callers[2]);
    assert!(agent.word_error_rate() <= 0.25, "the agent heard the caller: {:?}", agent.pairs);
    let cut = turns.iter().find(|(.., interrupted)| *interrupted).expect("the long answer was cut");
    assert!(cut.1.starts_with("Order forty two found.") && !cut.1.contains("afternoon"), "only what played is kept: {turns:?}");
}

/// Where scripts/test.sh kept the wheels the models were installed from.
fn saved_wheels() -> std::path::PathBuf {
    std::env::var("SWITCHBOARD_TEST_WHEELS")
        .expect("SWITCHBOARD_TEST_WHEELS is not set: run the suite with scripts/test.sh, which keeps the wheels")
        .into()
}

/// A server with an index to install from and an agent on a `media_stream` number.
async fn server_installing_from(wheels: std::path::PathBuf) -> (crate::support::TestApp, crate::support::PhoneLine, FakeLlm) {
    let index = FakeIndex::serve(wheels).await;
    let app = crate::support::spawn_app_with(crate::support::Backend::Sqlite, |config| {
        config.models_auto_install = true;
        config.models_index_url = index.url.parse().unwrap();
    })
    .await;
    let status = app.get("/api/v1/speech-engines").await.expect(200);
    assert_eq!((status["status"].as_str(), status["auto_install"].as_bool()), (Some("not_installed"), Some(true)), "{status}");
    let llm = FakeLlm::start().await;
    let provider = json!({ "name": "fake", "base_url": llm.base_url, "default_model": "fake-model" });
    let agent = json!({ "name": "Ava", "first_message": "Hello.",
        "llm_provider_id": app.post("/api/v1/llm-providers", provider).await.expect(201)["id"].clone() });
    let line = app.phone_line(agent).await;
    // Nobody hears or speaks for the agent yet: saving the number starts the installation.
    let number = format!("/api/v1/phone-numbers/{}", line.number_id);
    assert_eq!(app.patch(&number, json!({ "mode": "media_stream" })).await.expect(200)["mode"], "media_stream");
    (app, line, llm)
}

#[tokio::test]
async fn a_server_without_the_engines_installs_them_when_a_call_needs_them() {
    let (app, line, _llm) = server_installing_from(saved_wheels()).await;
    let installing = app.get("/api/v1/speech-engines").await.expect(200);
    assert_eq!(installing["status"], "installing", "{installing}");
    // A call meanwhile hears an apology, not silence, and its record says why.
    let refused = app.ring(&line, &crate::support::sid("CA", 'i')).await;
    assert!(refused.text.contains("still being set up") && refused.text.contains("<Hangup/>"), "{}", refused.text);
    assert_eq!(app.get("/api/v1/calls").await.expect(200)["data"][0]["ended_reason"], "speech_not_ready");

    let mut status = installing;
    for _ in 0..600 {
        status = app.get("/api/v1/speech-engines").await.expect(200);
        if status["status"] != "installing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(status["status"], "ready", "{status}");
    assert_eq!(status["voices"], json!(["joe", "espeak"]));
    let manifest = std::fs::read_to_string(app.data_dir.path().join("models/manifest.json")).unwrap();
    assert!(manifest.contains("whisper-base") && manifest.contains("piper-joe"), "{manifest}");
    // Now calls are answered.
    let answered = app.ring(&line, &crate::support::sid("CA", 'j')).await;
    assert!(answered.text.contains("<Stream url=\"ws://"), "{}", answered.text);
    // The operator sees what is installed and who hears and speaks on each number.
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--data-dir", app.data_dir.path().to_str().unwrap(), "--database-url", &app.database_url, "models", "list"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains("whisper-base") && listed.contains("piper-joe") && !listed.contains("not installed"), "{listed}");
    assert!(listed.contains(&format!("{LINE_NUMBER}  agent “Ava”  hears with built-in, speaks with built-in (voice joe)")), "{listed}");
}

#[tokio::test]
async fn a_failed_installation_says_why_and_calls_are_turned_away() {
    let empty = tempfile::tempdir().unwrap();
    let (app, line, _llm) = server_installing_from(empty.path().to_owned()).await;
    let mut status = app.get("/api/v1/speech-engines").await.expect(200);
    for _ in 0..100 {
        if status["status"] != "installing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = app.get("/api/v1/speech-engines").await.expect(200);
    }
    assert_eq!(status["status"], "failed", "{status}");
    assert!(status["detail"].as_str().unwrap().contains("onnxruntime"), "the reason names what was missing: {status}");
    let refused = app.ring(&line, &crate::support::sid("CA", 'k')).await;
    assert!(refused.text.contains("not taking calls"), "{}", refused.text);
    assert_eq!(app.get("/api/v1/calls").await.expect(200)["data"][0]["ended_reason"], "no_speech_provider");
}

/// `switchboard dial --audio` from the terminal on a number the built-in engines serve: with no
/// `--speech-url`, the phone speaks and listens with the engines installed in the data folder,
/// in the agent's own voice.
#[tokio::test]
async fn dial_audio_speaks_and_listens_with_the_built_in_engines() {
    let app = crate::turn_models::app_with_the_models().await;
    let (llm, line) = crate::conversations::line_with_model(&app, json!({ "name": "Ava", "first_message": "Hi, this is Ava." })).await;
    // Keyed to what the caller says, as a model answers: the server may hear the goodbye as two
    // turns and ask again, and a short "goodbye" alone is easily misheard ("Dubai").
    llm.answer("open", Reply::says("We open at nine tomorrow."));
    let goodbye = Reply::calls("endConversation", json!({ "summary": "Opening hours.", "closing_message": "Thank you for calling." }));
    llm.answer("thank", goodbye.clone());
    llm.answer("bye", goodbye);
    let number = format!("/api/v1/phone-numbers/{}", line.number_id);
    app.patch(&number, json!({ "mode": "media_stream" })).await.expect(200);
    let record = app.data_dir.path().join("heard.wav");
    let heard = record.to_str().unwrap();
    let stdout = app
        .dial(["--audio", "--say", "When do you open tomorrow?", "--say", "Goodbye and thank you for your help.", "--record", heard])
        .await;
    let id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let detail = app.until(&format!("/api/v1/calls/{id}"), |d| d["ended_reason"].is_string()).await;
    assert!(stdout.contains("call ended by the agent"), "{stdout}\nthe server heard: {}", detail["transcript"]);
    // What the phone printed of the agent (utterances close together may come as one line).
    let agent_lines: Vec<&str> = stdout.lines().filter_map(|line| line.strip_prefix("agent: ")).collect();
    let mut phone = Listening::default();
    phone.heard("Hi, this is Ava. We open at nine tomorrow. Thank you for calling.", &agent_lines.join(" "));
    assert!(phone.word_error_rate() <= 0.25, "{:?}\n{stdout}", phone.pairs);
    let caller =
        detail["transcript"].as_array().unwrap().iter().find(|t| t["role"] == "caller").unwrap()["text"].as_str().unwrap().to_owned();
    let mut agent = Listening::default();
    agent.heard("When do you open tomorrow?", &caller);
}
