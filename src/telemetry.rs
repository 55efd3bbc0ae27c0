//! Logging and the histogram behind the Prometheus metrics. Log lines are human-readable on
//! stderr, filtered by the `log` setting (or `RUST_LOG`). Secrets never reach a log line: nothing
//! logs request bodies, tokens or credentials.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests starting many apps) are no-ops.
pub fn init(filter: &str) {
    let filter = std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_else(|_| filter.to_owned());
    // ONNX Runtime (the `ort` target) reports each allocation at info, whisper.cpp and llama.cpp
    // each step of loading a model: only their warnings are news, unless the filter names them.
    let mut filter = filter;
    for chatty in ["ort", "whisper_rs", "llama-cpp-2"] {
        if !filter.split(',').any(|directive| directive.trim().starts_with(chatty)) {
            filter = format!("{filter},{chatty}=warn");
        }
    }
    let filter = EnvFilter::new(filter);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Upper bounds of the latency buckets of every histogram, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A Prometheus latency histogram (cumulative buckets, sum and count).
#[derive(Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum_secs: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&mut self, secs: f64) {
        if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound) {
            self.counts[i] += 1;
        }
        self.sum_secs += secs;
        self.count += 1;
    }

    /// Appends the series `name` with `labels` (`key="value",…`, or empty) to `out`.
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        use std::fmt::Write;
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let labels = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{labels} {}", self.sum_secs);
        let _ = writeln!(out, "{name}_count{labels} {}", self.count);
    }
}
