//! `weir.toml`: which tables route to which tenants, which plugin serves each tenant, and
//! the limits every plugin call runs under.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The EventBridge bus every entry goes to.
    pub event_bus: String,
    /// weir's own dead-letter queue (an SQS queue URL), used when publishing.
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    /// Defaults for every tenant; each tenant may override any of them.
    #[serde(default)]
    pub limits: LimitOverrides,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSpec>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSpec>,
    /// The directory relative plugin paths are resolved against (the manifest's own).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Where a plugin's component lives, and optionally the sha256 it must have.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    pub path: String,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Records from `table` belong to a tenant named by `tenant`, and publish with `source`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub table: String,
    pub source: String,
    pub tenant: TenantSelector,
}

/// How a record names its tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSelector {
    /// A string attribute, read from the new image, else the old image, else the keys.
    pub attribute: String,
}

/// One tenant: the plugin that maps its records, its configuration and its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub plugin: String,
    #[serde(default)]
    pub config: Option<toml::Table>,
    #[serde(default)]
    pub limits: LimitOverrides,
}

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
        }
    }
}

/// Limits as written in the manifest: any field may be left out.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    pub memory_mib: Option<u64>,
    pub time_ms: Option<u64>,
    pub max_events: Option<usize>,
    pub max_output_bytes: Option<usize>,
    pub max_log_lines: Option<usize>,
    pub max_log_bytes: Option<usize>,
    pub max_entry_bytes: Option<usize>,
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
        }
    }
}

/// A manifest that cannot be used; every problem found is listed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {}", problems.join("; "))]
    Invalid { file: String, problems: Vec<String> },
}

impl Manifest {
    /// Reads and checks a manifest file.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            file: file.clone(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, &file, base_dir)
    }

    /// Parses and checks manifest text; `file` names it in errors.
    pub fn parse(text: &str, file: &str, base_dir: PathBuf) -> Result<Self, ManifestError> {
        let mut manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            file: file.to_owned(),
            message: one_line(&e.to_string()),
        })?;
        manifest.base_dir = base_dir;
        let problems = manifest.problems();
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(ManifestError::Invalid {
                file: file.to_owned(),
                problems,
            })
        }
    }

    /// Every reference and value that cannot work, found without loading any plugin.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.event_bus.trim().is_empty() {
            problems.push("event_bus is empty".to_owned());
        }
        for (name, tenant) in &self.tenants {
            if !self.plugins.contains_key(&tenant.plugin) {
                problems.push(format!(
                    "tenants.{name}.plugin names {:?}, which is not in [plugins]",
                    tenant.plugin
                ));
            }
        }
        for (name, plugin) in &self.plugins {
            if let Some(pin) = &plugin.sha256
                && (pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                problems.push(format!(
                    "plugins.{name}.sha256 must be 64 hex digits, found {pin:?}"
                ));
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            if route.source.is_empty() {
                problems.push(format!("routes[{i}].source is empty"));
            }
            if route.tenant.attribute.is_empty() {
                problems.push(format!("routes[{i}].tenant.attribute is empty"));
            }
        }
        problems
    }

    /// A plugin's file, resolved against the manifest's directory.
    pub fn plugin_path(&self, spec: &PluginSpec) -> PathBuf {
        let p = Path::new(&spec.path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The route for a table, if any.
    pub fn route(&self, table: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.table == table)
    }

    /// A tenant's effective limits: its own over the manifest's over the defaults.
    pub fn limits_for(&self, tenant: &TenantSpec) -> Limits {
        tenant.limits.over(self.limits.over(Limits::default()))
    }
}

impl TenantSpec {
    /// The tenant's config as JSON text, `{}` when it has none.
    pub fn config_json(&self) -> String {
        match &self.config {
            Some(table) => serde_json::to_string(table).unwrap_or_else(|_| "{}".to_owned()),
            None => "{}".to_owned(),
        }
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
event_bus = "weir-demo"

[plugins.mapping]
path = "../target/plugins/mapping.wasm"

[[routes]]
table = "Customers"
source = "weir.customers"
tenant = { attribute = "tenantId" }

[tenants.globex]
plugin = "mapping"
config = { detail_type = "CustomerChanged", events = ["INSERT", "MODIFY", "REMOVE"], fields = { Name = "/name", Email = "/email", LTV = "/lifetimeValue" } }
"#;

    #[test]
    fn the_documented_form_parses() {
        let m = Manifest::parse(EXAMPLE, "weir.toml", PathBuf::from("/srv/weir")).expect("parses");
        assert_eq!(m.event_bus, "weir-demo");
        assert_eq!(
            m.plugin_path(&m.plugins["mapping"]),
            PathBuf::from("/srv/weir/../target/plugins/mapping.wasm")
        );
        assert_eq!(
            m.route("Customers").map(|r| r.source.as_str()),
            Some("weir.customers")
        );
        let globex = &m.tenants["globex"];
        let config: serde_json::Value =
            serde_json::from_str(&globex.config_json()).expect("config is JSON");
        assert_eq!(config["fields"]["LTV"], "/lifetimeValue");
        assert_eq!(m.limits_for(globex), Limits::default());
    }

    #[test]
    fn tenant_limits_override_manifest_limits() {
        let text = format!(
            "{EXAMPLE}\n[limits]\ntime_ms = 50\nmemory_mib = 32\n[tenants.globex.limits]\ntime_ms = 7\n"
        );
        let m = Manifest::parse(&text, "weir.toml", PathBuf::new()).expect("parses");
        let l = m.limits_for(&m.tenants["globex"]);
        assert_eq!((l.time_ms, l.memory_mib), (7, 32));
    }

    #[test]
    fn problems_are_reported_together() {
        let text = r#"
event_bus = ""
[plugins.p]
path = "p.wasm"
sha256 = "abc"
[tenants.a]
plugin = "missing"
"#;
        let err = Manifest::parse(text, "m.toml", PathBuf::new()).expect_err("invalid");
        let msg = err.to_string();
        assert!(msg.starts_with("m.toml: "), "{msg}");
        for part in ["event_bus is empty", "\"missing\"", "64 hex digits"] {
            assert!(msg.contains(part), "{msg} lacks {part}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Manifest::parse(
            &format!("{EXAMPLE}\nevent_buss = 1\n"),
            "m.toml",
            PathBuf::new(),
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("event_buss"), "{err}");
    }
}
