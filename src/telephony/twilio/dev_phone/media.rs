//! The dev phone's Media Streams side: Twilio's part of a `<Connect><Stream>` call, in real time.
//! Every 20 ms it sends 20 ms of the caller's audio (silence between what the caller says) and
//! plays 20 ms of what the agent sent, as Twilio's playback buffer does: audio and marks in
//! order, a mark returned once the audio before it has played, and on `clear` the audio dropped
//! and every pending mark returned at once (shared/specs/twilio.md §5.3). What the caller says is
//! synthesised (or read from WAV files); what the agent says is transcribed, when the phone has
//! speech services, and everything the caller heard can be written to a WAV file.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{CallerAction, Ended, PhoneEvent, Socket, Twilio};
use crate::audio::frames::{FRAME, samples_per_frame};
use crate::audio::resample::Resampler;
use crate::audio::{Audio, g711, wav};
use crate::providers::speech::{SpeakingVoice, SpeechToText, TextToSpeech};

/// The rate of telephone audio.
const PHONE_RATE: u32 = 8000;
/// Quiet after the agent's audio that ends one of its utterances.
const UTTERANCE_GAP_FRAMES: u32 = 20;

/// How the dev phone speaks and listens on media-stream numbers.
pub struct AudioPhone {
    /// Synthesises what the caller says.
    pub mouth: Option<Arc<dyn TextToSpeech>>,
    /// The caller's voice, for `mouth`.
    pub voice: SpeakingVoice,
    /// Transcribes what the agent says, to show it.
    pub ears: Option<Arc<dyn SpeechToText>>,
    /// Where to write everything the caller heard (8 kHz WAV).
    pub record: Option<PathBuf>,
    /// Where the agent's audio goes as it plays, 8 kHz samples a frame at a time (a browser's
    /// speaker); dropped when nobody keeps up.
    pub speaker: Option<mpsc::Sender<Vec<i16>>>,
}

/// Twilio's playback buffer: the agent's audio (μ-law) and marks, in the order sent.
enum Buffered {
    Audio(Vec<u8>),
    Mark(String),
}

/// What the listener is told about the agent's speech.
enum Heard {
    /// A whole utterance played.
    Utterance(Vec<i16>),
    /// The caller cut the agent off after this much of the utterance in progress (none when
    /// the agent was pausing between sentences: what came before was a whole utterance).
    Cut(Vec<i16>),
}

/// Twilio's messages on one stream, numbered by one counter.
struct Stream<'a> {
    sid: String,
    twilio: &'a Twilio<'a>,
    sequence: u64,
    chunk: u64,
}

impl Stream<'_> {
    fn next(&mut self) -> String {
        self.sequence += 1;
        self.sequence.to_string()
    }

    fn start(&mut self, parameters: &[(String, String)]) -> Value {
        let custom: serde_json::Map<String, Value> = parameters.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        json!({ "event": "start", "sequenceNumber": self.next(), "streamSid": self.sid, "start": {
            "accountSid": self.twilio.dial.account_sid, "streamSid": self.sid, "callSid": self.twilio.call_sid, "tracks": ["inbound"],
            "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": PHONE_RATE, "channels": 1 }, "customParameters": custom } })
    }

    fn media(&mut self, frame: &[i16]) -> Value {
        let mut payload = Vec::with_capacity(frame.len());
        g711::encode_into(frame, &mut payload);
        self.chunk += 1;
        let timestamp = (self.chunk - 1) * FRAME.as_millis() as u64;
        json!({ "event": "media", "sequenceNumber": self.next(), "streamSid": self.sid, "media": {
            "track": "inbound", "chunk": self.chunk.to_string(), "timestamp": timestamp.to_string(), "payload": BASE64.encode(payload) } })
    }

    fn mark(&mut self, name: &str) -> Value {
        json!({ "event": "mark", "sequenceNumber": self.next(), "streamSid": self.sid, "mark": { "name": name } })
    }

    fn dtmf(&mut self, digit: char) -> Value {
        json!({ "event": "dtmf", "sequenceNumber": self.next(), "streamSid": self.sid, "dtmf": { "track": "inbound_track", "digit": digit.to_string() } })
    }

    fn stop(&mut self) -> Value {
        json!({ "event": "stop", "sequenceNumber": self.next(), "streamSid": self.sid,
                "stop": { "accountSid": self.twilio.dial.account_sid, "callSid": self.twilio.call_sid } })
    }
}

