//! The one integration-test binary. Every test drives the real server through its HTTP API;
//! most run twice, on SQLite and on PostgreSQL (see `support::on_both_backends!`).

mod support;

mod agents;
mod analytics;
mod api_basics;
mod apps;
mod automations;
mod calls;
mod cli;
mod console;
mod contract;
mod conversations;
mod costs;
mod embedded_llm;
mod embedded_speech;
mod faults;
mod hardening;
mod llama_cpp;
mod media_streams;
mod phone_numbers;
mod providers;
mod recordings;
mod tenancy;
mod turn_models;
mod twilio_provisioning;
mod twilio_webhooks;
