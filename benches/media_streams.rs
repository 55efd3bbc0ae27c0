//! Density of Media Streams calls, measured as an operator would see it: the Switchboard server,
//! the stubs (an OpenAI-compatible model and speech server of fixed latency) and the load
//! generator run as three processes (this benchmark runs itself again in the `stubs` and
//! `server` roles), so the server's figures, read from `/proc/<pid>`, are its own.
//!
//! The generator plays Twilio for N concurrent calls: 20 ms of μ-law every 20 ms each way, the
//! playback buffer with its marks (returned when the audio before them has played) and `clear`.
//! Each caller waits for the greeting to play, speaks, hears the start of the answer, speaks over
//! it (a barge-in: the agent interrupts on any speech), is answered again, and hangs up.
//! Printed: the server's CPU and memory per call, the pacing of the frames the server sends
//! (how far apart they arrive within a piece of speech, after its lead, off 20 ms, p50/p99), barge-in (the frame that confirms speech →
//! `clear` arriving, p50/p99) and the latency the server adds to a turn (the caller's last
//! speech → the answer's first frame, minus the end-of-turn silence and the stubs' delays), then
//! the server's own account of where that went (each answer's stored voice latency, read back
//! through the API).
//!
//! `cargo bench --bench media_streams` (`CALLS=100,1000` by default).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

mod support;

use axum::body::Body;
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::audio::g711;
use switchboard::domain::audit::Actor;
use switchboard::domain::org::Role;
use switchboard::domain::phone_number::ServiceMode;
use switchboard::domain::provider::SpeechProviderKind;
use switchboard::storage::{agents, phone_numbers, speech_providers, tokens};
use tokio_tungstenite::tungstenite::Message;

use support::{FromServer, Socket, exactly, mark_played, open_media_stream, runtime, spawn_role, streamed_answer, usage};

/// The stubs' delays: transcription, the model's first token, synthesis's first audio.
const TRANSCRIPTION_DELAY: Duration = Duration::from_millis(100);
const MODEL_DELAY: Duration = Duration::from_millis(200);
const SPEECH_DELAY: Duration = Duration::from_millis(50);
/// The agent's end-of-turn silence.
const END_OF_TURN_MS: u64 = 300;
const FRAME: Duration = Duration::from_millis(20);
/// Frames of speech before the server confirms it (its minimum speech, 120 ms).
const CONFIRMING_FRAMES: usize = 6;
/// Each time the caller speaks: half a second.
const SPEECH_FRAMES: usize = 25;

fn main() {
    match std::env::var(support::ROLE).as_deref() {
        Ok("stubs") => runtime().block_on(serve_stubs()),
        Ok("server") => runtime().block_on(serve_switchboard()),
        _ => runtime().block_on(generate_load()),
    }
}

