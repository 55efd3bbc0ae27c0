//! Media Streams calls: Switchboard hears and speaks itself. Twilio streams the caller's audio
//! (8 kHz μ-law, 20 ms a message) over a WebSocket per call (`GET /twilio/media/{call_id}`) and
//! plays the audio we send back, returning each mark we send once the audio before it has
//! played (shared/specs/twilio.md §5). This adapter checks the handshake like the relay's
//! (`call_socket`), then sits between the socket and an agent [`Voice`] (speech in and out) in
//! front of the same [`Session`] ConversationRelay calls use.
//!
//! Outbound audio is paced: one 20 ms frame per 20 ms, a few frames ahead of real time, so that
//! `clear` drops little and marks come back when the caller has heard the words. When the agent
//! ends the call, its last words play out (their marks return) before the stream is closed;
//! Twilio then asks `/twilio/connect-action`, which hangs up. A transfer is a REST redirect of
//! the call to a `<Dial>`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::media_stream::{self, Outbound, SequenceCheck, StreamEvent};
use super::{TwilioState, call_socket, provisioning, twiml};
use crate::agent::session::{Ending, Handoff, Session};
use crate::agent::speech::{self, AgentEars};
use crate::agent::usage::{MeteredHearing, MeteredSpeaking};
use crate::agent::voice::{Hearing, TRANSPORT_RATE, TransportIn, TransportOut, Voice, VoiceLinks, VoiceSettings};
use crate::agent::{assembly, call_log::StoredCallLog, session::SessionSetup};
use crate::audio::frames::{FRAME, Framer};
use crate::audio::{g711, wav};
use crate::domain::call::Call;
use crate::domain::ids::{CallId, RecordingId};
use crate::domain::recording::{RecordingSource, RecordingStatus};
use crate::storage::recordings;

/// Audio sent ahead of real time, so a late tick never leaves the caller in silence.
const LEAD_FRAMES: u32 = 3;
/// How long the agent's last words may take to come back played before the stream is closed
/// anyway, beyond the audio still queued.
const LAST_WORDS_GRACE: Duration = Duration::from_secs(3);
/// Caller frames waiting for the voice; more means the server is overloaded, and frames drop.
const CALLER_BACKLOG: usize = 250;
/// Media messages are small JSON texts (20 ms of audio is about 300 bytes).
const MEDIA_BUFFER: usize = 8 << 10;
const MAX_MEDIA_MESSAGE: usize = 64 << 10;
/// Below this level a frame is not speech.
const SPEECH_LEVEL_DBFS: f32 = -35.0;
/// Speech shorter than this is a click or line noise.
const MIN_SPEECH: Duration = Duration::from_millis(120);

/// The Media Streams WebSocket of one call. Signed like the relay's; one session per call; a
/// call whose agent has no speech providers is refused (503), as its voice webhook should have.
#[utoipa::path(get, path = "/twilio/media/{call_id}", tag = "twilio", security(()), params(("call_id" = CallId, Path)), responses(
    (status = 101, description = "WebSocket (Media Streams protocol)"), (status = 400, description = "Not a call id, or not a WebSocket handshake"),
    (status = 403, description = "Bad signature or no such call"),
    (status = 409, description = "The call is over, or another session holds it"),
    (status = 503, description = "The agent has no speech providers")))]
pub async fn media(
    State(state): State<TwilioState>,
    Path(call_id): Path<CallId>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let call = match call_socket::signed_open_call(&state, "media", call_id, &headers).await {
        Ok(call) => call,
        Err(refused) => return refused,
    };
    let setup =
        match assembly::for_call(&state.db, &state.egress, &state.models, &call, state.live.clone(), state.transcripts.clone()).await {
            Ok(setup) => setup,
            Err(e) => return call_socket::internal(e),
        };
    let ears = match speech::for_agent(&state.db, &state.egress, &state.models, call.org_id, &setup.agent).await {
        Ok(Some(ears)) => ears,
        Ok(None) => {
            tracing::warn!(call = %call_id, "refused a media stream: the agent has no speech providers");
            return (StatusCode::SERVICE_UNAVAILABLE, "the agent has no speech providers").into_response();
        }
        Err(e) => return call_socket::internal(e),
    };
    if let Err(refused) = call_socket::claim(&state, &call).await {
        return refused;
    }
    upgrade
        .read_buffer_size(MEDIA_BUFFER)
        .write_buffer_size(MEDIA_BUFFER)
        .max_message_size(MAX_MEDIA_MESSAGE)
        .on_upgrade(move |socket| converse(state, call, setup, ears, socket))
}

