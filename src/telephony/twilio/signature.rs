//! `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + sorted form parameters)).
//!
//! The URL is the public one Twilio called (from `public_base_url`, never the Host header).
//! Twilio drops the port of https voice callbacks and keeps it for http, so, like the official
//! libraries, we accept the URL with its port removed or with the scheme's default port added.
//! WebSocket handshakes are signed over the `wss://` URL with no parameters; Twilio's own advice
//! is to also try it with a trailing slash.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The signature of `url` with form `params` under `auth_token`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Names and values in byte order; a repeated identical pair counts once.
    sorted.sort();
    sorted.dedup();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// Whether `signature` is valid for a form request to `url` (any accepted port variant).
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    url_variants(url).iter().any(|candidate| equal(&sign(auth_token, candidate, params), signature))
}

/// Whether `signature` is valid for a WebSocket handshake to `url`, with or without a trailing
/// slash, in any accepted port variant.
pub fn verify_websocket(auth_token: &str, url: &str, signature: &str) -> bool {
    let mut candidates = vec![url.to_owned()];
    if !url.ends_with('/') && !url.contains('?') {
        candidates.push(format!("{url}/"));
    }
    candidates.iter().any(|candidate| verify(auth_token, candidate, &[], signature))
}

fn equal(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// The URL as given, without an explicit port, and with the scheme's default port.
fn url_variants(raw: &str) -> Vec<String> {
    let mut variants = vec![raw.to_owned()];
    let Ok(mut url) = url::Url::parse(raw) else { return variants };
    let default_port = match url.scheme() {
        "https" | "wss" => 443,
        "http" | "ws" => 80,
        _ => return variants,
    };
    // `Url` hides a port equal to the scheme's default, so build the explicit form by hand.
    let _ = url.set_port(None);
    let without_port = url.to_string();
    let host = url.host_str().unwrap_or_default().to_owned();
    let authority = format!("{}://{}", url.scheme(), host);
    let with_default_port = without_port.replacen(&authority, &format!("{authority}:{default_port}"), 1);
    for variant in [without_port, with_default_port] {
        if !variants.contains(&variant) {
            variants.push(variant);
        }
    }
    variants
}

#[cfg(test)]
mod tests {
    //! Vectors from shared/specs/twilio.md §2.5.
    use super::*;

    /// Fuzz target: for any token, URL and parameters, a request signs and verifies (under
    /// every port variant of an http(s) URL), a changed parameter does not, and any signature
    /// text is judged without a panic.
    #[test]
    fn fuzz_any_signed_request() {
        bolero::check!().with_type::<(String, u16, String, Vec<(String, String)>, String)>().for_each(
            |(token, port, path, params, claimed)| {
                let url = format!("https://sb.example.com:{port}/{path}");
                let signature = sign(token, &url, params);
                assert!(verify(token, &url, params, &signature));
                let mut changed = params.clone();
                changed.push(("Tampered".to_owned(), "1".to_owned()));
                assert!(!verify(token, &url, &changed, &signature));
                let _ = verify(token, &url, params, claimed);
                let _ = verify_websocket(token, path, claimed);
            },
        );
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn v2_params() -> Vec<(String, String)> {
        params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
            ("Caller", "+14158675309"),
        ])
    }

    #[test]
    fn v1_documented_example() {
        let p = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(sign("12345", "https://example.com/myapp.php?foo=1&bar=2", &p), "L/OH5YylLD5NRKLltdqwSvS0BnU=");
    }

    #[test]
    fn v2_port_variants() {
        let p = v2_params();
        assert_eq!(sign("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &p), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert_eq!(sign("12345", "https://mycompany.com:443/myapp.php?foo=1&bar=2", &p), "kvajT1Ptam85bY51eRf/AJRuM3w=");
        assert_eq!(sign("12345", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", &p), "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=");
        assert_eq!(sign("12345", "http://mycompany.com:80/myapp.php?foo=1&bar=2", &p), "0ZXoZLH/DfblKGATFgpif+LLRf4=");
        assert!(verify("12345", "https://mycompany.com:1234/myapp.php?foo=1&bar=2", &p, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
        assert!(verify("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &p, "kvajT1Ptam85bY51eRf/AJRuM3w="));
        assert!(verify("12345", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", &p, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="));
        assert!(!verify("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &p, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="));
        assert!(!verify("54321", "https://mycompany.com/myapp.php?foo=1&bar=2", &p, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    }

    #[test]
    fn v3_repeated_parameters() {
        let p = params(&[("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")]);
        assert_eq!(sign("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &p), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    }

    #[test]
    fn v4_json_body_is_signed_through_the_url() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        assert_eq!(sign("12345", url, &[]), "a9nBmqA0ju/hNViExpshrM61xv4=");
    }

    #[test]
    fn v5_websocket_and_voice_webhook() {
        assert_eq!(sign("12345", "wss://example.com/relay", &[]), "mbNFdPBlYbXhXfiw/E6CoJbYji0=");
        assert_eq!(sign("12345", "wss://example.com/relay/", &[]), "SdJXd5Km2RHudCSycpRyuzI2PT0=");
        assert!(verify_websocket("12345", "wss://example.com/relay", "SdJXd5Km2RHudCSycpRyuzI2PT0="));
        assert!(verify_websocket("12345", "wss://example.com/relay", "mbNFdPBlYbXhXfiw/E6CoJbYji0="));
        assert!(!verify_websocket("12345", "wss://example.com/relay", "L/OH5YylLD5NRKLltdqwSvS0BnU="));
        let zeros = "0".repeat(32);
        let p = params(&[
            ("AccountSid", &format!("AC{zeros}")),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", &format!("CA{}1", "0".repeat(31))),
            ("CallStatus", "ringing"),
            ("Called", "+18005550101"),
            ("Caller", "+14155550100"),
            ("Direction", "inbound"),
            ("From", "+14155550100"),
            ("To", "+18005550101"),
        ]);
        assert_eq!(sign("12345", "https://example.com/twilio/voice", &p), "5Mk48wE0U9KdKLKn+AekSJR9p20=");
    }

    #[test]
    fn names_sort_by_byte_so_upper_case_comes_first() {
        let a = params(&[("a", "1"), ("Z", "2")]);
        let b = params(&[("Z", "2"), ("a", "1")]);
        assert_eq!(sign("k", "https://x.test/", &a), sign("k", "https://x.test/", &b));
        let mut mac = Hmac::<Sha1>::new_from_slice(b"k").unwrap();
        mac.update(b"https://x.test/Z2a1");
        assert_eq!(sign("k", "https://x.test/", &a), BASE64.encode(mac.finalize().into_bytes()));
    }
}
