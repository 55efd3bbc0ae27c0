//! Logging. Human-readable lines on stderr, filtered by the `log` setting (or `RUST_LOG`).
//! Secrets never reach a log line: nothing logs request bodies, tokens or credentials.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests starting many apps) are no-ops.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
