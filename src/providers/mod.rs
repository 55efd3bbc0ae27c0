//! Vendor APIs behind small interfaces. Only this folder knows how an LLM (or, later, an STT or
//! TTS service) is spoken to; every base URL comes from configuration or the organisation's
//! provider settings (DESIGN invariant 4).

pub mod egress;
pub mod llm;
pub mod speech;
