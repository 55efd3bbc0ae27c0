//! The egress policy: which addresses a request may reach when its URL was typed by a tenant
//! (LLM providers, webhook actions, and the speech vendors to come). One policy for the whole
//! process, built from the configuration, and one pair of HTTP clients (connection pools) that
//! every such request goes through.
//!
//! - By default only public addresses are reached: none of IANA's special-purpose ranges that
//!   are not globally reachable ([`is_public`]).
//! - `egress_allow` admits named exceptions: a host (`models.internal`, `127.0.0.1`), a
//!   host:port pair (`127.0.0.1:8081`, `[::1]:8081`) or a network (`10.20.0.0/16`) — the usual
//!   self-hosted case of a model server on the same machine or network.
//! - `allow_private_targets` lifts the policy altogether.
//!
//! Names are checked where they are resolved: the guarded client resolves through
//! [`PolicyResolver`], which refuses a name when any of its addresses is neither public nor in an
//! allowed network, so the address checked is the address connected to (no second lookup to
//! rebind). IP literals, which skip resolution, are checked before the request. Redirects are
//! never followed (a redirect to a literal would skip the check).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Which private targets outbound requests may reach.
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    allow_private: bool,
    allowed: Vec<AllowRule>,
}

/// One `egress_allow` entry.
#[derive(Clone, Debug, PartialEq)]
enum AllowRule {
    Host(Host<String>),
    HostPort(Host<String>, u16),
    Network(IpNet),
}

impl EgressPolicy {
    /// The policy of `allow_private_targets` and the `egress_allow` entries; an entry that is not
    /// a host, host:port pair or CIDR is an error naming it.
    pub fn new(allow_private: bool, allowed: &[String]) -> Result<Self, String> {
        let allowed = allowed.iter().map(|entry| AllowRule::parse(entry.trim())).collect::<Result<_, _>>()?;
        Ok(Self { allow_private, allowed })
    }

    /// Whether `ip` may be reached whatever name led to it.
    fn admits_address(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip) || self.allowed.iter().any(|rule| matches!(rule, AllowRule::Network(net) if net.contains(&ip)))
    }

    /// Whether the operator named this host (and port) as a trusted target.
    fn names(&self, host: &Host<&str>, port: u16) -> bool {
        let host = host.to_owned();
        self.allowed.iter().any(|rule| match rule {
            AllowRule::Host(allowed) => same_host(allowed, &host),
            AllowRule::HostPort(allowed, allowed_port) => *allowed_port == port && same_host(allowed, &host),
            AllowRule::Network(_) => false,
        })
    }
}

fn same_host(a: &Host<String>, b: &Host<String>) -> bool {
    match (a, b) {
        (Host::Domain(a), Host::Domain(b)) => a.trim_end_matches('.').eq_ignore_ascii_case(b.trim_end_matches('.')),
        _ => a == b,
    }
}

impl AllowRule {
    fn parse(entry: &str) -> Result<Self, String> {
        let invalid = |why: String| format!("egress_allow: `{entry}` {why}; write a host, a host:port pair or a CIDR network");
        if entry.contains('/') {
            return entry.parse().map(AllowRule::Network).map_err(|e| invalid(format!("is not a network ({e})")));
        }
        if let Ok(ip) = entry.parse::<IpAddr>() {
            return Ok(AllowRule::Network(IpNet::from(ip)));
        }
        if let Ok(address) = entry.parse::<SocketAddr>() {
            let host = match address.ip() {
                IpAddr::V4(v4) => Host::Ipv4(v4),
                IpAddr::V6(v6) => Host::Ipv6(v6),
            };
            return Ok(AllowRule::HostPort(host, address.port()));
        }
        let (host, port) = match entry.rsplit_once(':').filter(|_| !entry.starts_with('[')) {
            Some((host, port)) => {
                (host, Some(port.parse::<u16>().map_err(|_| invalid(format!("has a port `{port}` that is not a number")))?))
            }
            None => (entry, None),
        };
        let host = Host::parse(host).map_err(|e| invalid(format!("is not a host name ({e})")))?;
        if host.to_string().is_empty() {
            return Err(invalid("is empty".to_owned()));
        }
        Ok(match (host, port) {
            (Host::Ipv4(v4), None) => AllowRule::Network(IpNet::from(IpAddr::V4(v4))),
            (Host::Ipv6(v6), None) => AllowRule::Network(IpNet::from(IpAddr::V6(v6))),
            (host, None) => AllowRule::Host(host),
            (host, Some(port)) => AllowRule::HostPort(host, port),
        })
    }
}

/// A target the policy does not let requests reach.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error(
    "{target} a private or local address; this server reaches only public addresses unless its egress_allow setting \
     lists the target (a host, host:port or CIDR) or allow_private_targets is set",
    target = if self.literal { format!("{} is", self.host) } else { format!("{} resolves to {},", self.host, self.address) }
)]
pub struct Refused {
    pub host: String,
    pub address: IpAddr,
    literal: bool,
}

