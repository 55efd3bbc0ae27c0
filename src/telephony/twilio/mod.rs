//! Twilio: signed webhooks (`routes`), the ConversationRelay WebSocket (`relay`), request
//! signatures (`signature`), TwiML (`twiml`), the REST client (`rest`), number provisioning, and
//! `dev_phone`, which plays Twilio for `switchboard dial`.
//! Wire details follow shared/specs/twilio.md.

pub mod dev_phone;
pub mod provisioning;
pub mod recovery;
pub mod relay;
pub mod rest;
pub mod routes;
pub mod signature;
pub mod twiml;
