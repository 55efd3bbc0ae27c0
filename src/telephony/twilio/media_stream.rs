//! Twilio's Media Streams WebSocket protocol (shared/specs/twilio.md §5), without the socket:
//! the messages Twilio sends, read leniently (sequence numbers, chunks and timestamps as the
//! strings Twilio writes or as numbers; unknown events and fields ignored; audio of any length),
//! the messages we send (always JSON text, never binary frames), and a check of the sequence
//! numbers.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer};
use serde_json::json;

/// A message from Twilio.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    Connected,
    Start(StreamStart),
    /// Caller audio: μ-law bytes at 8 kHz.
    Media {
        sequence: Option<u64>,
        track: String,
        timestamp_ms: Option<u64>,
        audio: Vec<u8>,
    },
    Dtmf {
        sequence: Option<u64>,
        digit: String,
    },
    /// A mark we sent came back: the audio before it has played, or was cleared.
    Mark {
        sequence: Option<u64>,
        name: String,
    },
    Stop {
        sequence: Option<u64>,
    },
    /// An event this version does not know; ignored.
    Other,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StreamStart {
    pub sequence: Option<u64>,
    pub stream_sid: String,
    pub call_sid: String,
    pub account_sid: String,
    /// The `<Parameter>` values of the TwiML.
    pub custom_parameters: BTreeMap<String, String>,
    pub encoding: String,
    pub sample_rate: u32,
}

/// Why a message could not be read.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Unreadable {
    #[error("not a Media Streams message: {0}")]
    Json(String),
    #[error("the media payload is not base64")]
    Payload,
}

