//! The kinds of value a variable can hold, each turning the operator's text
//! into a typed value or into a message that says what was expected.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

use super::cron::normalize_cron;
use super::{ConfigError, LogFormat, invalid, redact_url};

// Caps far above any sane setting; they exist so that `Instant + d` and
// chrono date arithmetic downstream can never overflow and panic.
const MAX_SECS: u64 = 365 * 24 * 60 * 60;
const MAX_MILLIS: u64 = MAX_SECS * 1000;
const MAX_DAYS: u32 = 36_500;

/// Looks variables up by name, treating blank values as unset.
pub(super) struct Reader<'a> {
    pub(super) vars: &'a HashMap<String, String>,
}

impl Reader<'_> {
    /// The variable's value, or its default's text when unset or blank,
    /// parsed by `kind`; the same parser reads both, so a default obeys the
    /// bounds a value must.
    pub(super) fn read<K: Kind>(
        &self,
        var: &'static str,
        default: &str,
        kind: &K,
    ) -> Result<K::Value, ConfigError> {
        // Trimmed because a trailing newline in a mounted secret or a pasted
        // value is a classic cause of "wrong key" and "invalid port" at 3 am.
        let raw = match self.vars.get(var).map(|value| value.trim()) {
            Some("") if !kind.blank_is_a_value() => default,
            Some(value) => value,
            None => default,
        };
        kind.parse(raw).map_err(|message| invalid(var, message))
    }
}

/// How one variable's text becomes its typed value.
pub(super) trait Kind {
    type Value;

    /// `raw` is trimmed; the error is the message that follows `VAR: `.
    fn parse(&self, raw: &str) -> Result<Self::Value, String>;

    /// Whether a variable set to a blank value is an error rather than unset.
    fn blank_is_a_value(&self) -> bool {
        false
    }

    /// The range an operator may set, as the variable's doc line states it
    /// (checked by a test, so the doc and the check cannot drift apart).
    #[cfg_attr(not(test), allow(dead_code, reason = "only the doc test asks"))]
    fn bounds(&self) -> Option<String> {
        None
    }
}

/// Any text.
pub(super) struct Text;

impl Kind for Text {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, String> {
        Ok(raw.to_owned())
    }
}

/// A filesystem path, taken as written.
pub(super) struct Path;

impl Kind for Path {
    type Value = PathBuf;
    fn parse(&self, raw: &str) -> Result<PathBuf, String> {
        Ok(PathBuf::from(raw))
    }
}

/// A secret, empty when unset.
pub(super) struct Secret;

impl Kind for Secret {
    type Value = SecretString;
    fn parse(&self, raw: &str) -> Result<SecretString, String> {
        Ok(SecretString::from(raw.to_owned()))
    }
}

/// `None` when unset or blank (declared with an empty default), else the inner kind.
pub(super) struct Optional<K>(pub(super) K);

impl<K: Kind> Kind for Optional<K> {
    type Value = Option<K::Value>;
    fn parse(&self, raw: &str) -> Result<Self::Value, String> {
        if raw.is_empty() {
            Ok(None)
        } else {
            self.0.parse(raw).map(Some)
        }
    }
    fn bounds(&self) -> Option<String> {
        self.0.bounds()
    }
}

pub(super) struct Bool;

impl Kind for Bool {
    type Value = bool;
    fn parse(&self, raw: &str) -> Result<bool, String> {
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(format!("expected true/false/1/0/yes/no, got {raw:?}")),
        }
    }
}

/// An integer in `min..=max` (unbounded above when `max` is None).
pub(super) struct Int<T> {
    min: T,
    max: Option<T>,
    unit: &'static str,
}

impl<T> Int<T> {
    pub(super) fn at_least(min: T) -> Self {
        Int {
            min,
            max: None,
            unit: "",
        }
    }

    pub(super) fn between(min: T, max: T) -> Self {
        Int {
            min,
            max: Some(max),
            unit: "",
        }
    }

    pub(super) fn in_unit(self, unit: &'static str) -> Self {
        Int { unit, ..self }
    }
}

impl<T> Kind for Int<T>
where
    T: FromStr + PartialOrd + Copy + fmt::Display,
{
    type Value = T;
    fn parse(&self, raw: &str) -> Result<T, String> {
        int(raw, self.min, self.max, self.unit)
    }
    fn bounds(&self) -> Option<String> {
        Some(match self.max {
            Some(max) => format!("{}-{max}", self.min),
            None => format!(">= {}", self.min),
        })
    }
}

fn int<T>(raw: &str, min: T, max: Option<T>, unit: &str) -> Result<T, String>
where
    T: FromStr + PartialOrd + Copy + fmt::Display,
{
    let in_range = |v: &T| *v >= min && max.is_none_or(|max| *v <= max);
    raw.parse::<T>().ok().filter(in_range).ok_or_else(|| {
        let lo = min.to_string();
        let mut expected = match (lo.as_str(), max) {
            ("1", None) => "a positive integer".to_owned(),
            ("0", None) => "a non-negative integer".to_owned(),
            (_, None) => format!("an integer >= {lo}"),
            (_, Some(hi)) => format!("an integer {lo}-{hi}"),
        };
        if !unit.is_empty() {
            expected.push_str(&format!(" ({unit})"));
        }
        format!("expected {expected}, got {raw:?}")
    })
}

