//! `[limits]`: what one plugin call may use, and the bounds every limit must keep.

use serde::Deserialize;

use super::{ManifestProblem, ProblemKind};

/// Per-call limits a plugin runs under. The defaults are safe for untrusted code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Linear memory a plugin instance may grow to.
    pub memory_mib: u64,
    /// Wall time one `transform` call may take before it is interrupted.
    pub time_ms: u64,
    /// Events one record may produce.
    pub max_events: usize,
    /// Bytes of all events one record may produce.
    pub max_output_bytes: usize,
    /// Log lines (including stdout and stderr lines) one call may write; the rest are counted.
    pub max_log_lines: usize,
    /// Bytes of log one call may write; the rest are counted.
    pub max_log_bytes: usize,
    /// The PutEvents entry size limit, by AWS's formula (1 MB since January 2026).
    pub max_entry_bytes: usize,
    /// Instructions (wasmtime fuel) one call may execute. Counted, and enforced, only by an
    /// engine that counts fuel (`weir run --report`, `weir test --report`, or `WEIR_FUEL=1`
    /// in the function); otherwise time is bounded by the epoch deadline alone, which costs
    /// less per instruction.
    pub fuel: Option<u64>,
    /// Calls one instance serves before it is replaced by a fresh one. Instances stay warm
    /// across a warm function's batches; this bounds how long state a plugin keeps between
    /// records (a cache, a leak) can live.
    pub instance_calls: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 64,
            time_ms: 100,
            max_events: 100,
            max_output_bytes: 4 << 20,
            max_log_lines: 100,
            max_log_bytes: 16 << 10,
            max_entry_bytes: 1 << 20,
            fuel: None,
            instance_calls: 10_000,
        }
    }
}

/// Every limit outside its bounds, each at its key below `at` (`tenants.acme.limits`),
/// naming its value and the range. The bounds keep arithmetic on limits (deadlines, sizes)
/// far from overflow, and say why where AWS or WebAssembly sets them.
pub(super) fn limit_problems(limits: &Limits, at: &str) -> Vec<ManifestProblem> {
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    let bounds: [(&str, Option<u64>, u64, u64, &str); 9] = [
        (
            "memory_mib",
            Some(limits.memory_mib),
            1,
            4096,
            ": a plugin's linear memory is at most 4 GiB",
        ),
        (
            "time_ms",
            Some(limits.time_ms),
            1,
            900_000,
            ": a Lambda invocation lasts at most 15 minutes",
        ),
        ("max_events", Some(n(limits.max_events)), 1, 10_000, ""),
        (
            "max_output_bytes",
            Some(n(limits.max_output_bytes)),
            1,
            256 << 20,
            "",
        ),
        (
            "max_log_lines",
            Some(n(limits.max_log_lines)),
            0,
            100_000,
            "",
        ),
        (
            "max_log_bytes",
            Some(n(limits.max_log_bytes)),
            0,
            16 << 20,
            "",
        ),
        (
            "max_entry_bytes",
            Some(n(limits.max_entry_bytes)),
            1,
            1 << 20,
            ": PutEvents accepts entries up to 1 MB",
        ),
        ("fuel", limits.fuel, 1, 1 << 50, ""),
        (
            "instance_calls",
            Some(limits.instance_calls),
            1,
            1_000_000_000,
            "",
        ),
    ];
    bounds
        .into_iter()
        .filter_map(|(key, value, min, max, why)| {
            let v = value?;
            let message = if v == 0 && min > 0 {
                "must be above 0".to_owned()
            } else if v < min || v > max {
                format!("{v} is outside {min}..={max}{why}")
            } else {
                return None;
            };
            Some(ManifestProblem::new(
                format!("{at}.{key}"),
                ProblemKind::OutOfRange,
                message,
            ))
        })
        .collect()
}

/// Limits as written in the manifest: any field may be left out.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// See [`Limits::memory_mib`].
    pub memory_mib: Option<u64>,
    /// See [`Limits::time_ms`].
    pub time_ms: Option<u64>,
    /// See [`Limits::max_events`].
    pub max_events: Option<usize>,
    /// See [`Limits::max_output_bytes`].
    pub max_output_bytes: Option<usize>,
    /// See [`Limits::max_log_lines`].
    pub max_log_lines: Option<usize>,
    /// See [`Limits::max_log_bytes`].
    pub max_log_bytes: Option<usize>,
    /// See [`Limits::max_entry_bytes`].
    pub max_entry_bytes: Option<usize>,
    /// See [`Limits::fuel`].
    pub fuel: Option<u64>,
    /// See [`Limits::instance_calls`].
    pub instance_calls: Option<u64>,
}

impl LimitOverrides {
    /// `self` laid over `base`.
    pub fn over(&self, base: Limits) -> Limits {
        Limits {
            memory_mib: self.memory_mib.unwrap_or(base.memory_mib),
            time_ms: self.time_ms.unwrap_or(base.time_ms),
            max_events: self.max_events.unwrap_or(base.max_events),
            max_output_bytes: self.max_output_bytes.unwrap_or(base.max_output_bytes),
            max_log_lines: self.max_log_lines.unwrap_or(base.max_log_lines),
            max_log_bytes: self.max_log_bytes.unwrap_or(base.max_log_bytes),
            max_entry_bytes: self.max_entry_bytes.unwrap_or(base.max_entry_bytes),
            fuel: self.fuel.or(base.fuel),
            instance_calls: self.instance_calls.unwrap_or(base.instance_calls),
        }
    }
}
