//! The agent runtime, transport-neutral (DESIGN invariant 3): it hears caller events (speech as
//! text, interruptions, digits, hang-up) and answers with commands (speak, switch language, end).
//! `session` runs one conversation (the state machine); `call_log` is where it writes the call
//! down; `assembly` builds a call's session from storage; `live` registers this node's sessions
//! (draining on shutdown, metrics); `memory` bounds what a long call shows the model; `prompt` builds what the model is told;
//! `tools` are the built-in phone tools; `model` finds the agent's model; `usage` meters what a
//! call uses (tokens, speech); `greeting` writes generated first messages. Adapters in `telephony/` translate a carrier's protocol to and from it.

pub mod assembly;
pub mod call_log;
pub mod greeting;
pub mod live;
pub mod memory;
pub mod model;
pub mod prompt;
pub mod session;
pub mod speech;
pub mod tools;
pub mod usage;
pub mod voice;
