//! `weir.toml`: which tables route to which tenants, which plugin serves each tenant, and
//! the limits every plugin call runs under.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::store::Location;

/// The whole configuration, as written.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The EventBridge bus every entry goes to.
    pub event_bus: String,
    /// weir's own dead-letter queue (an SQS queue URL), used when publishing.
    pub dead_letter_queue: Option<String>,
    /// Defaults for every tenant; each tenant may override any of them.
    pub limits: LimitOverrides,
    pub plugins: BTreeMap<String, PluginSpec>,
    pub routes: Vec<Route>,
    pub tenants: BTreeMap<String, TenantSpec>,
    /// Where the manifest was read from; relative plugin paths are resolved against it.
    pub location: Location,
}

/// The tenant id that serves records whose own tenant has no entry.
pub const DEFAULT_TENANT: &str = "default";

/// Where a plugin's component lives, and optionally the sha256 it must have.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// A file path (relative to the manifest) or an `s3://` URL.
    pub path: String,
    #[serde(default)]
    pub sha256: Option<String>,
    /// A precompiled `.cwasm` from `weir compile`; by default the loader looks for one
    /// next to the plugin (`name.wasm` → `name.cwasm`).
    #[serde(default)]
    pub compiled: Option<String>,
}

/// Records from `table` belong to a tenant named by `tenant`, and publish with `source`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub table: String,
    pub source: String,
    pub tenant: TenantSelector,
}

/// How a record names its tenant: an attribute, or a pattern over a key attribute.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSelector {
    /// A string attribute holding the tenant id, read from the new image, else the old
    /// image, else the keys.
    #[serde(default)]
    pub attribute: Option<String>,
    /// A key attribute whose value embeds the tenant id, e.g. `pk`.
    #[serde(default)]
    pub key: Option<String>,
    /// With `key`: where the id sits, e.g. `TENANT#{tenant}#...` (`...` matches anything).
    #[serde(default)]
    pub pattern: Option<String>,
}

impl TenantSelector {
    /// The attribute to read.
    pub fn attribute_name(&self) -> &str {
        self.attribute
            .as_deref()
            .or(self.key.as_deref())
            .unwrap_or_default()
    }

    /// The tenant id within the attribute's value.
    pub fn extract<'v>(&self, value: &'v str) -> Option<&'v str> {
        let Some(pattern) = &self.pattern else {
            return (!value.is_empty()).then_some(value);
        };
        let (prefix, rest) = pattern.split_once("{tenant}")?;
        let after = value.strip_prefix(prefix)?;
        let (delimiter, open) = match rest.strip_suffix("...") {
            Some(d) => (d, true),
            None => (rest, false),
        };
        let id = if delimiter.is_empty() {
            after
        } else if open {
            &after[..after.find(delimiter)?]
        } else {
            after.strip_suffix(delimiter)?
        };
        (!id.is_empty()).then_some(id)
    }
}

