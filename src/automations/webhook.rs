//! Webhook delivery: POST the event JSON to a URL a user typed.
//!
//! - `Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with
//!   the automation's secret; receivers recompute it and reject stale timestamps (replay).
//! - `Idempotency-Key: <event id>`: a retried delivery carries the same key.
//! - 2xx is delivered; anything else, a timeout or a refused connection is retried.
//! - SSRF guard: unless `allow_private_webhook_targets`, the host is resolved here and refused
//!   when any address is loopback, private, link-local, unique-local, CGNAT or otherwise not
//!   public; the request then goes to the checked address (no second lookup to rebind) and
//!   redirects are not followed.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ActionError;
use crate::domain::event::CallEvent;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends webhooks.
#[derive(Clone)]
pub struct Deliverer {
    allow_private: bool,
}

impl Deliverer {
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
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
        let port = parsed.port_or_known_default().unwrap_or(443);
        let mut client =
            reqwest::Client::builder().timeout(TIMEOUT).connect_timeout(Duration::from_secs(5)).redirect(reqwest::redirect::Policy::none());
        if !self.allow_private {
            let address = public_address(&host, port).await?;
            client = client.resolve(&host, address);
        }
        let client = client.build().map_err(|e| ActionError::Retry(format!("building the HTTP client: {e}")))?;
        let body = serde_json::to_vec(event).map_err(|e| ActionError::Fail(e.to_string()))?;
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = client
            .post(parsed)
            .header("content-type", "application/json")
            .header("user-agent", concat!("Switchboard/", env!("CARGO_PKG_VERSION")))
            .header("switchboard-signature", signature_header(secret, timestamp, &body))
            .header("idempotency-key", event.event_id.to_string())
            .header("switchboard-event", event.event_type.as_str());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.body(body).send().await.map_err(|e| ActionError::Retry(format!("could not reach {host}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let text: String = response.text().await.unwrap_or_default().chars().take(200).collect();
        Err(ActionError::Retry(format!("the receiver answered HTTP {}: {text}", status.as_u16())))
    }
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

/// The first address of `host`, refused when any of its addresses is not public.
async fn public_address(host: &str, port: u16) -> Result<SocketAddr, ActionError> {
    let addresses: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(|e| ActionError::Retry(format!("could not resolve {host}: {e}")))?.collect();
    if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
        return Err(ActionError::Fail(format!(
            "{host} resolves to {}, a private or local address; webhooks may only reach public addresses unless \
             allow_private_webhook_targets is set",
            private.ip()
        )));
    }
    addresses.first().copied().ok_or_else(|| ActionError::Retry(format!("{host} has no address")))
}

/// Whether an address is reachable on the public internet (not loopback, private, link-local,
/// shared, documentation, multicast or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
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
