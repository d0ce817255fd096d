//! The benchmark's log lines: on stderr (stdout holds the results), quiet unless `RUST_LOG`
//! asks, each message and field escaped to one line as `weir`'s own command line does, since
//! text from plugins and records reaches them.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt as _;

/// What is logged unless `RUST_LOG` says otherwise: warnings, without the AWS SDK's.
const DEFAULT_FILTER: &str = "warn,aws_config=error,aws_smithy=error,aws_sdk=error";

/// Sends log lines to stderr, once per process (a second call keeps the first).
pub fn init() {
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = weir_core::text::one_line(&text);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{field}={text}")
        }
    })
    .delimited(" ");
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .fmt_fields(fields)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
