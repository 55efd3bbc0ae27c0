//! Carrier adapters. Only `twilio/` knows Twilio's wire formats (DESIGN invariant 3): webhooks,
//! signatures, TwiML, and (later) its WebSocket protocols and REST API.

pub mod twilio;