/// What waits to be sent to Twilio, in order: frames of μ-law audio and the marks after them.
/// The first frame of each piece names the piece's mark, so the voice learns when it starts.
enum Queued {
    Frame { audio: Vec<u8>, starts: Option<String> },
    Mark(String),
}

/// A call recorded by Switchboard: the caller on the left channel, the agent on the right, in
/// the caller's time (Twilio's frames keep it); the agent's audio goes where it is sent. Kept as
/// the μ-law bytes on the wire (one byte a sample, 8 KB a second a side) until the call ends.
struct Tape {
    recording: RecordingId,
    caller: Vec<u8>,
    agent: Vec<u8>,
}

impl Tape {
    fn caller(&mut self, payload: &[u8]) {
        self.caller.extend_from_slice(payload);
    }

    fn agent(&mut self, frame: &[u8]) {
        if self.agent.len() < self.caller.len() {
            self.agent.resize(self.caller.len(), g711::SILENCE);
        }
        self.agent.extend_from_slice(frame);
    }

    /// Seals and stores the recording.
    async fn keep(self, state: &TwilioState, call: &Call) {
        let duration_ms = (self.caller.len().max(self.agent.len()) as u64 * 1000 / u64::from(TRANSPORT_RATE)) as i64;
        let decoded = |bytes: Vec<u8>| {
            let mut samples = Vec::with_capacity(bytes.len());
            g711::decode_into(&bytes, &mut samples);
            samples
        };
        let wav = wav::encode_two_channels(TRANSPORT_RATE, &decoded(self.caller), &decoded(self.agent));
        match state.recordings.keep(call.org_id, self.recording, wav, 2, duration_ms).await {
            Ok(true) => tracing::info!(call = %call.id, duration_ms, "recording stored"),
            Ok(false) => tracing::info!(call = %call.id, "recording dropped: the caller opted out"),
            Err(e) => {
                tracing::error!(call = %call.id, error = %e, "could not store the call's recording");
                let _ = recordings::give_up(&state.db, call.org_id, self.recording, RecordingStatus::Failed, &e.to_string()).await;
            }
        }
    }
}

/// The outbound side of a stream: audio queued as frames, sent one per frame time.
struct Pacer {
    queue: VecDeque<Queued>,
    /// When the next frame is due; `None` when the caller's buffer is empty (the stream has just
    /// started, or was cleared), so the next frame starts afresh with its lead.
    next_at: Option<Instant>,
    /// Marks sent and not yet returned.
    marks_out: usize,
}

impl Pacer {
    fn new() -> Self {
        Self { queue: VecDeque::new(), next_at: None, marks_out: 0 }
    }

    /// Queues 8 kHz samples as μ-law frames, then `mark`.
    fn play(&mut self, samples: &[i16], mark: String) {
        let mut encoded = Vec::with_capacity(samples.len());
        g711::encode_into(samples, &mut encoded);
        let frame = crate::audio::frames::samples_per_frame(TRANSPORT_RATE);
        for (i, chunk) in encoded.chunks(frame).enumerate() {
            self.queue.push_back(Queued::Frame { audio: chunk.to_vec(), starts: (i == 0).then(|| mark.clone()) });
        }
        self.queue.push_back(Queued::Mark(mark));
    }

    /// The messages due now: marks at the head, then one frame if its time has come. Starting
    /// after a pause, up to `LEAD_FRAMES` frames go at once.
    fn due(&mut self, now: Instant) -> Vec<Queued> {
        let mut due = Vec::new();
        while let Some(Queued::Mark(_)) = self.queue.front() {
            due.push(self.queue.pop_front().expect("just seen"));
            self.marks_out += 1;
        }
        if self.queue.is_empty() {
            return due;
        }
        // Idle, stalled or cleared: start again from now; the lead goes out at once.
        let next_at = self.next_at.filter(|at| *at + FRAME * LEAD_FRAMES >= now).unwrap_or(now);
        self.next_at = Some(next_at);
        if next_at <= now + FRAME * LEAD_FRAMES {
            due.push(self.queue.pop_front().expect("not empty"));
            self.next_at = Some(next_at + FRAME);
        }
        due
    }

