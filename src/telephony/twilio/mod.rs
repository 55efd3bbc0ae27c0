//! Twilio: signed webhooks (`routes`), request signatures (`signature`), TwiML (`twiml`) and
//! the REST client (`rest`).
//! Wire details follow shared/specs/twilio.md.

pub mod provisioning;
pub mod rest;
pub mod routes;
pub mod signature;
pub mod twiml;