impl Refused {
    /// The refusal behind a failed request, if the policy is why it failed.
    pub fn behind<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
        let mut source = Some(error);
        while let Some(cause) = source {
            if let Some(refused) = cause.downcast_ref::<Refused>() {
                return Some(refused);
            }
            source = cause.source();
        }
        None
    }
}

/// The policy with its HTTP clients: cheap to clone, shared by every outbound request to a
/// tenant's URL.
#[derive(Clone)]
pub struct Egress {
    policy: Arc<EgressPolicy>,
    /// Resolves names through the policy.
    guarded: reqwest::Client,
    /// For targets the operator trusts by name (or every target when the policy is lifted).
    trusted: reqwest::Client,
}

impl Egress {
    pub fn new(policy: EgressPolicy) -> Self {
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION")))
        };
        let policy = Arc::new(policy);
        let guarded = builder().dns_resolver(Arc::new(PolicyResolver { policy: policy.clone() }));
        Self {
            guarded: guarded.build().expect("the HTTP client builds with static settings"),
            trusted: builder().build().expect("the HTTP client builds with static settings"),
            policy,
        }
    }

    /// A policy that lets every target through (tests and tools that talk to loopback peers).
    pub fn unrestricted() -> Self {
        Self::new(EgressPolicy { allow_private: true, allowed: Vec::new() })
    }

    /// The client to send a request to `url` with, or why `url` may not be reached. Names are
    /// checked when the client resolves them.
    pub fn client_for(&self, url: &Url) -> Result<&reqwest::Client, Refused> {
        let Some(host) = url.host() else { return Ok(&self.guarded) };
        let port = url.port_or_known_default().unwrap_or(0);
        if self.policy.allow_private || self.policy.names(&host, port) {
            return Ok(&self.trusted);
        }
        match literal_address(&host) {
            Some(ip) if !self.policy.admits_address(ip) => Err(Refused { host: host.to_string(), address: ip, literal: true }),
            _ => Ok(&self.guarded),
        }
    }

    /// Checks `url` when it is saved, so a tenant hears at once about a target that will be
    /// refused: literals directly, names by resolving them now (a name that does not resolve
    /// yet passes; it is checked again on every connection).
    pub async fn check(&self, url: &Url) -> Result<(), Refused> {
        self.client_for(url)?;
        let (Some(Host::Domain(name)), Some(port)) = (url.host(), url.port_or_known_default()) else { return Ok(()) };
        if self.policy.names(&Host::Domain(name), port) {
            return Ok(());
        }
        let resolver = PolicyResolver { policy: self.policy.clone() };
        match resolver.addresses(name).await {
            Err(LookupError::Refused(refused)) => Err(refused),
            _ => Ok(()),
        }
    }
}

impl Egress {
    /// Opens a TCP connection to `url`'s host and port through the policy, for protocols the
    /// HTTP clients do not speak (WebSockets): a name is resolved and checked now, and the
    /// connection goes to an address that passed, so it cannot rebind in between.
    pub async fn connect(&self, url: &Url) -> Result<tokio::net::TcpStream, ConnectError> {
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return Err(ConnectError::Failed(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the URL names no host")));
        };
        let trusted = self.policy.allow_private || self.policy.names(&host, port);
        let addresses: Vec<SocketAddr> = match (&host, literal_address(&host)) {
            (_, Some(ip)) => vec![SocketAddr::new(ip, port)],
            (Host::Domain(name), None) => {
                let found = tokio::net::lookup_host((*name, port)).await.map_err(ConnectError::Failed)?;
                found.collect()
            }
            _ => Vec::new(),
        };
        if !trusted && let Some(refused) = addresses.iter().find(|a| !self.policy.admits_address(a.ip())) {
            let literal = literal_address(&host).is_some();
            return Err(ConnectError::Refused(Refused { host: host.to_string(), address: refused.ip(), literal }));
        }
        let connect = tokio::net::TcpStream::connect(addresses.as_slice());
        tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| ConnectError::Failed(std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out")))?
            .map_err(ConnectError::Failed)
    }
}

/// Why [`Egress::connect`] did not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Refused(Refused),
    #[error("{0}")]
    Failed(std::io::Error),
}

fn literal_address(host: &Host<&str>) -> Option<IpAddr> {
    match host {
        Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(*v6)),
        Host::Domain(_) => None,
    }
}

/// Resolves names with the system resolver and refuses any with an address the policy does not
/// admit.
struct PolicyResolver {
    policy: Arc<EgressPolicy>,
}

#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error(transparent)]
    Refused(Refused),
    #[error(transparent)]
    Failed(std::io::Error),
}

