//! Webhook delivery: POST the event JSON to a URL a user typed.
//!
//! - `Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with
//!   the automation's secret; receivers recompute it and reject stale timestamps (replay).
//! - `Idempotency-Key: <event id>`: a retried delivery carries the same key.
//! - 2xx is delivered; anything else, a timeout or a refused connection is retried.
//! - Targets go through the process's egress policy ([`Egress`]): private and local addresses
//!   are refused for good (no retry) unless the operator allowed them. Redirects are not followed.
//! - Every delivery has a 10 s deadline, and at most 4 KiB of a refusal's body is read (200
//!   characters of it kept).

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ActionError;
use crate::domain::event::CallEvent;
use crate::providers::egress::{Egress, Refused};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends webhooks through the egress policy's shared HTTP clients (connection pools).
#[derive(Clone)]
pub struct Deliverer {
    egress: Egress,
}

impl Deliverer {
    pub fn new(egress: Egress) -> Self {
        Self { egress }
    }

    /// Delivers `event` to `url`; returns the receiver's HTTP status.
    pub async fn deliver(
        &self,
        url: &str,
        headers: &BTreeMap<String, String>,
        event: &CallEvent,
        secret: &str,
    ) -> Result<u16, ActionError> {
        let parsed = url::Url::parse(url).map_err(|e| ActionError::Fail(format!("`{url}` is not a URL: {e}")))?;
        let host = parsed.host_str().ok_or_else(|| ActionError::Fail("the URL names no host".into()))?.to_owned();
        let client = self.egress.client_for(&parsed).map_err(|refused| ActionError::Fail(refused.to_string()))?;
        let body = serde_json::to_vec(event).map_err(|e| ActionError::Fail(e.to_string()))?;
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = client
            .post(parsed)
            .timeout(TIMEOUT)
            .header("content-type", "application/json")
            .header("switchboard-signature", signature_header(secret, timestamp, &body))
            .header("idempotency-key", event.event_id.to_string())
            .header("switchboard-event", event.event_type.as_str());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(e) => return Err(delivery_failure(&host, e)),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        // The status only: what a receiver's body says is never copied into what tenants see.
        Err(ActionError::Retry(format!("the receiver answered HTTP {} {}", status.as_u16(), status.canonical_reason().unwrap_or_default())))
    }
}

/// A refused target is final; anything else about a failed send may pass and is retried.
fn delivery_failure(host: &str, error: reqwest::Error) -> ActionError {
    if let Some(refused) = Refused::behind(&error) {
        return ActionError::Fail(refused.to_string());
    }
    ActionError::Retry(format!("could not reach {host}: {}", error.without_url()))
}

/// The signature header for `body` sent at `timestamp`.
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("t={timestamp},v1={}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_and_literals_of_private_addresses_are_refused_for_good() {
        let event = CallEvent::ended(&crate::domain::call::Call::example(), None);
        let deliverer = Deliverer::new(Egress::new(Default::default()));
        for url in ["http://localhost:9/hook", "http://[::1]:9/hook", "http://[64:ff9b::7f00:1]:9/hook", "http://169.254.169.254/latest"] {
            match deliverer.deliver(url, &BTreeMap::new(), &event, "whsec_test").await {
                Err(ActionError::Fail(why)) => assert!(why.contains("private or local address"), "{url}: {why}"),
                other => panic!("{url}: expected a final refusal, got {other:?}"),
            }
        }
        // Allowed, a local target is tried (and here refused by the closed port: retried later).
        let open = Deliverer::new(Egress::unrestricted()).deliver("http://[::1]:9/hook", &BTreeMap::new(), &event, "whsec_test").await;
        assert!(matches!(open, Err(ActionError::Retry(_))), "{open:?}");
    }

    #[tokio::test]
    async fn ipv6_literal_targets_are_delivered_to() {
        let listener = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let receiver = axum::Router::new().route("/hook", axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }));
        tokio::spawn(async move { axum::serve(listener, receiver).await });
        let event = CallEvent::ended(&crate::domain::call::Call::example(), None);
        let delivered = Deliverer::new(Egress::unrestricted())
            .deliver(&format!("http://[::1]:{port}/hook"), &BTreeMap::new(), &event, "whsec_test")
            .await;
        assert!(matches!(delivered, Ok(204)), "{delivered:?}");
    }

    #[test]
    fn signatures_cover_timestamp_and_body() {
        // Independent value: python3 -c "import hmac,hashlib;print(hmac.new(b'whsec_test',b'1700000000.{}',hashlib.sha256).hexdigest())"
        assert_eq!(
            signature_header("whsec_test", 1_700_000_000, b"{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }
}
