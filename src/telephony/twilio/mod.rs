//! Twilio: signed webhooks (`routes`), request signatures (`signature`) and TwiML (`twiml`).
//! Wire details follow shared/specs/twilio.md.

pub mod routes;
pub mod signature;
pub mod twiml;
