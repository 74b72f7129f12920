//! Callbacks: the URL a job's submitter may give to be told when it ends,
//! and the signature on what is POSTed there.
//!
//! A delivery is a POST of the job view (the JSON `GET /api/v1/jobs/{id}`
//! answers) with three headers:
//!
//! - [`TIMESTAMP_HEADER`]: Unix seconds when the delivery was signed;
//! - [`SIGNATURE_HEADER`]: `sha256=` and the lower-case hex HMAC-SHA256,
//!   keyed with `CALLBACK_SECRET`, of the timestamp, a `.`, and the body
//!   exactly as sent ([`signature`]);
//! - [`DELIVERY_HEADER`]: the delivery id, the same on every retry of one
//!   callback, so a receiver can drop duplicates.
//!
//! A receiver recomputes the signature over the raw body, compares in
//! constant time, and refuses a timestamp more than [`REPLAY_WINDOW_SECS`]
//! from its own clock, which bounds how long a captured delivery can be
//! replayed.

use hmac::{KeyInit, Mac};

pub const TIMESTAMP_HEADER: &str = "X-RPA-ML-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-RPA-ML-Signature";
pub const DELIVERY_HEADER: &str = "X-RPA-ML-Delivery";
/// The attempt number (1 for the first delivery), for the receiver's logs.
pub const ATTEMPT_HEADER: &str = "X-RPA-ML-Attempt";

/// How far a receiver should let a delivery's timestamp be from its own
/// clock, in seconds. Each retry is signed afresh, so a late retry is never
/// outside it.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// Longest callback URL accepted.
pub const MAX_URL_LEN: usize = 2048;

type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

/// HMAC-SHA256 of `message` under `key` (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The [`SIGNATURE_HEADER`] value for `body` sent at `timestamp`:
/// `sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut message = Vec::with_capacity(body.len() + 21);
    message.extend_from_slice(timestamp.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    format!("sha256={}", hex::encode(hmac_sha256(secret, &message)))
}

/// Whether `header` is the signature of `body` at `timestamp`, and the
/// timestamp is within [`REPLAY_WINDOW_SECS`] of `now`: what a receiver
/// checks (written here for the tests and as the reference).
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header: &str, now: i64) -> bool {
    if (now - timestamp).abs() > REPLAY_WINDOW_SECS {
        return false;
    }
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return false;
    };
    let mut message = Vec::with_capacity(body.len() + 21);
    message.extend_from_slice(timestamp.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(&message);
    // Constant-time comparison.
    mac.verify_slice(&given).is_ok()
}

/// Why a callback URL is refused; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackUrlError {
    #[error("`callback_url` is not a URL: {0}")]
    Malformed(String),
    #[error("`callback_url` must be at most {MAX_URL_LEN} characters, got {0}")]
    TooLong(usize),
    #[error("`callback_url` must use http or https, got {0:?}")]
    Scheme(String),
    #[error("`callback_url` must not carry a user name or password")]
    Credentials,
    #[error("`callback_url` must not carry a #fragment")]
    Fragment,
    #[error("callbacks are off: CALLBACK_ALLOWED_HOSTS is empty on this deployment")]
    Disabled,
    #[error("`callback_url` host {0:?} is not in CALLBACK_ALLOWED_HOSTS")]
    HostNotAllowed(String),
}

