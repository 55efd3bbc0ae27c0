//! Newtype identifiers. Every id is a UUIDv7, so ids sort by creation time; list endpoints rely
//! on that for newest-first ordering and cursors.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(/// An organisation (tenant).
    OrgId);
id_type!(/// A person who can sign in to the console.
    UserId);
id_type!(/// An API token.
    TokenId);
id_type!(/// A signed-in console browser.
    ConsoleSessionId);
id_type!(/// A phone provider account (Twilio credentials).
    PhoneProviderId);
id_type!(/// An OpenAI-compatible LLM endpoint.
    LlmProviderId);
id_type!(/// A speech vendor account (speech-to-text, text-to-speech or both).
    SpeechProviderId);
id_type!(/// An app: a container of agents and phone numbers.
    AppId);
id_type!(/// A conversational agent.
    AgentId);
id_type!(/// A phone number bound to an agent (a phone service).
    PhoneNumberId);
id_type!(/// A call record.
    CallId);
id_type!(/// A call's recording.
    RecordingId);
id_type!(/// An entry of the audit log.
    AuditEntryId);
id_type!(/// An automation of an app.
    AutomationId);
id_type!(/// One run of an automation for one event.
    AutomationRunId);
id_type!(/// A ticket an automation created.
    TicketId);
