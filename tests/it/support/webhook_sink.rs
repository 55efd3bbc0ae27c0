//! A webhook receiver on 127.0.0.1 that records what it gets (headers and body) and can be
//! switched "down" (it answers 503) to exercise retries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// One delivery as received.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone, Default)]
pub struct WebhookSink {
    pub url: String,
    received: Arc<Mutex<Vec<Delivery>>>,
    /// Requests refused with 503 while down.
    refused: Arc<Mutex<usize>>,
    down: Arc<AtomicBool>,
}

impl WebhookSink {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = WebhookSink { url: format!("http://{}/hook", listener.local_addr().unwrap()), ..Default::default() };
        let app = Router::new().route("/hook", post(receive)).with_state(sink.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        sink
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.received.lock().unwrap().clone()
    }

    pub fn refused(&self) -> usize {
        *self.refused.lock().unwrap()
    }
}

async fn receive(State(sink): State<WebhookSink>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if sink.down.load(Ordering::SeqCst) {
        *sink.refused.lock().unwrap() += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    sink.received.lock().unwrap().push(Delivery { headers, body });
    StatusCode::NO_CONTENT
}