/// Runs the media stream until the server closes it (the agent ended the call) or the caller
/// hangs up.
pub(super) async fn converse(
    twilio: &Twilio<'_>,
    phone: &AudioPhone,
    socket: Socket,
    parameters: Vec<(String, String)>,
    mut actions: mpsc::Receiver<CallerAction>,
    events: &mpsc::Sender<PhoneEvent>,
) -> anyhow::Result<Ended> {
    let (mut outgoing, mut incoming) = socket.split();
    let mut stream = Stream { sid: format!("MZ{}", &super::random_call_sid()[2..]), twilio, sequence: 0, chunk: 0 };
    let send = |message: Value| Message::Text(message.to_string().into());
    outgoing.send(send(json!({ "event": "connected", "protocol": "Call", "version": "1.0.0" }))).await?;
    outgoing.send(send(stream.start(&parameters))).await?;

    let (voice_tx, mut voice_rx) = mpsc::channel::<Vec<i16>>(8);
    let (heard_tx, heard_rx) = mpsc::unbounded_channel();
    let listener = tokio::spawn(listen(phone.ears.clone(), heard_rx, events.clone()));
    let frame_length = samples_per_frame(PHONE_RATE);
    let mut speaking: VecDeque<i16> = VecDeque::new();
    let mut buffer: VecDeque<Buffered> = VecDeque::new();
    let mut utterance: Vec<i16> = Vec::new();
    let mut quiet_frames = 0;
    let mut recording: Vec<i16> = Vec::new();
    let mut tick = tokio::time::interval(FRAME);
    let ended = loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut frame: Vec<i16> = speaking.drain(..frame_length.min(speaking.len())).collect();
                frame.resize(frame_length, 0);
                outgoing.send(send(stream.media(&frame))).await?;
                let (played, marks) = play_one_frame(&mut buffer, frame_length);
                for mark in marks {
                    outgoing.send(send(stream.mark(&mark))).await?;
                }
                if played.is_empty() {
                    quiet_frames += 1;
                    if quiet_frames == UTTERANCE_GAP_FRAMES && !utterance.is_empty() {
                        let _ = heard_tx.send(Heard::Utterance(std::mem::take(&mut utterance)));
                    }
                    recording.extend(std::iter::repeat_n(0, frame_length));
                } else {
                    quiet_frames = 0;
                    if let Some(speaker) = &phone.speaker {
                        let _ = speaker.try_send(played.clone());
                    }
                    if utterance.is_empty() {
                        let _ = events.try_send(PhoneEvent::Speaking);
                    }
                    utterance.extend_from_slice(&played);
                    recording.extend_from_slice(&played);
                    recording.extend(std::iter::repeat_n(0, frame_length - played.len()));
                }
            }
            message = incoming.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    match message["event"].as_str() {
                        Some("media") => {
                            let payload = message["media"]["payload"].as_str().unwrap_or_default();
                            buffer.push_back(Buffered::Audio(BASE64.decode(payload).context("the server sent audio that is not base64")?));
                        }
                        Some("mark") => buffer.push_back(Buffered::Mark(message["mark"]["name"].as_str().unwrap_or_default().to_owned())),
                        Some("clear") => {
                            for item in std::mem::take(&mut buffer) {
                                if let Buffered::Mark(name) = item {
                                    outgoing.send(send(stream.mark(&name))).await?;
                                }
                            }
                            // The server clears only to stop the agent, even when its next
                            // sentence has not arrived yet: that is an interruption too.
                            let _ = heard_tx.send(Heard::Cut(std::mem::take(&mut utterance)));
                        }
                        other => tracing::warn!(event = ?other, "the dev phone got a message Twilio would refuse"),
                    }
                }
                Some(Ok(Message::Binary(_))) => anyhow::bail!("the server sent a binary frame; Twilio accepts only JSON text"),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break Ended::ByAgent { handoff: None },
                Some(Ok(_)) => {}
            },
            Some(samples) = voice_rx.recv() => speaking.extend(samples),
            action = actions.recv() => match action {
                None | Some(CallerAction::HangUp) => {
                    outgoing.send(send(stream.stop())).await?;
                    let _ = outgoing.close().await;
                    break Ended::ByCaller;
                }
                Some(CallerAction::Say(words)) => say(phone, words, voice_tx.clone()),
                Some(CallerAction::Interrupt) => say(phone, "Wait.".to_owned(), voice_tx.clone()),
                Some(CallerAction::Play(file)) => match std::fs::read(&file).map_err(|e| e.to_string()).and_then(|bytes| wav::decode(&bytes)) {
                    Ok(audio) => speaking.extend(to_phone_rate(&[audio])?),
                    Err(e) => eprintln!("cannot play {}: {e}", file.display()),
                },
                Some(CallerAction::Digits(digits)) => {
                    for digit in digits.chars() {
                        outgoing.send(send(stream.dtmf(digit))).await?;
                    }
                }
                Some(CallerAction::Audio(samples)) => speaking.extend(samples),
            },
        }
    };
    if !utterance.is_empty() {
        let _ = heard_tx.send(Heard::Utterance(utterance));
    }
    drop(heard_tx);
    let _ = listener.await;
    if let Some(path) = &phone.record {
        std::fs::write(path, wav::encode(&Audio { rate: PHONE_RATE, samples: recording }))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ended)
}