/// A number of days, at least one.
pub(super) struct Days;

impl Kind for Days {
    type Value = u32;
    fn parse(&self, raw: &str) -> Result<u32, String> {
        int(raw, 1, Some(MAX_DAYS), "days")
    }
    fn bounds(&self) -> Option<String> {
        Some(">= 1".to_owned())
    }
}

/// Whole seconds, at least `min`.
pub(super) struct Secs {
    pub(super) min: u64,
}

impl Kind for Secs {
    type Value = Duration;
    fn parse(&self, raw: &str) -> Result<Duration, String> {
        int(raw, self.min, Some(MAX_SECS), "seconds").map(Duration::from_secs)
    }
    fn bounds(&self) -> Option<String> {
        // Zero always means something particular, which the doc says in words.
        (self.min > 0).then(|| format!(">= {}", self.min))
    }
}

/// Milliseconds, at least one and at most `max` (when given).
pub(super) struct Millis {
    pub(super) max: Option<u64>,
}

impl Kind for Millis {
    type Value = Duration;
    fn parse(&self, raw: &str) -> Result<Duration, String> {
        let max = self.max.unwrap_or(MAX_MILLIS);
        int(raw, 1, Some(max), "milliseconds").map(Duration::from_millis)
    }
    fn bounds(&self) -> Option<String> {
        Some(match self.max {
            Some(max) => format!("1-{max}"),
            None => ">= 1".to_owned(),
        })
    }
}

pub(super) struct Port;

impl Kind for Port {
    type Value = u16;
    fn parse(&self, raw: &str) -> Result<u16, String> {
        raw.parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("expected a port number 1-65535, got {raw:?}"))
    }
    fn bounds(&self) -> Option<String> {
        Some("1-65535".to_owned())
    }
}

/// A finite number in one of two ranges.
pub(super) enum Float {
    Positive,
    ZeroToOne,
}

impl Kind for Float {
    type Value = f64;
    fn parse(&self, raw: &str) -> Result<f64, String> {
        let (ok, expected): (fn(f64) -> bool, &str) = match self {
            Float::Positive => (|v| v > 0.0, "a positive number"),
            Float::ZeroToOne => (|v| (0.0..=1.0).contains(&v), "a number from 0 to 1"),
        };
        raw.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && ok(*v))
            .ok_or_else(|| format!("expected {expected}, got {raw:?}"))
    }
    fn bounds(&self) -> Option<String> {
        Some(
            match self {
                Float::Positive => "> 0",
                Float::ZeroToOne => "0 to 1",
            }
            .to_owned(),
        )
    }
}

/// `text` or `json`, in any case.
pub(super) struct TextOrJson;

impl Kind for TextOrJson {
    type Value = LogFormat;
    fn parse(&self, raw: &str) -> Result<LogFormat, String> {
        match raw.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("expected text or json, got {raw:?}")),
        }
    }
}

/// A level or `EnvFilter` directives, stored normalised.
pub(super) struct LogLevel;

impl Kind for LogLevel {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, String> {
        normalize_log_filter(raw).ok_or_else(|| {
            format!(
                "expected a level (trace, debug, info, warn, error, off) or EnvFilter \
                 directives such as \"info,rpa_ml=debug\", got {raw:?}"
            )
        })
    }
}

/// An address or hostname to listen on; an IPv6 address is stored without brackets.
pub(super) struct ListenHost;

impl Kind for ListenHost {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, String> {
        let unbracketed = raw
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(raw);
        if unbracketed.parse::<Ipv6Addr>().is_ok()
            || unbracketed.parse::<Ipv4Addr>().is_ok()
            || valid_hostname(unbracketed)
        {
            Ok(unbracketed.to_owned())
        } else {
            Err(format!(
                "expected an IP address or hostname to listen on, got {raw:?}"
            ))
        }
    }
}

/// A SQLite or PostgreSQL URL, or a SQLite file's path.
pub(super) struct DatabaseUrl;

impl Kind for DatabaseUrl {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, String> {
        let lower = raw.to_ascii_lowercase();
        if ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|prefix| lower.starts_with(prefix))
        {
            return Ok(raw.to_owned());
        }
        // One spelling downstream: every SQLite database arrives as a `sqlite:` URL.
        if !raw.contains("://") && (lower.ends_with(".sqlite") || lower.ends_with(".db")) {
            return Ok(format!("sqlite://{raw}"));
        }
        Err(format!(
            "expected a sqlite:, postgres:// or postgresql:// URL, or a path ending \
             .sqlite or .db, got {:?}",
            redact_url(raw)
        ))
    }
}

pub(super) struct RedisUrl;

