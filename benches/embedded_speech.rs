//! The embedded speech engines on this machine, measured as an operator sizing a server needs
//! them. First the engines alone, on an idle machine, over a phone-quality set the benchmark
//! makes (Piper's voice saying ten caller sentences, sent through 8 kHz μ-law): Whisper's
//! real-time factor and word error rate, and each voice's time to the audio of a sentence (the
//! first audio of an answer). Then calls: N concurrent Media Streams calls against a server that
//! hears and speaks with the embedded engines (and the turn-taking models) and thinks with a stub
//! model of fixed latency; callers ring a second apart, and each waits for the greeting, then
//! says four sentences, each once the answer to the last has played. Printed per N: voice to voice (the caller's last word → the
//! answer's first frame) p50/p95, the server's CPU per call and memory, the word error rate of
//! what the agent heard, and the server's own account of each wait (end of turn, transcription,
//! model, synthesis, first frame). The server, the stub and the load generator are three
//! processes.
//!
//! `cargo bench --bench embedded_speech` with the models installed (`MODELS=DIR`, by default
//! `target/models/models`, where scripts/test.sh installs them); `CALLS=1,2,3,4` by default.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::audio::{Audio, g711};
use switchboard::domain::audit::Actor;
use switchboard::domain::org::Role;
use switchboard::domain::phone_number::ServiceMode;
use switchboard::models::SpeechEngines;
use switchboard::models::scoring::word_edits;
use switchboard::providers::speech::embedded::{ESPEAK_VOICE, EmbeddedSpeech, NEURAL_VOICE};
use switchboard::providers::speech::{SpeakingVoice, SpeechToText, TextToSpeech};
use switchboard::storage::{agents, phone_numbers, tokens};
use tokio_tungstenite::tungstenite::Message;

use support::{FromServer, Socket, mark_played, open_media_stream, runtime, spawn_role, streamed_answer, usage};

/// The stub model's delay before its first token.
const MODEL_DELAY: Duration = Duration::from_millis(200);
const FRAME: Duration = Duration::from_millis(20);
/// What each caller says, one sentence after another.
const TURNS: usize = 4;
/// Between one caller ringing and the next.
const STAGGER: Duration = Duration::from_millis(1100);
/// The target an operator sizes for: voice to voice p95 under this.
const TARGET_P95: Duration = Duration::from_millis(1500);

/// What callers say (and what the recognition set holds).
const SENTENCES: [&str; 10] = [
    "I would like to book a table for two people tonight.",
    "My order number is four two seven and it has not arrived.",
    "Can you tell me when you open tomorrow morning?",
    "I need to change the delivery address on my account.",
    "Is there a parking space near the restaurant?",
    "Please send the invoice to my email address.",
    "My flight was cancelled and I need a new booking.",
    "What is the balance on my credit card?",
    "I would like to speak to someone about a refund.",
    "Can I pay by card when the courier arrives?",
];

fn main() {
    match std::env::var(support::ROLE).as_deref() {
        Ok("stubs") => runtime().block_on(serve_model()),
        Ok("server") => runtime().block_on(serve_switchboard()),
        _ => runtime().block_on(measure()),
    }
}

fn models_dir() -> PathBuf {
    std::env::var("MODELS").map_or_else(|_| PathBuf::from("target/models/models"), PathBuf::from)
}