#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Wire {
    Connected,
    Start {
        #[serde(default, rename = "sequenceNumber", deserialize_with = "number_or_text")]
        sequence: Option<u64>,
        start: WireStart,
    },
    Media {
        #[serde(default, rename = "sequenceNumber", deserialize_with = "number_or_text")]
        sequence: Option<u64>,
        media: WireMedia,
    },
    Dtmf {
        #[serde(default, rename = "sequenceNumber", deserialize_with = "number_or_text")]
        sequence: Option<u64>,
        dtmf: WireDtmf,
    },
    Mark {
        #[serde(default, rename = "sequenceNumber", deserialize_with = "number_or_text")]
        sequence: Option<u64>,
        mark: WireMark,
    },
    Stop {
        #[serde(default, rename = "sequenceNumber", deserialize_with = "number_or_text")]
        sequence: Option<u64>,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStart {
    #[serde(default)]
    stream_sid: String,
    #[serde(default)]
    call_sid: String,
    #[serde(default)]
    account_sid: String,
    #[serde(default)]
    custom_parameters: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    media_format: WireFormat,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireFormat {
    #[serde(default = "mulaw")]
    encoding: String,
    #[serde(default = "telephone_rate", deserialize_with = "rate")]
    sample_rate: u32,
}

impl Default for WireFormat {
    fn default() -> Self {
        Self { encoding: mulaw(), sample_rate: telephone_rate() }
    }
}

fn mulaw() -> String {
    "audio/x-mulaw".to_owned()
}

fn telephone_rate() -> u32 {
    8000
}

#[derive(Deserialize)]
struct WireMedia {
    #[serde(default = "inbound")]
    track: String,
    #[serde(default, deserialize_with = "number_or_text")]
    timestamp: Option<u64>,
    #[serde(default)]
    payload: String,
}

fn inbound() -> String {
    "inbound".to_owned()
}

#[derive(Deserialize)]
struct WireDtmf {
    #[serde(default)]
    digit: String,
}

#[derive(Deserialize)]
struct WireMark {
    #[serde(default)]
    name: String,
}

/// A count Twilio writes as a string (`"3"`) or, just as well, as a number; anything else is
/// taken as absent.
fn number_or_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(number_or_text(d)?.and_then(|r| u32::try_from(r).ok()).filter(|r| *r > 0).unwrap_or(8000))
}

/// Reads one text message from Twilio.
pub fn parse(text: &str) -> Result<StreamEvent, Unreadable> {
    let wire: Wire = serde_json::from_str(text).map_err(|e| Unreadable::Json(e.to_string()))?;
    Ok(match wire {
        Wire::Connected => StreamEvent::Connected,
        Wire::Start { sequence, start } => StreamEvent::Start(StreamStart {
            sequence,
            stream_sid: start.stream_sid,
            call_sid: start.call_sid,
            account_sid: start.account_sid,
            custom_parameters: start
                .custom_parameters
                .into_iter()
                .map(|(name, value)| {
                    let text = match value {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (name, text)
                })
                .collect(),
            encoding: start.media_format.encoding,
            sample_rate: start.media_format.sample_rate,
        }),
        Wire::Media { sequence, media } => StreamEvent::Media {
            sequence,
            track: media.track,
            timestamp_ms: media.timestamp,
            audio: BASE64.decode(media.payload.trim()).map_err(|_| Unreadable::Payload)?,
        },
        Wire::Dtmf { sequence, dtmf } => StreamEvent::Dtmf { sequence, digit: dtmf.digit },
        Wire::Mark { sequence, mark } => StreamEvent::Mark { sequence, name: mark.name },
        Wire::Stop { sequence } => StreamEvent::Stop { sequence },
        Wire::Other => StreamEvent::Other,
    })
}

/// What we send Twilio on a stream: audio to play (μ-law bytes at 8 kHz, no header), a mark
/// after it, or `clear` to drop what is buffered.
pub enum Outbound<'a> {
    Media(&'a [u8]),
    Mark(&'a str),
    Clear,
}

impl Outbound<'_> {
    /// The JSON text message for the stream `stream_sid`.
    pub fn to_json(&self, stream_sid: &str) -> String {
        match self {
            Outbound::Media(audio) => json!({ "event": "media", "streamSid": stream_sid, "media": { "payload": BASE64.encode(audio) } }),
            Outbound::Mark(name) => json!({ "event": "mark", "streamSid": stream_sid, "mark": { "name": name } }),
            Outbound::Clear => json!({ "event": "clear", "streamSid": stream_sid }),
        }
        .to_string()
    }
}

/// Watches the one sequence counter Twilio keeps across a stream's messages.
#[derive(Default)]
pub struct SequenceCheck {
    last: Option<u64>,
}

/// Messages that did not arrive where the counter says they should have.
#[derive(Debug, PartialEq, Eq)]
pub struct Gap {
    pub expected: u64,
    pub got: u64,
}

impl SequenceCheck {
    /// Takes the next message's number; reports a gap (lost or reordered messages).
    pub fn observe(&mut self, sequence: Option<u64>) -> Option<Gap> {
        let got = sequence?;
        let expected = self.last.map(|last| last + 1);
        self.last = Some(got.max(self.last.unwrap_or(0)));
        match expected {
            Some(expected) if expected != got => Some(Gap { expected, got }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilios_messages_are_read_as_documented_and_leniently() {
        assert_eq!(parse(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#), Ok(StreamEvent::Connected));
        let start = parse(
            r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],
                "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"CallId":"abc","N":3}},"streamSid":"MZ1"}"#,
        )
        .unwrap();
        let StreamEvent::Start(start) = start else { panic!("{start:?}") };
        assert_eq!((start.sequence, start.stream_sid.as_str(), start.call_sid.as_str(), start.sample_rate), (Some(1), "MZ1", "CA1", 8000));
        assert_eq!(start.custom_parameters["CallId"], "abc");
        assert_eq!(start.custom_parameters["N"], "3");
        let media = parse(
            r#"{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"/38A"},"streamSid":"MZ1"}"#,
        );
        assert_eq!(
            media,
            Ok(StreamEvent::Media { sequence: Some(4), track: "inbound".into(), timestamp_ms: Some(5), audio: vec![0xFF, 0x7F, 0x00] })
        );
        // Numbers as numbers, missing fields, unknown events.
        let numeric = parse(r#"{"event":"media","sequenceNumber":4,"media":{"timestamp":20,"payload":""}}"#).unwrap();
        assert_eq!(numeric, StreamEvent::Media { sequence: Some(4), track: "inbound".into(), timestamp_ms: Some(20), audio: vec![] });
        assert_eq!(
            parse(r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#),
            Ok(StreamEvent::Dtmf { sequence: Some(5), digit: "1".into() })
        );
        assert_eq!(
            parse(r#"{"event":"mark","sequenceNumber":"6","mark":{"name":"speech-1"}}"#),
            Ok(StreamEvent::Mark { sequence: Some(6), name: "speech-1".into() })
        );
        assert_eq!(parse(r#"{"event":"stop","sequenceNumber":"7","stop":{"callSid":"CA1"}}"#), Ok(StreamEvent::Stop { sequence: Some(7) }));
        assert_eq!(parse(r#"{"event":"transcription","whatever":1}"#), Ok(StreamEvent::Other));
        assert_eq!(parse(r#"{"event":"media","media":{"payload":"%%%"}}"#), Err(Unreadable::Payload));
        assert!(matches!(parse("not json"), Err(Unreadable::Json(_))));
    }

    #[test]
    fn what_we_send_is_json_text_in_twilios_shape() {
        let media: serde_json::Value = serde_json::from_str(&Outbound::Media(&[0xFF, 0x7F]).to_json("MZ1")).unwrap();
        assert_eq!(media, json!({ "event": "media", "streamSid": "MZ1", "media": { "payload": "/38=" } }));
        let mark: serde_json::Value = serde_json::from_str(&Outbound::Mark("speech-1").to_json("MZ1")).unwrap();
        assert_eq!(mark, json!({ "event": "mark", "streamSid": "MZ1", "mark": { "name": "speech-1" } }));
        assert_eq!(Outbound::Clear.to_json("MZ1"), r#"{"event":"clear","streamSid":"MZ1"}"#);
    }

    #[test]
    fn gaps_in_the_sequence_are_reported() {
        let mut check = SequenceCheck::default();
        assert_eq!(check.observe(None), None, "connected has no number");
        assert_eq!((check.observe(Some(1)), check.observe(Some(2))), (None, None));
        assert_eq!(check.observe(Some(5)), Some(Gap { expected: 3, got: 5 }));
        assert_eq!(check.observe(Some(4)), Some(Gap { expected: 6, got: 4 }), "reordered");
        assert_eq!(check.observe(Some(6)), None);
    }

    /// Fuzz target: any text on the media socket is read or refused without a panic; any audio
    /// we send is read back as the same bytes.
    #[test]
    fn fuzz_any_media_message() {
        bolero::check!().with_type::<(String, Vec<u8>, String)>().for_each(|(text, audio, sid)| {
            let _ = parse(text);
            match parse(&Outbound::Media(audio).to_json(sid)) {
                Ok(StreamEvent::Media { audio: read, .. }) => assert_eq!(&read, audio),
                other => panic!("{other:?}"),
            }
        });
    }
}
