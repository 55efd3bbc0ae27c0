//! Prometheus metrics for HTTP: request counts by method, route and status, and latency
//! histograms by method and route. Routes are the router's patterns (`/api/v1/apps/{app_id}`),
//! never raw paths, so the number of series stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::telemetry::Histogram;

#[derive(Default)]
struct Series {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
}

#[derive(Default)]
pub struct HttpMetrics {
    series: Mutex<Series>,
}

impl HttpMetrics {
    fn observe(&self, method: &str, route: &str, status: u16, secs: f64) {
        let mut series = self.series.lock().expect("metrics lock is never poisoned");
        *series.requests.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        series.latency.entry((method.to_owned(), route.to_owned())).or_default().observe(secs);
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let series = self.series.lock().expect("metrics lock is never poisoned");
        let mut out = String::new();
        out.push_str("# HELP switchboard_http_requests_total HTTP requests served.\n");
        out.push_str("# TYPE switchboard_http_requests_total counter\n");
        for ((method, route, status), count) in &series.requests {
            let _ = writeln!(out, "switchboard_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}");
        }
        out.push_str("# HELP switchboard_http_request_duration_seconds Time to produce a response.\n");
        out.push_str("# TYPE switchboard_http_request_duration_seconds histogram\n");
        for ((method, route), h) in &series.latency {
            h.render("switchboard_http_request_duration_seconds", &format!("method=\"{method}\",route=\"{route}\""), &mut out);
        }
        out
    }
}

/// Middleware that records every request.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Any other method would make a new series per spelling: they share one.
    let method = match *request.method() {
        Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::OPTIONS => {
            request.method().to_string()
        }
        _ => "OTHER".to_owned(),
    };
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let response = next.run(request).await;
    state.metrics.observe(&method, &route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let metrics = HttpMetrics::default();
        metrics.observe("GET", "/healthz", 200, 0.0005);
        metrics.observe("GET", "/healthz", 200, 0.2);
        metrics.observe("GET", "/healthz", 503, 20.0);
        let text = metrics.render();
        assert!(text.contains("switchboard_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2"));
        assert!(text.contains("switchboard_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"503\"} 1"));
        assert!(text.contains("_bucket{method=\"GET\",route=\"/healthz\",le=\"0.001\"} 1"));
        assert!(text.contains("_bucket{method=\"GET\",route=\"/healthz\",le=\"0.25\"} 2"));
        assert!(text.contains("_bucket{method=\"GET\",route=\"/healthz\",le=\"10\"} 2"));
        assert!(text.contains("_bucket{method=\"GET\",route=\"/healthz\",le=\"+Inf\"} 3"));
        assert!(text.contains("switchboard_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\"} 3"));
    }
}