/// Parses and checks a callback URL against the allowed hosts: http or
/// https, a host (and port) the deployment allows, no credentials. The api
/// checks it when the job is submitted and the worker again before each
/// delivery (the list may have changed since).
pub fn check_url(
    config: &crate::config::Config,
    raw: &str,
) -> Result<reqwest::Url, CallbackUrlError> {
    if raw.len() > MAX_URL_LEN {
        return Err(CallbackUrlError::TooLong(raw.len()));
    }
    // The URL parser would quietly drop a tab or newline; refuse them.
    if raw.chars().any(char::is_control) {
        return Err(CallbackUrlError::Malformed(
            "it contains control characters".into(),
        ));
    }
    if raw.trim() != raw {
        return Err(CallbackUrlError::Malformed(
            "it starts or ends with whitespace".into(),
        ));
    }
    let url = reqwest::Url::parse(raw).map_err(|e| CallbackUrlError::Malformed(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CallbackUrlError::Scheme(url.scheme().to_string()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CallbackUrlError::Credentials);
    }
    if url.fragment().is_some() {
        return Err(CallbackUrlError::Fragment);
    }
    let Some(host) = url.host_str() else {
        return Err(CallbackUrlError::Malformed("it has no host".into()));
    };
    if config.callback_allowed_hosts.is_empty() {
        return Err(CallbackUrlError::Disabled);
    }
    let port = url.port_or_known_default().unwrap_or(80);
    if !config.callback_host_allowed(&format!("{host}:{port}")) {
        let shown = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        return Err(CallbackUrlError::HostNotAllowed(shown));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    /// RFC 4231, test cases 1-4, 6 and 7 (case 5 checks a truncated
    /// output, which this never sends).
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let long_key = vec![0xaa_u8; 131];
        let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                long_key.clone(),
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                long_key,
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."
                    .to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (i, (key, data, want)) in cases.iter().enumerate() {
            assert_eq!(hex::encode(hmac_sha256(key, data)), *want, "case {}", i + 1);
        }
    }

    #[test]
    fn the_signature_covers_timestamp_and_body_and_verifies() {
        let secret = b"Jefe";
        let sig = signature(secret, 1_700_000_000, br#"{"job_id":"x"}"#);
        assert_eq!(
            sig,
            format!(
                "sha256={}",
                hex::encode(hmac_sha256(secret, br#"1700000000.{"job_id":"x"}"#))
            )
        );
        let now = 1_700_000_000;
        assert!(verify(secret, now, br#"{"job_id":"x"}"#, &sig, now + 10));
        assert!(!verify(secret, now, br#"{"job_id":"y"}"#, &sig, now));
        assert!(!verify(secret, now + 1, br#"{"job_id":"x"}"#, &sig, now));
        assert!(!verify(b"other", now, br#"{"job_id":"x"}"#, &sig, now));
        assert!(!verify(
            secret,
            now,
            br#"{"job_id":"x"}"#,
            &sig,
            now + REPLAY_WINDOW_SECS + 1
        ));
        assert!(!verify(
            secret,
            now,
            br#"{"job_id":"x"}"#,
            sig.trim_start_matches("sha256="),
            now
        ));
    }

    fn config(hosts: &str) -> crate::config::Config {
        let vars = [
            ("ML_API_KEY", "k"),
            ("CALLBACK_ALLOWED_HOSTS", hosts),
            ("CALLBACK_SECRET", "s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        crate::config::Config::from_vars(&vars).expect("config")
    }

    #[test]
    fn callback_urls_are_checked_against_the_allowed_hosts() {
        let c = config("hooks.example.com, 127.0.0.1:9000, *.corp.example, [::1]");
        for good in [
            "https://hooks.example.com/rpa?x=1",
            "http://HOOKS.example.com:8080/",
            "http://127.0.0.1:9000/done",
            "https://a.corp.example/x",
            "http://[::1]:5000/x",
        ] {
            assert!(
                check_url(&c, good).is_ok(),
                "{good}: {:?}",
                check_url(&c, good)
            );
        }
        let bad = |url: &str| check_url(&c, url).expect_err(url);
        assert_eq!(
            bad("https://evil.example.com/"),
            CallbackUrlError::HostNotAllowed("evil.example.com".into())
        );
        assert_eq!(
            bad("http://127.0.0.1:9001/"),
            CallbackUrlError::HostNotAllowed("127.0.0.1:9001".into())
        );
        assert_eq!(
            bad("http://127.0.0.1/"),
            CallbackUrlError::HostNotAllowed("127.0.0.1".into())
        );
        assert_eq!(
            bad("https://corp.example/"),
            CallbackUrlError::HostNotAllowed("corp.example".into())
        );
        assert_eq!(
            bad("ftp://hooks.example.com/"),
            CallbackUrlError::Scheme("ftp".into())
        );
        assert_eq!(
            bad("file:///etc/passwd"),
            CallbackUrlError::Scheme("file".into())
        );
        assert_eq!(
            bad("https://u:p@hooks.example.com/"),
            CallbackUrlError::Credentials
        );
        assert_eq!(
            bad("https://hooks.example.com/#x"),
            CallbackUrlError::Fragment
        );
        assert!(matches!(bad("not a url"), CallbackUrlError::Malformed(_)));
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(bad(&long), CallbackUrlError::TooLong(_)));
        assert_eq!(
            check_url(&config(""), "https://hooks.example.com/"),
            Err(CallbackUrlError::Disabled)
        );
    }
}
