//! The one `tracing` setup every role uses: an `EnvFilter` from `LOG_LEVEL`
//! (or `RUST_LOG`), text or JSON lines on stderr.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

pub use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG`, when set and non-blank, takes
/// precedence over `log_level` so an operator can turn up one module without
/// touching the deployment's configuration. A second call is a no-op.
pub fn init(log_level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(directives.trim())
            .with_context(|| format!("RUST_LOG: invalid filter directives {directives:?}"))?,
        _ => EnvFilter::try_new(log_level)
            .with_context(|| format!("LOG_LEVEL: invalid filter directives {log_level:?}"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init only fails when a global subscriber is already installed,
    // which is exactly the "second call" this function promises to ignore.
    let _already_installed = match format {
        LogFormat::Text => builder
            // Colour codes only help a human at a terminal; in a container
            // they end up as noise in the log store.
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            // Event fields at the top level, so `job.id` is a column in the
            // log store rather than a path under `fields`.
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    Ok(())
}

/// For tests: output goes through the test harness's capture, so it shows only
/// for failing tests. `RUST_LOG` selects what is captured (default `info`).
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _already_installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// This host's name: `HOSTNAME`, else `/etc/hostname`, else "localhost".
/// Names workers and schedulers in the roster and in tick claims.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_twice_is_harmless() {
        init_for_tests();
        init_for_tests();
        assert!(init("info", LogFormat::Json).is_ok());
        assert!(init("info", LogFormat::Text).is_ok());
        tracing::info!(job.id = "01J0", "still logging");
    }
}