impl Kind for RedisUrl {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, String> {
        let lower = raw.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("redis://")
            .or_else(|| lower.strip_prefix("rediss://"));
        match rest {
            Some(rest) if !rest.is_empty() => Ok(raw.to_owned()),
            _ => Err(format!(
                "expected a redis:// or rediss:// URL with a host, got {:?}",
                redact_url(raw)
            )),
        }
    }
}

pub(super) struct QueuePrefix;

impl Kind for QueuePrefix {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, String> {
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("expected a key prefix without spaces, got {raw:?}"));
        }
        Ok(raw.to_owned())
    }
}

/// `*`, or a list of hostnames with optional ports, stored lower-cased.
pub(super) struct AllowedHosts;

impl Kind for AllowedHosts {
    type Value = Vec<String>;

    // Set but blank is refused rather than read as "*": an operator who
    // wrote ALLOWED_HOSTS= more likely meant "none" than "any".
    fn blank_is_a_value(&self) -> bool {
        true
    }

    fn parse(&self, raw: &str) -> Result<Vec<String>, String> {
        let expected = "expected \"*\" or a comma-separated list of hostnames, each with an \
                        optional :port (\"*.example.com\" for subdomains)";
        if raw.is_empty() {
            return Err(format!("{expected}, got an empty value"));
        }
        let mut hosts = Vec::new();
        for entry in raw.split(',').map(str::trim) {
            if entry == "*" {
                return Ok(vec!["*".to_owned()]);
            }
            let Some(normalized) = normalize_allowed_host(entry) else {
                let got = if entry == raw {
                    format!("{entry:?}")
                } else {
                    format!("{entry:?} in {raw:?}")
                };
                return Err(format!("{expected}, got {got}"));
            };
            hosts.push(normalized);
        }
        Ok(hosts)
    }
}

/// A cron expression, stored in the form `cron::Schedule::from_str` takes.
/// The hosts callbacks may go to: like [`AllowedHosts`], but blank means
/// none (callbacks off) and `*` is refused.
pub(super) struct CallbackHosts;

impl Kind for CallbackHosts {
    type Value = Vec<String>;

    fn parse(&self, raw: &str) -> Result<Vec<String>, String> {
        let expected = "expected a comma-separated list of hostnames or IP addresses, each with \
                        an optional :port (\"*.example.com\" for subdomains), or nothing";
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        let mut hosts = Vec::new();
        for entry in raw.split(',').map(str::trim) {
            if entry == "*" {
                return Err(format!(
                    "\"*\" would let any client make this service POST to any address; \
                     {expected}"
                ));
            }
            let Some(normalized) = normalize_allowed_host(entry) else {
                return Err(format!("{expected}, got {entry:?} in {raw:?}"));
            };
            hosts.push(normalized);
        }
        Ok(hosts)
    }
}

pub(super) struct Cron;

impl Kind for Cron {
    type Value = String;
    fn parse(&self, raw: &str) -> Result<String, String> {
        normalize_cron(raw).map_err(|reason| format!("{reason}, got {raw:?}"))
    }
}

/// Maps Python logging names (the variable comes from the Python service's
/// deployment guide) onto tracing's, and refuses bare words that are not
/// levels: EnvFilter reads `LOG_LEVEL=WARNING` as "trace for the target
/// named WARNING, nothing else", which silently disables logging.
fn normalize_log_filter(raw: &str) -> Option<String> {
    fn level(word: &str) -> Option<String> {
        match word.to_ascii_lowercase().as_str() {
            "warning" => Some("warn".to_owned()),
            "critical" | "fatal" => Some("error".to_owned()),
            lower => lower.parse::<LevelFilter>().ok().map(|_| lower.to_owned()),
        }
    }
    let mut directives = Vec::new();
    for directive in raw.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let normalized = if directive.contains(['=', '[']) {
            match directive.rsplit_once('=') {
                Some((target, word)) => match level(word) {
                    Some(level) => format!("{target}={level}"),
                    None => directive.to_owned(),
                },
                None => directive.to_owned(),
            }
        } else {
            level(directive)?
        };
        directives.push(normalized);
    }
    if directives.is_empty() {
        return None;
    }
    let joined = directives.join(",");
    EnvFilter::try_new(&joined).ok().map(|_| joined)
}

fn valid_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                // Underscores are not DNS but do occur in compose service names.
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Splits `host[:port]` or `[v6][:port]`; None when the port is not a number 1-65535.
pub(super) fn split_host_port(value: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':')?)),
        }
    } else {
        match value.rsplit_once(':') {
            // Several colons without brackets: an IPv6 literal, no port.
            Some((host, _)) if host.contains(':') => (value, None),
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    Some((host, port))
}

pub(super) fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn normalize_allowed_host(entry: &str) -> Option<String> {
    let bracketed = entry.starts_with('[');
    let (host, port) = split_host_port(entry)?;
    let host_ok = if bracketed {
        host.parse::<Ipv6Addr>().is_ok()
    } else {
        let name = host.strip_prefix("*.").unwrap_or(host);
        valid_hostname(name)
    };
    if !host_ok {
        return None;
    }
    let host = normalize_host(host);
    let host = if bracketed { format!("[{host}]") } else { host };
    Some(match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}