/// Role `stubs`: an OpenAI-compatible model answering one sentence after `MODEL_DELAY`.
async fn serve_model() {
    async fn complete() -> impl IntoResponse {
        streamed_answer(&["Sure, I can help you with that right away."], MODEL_DELAY)
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("http://{}/v1", listener.local_addr().unwrap());
    axum::serve(listener, axum::Router::new().route("/v1/chat/completions", axum::routing::post(complete))).await.unwrap();
}

/// Role `server`: Switchboard with the models of `MODELS`, one `media_stream` number and no
/// speech provider (the embedded engines hear and speak), thinking with the stub at
/// `STUBS_URL`. Prints its base URL, the Twilio account and an API token.
async fn serve_switchboard() {
    let models = std::fs::canonicalize(models_dir()).unwrap();
    let bench = support::serve(Some(std::env::var("STUBS_URL").unwrap()), |config| {
        std::os::unix::fs::symlink(&models, config.data_dir.join("models")).unwrap();
        (config.rate_limit_per_token, config.rate_limit_per_address) = (0, 0);
        config.models_auto_install = false;
    })
    .await;
    let agent = agents::get(&bench.db, bench.org, bench.agent).await.unwrap();
    let mut spec = agent.spec.clone();
    spec.first_message = "Hi, this is Ava.".into();
    spec.speech.filler = String::new();
    agents::update(&bench.db, bench.org, &agent, spec, Actor::System).await.unwrap();
    let media = phone_numbers::PhoneNumberChanges { mode: Some(ServiceMode::MediaStream), ..Default::default() };
    phone_numbers::update(&bench.db, bench.org, bench.number, media, Actor::System).await.unwrap();
    let (_, token) = tokens::create(&bench.db, bench.org, "bench", Role::Member, Actor::System).await.unwrap();
    println!("{} {} {}", bench.base, bench.account, token.as_str());
    std::future::pending::<()>().await;
}

/// `text` said by `voice`, whole, and how long the synthesis took.
async fn synthesized(speech: &EmbeddedSpeech, text: &str, voice: &str) -> (Audio, Duration) {
    let started = Instant::now();
    let mut pieces = speech.synthesize(text, &SpeakingVoice::new(voice, "en-US"));
    let mut audio = Audio { rate: 0, samples: Vec::new() };
    while let Some(piece) = pieces.recv().await {
        let piece = piece.unwrap();
        audio.rate = piece.rate;
        audio.samples.extend(piece.samples);
    }
    (audio, started.elapsed())
}

/// `audio` as μ-law at 8 kHz, the way a phone line carries it.
fn phone_line(audio: &Audio) -> Vec<u8> {
    let mut line = Vec::new();
    g711::encode_into(&audio.at_rate(8000).unwrap().samples, &mut line);
    line
}

fn seconds(audio: &Audio) -> f64 {
    audio.samples.len() as f64 / f64::from(audio.rate)
}

/// The engines alone, on an idle machine; returns each sentence as the caller's μ-law.
async fn measure_engines(speech: &EmbeddedSpeech) -> Vec<Vec<u8>> {
    let (mut neural, mut espeak, mut transcribing) = (Vec::new(), Vec::new(), Vec::new());
    let (mut edits, mut words, mut spoken, mut decoding) = (0, 0, 0.0, 0.0);
    let mut lines = Vec::new();
    for text in SENTENCES {
        let (audio, took) = synthesized(speech, text, NEURAL_VOICE).await;
        neural.push(took);
        espeak.push(synthesized(speech, text, ESPEAK_VOICE).await.1);
        let line = phone_line(&audio);
        let mut heard_audio = Vec::new();
        g711::decode_into(&line, &mut heard_audio);
        let caller = Audio { rate: 8000, samples: heard_audio };
        let started = Instant::now();
        let heard = speech.transcribe(&caller, "en-US").await.unwrap();
        let took = started.elapsed();
        transcribing.push(took);
        (spoken, decoding) = (spoken + seconds(&caller), decoding + took.as_secs_f64());
        let (e, w) = word_edits(text, &heard);
        (edits, words) = (edits + e, words + w);
        lines.push(line);
    }
    println!(
        "engines alone ({} caller sentences, {:.1} s of speech through 8 kHz μ-law): Whisper base word error rate {:.1}%, \
         real-time factor {:.2} (decode p50 {:.0} ms, max {:.0} ms, one thread); time to a sentence's audio: Piper joe p50 {:.0} ms, \
         max {:.0} ms; espeak-ng p50 {:.0} ms, max {:.0} ms",
        SENTENCES.len(),
        spoken,
        edits as f64 * 100.0 / words as f64,
        decoding / spoken,
        percentile(&mut transcribing, 0.5),
        percentile(&mut transcribing, 1.0),
        percentile(&mut neural, 0.5),
        percentile(&mut neural, 1.0),
        percentile(&mut espeak, 0.5),
        percentile(&mut espeak, 1.0),
    );
    lines
}

/// What the caller is doing.
#[derive(PartialEq)]
enum Step {
    /// Waiting for the agent's words to play out, then says line `next`.
    Listening {
        next: usize,
    },
    Speaking {
        line: usize,
        at: usize,
    },
    AwaitAnswer {
        since: Instant,
        line: usize,
    },
    Done,
}

/// One caller, playing Twilio in real time (frames each way, marks returned as their audio
/// plays), saying `lines` one after another; returns each answer's wait, voice to voice.
async fn converse(socket: Socket, call: u64, lines: [Arc<Vec<u8>>; TURNS]) -> Vec<Duration> {
    let (mut outgoing, mut incoming) = socket.split();
    let sid = format!("MZ{call:032x}");
    let silence = BASE64.encode([0xFFu8; 160]);
    let (mut sequence, mut chunk) = (1u64, 0u64);
    let mut waits = Vec::new();
    let mut played_until = Instant::now();
    // Whether the agent has said something since the caller last spoke.
    let mut heard_agent = false;
    let mut marks: VecDeque<(Instant, String)> = VecDeque::new();
    let mut step = Step::Listening { next: 0 };
    let mut tick = tokio::time::interval(FRAME);
    while step != Step::Done {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                let payload = match &mut step {
                    Step::Speaking { line, at } => {
                        let frame = lines[*line].get(*at * 160..(*at + 1) * 160);
                        *at += 1;
                        match frame {
                            Some(frame) => BASE64.encode(frame),
                            None => {
                                step = Step::AwaitAnswer { since: now, line: *line };
                                silence.clone()
                            }
                        }
                    }
                    _ => silence.clone(),
                };
                sequence += 1;
                chunk += 1;
                let media = json!({ "event": "media", "sequenceNumber": sequence.to_string(), "streamSid": sid,
                    "media": { "track": "inbound", "chunk": chunk.to_string(), "timestamp": (chunk * 20).to_string(), "payload": payload } });
                if outgoing.send(Message::Text(media.to_string().into())).await.is_err() {
                    break;
                }
                while marks.front().is_some_and(|(at, _)| *at <= now) {
                    let (_, name) = marks.pop_front().unwrap();
                    sequence += 1;
                    let _ = outgoing.send(mark_played(&sid, sequence, &name)).await;
                }
                // The agent's words have played and a moment has passed: the caller speaks.
                if let Step::Listening { next } = step
                    && heard_agent
                    && marks.is_empty()
                    && played_until + Duration::from_millis(600) < now
                {
                    heard_agent = false;
                    step = if next == lines.len() { Step::Done } else { Step::Speaking { line: next, at: 0 } };
                }
            }
            message = incoming.next() => {
                let Some(Ok(Message::Text(text))) = message else { break };
                let now = Instant::now();
                let message: FromServer = serde_json::from_str(&text).unwrap();
                match message.event {
                    "media" => {
                        played_until = played_until.max(now) + FRAME;
                        heard_agent = true;
                        if let Step::AwaitAnswer { since, line } = step {
                            waits.push(now - since);
                            step = Step::Listening { next: line + 1 };
                        }
                    }
                    "mark" => marks.push_back((played_until, message.mark.map(|m| m.name.to_owned()).unwrap_or_default())),
                    "clear" => {
                        played_until = now;
                        for (_, name) in marks.drain(..) {
                            sequence += 1;
                            let _ = outgoing.send(mark_played(&sid, sequence, &name)).await;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    sequence += 1;
    let stop = json!({ "event": "stop", "sequenceNumber": sequence.to_string(), "streamSid": sid, "stop": {} });
    let _ = outgoing.send(Message::Text(stop.to_string().into())).await;
    let _ = outgoing.close().await;
    waits
}

/// What the agent heard on the last `calls` calls (their caller turns, against what each said):
/// the word error rate under load.
async fn heard_under_load(http: &reqwest::Client, base: &str, token: &str, said: &[(u64, [usize; TURNS])]) -> f64 {
    let get = |path: String| http.get(format!("{base}{path}")).bearer_auth(token).send();
    let listed: Value = get(format!("/api/v1/calls?limit={}", said.len().max(1))).await.unwrap().json().await.unwrap();
    let (mut edits, mut words) = (0, 0);
    // Newest first; each call's sentences in the order placed.
    for (call, (_, lines)) in listed["data"].as_array().unwrap().iter().rev().zip(said) {
        let id = call["id"].as_str().unwrap();
        let detail: Value = get(format!("/api/v1/calls/{id}")).await.unwrap().json().await.unwrap();
        let heard: Vec<&str> = detail["transcript"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["role"] == "caller")
            .filter_map(|t| t["text"].as_str())
            .collect();
        for (i, line) in lines.iter().enumerate() {
            let (e, w) = word_edits(SENTENCES[*line], heard.get(i).copied().unwrap_or_default());
            (edits, words) = (edits + e, words + w);
        }
    }
    edits as f64 * 100.0 / words.max(1) as f64
}

fn percentile(values: &mut [Duration], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort();
    values[((values.len() as f64 * q) as usize).min(values.len() - 1)].as_secs_f64() * 1000.0
}

async fn measure() {
    let Some(engines) = SpeechEngines::load(&models_dir()).await.unwrap() else {
        return eprintln!("no models in {}: run `switchboard --data-dir target/models models install`", models_dir().display());
    };
    let speech = EmbeddedSpeech::new(Arc::new(engines));
    let lines: Vec<Arc<Vec<u8>>> = measure_engines(&speech).await.into_iter().map(Arc::new).collect();
    drop(speech);

    let sizes: Vec<usize> =
        std::env::var("CALLS").unwrap_or_else(|_| "1,2,3,4".into()).split(',').filter_map(|n| n.trim().parse().ok()).collect();
    let (mut stubs, stubs_url) = spawn_role("stubs", &[]).await;
    let (mut server, ready) = spawn_role("server", &[("STUBS_URL", &stubs_url), ("MODELS", &models_dir().display().to_string())]).await;
    let [base, account, token]: [String; 3] = ready.split(' ').map(str::to_owned).collect::<Vec<_>>().try_into().unwrap();
    let pid = server.id();
    let http = reqwest::Client::new();
    println!("server at rest: {:.0} MB resident (models loaded)", usage(pid).1 as f64 / 1024.0);
    let mut call = 0u64;
    for calls in sizes {
        let (cpu_before, _) = usage(pid);
        let started = Instant::now();
        let mut placed = Vec::new();
        let mut tasks = Vec::new();
        for placed_so_far in 0..calls {
            // Callers ring independently, not in step: a second apart.
            if placed_so_far > 0 {
                tokio::time::sleep(STAGGER).await;
            }
            call += 1;
            let said: [usize; TURNS] = std::array::from_fn(|turn| (TURNS * call as usize + turn) % SENTENCES.len());
            let socket = open_media_stream(&http, &base, &account, call).await;
            tasks.push(tokio::spawn(converse(socket, call, said.map(|line| lines[line].clone()))));
            placed.push((call, said));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_live = usage(pid).1;
        let mut waits = Vec::new();
        for task in tasks {
            waits.extend(task.await.unwrap_or_default());
        }
        let elapsed = started.elapsed().as_secs_f64();
        let (cpu_after, _) = usage(pid);
        // The record is complete once each call has ended.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let wer = heard_under_load(&http, &base, &token, &placed).await;
        let p95 = percentile(&mut waits, 0.95);
        let parts = [
            ("end_of_turn", Duration::ZERO),
            ("transcription", Duration::ZERO),
            ("first_token", MODEL_DELAY),
            ("first_audio", Duration::ZERO),
            ("first_frame", Duration::ZERO),
        ];
        let steps = support::voice_latency(&http, &base, &token, calls, &parts).await;
        println!(
            "{calls} concurrent calls ({} answers of {}): voice to voice p50 {:.0} ms, p95 {p95:.0} ms ({}); server CPU {:.0}% of a \
             core per call, {:.0} MB resident during the calls; word error rate of what the agent heard {wer:.1}%\n  as the server \
             measured it (the model's part beyond the stub's delay): {steps}",
            waits.len(),
            calls * TURNS,
            percentile(&mut waits, 0.5),
            if p95 <= TARGET_P95.as_secs_f64() * 1000.0 { "within 1.5 s" } else { "over 1.5 s" },
            (cpu_after - cpu_before) * 100.0 / (elapsed * calls as f64),
            rss_live as f64 / 1024.0,
        );
    }
    let _ = server.kill();
    let _ = stubs.kill();
}
