//! Logging: human-readable or JSON lines on stderr, filtered by `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// What is logged when `RUST_LOG` is not set. A server logs what it does;
/// a command line tool prints only what it was asked for, so it logs
/// warnings and errors alone. PostgreSQL's notices (`relation
/// "_sqlx_migrations" already exists, skipping` at every start) are noise
/// to both.
fn default_filter(serving: bool) -> EnvFilter {
    let level = if serving { "info" } else { "warn" };
    EnvFilter::new(format!("{level},sqlx::postgres::notice=warn"))
}

/// Colour only where a person reads it: on a terminal, and not when
/// `NO_COLOR` is set to anything (<https://no-color.org>). Logs written to
/// a file or a pipe carry no escape codes.
fn colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

pub fn init(format: LogFormat, serving: bool) {
    // An empty `RUST_LOG` is as good as none.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| default_filter(serving));
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// What `serve` logs, as [`init`] formats it without colour, written to
/// `file` instead of stderr: for an application that is not alone in its
/// process, installed as the default of the threads that work for it.
pub fn to_file(format: LogFormat, file: std::fs::File) -> tracing::Dispatch {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(default_filter(true))
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file));
    match format {
        LogFormat::Text => tracing::Dispatch::new(builder.finish()),
        LogFormat::Json => tracing::Dispatch::new(builder.json().finish()),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}
