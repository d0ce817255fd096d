//! weir's `log` interface, on [`PluginLog`]: a plugin's lines become the host's log lines,
//! tagged with plugin and tenant, capped per call.

use weir_core::manifest::Limits;

use crate::plugin::bindings::weir::transform::log;
use crate::plugin::bindings_v01::weir::transform as v01;

use log::Level;

/// One instance's log: who writes, and how much this call may still write.
pub(crate) struct PluginLog {
    plugin: String,
    tenant: String,
    budget: LogBudget,
}

impl PluginLog {
    pub(crate) fn new(plugin: &str, tenant: &str, limits: Limits) -> Self {
        PluginLog {
            plugin: plugin.to_owned(),
            tenant: tenant.to_owned(),
            budget: LogBudget::new(limits),
        }
    }

    /// A new call starts with the whole budget.
    pub(crate) fn reset(&mut self) {
        self.budget.reset();
    }

    /// Logs one line, if the budget admits it, escaped: a plugin's newline or terminal
    /// control never starts a line the host did not write.
    pub(crate) fn emit(&mut self, level: Level, message: &str) {
        if !self.budget.admit(message.len()) {
            return;
        }
        let message = weir_core::text::one_line(message);
        let (plugin, tenant) = (self.plugin.as_str(), self.tenant.as_str());
        match level {
            Level::Trace => tracing::trace!(plugin, tenant, "{message}"),
            Level::Debug => tracing::debug!(plugin, tenant, "{message}"),
            Level::Info => tracing::info!(plugin, tenant, "{message}"),
            Level::Warn => tracing::warn!(plugin, tenant, "{message}"),
            Level::Error => tracing::error!(plugin, tenant, "{message}"),
        }
    }

    /// Ends a call: `dropped` more lines were dropped elsewhere (stdout and stderr past
    /// their cap); says, once, how many were dropped in all.
    pub(crate) fn finish(&mut self, dropped: usize) {
        self.budget.dropped_lines += dropped;
        self.budget.finish(&self.plugin, &self.tenant);
    }
}

impl log::Host for PluginLog {
    fn log(&mut self, level: Level, message: String) {
        self.emit(level, &message);
    }
}

impl v01::types::Host for PluginLog {}

impl v01::log::Host for PluginLog {
    fn log(&mut self, level: v01::types::Level, message: String) {
        use v01::types::Level as L;
        let level = match level {
            L::Trace => Level::Trace,
            L::Debug => Level::Debug,
            L::Info => Level::Info,
            L::Warn => Level::Warn,
            L::Error => Level::Error,
        };
        self.emit(level, &message);
    }
}

/// Caps one call's log lines and bytes, counting what it drops.
struct LogBudget {
    max_lines: usize,
    max_bytes: usize,
    lines: usize,
    bytes: usize,
    dropped_lines: usize,
}

impl LogBudget {
    fn new(limits: Limits) -> Self {
        LogBudget {
            max_lines: limits.max_log_lines,
            max_bytes: limits.max_log_bytes,
            lines: 0,
            bytes: 0,
            dropped_lines: 0,
        }
    }

    fn reset(&mut self) {
        self.lines = 0;
        self.bytes = 0;
        self.dropped_lines = 0;
    }

    fn admit(&mut self, len: usize) -> bool {
        if self.lines < self.max_lines && self.bytes + len <= self.max_bytes {
            self.lines += 1;
            self.bytes += len;
            true
        } else {
            self.dropped_lines += 1;
            false
        }
    }

    /// Says, once per call, how many lines were dropped.
    fn finish(&mut self, plugin: &str, tenant: &str) {
        if self.dropped_lines > 0 {
            tracing::warn!(
                plugin,
                tenant,
                dropped = self.dropped_lines,
                "plugin log capped: {} lines dropped (limit {} lines, {} bytes per call)",
                self.dropped_lines,
                self.max_lines,
                self.max_bytes
            );
            self.dropped_lines = 0;
        }
    }
}
