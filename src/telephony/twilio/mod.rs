//! Twilio: signed webhooks (`routes`), the call WebSockets (`relay` for ConversationRelay,
//! `media` for Media Streams, sharing `call_socket`; `media_stream` is that protocol), request
//! signatures (`signature`), TwiML (`twiml`), the REST client (`rest`), number provisioning, the
//! recordings Twilio makes (`recording`), and
//! `dev_phone`, which plays Twilio for `switchboard dial`. The webhooks and sockets run on
//! [`TwilioState`], not on the HTTP API's state; Twilio's call statuses become carrier-neutral
//! ones in [`call_status`]. Wire details follow shared/specs/twilio.md.

use std::sync::Arc;

use crate::agent::call_log::TranscriptWriter;
use crate::agent::live::LiveSessions;
use crate::agent::voice::SpeechCache;
use crate::domain::call::CallStatus;
use crate::models::LoadedModels;
use crate::providers::egress::Egress;
use crate::recording::Recordings;
use crate::storage::Db;

pub mod call_socket;
pub mod dev_phone;
pub mod media;
pub mod media_stream;
pub mod pricing;
pub mod provisioning;
pub mod recording;
pub mod recovery;
pub mod relay;
pub mod rest;
pub mod routes;
pub mod signature;
pub mod twiml;

/// What Twilio's webhooks and WebSockets need from the server.
#[derive(Clone)]
pub struct TwilioState {
    pub db: Db,
    pub client: rest::TwilioClient,
    /// The URL Twilio reaches this server at (webhook URLs and signatures).
    pub public_base_url: String,
    pub live: Arc<LiveSessions>,
    pub transcripts: TranscriptWriter,
    /// Where the agents' model requests may go.
    pub egress: Egress,
    /// Synthesised greetings and fillers of this process's Media Streams calls.
    pub speech_cache: SpeechCache,
    /// The models this server runs itself (turn-taking, embedded speech), as far as installed.
    pub models: Arc<LoadedModels>,
    /// Call recordings: their rows and where their audio is kept.
    pub recordings: Recordings,
}

impl TwilioState {
    /// Recordings Twilio makes, with what fetching them needs.
    pub fn carrier_recordings(&self) -> recording::CarrierRecordings {
        recording::CarrierRecordings { db: self.db.clone(), client: self.client.clone(), recordings: self.recordings.clone() }
    }
}

/// A Twilio call status as the carrier-neutral status; `initiated` (outbound calls) counts as
/// queued and `answered` as in progress.
pub fn call_status(twilio: &str) -> Option<CallStatus> {
    Some(match twilio {
        "queued" | "initiated" => CallStatus::Queued,
        "ringing" => CallStatus::Ringing,
        "in-progress" | "answered" => CallStatus::InProgress,
        "completed" => CallStatus::Completed,
        "busy" => CallStatus::Busy,
        "failed" => CallStatus::Failed,
        "no-answer" => CallStatus::NoAnswer,
        "canceled" => CallStatus::Canceled,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_twilio_status_has_a_neutral_one() {
        for (twilio, ours) in [("initiated", CallStatus::Queued), ("answered", CallStatus::InProgress), ("no-answer", CallStatus::NoAnswer)]
        {
            assert_eq!(call_status(twilio), Some(ours));
        }
        for status in CallStatus::ALL {
            assert_eq!(call_status(status.as_str()), Some(*status), "Twilio spells {status} as we do");
        }
        assert_eq!(call_status("teleported"), None);
    }
}