/// Role `stubs`: an OpenAI-compatible model (a one-sentence answer after `MODEL_DELAY`) and
/// speech server (every utterance is "Hello, can you help me?" after `TRANSCRIPTION_DELAY`;
/// speech is 30 ms of a steady tone per character after `SPEECH_DELAY`). Prints its base URL.
async fn serve_stubs() {
    async fn complete() -> impl IntoResponse {
        streamed_answer(&["Sure, I can help you with that right away, let me check it for you."], MODEL_DELAY)
    }
    async fn transcribe() -> impl IntoResponse {
        exactly(TRANSCRIPTION_DELAY).await;
        axum::Json(json!({ "text": "Hello, can you help me?" }))
    }
    async fn speak(axum::Json(request): axum::Json<Value>) -> impl IntoResponse {
        exactly(SPEECH_DELAY).await;
        let samples = request["input"].as_str().unwrap_or_default().chars().count() * 720;
        let tone: Vec<u8> = (0..samples).flat_map(|i| (((i % 48) as i16 - 24) * 400).to_le_bytes()).collect();
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = tone.chunks(4800).map(|c| Ok(c.to_vec())).collect();
        ([("content-type", "audio/pcm")], Body::from_stream(futures_util::stream::iter(chunks)))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("http://{}/v1", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(complete))
        .route("/v1/audio/transcriptions", axum::routing::post(transcribe))
        .route("/v1/audio/speech", axum::routing::post(speak));
    axum::serve(listener, app).await.unwrap();
}

/// Role `server`: Switchboard on SQLite with one `media_stream` number whose agent thinks,
/// hears and speaks through the stubs at `STUBS_URL` and stops for any speech. Prints its base
/// URL and the Twilio account, then serves until killed.
async fn serve_switchboard() {
    let stubs = std::env::var("STUBS_URL").unwrap();
    // The generator reads every call's record afterwards, faster than the API's rate limits allow.
    let bench = support::serve(Some(stubs.clone()), |config| (config.rate_limit_per_token, config.rate_limit_per_address) = (0, 0)).await;
    let settings = speech_providers::SpeechSettings {
        name: "stub".into(),
        base_url: stubs,
        transcription_model: Some("stub".into()),
        speech_model: Some("stub".into()),
        default_voice: Some("stub".into()),
    };
    speech_providers::create(&bench.db, bench.org, SpeechProviderKind::OpenAi, settings, None, Actor::System).await.unwrap();
    let agent = agents::get(&bench.db, bench.org, bench.agent).await.unwrap();
    let mut spec = agent.spec.clone();
    spec.first_message = "Hi, this is Ava.".into();
    spec.speech.end_of_turn_silence_ms = END_OF_TURN_MS as i64;
    spec.speech.backchannels_interrupt = true;
    spec.speech.filler = String::new();
    agents::update(&bench.db, bench.org, &agent, spec, Actor::System).await.unwrap();
    let media = phone_numbers::PhoneNumberChanges { mode: Some(ServiceMode::MediaStream), ..Default::default() };
    phone_numbers::update(&bench.db, bench.org, bench.number, media, Actor::System).await.unwrap();
    let (_, token) = tokens::create(&bench.db, bench.org, "bench", Role::Member, Actor::System).await.unwrap();
    println!("{} {} {}", bench.base, bench.account, token.as_str());
    std::future::pending::<()>().await;
}

/// What one call measured.
#[derive(Default)]
struct Measured {
    /// How far apart the server's frames arrived, off 20 ms, during steady playback.
    pacing: Vec<Duration>,
    /// The frame that confirmed speech over the agent → `clear`.
    barge_in: Vec<Duration>,
    /// The caller's last speech → the answer's first frame, minus what the server waits for.
    added: Vec<Duration>,
}

/// What the caller is doing.
#[derive(PartialEq)]
enum Step {
    AwaitGreeting,
    Speaking { frames: usize, then_interrupt: bool },
    AwaitAnswer { since: Instant },
    Interrupt,
    AwaitSecondAnswer { since: Instant },
    Done,
}

/// One caller, playing Twilio: real-time frames each way, marks returned as their audio plays.
async fn converse(socket: Socket, call: u64) -> Measured {
    let (mut outgoing, mut incoming) = socket.split();
    let sid = format!("MZ{call:032x}");
    let mut measured = Measured::default();
    let (mut sequence, mut chunk) = (1u64, 0u64);
    let silence = BASE64.encode([0xFFu8; 160]);
    let speech = {
        let samples: Vec<i16> = (0..160).map(|i| if i % 16 < 8 { 8000 } else { -8000 }).collect();
        let mut bytes = Vec::new();
        g711::encode_into(&samples, &mut bytes);
        BASE64.encode(bytes)
    };
    // Twilio's playback: when what is buffered has played, and the marks waiting for it.
    let mut played_until = Instant::now();
    let mut marks: VecDeque<(Instant, String)> = VecDeque::new();
    let (mut last_frame, mut run) = (None::<Instant>, 0usize);
    let mut greeting_heard = false;
    let mut heard_answer_frames = 0;
    let mut confirmed_at = None;
    let mut step = Step::AwaitGreeting;
    let mut tick = tokio::time::interval(FRAME);
    while step != Step::Done {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                let loud = matches!(step, Step::Speaking { .. } | Step::Interrupt);
                sequence += 1;
                chunk += 1;
                // Written directly: at 1,000 calls the generator's own CPU shows in what it measures.
                let payload = if loud { &speech } else { &silence };
                let media = format!(
                    r#"{{"event":"media","sequenceNumber":"{sequence}","streamSid":"{sid}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{}","payload":"{payload}"}}}}"#,
                    chunk * 20
                );
                if outgoing.send(Message::Text(media.into())).await.is_err() {
                    break;
                }
                match &mut step {
                    Step::Speaking { frames, then_interrupt } => {
                        *frames += 1;
                        if *frames == SPEECH_FRAMES {
                            step = if *then_interrupt { Step::AwaitSecondAnswer { since: now } } else { Step::AwaitAnswer { since: now } };
                        }
                    }
                    Step::Interrupt => {
                        heard_answer_frames += 1;
                        if heard_answer_frames == CONFIRMING_FRAMES {
                            confirmed_at = Some(now);
                        }
                        if heard_answer_frames == SPEECH_FRAMES {
                            // Never cleared: the turn ends as any other.
                            step = Step::AwaitSecondAnswer { since: now };
                        }
                    }
                    _ => {}
                }
                while marks.front().is_some_and(|(at, _)| *at <= now) {
                    let (_, name) = marks.pop_front().unwrap();
                    sequence += 1;
                    let _ = outgoing.send(mark_played(&sid, sequence, &name)).await;
                }
                if step == Step::AwaitGreeting && marks.is_empty() && played_until + Duration::from_millis(200) < now && greeting_heard {
                    step = Step::Speaking { frames: 0, then_interrupt: false };
                }
                if matches!(step, Step::AwaitSecondAnswer { .. }) && measured.added.len() == 2 && marks.is_empty() && played_until < now {
                    step = Step::Done;
                }
            }
            message = incoming.next() => {
                let Some(Ok(Message::Text(text))) = message else { break };
                let now = Instant::now();
                let message: FromServer = serde_json::from_str(&text).unwrap();
                match message.event {
                    "media" => {
                        if let Some(last) = last_frame {
                            let gap = now - last;
                            if gap < Duration::from_millis(100) {
                                run += 1;
                                // The first frames after a pause go out together, ahead of
                                // time (the lead); marks between pieces are no pause.
                                if run > 4 {
                                    measured.pacing.push(gap.abs_diff(FRAME));
                                }
                            } else {
                                run = 0;
                            }
                        }
                        last_frame = Some(now);
                        played_until = played_until.max(now) + FRAME;
                        greeting_heard = true;
                        match step {
                            Step::AwaitAnswer { since } | Step::AwaitSecondAnswer { since } if measured.added.len() < 2 => {
                                let waited = END_OF_TURN_MS + (TRANSCRIPTION_DELAY + MODEL_DELAY + SPEECH_DELAY).as_millis() as u64;
                                let wait = now.duration_since(since);
                                measured.added.push(wait.saturating_sub(Duration::from_millis(waited)));
                                if matches!(step, Step::AwaitAnswer { .. }) {
                                    // Speaks over the answer as soon as it starts.
                                    heard_answer_frames = 0;
                                    step = Step::Interrupt;
                                }
                            }
                            _ => {}
                        }
                    }
                    "mark" => {
                        marks.push_back((played_until, message.mark.map(|m| m.name.to_owned()).unwrap_or_default()));
                    }
                    "clear" => {
                        if let Some(confirmed) = confirmed_at.take() {
                            measured.barge_in.push(now - confirmed);
                        }
                        played_until = now;
                        for (_, name) in marks.drain(..) {
                            sequence += 1;
                            let _ = outgoing.send(mark_played(&sid, sequence, &name)).await;
                        }
                        if step == Step::Interrupt {
                            step = Step::Speaking { frames: heard_answer_frames, then_interrupt: true };
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
    measured
}

/// The server's own account of each answer's wait, less the stubs' delays: which step adds what.
async fn where_the_wait_went(http: &reqwest::Client, base: &str, token: &str, calls: usize) {
    let stubs = [
        ("transcription", TRANSCRIPTION_DELAY),
        ("first_token", MODEL_DELAY),
        ("first_audio", SPEECH_DELAY),
        ("first_frame", Duration::ZERO),
    ];
    let shown = support::voice_latency(http, base, token, calls, &stubs).await;
    println!("  as the server measured it (whole milliseconds, beyond the stubs): {shown}");
}

fn percentile(values: &mut [Duration], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort();
    values[((values.len() as f64 * q) as usize).min(values.len() - 1)].as_secs_f64() * 1000.0
}

async fn generate_load() {
    let sizes: Vec<usize> =
        std::env::var("CALLS").unwrap_or_else(|_| "100,1000".into()).split(',').filter_map(|n| n.trim().parse().ok()).collect();
    let (mut stubs, stubs_url) = spawn_role("stubs", &[]).await;
    let (mut server, ready) = spawn_role("server", &[("STUBS_URL", &stubs_url)]).await;
    let [base, account, token]: [String; 3] = ready.split(' ').map(str::to_owned).collect::<Vec<_>>().try_into().unwrap();
    let pid = server.id();
    let http = reqwest::Client::new();
    let mut call = 0u64;
    for calls in sizes {
        let (cpu_before, rss_before) = usage(pid);
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(calls);
        for _ in 0..calls {
            call += 1;
            let socket = open_media_stream(&http, &base, &account, call).await;
            tasks.push(tokio::spawn(converse(socket, call)));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, rss_live) = usage(pid);
        let mut all = Measured::default();
        let mut held = 0;
        for task in tasks {
            if let Ok(measured) = task.await {
                held += usize::from(measured.added.len() == 2);
                all.pacing.extend(measured.pacing);
                all.barge_in.extend(measured.barge_in);
                all.added.extend(measured.added);
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let (cpu_after, _) = usage(pid);
        println!(
            "{calls} calls ({held} completed both turns) over {seconds:.1} s: server CPU {:.1} ms per call-second ({:.0}% of a core), \
             memory {:.0} KiB per live call; pacing off 20 ms p50 {:.2} ms, p99 {:.2} ms; barge-in (speech confirmed → clear) p50 {:.1} ms, \
             p99 {:.1} ms; server-added latency per turn p50 {:.1} ms, p99 {:.1} ms",
            (cpu_after - cpu_before) * 1000.0 / (calls as f64 * seconds),
            (cpu_after - cpu_before) * 100.0 / seconds,
            rss_live.saturating_sub(rss_before) as f64 / calls as f64,
            percentile(&mut all.pacing, 0.50),
            percentile(&mut all.pacing, 0.99),
            percentile(&mut all.barge_in, 0.50),
            percentile(&mut all.barge_in, 0.99),
            percentile(&mut all.added, 0.50),
            percentile(&mut all.added, 0.99),
        );
        where_the_wait_went(&http, &base, &token, calls).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let _ = server.kill();
    let _ = stubs.kill();
}
