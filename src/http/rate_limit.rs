//! Request rate limits of the REST API, per API token and per client address, as token buckets:
//! each key may send a burst of a tenth of its per-minute rate at once, then its rate. A request
//! over the limit is answered 429 with `Retry-After` (seconds until the next request is let
//! through). Every request under `/api/v1` counts against its address (refused and unauthorised
//! ones too, so token guessing is slowed); authenticated ones also against their token.
//!
//! Limits are held in memory by each node: behind a load balancer with N nodes, a client that
//! spreads its requests may send up to N times the rate. The client address is the connection's
//! peer, or, when the peer is one of `trusted_proxies`, the last address in `X-Forwarded-For`
//! that is not a trusted proxy.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use super::AppState;
use super::error::ApiError;
use crate::config::Config;
use crate::domain::ids::TokenId;

/// Keys idle long enough to have a full bucket are forgotten once this many are held.
const MAX_TRACKED_KEYS: usize = 50_000;

/// The API's limits and the proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Default)]
pub struct RateLimits {
    per_token: Option<Limiter<TokenId>>,
    per_address: Option<Limiter<IpAddr>>,
    trusted_proxies: Vec<IpNet>,
}

impl RateLimits {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let trusted_proxies = config
            .trusted_proxies
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| anyhow::anyhow!("trusted_proxies: `{entry}` is not an address or a CIDR network"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            per_token: Limiter::per_minute(config.rate_limit_per_token),
            per_address: Limiter::per_minute(config.rate_limit_per_address),
            trusted_proxies,
        })
    }

    /// Counts a request of an authenticated token.
    pub fn admit_token(&self, token: TokenId) -> Result<(), ApiError> {
        match &self.per_token {
            Some(limiter) => {
                limiter.admit(token, Instant::now()).map_err(|wait| ApiError::RateLimited { retry_after: wait, per: "API token" })
            }
            None => Ok(()),
        }
    }

    /// The client's address: the peer, or what trusted proxies in front of us say it was.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let forwarded =
            headers.get_all("x-forwarded-for").iter().filter_map(|value| value.to_str().ok()).flat_map(|value| value.split(','));
        let hops: Vec<IpAddr> = forwarded.filter_map(|hop| hop.trim().parse().ok()).collect();
        hops.into_iter().rev().find(|hop| !self.is_trusted(*hop)).unwrap_or(peer)
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&address))
    }
}

/// Middleware of the API routes: counts each request against its client address.
pub async fn by_address(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let (Some(limiter), Some(ConnectInfo(peer))) =
        (&state.rate_limits.per_address, request.extensions().get::<ConnectInfo<SocketAddr>>())
    {
        let client = state.rate_limits.client_address(peer.ip(), request.headers());
        if let Err(wait) = limiter.admit(client, Instant::now()) {
            return ApiError::RateLimited { retry_after: wait, per: "client address" }.into_response();
        }
    }
    next.run(request).await
}

/// Token buckets, one per key.
#[derive(Debug)]
struct Limiter<K> {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl<K: Hash + Eq> Limiter<K> {
    /// `None` for 0 (no limit).
    fn per_minute(rate: u32) -> Option<Self> {
        (rate > 0).then(|| Self {
            per_second: f64::from(rate) / 60.0,
            burst: (f64::from(rate) / 10.0).max(1.0),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token for `key`, or says how long until one is there.
    fn admit(&self, key: K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().expect("the rate limiter's lock is never poisoned");
        if buckets.len() >= MAX_TRACKED_KEYS {
            let full_after = self.burst / self.per_second;
            buckets.retain(|_, bucket| now.saturating_duration_since(bucket.updated).as_secs_f64() < full_after);
        }
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: self.burst, updated: now });
        let refilled = now.saturating_duration_since(bucket.updated).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refilled).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = Limiter::per_minute(600).unwrap(); // 10 a second, bursts of 60
        let start = Instant::now();
        assert!((0..60).all(|_| limiter.admit("a", start).is_ok()));
        let wait = limiter.admit("a", start).unwrap_err();
        assert!((Duration::from_millis(99)..=Duration::from_millis(101)).contains(&wait), "{wait:?}");
        assert!(limiter.admit("b", start).is_ok(), "keys are counted apart");
        assert!(limiter.admit("a", start + Duration::from_millis(100)).is_ok());
        assert!(limiter.admit("a", start + Duration::from_millis(150)).is_err());
        let later = start + Duration::from_secs(60);
        assert!((0..60).all(|_| limiter.admit("a", later).is_ok()), "the bucket refills to its burst, no more");
        assert!(limiter.admit("a", later).is_err());
        assert!(Limiter::<&str>::per_minute(0).is_none());
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let limits = RateLimits { trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()], ..Default::default() };
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.0.0.3".parse().unwrap());
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(limits.client_address(proxy, &headers), "203.0.113.9".parse::<IpAddr>().unwrap(), "the hop the proxy saw");
        let direct: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(limits.client_address(direct, &headers), direct, "anyone else's header is not believed");
        assert_eq!(limits.client_address(proxy, &HeaderMap::new()), proxy);
    }
}