    /// When `due` has something again, if ever.
    fn wake_at(&self) -> Option<Instant> {
        match self.queue.front() {
            None => None,
            Some(Queued::Mark(_)) => Some(Instant::now()),
            Some(Queued::Frame { .. }) => Some(self.next_at.map_or_else(Instant::now, |at| at - FRAME * LEAD_FRAMES)),
        }
    }

    /// Drops what is queued; the marks among it were never sent and will not come back. The
    /// caller's buffer is cleared too: what plays next starts with its lead.
    fn clear(&mut self) {
        self.queue.clear();
        self.next_at = None;
    }

    fn played(&mut self) {
        self.marks_out = self.marks_out.saturating_sub(1);
    }

    /// Everything queued has been sent and every mark has come back.
    fn is_done(&self) -> bool {
        self.queue.is_empty() && self.marks_out == 0
    }

    /// How long the queued audio takes to play.
    fn queued_duration(&self) -> Duration {
        FRAME * self.queue.iter().filter(|q| matches!(q, Queued::Frame { .. })).count() as u32
    }
}

async fn converse(state: TwilioState, call: Call, setup: SessionSetup<StoredCallLog>, ears: AgentEars, socket: WebSocket) {
    let _live = state.live.enter(call.id);
    let (mut outgoing, mut incoming) = socket.split();
    let (event_tx, event_rx) = mpsc::channel(32);
    let (command_tx, command_rx) = mpsc::channel(64);
    let (caller_tx, from_transport) = mpsc::channel(CALLER_BACKLOG);
    let (to_transport, mut agent_rx) = mpsc::channel(64);
    let settings = VoiceSettings {
        language: speech::CALL_LANGUAGE.to_owned(),
        speech: setup.agent.speech.clone(),
        default_voice: ears.default_voice,
        speech_level_dbfs: SPEECH_LEVEL_DBFS,
        min_speech: MIN_SPEECH,
    };
    // The session announces the recording; this stream records it.
    let announcement = setup.recording.as_ref().map(|consent| consent.announcement.clone());
    let log = setup.log.clone();
    let span = tracing::info_span!("session", call = %call.id);
    let session = tokio::spawn(Session::new(setup, command_tx).run(event_rx).instrument(span.clone()));
    let voice = Voice {
        stt: Arc::new(MeteredHearing::new(ears.stt, ears.hearing_provider, log.meter.clone())),
        tts: Arc::new(MeteredSpeaking::new(ears.tts, ears.speaking_provider, log.meter.clone())),
        cache: state.speech_cache.clone(),
        synthesizer: ears.synthesizer,
        settings,
        hearing: Hearing::from_models(state.models.turn()),
    };
    tokio::spawn(voice.run(VoiceLinks { from_transport, to_transport, to_session: event_tx, from_session: command_rx }).instrument(span));
    tracing::info!(call = %call.id, "media stream session started");
    let mut tape = match &announcement {
        Some(words) => match state.recordings.begin(&call, RecordingSource::Switchboard, words).await {
            Ok(recording) => Some(Tape { recording, caller: Vec::new(), agent: Vec::new() }),
            Err(e) => {
                tracing::error!(call = %call.id, error = %e, "could not start recording the call; it goes on unrecorded");
                None
            }
        },
        None => None,
    };

    let mut stream_sid: Option<String> = None;
    let mut sequence = SequenceCheck::default();
    let mut framer = Framer::new(TRANSPORT_RATE);
    let mut pacer = Pacer::new();
    // The way to the voice; dropped when the caller is gone, which the voice hears as a hang-up.
    let mut caller = Some(caller_tx);
    let mut voice_open = true;
    let mut ending: Option<(Ending, Instant)> = None;
    while voice_open || ending.is_some() {
        let socket_open = caller.is_some();
        let wake = pacer.wake_at().filter(|_| stream_sid.is_some() && socket_open);
        tokio::select! {
            message = incoming.next(), if socket_open => match message {
                Some(Ok(Message::Text(text))) => match media_stream::parse(&text) {
                    Ok(StreamEvent::Start(start)) => {
                        sequence.observe(start.sequence);
                        if start.call_sid != call.call_sid {
                            tracing::warn!(call = %call.id, call_sid = %start.call_sid, "the stream names another call SID");
                        }
                        stream_sid = Some(start.stream_sid);
                    }
                    Ok(StreamEvent::Media { sequence: number, track, audio, .. }) => {
                        if let Some(gap) = sequence.observe(number) {
                            tracing::info!(call = %call.id, expected = gap.expected, got = gap.got, "a gap in the stream's sequence");
                        }
                        if track == "inbound" && let Some(to_voice) = &caller {
                            let mut samples = Vec::with_capacity(audio.len());
                            g711::decode_into(&audio, &mut samples);
                            if let Some(tape) = &mut tape {
                                tape.caller(&audio);
                            }
                            framer.push(&samples, |frame| {
                                // A closed voice has finished (the agent's last words play on).
                                if let Err(mpsc::error::TrySendError::Full(_)) = to_voice.try_send(TransportIn::Audio(frame.to_vec())) {
                                    tracing::warn!(call = %call.id, "dropped a frame of caller audio: the voice is behind");
                                }
                            });
                        }
                    }
                    Ok(StreamEvent::Dtmf { sequence: number, digit }) => {
                        sequence.observe(number);
                        tell(&caller, TransportIn::Digits(digit)).await;
                    }
                    Ok(StreamEvent::Mark { sequence: number, name }) => {
                        sequence.observe(number);
                        pacer.played();
                        tell(&caller, TransportIn::Played(name)).await;
                    }
                    Ok(StreamEvent::Stop { .. }) => caller = None,
                    Ok(StreamEvent::Connected | StreamEvent::Other) => {}
                    Err(e) => tracing::warn!(call = %call.id, error = %e, "unreadable Media Streams message"),
                },
                Some(Ok(Message::Close(_)) | Err(_)) | None => caller = None,
                Some(Ok(_)) => {} // binary, ping, pong: not part of the protocol
            },
            () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                let sid = stream_sid.as_deref().expect("waking needs a stream");
                for item in pacer.due(Instant::now()) {
                    let text = match &item {
                        Queued::Frame { audio, .. } => Outbound::Media(audio).to_json(sid),
                        Queued::Mark(name) => Outbound::Mark(name).to_json(sid),
                    };
                    if outgoing.send(Message::Text(text.into())).await.is_err() {
                        caller = None;
                        break;
                    }
                    if let (Queued::Frame { audio, .. }, Some(tape)) = (&item, &mut tape) {
                        tape.agent(audio);
                    }
                    if let Queued::Frame { starts: Some(mark), .. } = item {
                        tell(&caller, TransportIn::Sending(mark)).await;
                    }
                }
            },
            out = agent_rx.recv(), if voice_open => match out {
                Some(TransportOut::Play { audio, mark }) => pacer.play(&audio, mark),
                Some(TransportOut::Clear) => {
                    pacer.clear();
                    if let Some(sid) = &stream_sid
                        && socket_open
                        && outgoing.send(Message::Text(Outbound::Clear.to_json(sid).into())).await.is_err()
                    {
                        caller = None;
                    }
                }
                Some(TransportOut::StopRecording) => {
                    if let Some(stopped) = tape.take()
                        && let Err(e) = state.recordings.opt_out(call.org_id, stopped.recording).await
                    {
                        tracing::error!(call = %call.id, error = %e, "could not note the caller's opt-out of the recording");
                    }
                }
                Some(TransportOut::End(end)) => {
                    let deadline = Instant::now() + pacer.queued_duration() + LAST_WORDS_GRACE;
                    ending = Some((end, deadline));
                }
                None => voice_open = false, // the caller hung up, or the session ended
            },
            () = tokio::time::sleep(FRAME), if ending.is_some() => {}
        }
        // The agent's last words have played (or will not): hand the call on.
        if let Some((end, deadline)) = &ending
            && (pacer.is_done() || Instant::now() >= *deadline || caller.is_none())
        {
            if caller.take().is_some() {
                hand_off(&state, &call, end).await;
                let _ = outgoing.send(Message::Close(None)).await;
            }
            ending = None;
        }
    }
    call_socket::conclude(&state, &call, session, &log).await;
    if let Some(tape) = tape {
        tape.keep(&state, &call).await;
    }
}

