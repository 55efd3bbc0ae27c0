//! Webhook delivery: POST the event JSON to a URL a user typed.
//!
//! - `Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with
//!   the automation's secret; receivers recompute it and reject stale timestamps (replay).
//! - `Idempotency-Key: <event id>`: a retried delivery carries the same key.
//! - 2xx is delivered; anything else, a timeout or a refused connection is retried.
//! - SSRF guard: unless `allow_private_webhook_targets`, the one HTTP client of all deliveries
//!   resolves names through [`PublicOnly`], which refuses a name at connect time when any of its
//!   addresses is not public (loopback, private, link-local, unique-local, CGNAT, NAT64
//!   `64:ff9b::/96`, 6to4 `2002::/16`, IPv4-mapped, documentation…), so the address checked is the
//!   address connected to (no second lookup to rebind). IP-literal hosts, which skip resolution,
//!   are checked the same way. Redirects are not followed.
//! - Every delivery has a 10 s deadline, and at most 4 KiB of a refusal's body is read (200
//!   characters of it kept).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::Sha256;

use super::ActionError;
use crate::domain::event::CallEvent;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends webhooks through one shared HTTP client (connection pool).
#[derive(Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    allow_private: bool,
}

impl Deliverer {
    pub fn new(allow_private: bool) -> Self {
        let mut client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            client = client.dns_resolver(Arc::new(PublicOnly));
        }
        Self { client: client.build().expect("the webhook client builds with static settings"), allow_private }
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
        let host = parsed.host().ok_or_else(|| ActionError::Fail("the URL names no host".into()))?;
        let literal = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        let host = host.to_string();
        if let Some(ip) = literal.filter(|ip| !self.allow_private && !is_public(*ip)) {
            return Err(ActionError::Fail(PrivateTarget { host, address: ip }.to_string()));
        }
        let body = serde_json::to_vec(event).map_err(|e| ActionError::Fail(e.to_string()))?;
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = self
            .client
            .post(parsed)
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
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if let Some(private) = cause.downcast_ref::<PrivateTarget>() {
            return ActionError::Fail(private.to_string());
        }
        source = cause.source();
    }
    ActionError::Retry(format!("could not reach {host}: {}", error.without_url()))
}

/// A webhook target that is not on the public internet.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host} resolves to {address}, a private or local address; webhooks may only reach public addresses unless \
     allow_private_webhook_targets is set"
)]
struct PrivateTarget {
    host: String,
    address: IpAddr,
}

/// Resolves names with the system resolver and refuses any with an address that is not public.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
                return Err(Box::new(PrivateTarget { host, address: private.ip() }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
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

/// Whether an address is reachable on the public internet: none of IANA's special-purpose
/// ranges that are not globally reachable (loopback, private, link-local, shared, benchmarking,
/// documentation, protocol assignments, relay anycast, discard, site-local, NAT64 local use,
/// Teredo, SRv6, multicast, unspecified).
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
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 88 && v4.octets()[2] == 99)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            // Addresses that carry an IPv4 address: IPv4-mapped and IPv4-compatible (::a.b.c.d),
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) are judged by the IPv4 address inside.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            if segments[..6] == [0; 6] || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [.., a, b, c, d] = v6.octets();
                return !v6.is_loopback() && !v6.is_unspecified() && is_public(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            if segments[0] == 0x2002 {
                let [_, _, a, b, c, d, ..] = v6.octets();
                return is_public(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            let first = segments[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || (first == 0x2001 && segments[1] == 0x0db8)
                || (first == 0x2001 && segments[1] < 0x0200 && !matches!(segments[1], 0x0001 | 0x0003 | 0x0004 | 0x0020..=0x002f))
                || (first == 0x0064 && segments[1] == 0xff9b && segments[2] == 0x0001)
                || (first == 0x0100 && segments[1..4] == [0, 0, 0])
                || (first & 0xfff0) == 0x3ff0
                || first == 0x5f00)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_purpose_range_that_is_not_global_is_refused() {
        for address in [
            "198.18.0.1",
            "198.19.255.254",
            "192.88.99.1",
            "192.0.0.8",
            "100.127.0.1",
            "240.0.0.1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:10::1",
            "3fff::1",
            "5f00::1",
            "fec0::1",
        ] {
            assert!(!is_public(address.parse().unwrap()), "{address} counted as public");
        }
        for address in ["8.8.8.8", "198.20.0.1", "192.88.100.1", "2606:4700::1111", "2001:4860::8888", "2001:20::1"] {
            assert!(is_public(address.parse().unwrap()), "{address} counted as private");
        }
    }

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
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn names_and_literals_of_private_addresses_are_refused_for_good() {
        let event = CallEvent::ended(&crate::domain::call::Call::example(), None);
        let deliverer = Deliverer::new(false);
        for url in ["http://localhost:9/hook", "http://[::1]:9/hook", "http://[64:ff9b::7f00:1]:9/hook", "http://169.254.169.254/latest"] {
            match deliverer.deliver(url, &BTreeMap::new(), &event, "whsec_test").await {
                Err(ActionError::Fail(why)) => assert!(why.contains("private or local address"), "{url}: {why}"),
                other => panic!("{url}: expected a final refusal, got {other:?}"),
            }
        }
        // Allowed, a local target is tried (and here refused by the closed port: retried later).
        let open = Deliverer::new(true).deliver("http://[::1]:9/hook", &BTreeMap::new(), &event, "whsec_test").await;
        assert!(matches!(open, Err(ActionError::Retry(_))), "{open:?}");
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