/// One tenant: the plugins that map its records, its configuration, its limits and the
/// destinations its events may go to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// The one plugin for this tenant...
    #[serde(default)]
    pub plugin: Option<String>,
    /// ...or several: each record fans out to every one, each with its own instance.
    #[serde(default)]
    pub plugins: Vec<String>,
    #[serde(default)]
    pub config: Option<toml::Table>,
    #[serde(default)]
    pub limits: LimitOverrides,
    /// When set, events for any other destination are refused (`invalid-output`).
    #[serde(default)]
    pub destinations: Option<Vec<String>>,
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
    /// Parses and checks manifest text read from `location`. Every problem is reported at
    /// once: unknown keys, wrong types and dangling references in any section.
    pub fn parse(text: &str, location: Location) -> Result<Self, ManifestError> {
        let file = location.to_string();
        let table: toml::Table = toml::from_str(text).map_err(|e| ManifestError::Parse {
            file: file.clone(),
            message: one_line(&e.to_string()),
        })?;
        let mut problems = Vec::new();
        const KEYS: &[&str] = &[
            "event_bus",
            "dead_letter_queue",
            "limits",
            "plugins",
            "routes",
            "tenants",
        ];
        for key in table.keys().filter(|k| !KEYS.contains(&k.as_str())) {
            problems.push(format!(
                "unknown key {key:?} (expected one of {})",
                KEYS.join(", ")
            ));
        }
        let field = |key: &str| table.get(key).cloned();
        let event_bus = field("event_bus")
            .and_then(|v| typed::<String>(v, "event_bus", &mut problems))
            .unwrap_or_default();
        let dead_letter_queue = field("dead_letter_queue")
            .and_then(|v| typed::<String>(v, "dead_letter_queue", &mut problems));
        let limits = field("limits")
            .and_then(|v| typed::<LimitOverrides>(v, "limits", &mut problems))
            .unwrap_or_default();
        let plugins = entries(field("plugins"), "plugins", &mut problems);
        let tenants = entries(field("tenants"), "tenants", &mut problems);
        let routes = match field("routes") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| typed::<Route>(v, &format!("routes[{i}]"), &mut problems))
                .collect(),
            Some(_) => {
                problems.push("routes must be an array of tables ([[routes]])".to_owned());
                Vec::new()
            }
        };
        let manifest = Manifest {
            event_bus,
            dead_letter_queue,
            limits,
            plugins,
            routes,
            tenants,
            location,
        };
        problems.extend(manifest.problems());
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(ManifestError::Invalid { file, problems })
        }
    }

    /// Every reference and value that cannot work, found without loading any plugin.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.event_bus.trim().is_empty() {
            problems.push("event_bus is missing or empty".to_owned());
        }
        for (name, tenant) in &self.tenants {
            if tenant.plugin.is_some() != tenant.plugins.is_empty() {
                problems.push(format!(
                    "tenants.{name} must name exactly one of plugin = \"...\" or plugins = [...]"
                ));
            }
            for plugin in tenant.plugin_names() {
                if !self.plugins.contains_key(plugin) {
                    problems.push(format!(
                        "tenants.{name} names plugin {plugin:?}, which is not in [plugins]"
                    ));
                }
            }
            let limits = self.limits_for(tenant);
            for (field, value) in [
                ("memory_mib", limits.memory_mib),
                ("time_ms", limits.time_ms),
                ("max_events", limits.max_events as u64),
                ("max_entry_bytes", limits.max_entry_bytes as u64),
            ] {
                if value == 0 {
                    problems.push(format!("tenants.{name}: limit {field} must be above 0"));
                }
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
            let t = &route.tenant;
            match (&t.attribute, &t.key, &t.pattern) {
                (Some(a), None, None) if !a.is_empty() => {}
                (None, Some(k), Some(p)) if !k.is_empty() && p.contains("{tenant}") => {}
                _ => problems.push(format!(
                    "routes[{i}].tenant must be {{ attribute = \"NAME\" }} or {{ key = \"NAME\", pattern = \"...{{tenant}}...\" }}"
                )),
            }
        }
        problems
    }

    /// A plugin's location, resolved against the manifest's.
    pub fn plugin_location(&self, spec: &PluginSpec) -> anyhow::Result<Location> {
        self.location.join(&spec.path)
    }

    /// Where a plugin's precompiled `.cwasm` is: as named, or next to the plugin.
    pub fn compiled_location(&self, spec: &PluginSpec) -> anyhow::Result<Location> {
        match &spec.compiled {
            Some(c) => self.location.join(c),
            None => {
                let path = spec.path.strip_suffix(".wasm").unwrap_or(&spec.path);
                self.location.join(&format!("{path}.cwasm"))
            }
        }
    }

    /// The tenant serving `id`: its own entry, else the `default` entry.
    pub fn tenant(&self, id: &str) -> Option<&TenantSpec> {
        self.tenant_entry(id).map(|(_, t)| t)
    }

    /// The entry serving `id`, with the entry's name (`id`, or `default`).
    pub fn tenant_entry(&self, id: &str) -> Option<(&str, &TenantSpec)> {
        self.tenants
            .get_key_value(id)
            .or_else(|| self.tenants.get_key_value(DEFAULT_TENANT))
            .map(|(k, t)| (k.as_str(), t))
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
    /// The plugins this tenant's records go through, in order.
    pub fn plugin_names(&self) -> impl Iterator<Item = &str> {
        self.plugin.iter().chain(&self.plugins).map(String::as_str)
    }

    /// Whether events for `destination` are allowed.
    pub fn allows(&self, destination: &str) -> bool {
        self.destinations
            .as_ref()
            .is_none_or(|d| d.iter().any(|x| x == destination))
    }

    /// The tenant's config as JSON text, `{}` when it has none.
    pub fn config_json(&self) -> String {
        match &self.config {
            Some(table) => serde_json::to_string(table).unwrap_or_else(|_| "{}".to_owned()),
            None => "{}".to_owned(),
        }
    }
}

/// `value` as a `T`, or a problem naming `what`.
fn typed<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    what: &str,
    problems: &mut Vec<String>,
) -> Option<T> {
    match value.try_into::<T>() {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(format!("{what}: {}", one_line(e.message())));
            None
        }
    }
}