/// Plays up to one frame of the buffer: the marks it passes (in order) and the samples played.
fn play_one_frame(buffer: &mut VecDeque<Buffered>, frame_length: usize) -> (Vec<i16>, Vec<String>) {
    let (mut played, mut marks) = (Vec::new(), Vec::new());
    while played.len() < frame_length {
        match buffer.front_mut() {
            None => break,
            Some(Buffered::Mark(_)) => {
                let Some(Buffered::Mark(name)) = buffer.pop_front() else { unreachable!("just seen") };
                marks.push(name);
            }
            Some(Buffered::Audio(audio)) => {
                let take = (frame_length - played.len()).min(audio.len());
                g711::decode_into(&audio[..take], &mut played);
                audio.drain(..take);
                if audio.is_empty() {
                    buffer.pop_front();
                }
            }
        }
    }
    // A mark right behind the audio just played comes back now, not a frame later.
    while let Some(Buffered::Mark(_)) = buffer.front() {
        let Some(Buffered::Mark(name)) = buffer.pop_front() else { unreachable!("just seen") };
        marks.push(name);
    }
    (played, marks)
}

/// Synthesises the caller's words in the background; the audio joins what the caller says.
fn say(phone: &AudioPhone, words: String, to_phone: mpsc::Sender<Vec<i16>>) {
    let Some(mouth) = phone.mouth.clone() else {
        eprintln!("cannot say \"{words}\": the phone has no speech synthesis (give it --speech-url, or /play a WAV file)");
        return;
    };
    let voice = phone.voice.clone();
    tokio::spawn(async move {
        let mut pieces = mouth.synthesize(&words, &voice);
        let mut audio = Vec::new();
        while let Some(piece) = pieces.recv().await {
            match piece {
                Ok(piece) => audio.push(piece),
                Err(e) => {
                    eprintln!("could not synthesise \"{words}\": {e}");
                    return;
                }
            }
        }
        match to_phone_rate(&audio) {
            Ok(samples) => {
                let _ = to_phone.send(samples).await;
            }
            Err(e) => eprintln!("could not synthesise \"{words}\": {e}"),
        }
    });
}

/// Pieces of audio (at one rate) as one stretch of 8 kHz samples.
fn to_phone_rate(pieces: &[Audio]) -> anyhow::Result<Vec<i16>> {
    let Some(rate) = pieces.first().map(|p| p.rate) else { return Ok(Vec::new()) };
    let mut resampler = Resampler::new(rate, PHONE_RATE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    for piece in pieces {
        resampler.process(&piece.samples, &mut out);
    }
    resampler.finish(&mut out);
    Ok(out)
}

/// Tells what the agent said, in order: transcribed when the phone has ears, else its length.
async fn listen(ears: Option<Arc<dyn SpeechToText>>, mut heard: mpsc::UnboundedReceiver<Heard>, events: mpsc::Sender<PhoneEvent>) {
    let words = |samples: Vec<i16>| {
        let ears = ears.clone();
        async move {
            let seconds = samples.len() as f64 / f64::from(PHONE_RATE);
            match &ears {
                Some(ears) => match ears.transcribe(&Audio { rate: PHONE_RATE, samples }, "en-US").await {
                    Ok(text) => text,
                    Err(e) => format!("[{seconds:.1} s of speech that could not be transcribed: {e}]"),
                },
                None => format!("[{seconds:.1} s of speech]"),
            }
        }
    };
    while let Some(item) = heard.recv().await {
        match item {
            Heard::Utterance(samples) => {
                let _ = events.send(PhoneEvent::Token(words(samples).await)).await;
                let _ = events.send(PhoneEvent::UtteranceEnd).await;
            }
            Heard::Cut(samples) => {
                let heard = if samples.is_empty() { String::new() } else { words(samples).await };
                let _ = events.send(PhoneEvent::Interrupted { heard }).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_playback_buffer_returns_marks_as_their_audio_finishes() {
        let mut buffer = VecDeque::from([
            Buffered::Mark("before".into()),
            Buffered::Audio(vec![0xFF; 100]),
            Buffered::Audio(vec![0xFF; 100]),
            Buffered::Mark("after-200".into()),
            Buffered::Audio(vec![0xFF; 50]),
        ]);
        let (played, marks) = play_one_frame(&mut buffer, 160);
        assert_eq!((played.len(), marks), (160, vec!["before".to_owned()]));
        let (played, marks) = play_one_frame(&mut buffer, 160);
        assert_eq!((played.len(), marks), (90, vec!["after-200".to_owned()]), "the mark passed mid-frame");
        assert!(buffer.is_empty());
        let (played, marks) = play_one_frame(&mut buffer, 160);
        assert!(played.is_empty() && marks.is_empty());
    }
}