/// Passes an event to the voice while the caller is there.
async fn tell(caller: &Option<mpsc::Sender<TransportIn>>, event: TransportIn) {
    if let Some(to_voice) = caller {
        let _ = to_voice.send(event).await;
    }
}

/// The agent ended the call: a transfer redirects the call to its target through the REST API
/// (the stream ends with it); a hang-up is left to `/twilio/connect-action` once the stream
/// closes.
async fn hand_off(state: &TwilioState, call: &Call, ending: &Ending) {
    let Handoff::Transfer { to } = ending.handoff() else { return };
    let Some(provider) = call.provider_id else { return };
    let result = match provisioning::credentials(&state.db, call.org_id, provider).await {
        Ok(creds) => state.client.redirect(&creds, &call.call_sid, &twiml::dial(&to)).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        tracing::warn!(call = %call.id, error = %e, "could not transfer the call through the REST API");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(due: &[Queued]) -> Vec<String> {
        due.iter()
            .map(|q| match q {
                Queued::Frame { audio, starts: None } => format!("frame:{}", audio.len()),
                Queued::Frame { audio, starts: Some(mark) } => format!("frame:{}:{mark}", audio.len()),
                Queued::Mark(name) => format!("mark:{name}"),
            })
            .collect()
    }

    /// What the pacer sends without waiting.
    fn sent_at_once(pacer: &mut Pacer) -> Vec<String> {
        let mut now = Vec::new();
        while pacer.wake_at().is_some_and(|at| at <= Instant::now()) {
            now.extend(sent(&pacer.due(Instant::now())));
        }
        now
    }

    #[tokio::test(start_paused = true)]
    async fn audio_goes_out_a_frame_per_frame_time_a_little_ahead_with_marks_after_it() {
        let mut pacer = Pacer::new();
        // 100 ms of audio: five frames, then the mark.
        pacer.play(&[1000; 800], "speech-1".into());
        assert_eq!(pacer.queued_duration(), Duration::from_millis(100));
        let start = Instant::now();
        let mut log = Vec::new();
        while let Some(at) = pacer.wake_at() {
            tokio::time::sleep_until(at).await;
            for item in sent(&pacer.due(Instant::now())) {
                log.push((Instant::now().duration_since(start).as_millis(), item));
            }
        }
        let times: Vec<u128> = log.iter().map(|(t, _)| *t).collect();
        // The first frame (naming the piece's mark) and three ahead go at once; the rest one
        // per 20 ms; the mark right after the last frame.
        assert_eq!(times, [0, 0, 0, 0, 20, 20], "{log:?}");
        assert_eq!(log[0].1, "frame:160:speech-1");
        assert_eq!(log.last().unwrap().1, "mark:speech-1");
        assert!(!pacer.is_done(), "the mark has not come back");
        pacer.played();
        assert!(pacer.is_done());
    }

    #[tokio::test(start_paused = true)]
    async fn clearing_drops_queued_audio_and_its_unsent_marks() {
        let mut pacer = Pacer::new();
        pacer.play(&[1000; 1600], "speech-1".into());
        pacer.play(&[1000; 160], "speech-2".into());
        let first = pacer.due(Instant::now());
        assert_eq!(sent(&first), ["frame:160:speech-1"]);
        pacer.clear();
        assert_eq!(pacer.wake_at(), None);
        assert!(pacer.is_done(), "no mark was sent, none is awaited");
        // A pause resets the schedule: new speech starts at once, its lead and no more.
        tokio::time::advance(Duration::from_secs(2)).await;
        pacer.play(&[1000; 1600], "speech-3".into());
        assert_eq!(sent_at_once(&mut pacer), ["frame:160:speech-3", "frame:160", "frame:160", "frame:160"]);
    }

    /// What plays soon after the stream opens, or soon after a clear emptied the caller's
    /// buffer, starts with its lead: not with less (the buffer would run dry), nor with more
    /// (frames owed to a schedule nobody heard).
    #[tokio::test(start_paused = true)]
    async fn speech_soon_after_the_start_or_a_clear_gets_its_lead_and_no_more() {
        let mut pacer = Pacer::new();
        tokio::time::advance(Duration::from_millis(50)).await;
        pacer.play(&[1000; 1600], "greeting".into());
        assert_eq!(sent_at_once(&mut pacer).len(), 1 + LEAD_FRAMES as usize);
        // Steady playback, then the caller speaks over it.
        for _ in 0..5 {
            tokio::time::advance(FRAME).await;
            assert_eq!(sent_at_once(&mut pacer).len(), 1);
        }
        pacer.clear();
        tokio::time::advance(Duration::from_millis(10)).await;
        pacer.play(&[1000; 1600], "answer".into());
        assert_eq!(sent_at_once(&mut pacer).len(), 1 + LEAD_FRAMES as usize);
    }
}
