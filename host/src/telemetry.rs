//! Logs: plain text on a terminal for the CLI, JSON lines for CloudWatch in Lambda.

use tracing_subscriber::EnvFilter;

/// The log filter: `AWS_LAMBDA_LOG_LEVEL` (as Lambda's advanced logging sets it), else
/// `RUST_LOG`, else `default`.
pub fn filter(default: &str) -> EnvFilter {
    let spec = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|l| l.to_ascii_lowercase())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default.to_owned());
    EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(default))
}

/// Human-readable logs on stderr, quiet by default so stdout stays the command's output.
pub fn init_cli() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter("warn"))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