/// A table of named entries (`[plugins.x]`, `[tenants.y]`), each checked on its own.
fn entries<T: serde::de::DeserializeOwned>(
    value: Option<toml::Value>,
    what: &str,
    problems: &mut Vec<String>,
) -> BTreeMap<String, T> {
    match value {
        None => BTreeMap::new(),
        Some(toml::Value::Table(t)) => t
            .into_iter()
            .filter_map(|(name, v)| {
                typed::<T>(v, &format!("{what}.{name}"), problems).map(|x| (name, x))
            })
            .collect(),
        Some(_) => {
            problems.push(format!("{what} must be a table"));
            BTreeMap::new()
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
        let m =
            Manifest::parse(EXAMPLE, Location::File("/srv/weir/weir.toml".into())).expect("parses");
        assert_eq!(m.event_bus, "weir-demo");
        assert_eq!(
            m.plugin_location(&m.plugins["mapping"])
                .expect("location")
                .to_string(),
            "/srv/weir/../target/plugins/mapping.wasm"
        );
        assert_eq!(
            m.compiled_location(&m.plugins["mapping"])
                .expect("location")
                .to_string(),
            "/srv/weir/../target/plugins/mapping.cwasm"
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
        let m = Manifest::parse(&text, Location::File("weir.toml".into())).expect("parses");
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
limits = { time_ms = 0 }
"#;
        let err = Manifest::parse(text, Location::File("m.toml".into())).expect_err("invalid");
        let msg = err.to_string();
        assert!(msg.starts_with("m.toml: "), "{msg}");
        for part in [
            "event_bus is missing or empty",
            "\"missing\"",
            "64 hex digits",
            "limit time_ms must be above 0",
        ] {
            assert!(msg.contains(part), "{msg} lacks {part}");
        }
    }

    #[test]
    fn tenants_come_from_attributes_or_key_patterns() {
        let sel = |pattern: &str| TenantSelector {
            attribute: None,
            key: Some("pk".into()),
            pattern: Some(pattern.into()),
        };
        assert_eq!(
            sel("TENANT#{tenant}#...").extract("TENANT#acme#CUST#1"),
            Some("acme")
        );
        assert_eq!(sel("TENANT#{tenant}#...").extract("TENANT#acme"), None);
        assert_eq!(sel("TENANT#{tenant}#...").extract("ORG#acme#1"), None);
        assert_eq!(
            sel("{tenant}/...").extract("globex/orders/1"),
            Some("globex")
        );
        assert_eq!(sel("T-{tenant}").extract("T-initech"), Some("initech"));
        assert_eq!(sel("T-{tenant}.x").extract("T-initech.x"), Some("initech"));
        assert_eq!(sel("T-{tenant}...").extract("T-initech"), Some("initech"));
        let attr = TenantSelector {
            attribute: Some("t".into()),
            key: None,
            pattern: None,
        };
        assert_eq!(attr.extract("acme"), Some("acme"));
        assert_eq!(attr.extract(""), None);
    }

    #[test]
    fn a_default_tenant_serves_the_rest() {
        let text = format!(
            "{EXAMPLE}\n[tenants.default]\nplugin = \"mapping\"\ndestinations = [\"crm\"]\n"
        );
        let m = Manifest::parse(&text, Location::File("m.toml".into())).expect("parses");
        assert!(m.tenant("globex").is_some_and(|t| t.destinations.is_none()));
        let fallback = m.tenant("unknown").expect("default");
        assert!(fallback.allows("crm") && !fallback.allows("slack"));
        assert!(m.tenants["globex"].allows("anything"));
    }

    #[test]
    fn unknown_keys_bad_types_and_missing_plugins_are_reported_at_once() {
        let text = r#"
event_bus = "b"
colour = "blue"
[plugins.p]
path = 5
[plugins.q]
path = "q.wasm"
pathh = "typo"
[[routes]]
table = "T"
source = "s"
tenant = { attribute = "t" }
[tenants.a]
plugin = "missing"
[tenants.b]
plugin = "q"
limits = { time_ms = "fast" }
"#;
        let err = Manifest::parse(text, Location::File("m.toml".into())).expect_err("invalid");
        let ManifestError::Invalid { problems, .. } = &err else {
            panic!("expected a list of problems, got {err}");
        };
        let all = problems.join("\n");
        for part in [
            "unknown key \"colour\"",
            "plugins.p: invalid type: integer `5`, expected a string",
            "plugins.q: unknown field `pathh`",
            "tenants.b: invalid type: string \"fast\"",
            "tenants.a names plugin \"missing\"",
        ] {
            assert!(all.contains(part), "{all}\nlacks: {part}");
        }
        assert_eq!(problems.len(), 5, "{all}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Manifest::parse(
            &format!("{EXAMPLE}\nevent_buss = 1\n"),
            Location::File("m.toml".into()),
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("event_buss"), "{err}");
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_manifest_parse_never_panics_on_arbitrary_text(text in any::<String>()) {
            let _ = Manifest::parse(&text, Location::File("f.toml".into()));
        }

        #[test]
        fn fuzz_manifest_parse_never_panics_on_mangled_manifests(
            drop in prop::collection::vec(any::<bool>(), 20),
            junk in "[a-z_]{1,8} = (1|\"x\"|\\[\\]|\\{\\})",
            at in 0usize..20,
        ) {
            let mut lines: Vec<String> = EXAMPLE.lines().zip(drop.iter().cycle()).filter(|(_, d)| !**d).map(|(l, _)| l.to_owned()).collect();
            lines.insert(at.min(lines.len()), junk);
            let _ = Manifest::parse(&lines.join("\n"), Location::File("f.toml".into()));
        }
    }
}
