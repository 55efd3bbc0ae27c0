//! Twilio: signed webhooks (`routes`), the ConversationRelay WebSocket (`relay`), request
//! signatures (`signature`), TwiML (`twiml`), the REST client (`rest`) and number provisioning.
//! Wire details follow shared/specs/twilio.md.

pub mod provisioning;
pub mod relay;
pub mod rest;
pub mod routes;
pub mod signature;
pub mod twiml;