impl PolicyResolver {
    async fn addresses(&self, host: &str) -> Result<Vec<SocketAddr>, LookupError> {
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await.map_err(LookupError::Failed)?.collect();
        match addresses.iter().find(|a| !self.policy.admits_address(a.ip())) {
            Some(refused) => Err(LookupError::Refused(Refused { host: host.to_owned(), address: refused.ip(), literal: false })),
            None => Ok(addresses),
        }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = PolicyResolver { policy: self.policy.clone() };
        Box::pin(async move {
            match resolver.addresses(name.as_str()).await {
                Ok(addresses) => Ok(Box::new(addresses.into_iter()) as Addrs),
                Err(LookupError::Refused(refused)) => Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>),
                Err(LookupError::Failed(e)) => Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

/// Whether an address is reachable on the public internet: none of IANA's special-purpose
/// ranges that are not globally reachable (loopback, private, link-local, shared, benchmarking,
/// documentation, protocol assignments, relay anycast, discard, site-local, NAT64 local use,
/// Teredo, SRv6, multicast, unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 88 && c == 99)
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
                return !v6.is_loopback() && !v6.is_unspecified() && is_public(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
            }
            if segments[0] == 0x2002 {
                let [_, _, a, b, c, d, ..] = v6.octets();
                return is_public(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
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

    fn egress(allow: &[&str]) -> Egress {
        Egress::new(EgressPolicy::new(false, &allow.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap())
    }

    fn reachable(egress: &Egress, url: &str) -> bool {
        egress.client_for(&Url::parse(url).unwrap()).is_ok()
    }

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

    #[test]
    fn allow_entries_are_hosts_host_port_pairs_or_networks() {
        let parse = |entry: &str| AllowRule::parse(entry);
        assert_eq!(parse("10.0.0.0/8").unwrap(), AllowRule::Network("10.0.0.0/8".parse().unwrap()));
        assert_eq!(parse("127.0.0.1").unwrap(), AllowRule::Network("127.0.0.1/32".parse().unwrap()));
        assert_eq!(parse("::1").unwrap(), AllowRule::Network("::1/128".parse().unwrap()));
        assert_eq!(parse("[::1]").unwrap(), AllowRule::Network("::1/128".parse().unwrap()));
        assert_eq!(parse("[::1]:8081").unwrap(), AllowRule::HostPort(Host::Ipv6("::1".parse().unwrap()), 8081));
        assert_eq!(parse("127.0.0.1:8081").unwrap(), AllowRule::HostPort(Host::Ipv4(Ipv4Addr::LOCALHOST), 8081));
        assert_eq!(parse("Models.Internal").unwrap(), AllowRule::Host(Host::Domain("models.internal".into())));
        assert_eq!(parse("models.internal:8000").unwrap(), AllowRule::HostPort(Host::Domain("models.internal".into()), 8000));
        for bad in ["10.0.0.0/33", "models:http", "", "exa mple"] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("egress_allow") && error.contains("host:port"), "{bad}: {error}");
        }
    }

    #[test]
    fn only_what_is_allowed_gets_through() {
        let closed = egress(&[]);
        for url in
            ["http://127.0.0.1:8081/v1", "http://[::1]:8081/v1", "http://169.254.169.254/latest", "http://198.18.0.1/", "http://[fd00::1]/"]
        {
            let refused = closed.client_for(&Url::parse(url).unwrap()).unwrap_err();
            assert!(refused.to_string().contains("egress_allow") && refused.to_string().contains("allow_private_targets"), "{refused}");
        }
        assert!(reachable(&closed, "https://api.openai.com/v1") && reachable(&closed, "http://[2606:4700::1111]/"));

        let open = egress(&["127.0.0.1:8081", "10.20.0.0/16", "models.internal"]);
        assert!(reachable(&open, "http://127.0.0.1:8081/v1"));
        assert!(!reachable(&open, "http://127.0.0.1:8082/v1"), "another port of an allowed host:port");
        assert!(reachable(&open, "http://10.20.3.4/v1") && !reachable(&open, "http://10.21.0.1/v1"));
        assert!(std::ptr::eq(open.client_for(&Url::parse("http://MODELS.internal:9000/v1").unwrap()).unwrap(), &open.trusted));
        assert!(std::ptr::eq(open.client_for(&Url::parse("http://other.internal/v1").unwrap()).unwrap(), &open.guarded));
        assert!(reachable(&Egress::unrestricted(), "http://127.0.0.1:1/"));
    }

    #[tokio::test]
    async fn names_are_refused_by_what_they_resolve_to() {
        let closed = egress(&[]);
        let refused = closed.check(&Url::parse("http://localhost:9/hook").unwrap()).await.unwrap_err();
        assert!(refused.to_string().starts_with("localhost resolves to "), "{refused}");
        let error = closed.guarded.get("http://localhost:9/hook").send().await.unwrap_err();
        assert_eq!(Refused::behind(&error).map(|r| r.host.as_str()), Some("localhost"), "{error:?}");
        assert!(egress(&["localhost"]).check(&Url::parse("http://localhost:9/").unwrap()).await.is_ok());
        assert!(egress(&["127.0.0.0/8", "::1"]).check(&Url::parse("http://localhost:9/").unwrap()).await.is_ok());
    }
}
