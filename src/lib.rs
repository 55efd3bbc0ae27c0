//! Switchboard: a self-hosted platform that puts conversational AI agents on phone numbers.
//! See ARCHITECTURE.md for the map of this crate.

pub mod agent;
pub mod app;
pub mod automations;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod domain;
pub mod http;
pub mod models;
pub mod providers;
pub mod recording;
pub mod storage;
pub mod telemetry;
pub mod telephony;

pub use switchboard_audio as audio;
