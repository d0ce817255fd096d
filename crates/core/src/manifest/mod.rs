//! `weir.toml`: which tables route to which tenants, which plugin serves each tenant, and
//! the limits every plugin call runs under.

use std::collections::BTreeMap;

use crate::location::{Location, LocationError};

mod destinations;
mod limits;
mod problems;
mod tenants;

pub use destinations::{
    DEFAULT_IDEMPOTENCY_HEADER, DEFAULT_INPUT_PATH, DESTINATION_METHODS, DestinationAuth,
    DestinationSpec, RetrySpec, SecretRef,
};
pub use limits::{LimitOverrides, Limits};
pub use problems::{ManifestError, ManifestProblem, ProblemKind};
pub use tenants::{ANY_TABLE, DEFAULT_TENANT, PluginSpec, Route, TenantSelector, TenantSpec};

use destinations::destination_problems;
use limits::limit_problems;
use problems::{child, segment};

/// The whole configuration, as written.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The EventBridge bus every entry goes to.
    pub event_bus: String,
    /// weir's own dead-letter queue (an SQS queue URL), used when publishing.
    pub dead_letter_queue: Option<String>,
    /// The S3 bucket where a dead letter too large for the queue is kept whole (the
    /// queue gets a signed pointer to it). The Lambda function needs one.
    pub dead_letter_bucket: Option<String>,
    /// The Secrets Manager secret (name or ARN) holding the key dead letters are signed
    /// with, so a redrive publishes only letters weir wrote.
    pub dead_letter_key: Option<String>,
    /// Never compile a plugin: each must have a pinned `.cwasm` (or be in weir's own
    /// cache). For functions that must not compile at cold start; a plugin without one
    /// cannot load, and its records are dead-lettered as `plugin-load`.
    pub require_precompiled: bool,
    /// Defaults for every tenant; each tenant may override any of them.
    pub limits: LimitOverrides,
    /// Every plugin, by the name tenants refer to it with.
    pub plugins: BTreeMap<String, PluginSpec>,
    /// Which table's records go to which tenant, and the source they publish with.
    pub routes: Vec<Route>,
    /// Every tenant, by id; `default` serves tenants without their own entry.
    pub tenants: BTreeMap<String, TenantSpec>,
    /// Where the manifest was read from; relative plugin paths are resolved against it.
    pub location: Location,
}

/// Whether `name` is a valid S3 bucket name: 3 to 63 characters of lowercase letters,
/// digits, dots and hyphens, beginning and ending with a letter or digit.
pub fn is_bucket_name(name: &str) -> bool {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edge(name.as_bytes().first())
        && edge(name.as_bytes().last())
        && !name.contains("..")
}

/// Whether `id` can name a Secrets Manager secret (a name, or an ARN): 1 to 2048
/// characters of letters, digits and `/_+=.@-:`.
pub fn is_secret_id(id: &str) -> bool {
    (1..=2048).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-:".contains(&b))
}

impl Manifest {
    /// Parses and checks manifest text read from `location`. Every problem is reported at
    /// once: unknown keys, wrong types and dangling references in any section.
    pub fn parse(text: &str, location: Location) -> Result<Self, ManifestError> {
        Self::parse_with_destinations(text, location).map(|(m, _)| m)
    }

    /// [`Manifest::parse`], also returning the `[destinations.<name>]` sections, checked
    /// against the tenants, for `weir infra`.
    pub fn parse_with_destinations(
        text: &str,
        location: Location,
    ) -> Result<(Self, BTreeMap<String, DestinationSpec>), ManifestError> {
        let file = location.to_string();
        let table: toml::Table = toml::from_str(text).map_err(|e| ManifestError::Parse {
            file: file.clone(),
            message: one_line(&e.to_string()),
        })?;
        let mut problems = Vec::new();
        const KEYS: &[&str] = &[
            "event_bus",
            "dead_letter_queue",
            "dead_letter_bucket",
            "dead_letter_key",
            "require_precompiled",
            "limits",
            "plugins",
            "routes",
            "tenants",
            "destinations",
        ];
        for key in table.keys().filter(|k| !KEYS.contains(&k.as_str())) {
            problems.push(ManifestProblem::new(
                segment(key),
                ProblemKind::UnknownKey,
                format!("unknown key (expected one of {})", KEYS.join(", ")),
            ));
        }
        let field = |key: &str| table.get(key).cloned();
        let event_bus = field("event_bus")
            .and_then(|v| typed::<String>(v, "event_bus", &mut problems))
            .unwrap_or_default();
        let dead_letter_queue = field("dead_letter_queue")
            .and_then(|v| typed::<String>(v, "dead_letter_queue", &mut problems));
        let dead_letter_bucket = field("dead_letter_bucket")
            .and_then(|v| typed::<String>(v, "dead_letter_bucket", &mut problems));
        let dead_letter_key = field("dead_letter_key")
            .and_then(|v| typed::<String>(v, "dead_letter_key", &mut problems));
        let require_precompiled = field("require_precompiled")
            .and_then(|v| typed::<bool>(v, "require_precompiled", &mut problems))
            .unwrap_or(false);
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
                problems.push(ManifestProblem::new(
                    "routes",
                    ProblemKind::WrongType,
                    "must be an array of tables ([[routes]])",
                ));
                Vec::new()
            }
        };
        let destinations: BTreeMap<String, DestinationSpec> =
            entries(field("destinations"), "destinations", &mut problems);
        let mut manifest = Manifest {
            event_bus,
            dead_letter_queue,
            dead_letter_bucket,
            dead_letter_key,
            require_precompiled,
            limits,
            plugins,
            routes,
            tenants,
            location,
        };
        problems.extend(manifest.problems());
        problems.extend(destination_problems(&destinations, &manifest.tenants));
        if problems.is_empty() {
            manifest.apply_destinations(&destinations);
            problems.extend(manifest.coalesce_problems());
        }
        if problems.is_empty() {
            Ok((manifest, destinations))
        } else {
            Err(ManifestError::Invalid { file, problems })
        }
    }

    /// Once `[destinations]` is defined, a tenant without an allow-list may use exactly the
    /// destinations defined for it (every one without a `tenant`, and those naming it), so
    /// an event for an undefined destination is refused like one the allow-list excludes.
    fn apply_destinations(&mut self, destinations: &BTreeMap<String, DestinationSpec>) {
        if destinations.is_empty() {
            return;
        }
        for (name, tenant) in &mut self.tenants {
            if tenant.destinations.is_none() {
                tenant.destinations = Some(
                    destinations
                        .iter()
                        .filter(|(_, d)| d.tenant.as_ref().is_none_or(|t| t == name))
                        .map(|(n, _)| n.clone())
                        .collect(),
                );
            }
        }
    }

    /// Every `coalesce` entry naming a destination its tenant may not use (checked once the
    /// allow-lists are complete): coalescing it would never apply.
    fn coalesce_problems(&self) -> Vec<ManifestProblem> {
        let mut problems = Vec::new();
        for (name, tenant) in &self.tenants {
            for d in &tenant.coalesce {
                if !tenant.allows(d) {
                    problems.push(ManifestProblem::new(
                        format!("{}.coalesce", child("tenants", name)),
                        ProblemKind::Undefined,
                        format!(
                            "names {d:?}, a destination tenant {name:?} may not use (allowed: {})",
                            tenant
                                .destinations
                                .as_deref()
                                .unwrap_or_default()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        problems
    }

    /// Every route's `source`, sorted and without repeats: what a destination's rule matches.
    pub fn sources(&self) -> Vec<&str> {
        let mut sources: Vec<&str> = self.routes.iter().map(|r| r.source.as_str()).collect();
        sources.sort_unstable();
        sources.dedup();
        sources
    }

    /// Every reference and value that cannot work, found without loading any plugin.
    fn problems(&self) -> Vec<ManifestProblem> {
        let mut problems = Vec::new();
        if self.event_bus.trim().is_empty() {
            problems.push(ManifestProblem::new(
                "event_bus",
                ProblemKind::Missing,
                "is missing or empty",
            ));
        }
        if let Some(bucket) = &self.dead_letter_bucket
            && !is_bucket_name(bucket)
        {
            problems.push(ManifestProblem::new(
                "dead_letter_bucket",
                ProblemKind::Malformed,
                format!("must be an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens), found {bucket:?}"),
            ));
        }
        if let Some(secret) = &self.dead_letter_key
            && !is_secret_id(secret)
        {
            problems.push(ManifestProblem::new(
                "dead_letter_key",
                ProblemKind::Malformed,
                format!("must name a Secrets Manager secret (its name or ARN: letters, digits and /_+=.@-:), found {secret:?}"),
            ));
        }
        problems.extend(limit_problems(
            &self.limits.over(Limits::default()),
            "limits",
        ));
        for (name, tenant) in &self.tenants {
            let key = child("tenants", name);
            if tenant.plugin.is_some() != tenant.plugins.is_empty() {
                problems.push(ManifestProblem::new(
                    key.clone(),
                    ProblemKind::Conflict,
                    "must name exactly one of plugin = \"...\" or plugins = [...]",
                ));
            }
            for plugin in tenant.plugin_names() {
                if !self.plugins.contains_key(plugin) {
                    let which = if tenant.plugin.is_some() {
                        "plugin"
                    } else {
                        "plugins"
                    };
                    problems.push(ManifestProblem::new(
                        format!("{key}.{which}"),
                        ProblemKind::Undefined,
                        format!("names plugin {plugin:?}, which is not in [plugins]"),
                    ));
                }
            }
            // The defaults are in bounds: laid over them, only the tenant's own values can
            // be out, and are reported at the tenant's key.
            problems.extend(limit_problems(
                &tenant.limits.over(Limits::default()),
                &format!("{key}.limits"),
            ));
        }
        for (name, plugin) in &self.plugins {
            for (key, pin) in [
                ("sha256", &plugin.sha256),
                ("compiled_sha256", &plugin.compiled_sha256),
            ] {
                if let Some(pin) = pin
                    && (pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()))
                {
                    problems.push(ManifestProblem::new(
                        format!("{}.{key}", child("plugins", name)),
                        ProblemKind::Malformed,
                        format!("must be 64 hex digits, found {pin:?}"),
                    ));
                }
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            if route.source.is_empty() {
                problems.push(ManifestProblem::new(
                    format!("routes[{i}].source"),
                    ProblemKind::Missing,
                    "is empty",
                ));
            }
            let t = &route.tenant;
            match (&t.attribute, &t.key, &t.pattern) {
                (Some(a), None, None) if !a.is_empty() => {}
                (None, Some(k), Some(p)) if !k.is_empty() && p.contains("{tenant}") => {}
                _ => problems.push(ManifestProblem::new(
                    format!("routes[{i}].tenant"),
                    ProblemKind::Conflict,
                    "must be { attribute = \"NAME\" } or { key = \"NAME\", pattern = \"...{tenant}...\" }",
                )),
            }
        }
        problems
    }

    /// A plugin's location, resolved against the manifest's.
    pub fn plugin_location(&self, spec: &PluginSpec) -> Result<Location, LocationError> {
        self.location.join(&spec.path)
    }

    /// Where a plugin's precompiled `.cwasm` is: as named, or next to the plugin.
    pub fn compiled_location(&self, spec: &PluginSpec) -> Result<Location, LocationError> {
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

    /// The route for a table: the one naming it, else one for every table (`table = "*"`),
    /// which alone takes records whose ARN names no table.
    pub fn route(&self, table: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| !table.is_empty() && r.table == table)
            .or_else(|| self.routes.iter().find(|r| r.table == ANY_TABLE))
    }

    /// A tenant's effective limits: its own over the manifest's over the defaults.
    pub fn limits_for(&self, tenant: &TenantSpec) -> Limits {
        tenant.limits.over(self.limits.over(Limits::default()))
    }
}

/// `value` as a `T`, or a problem at the key where it goes wrong, below `what`.
fn typed<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    what: &str,
    problems: &mut Vec<ManifestProblem>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let mut key = what.to_owned();
            for s in e.path().iter() {
                match s {
                    serde_path_to_error::Segment::Seq { index } => {
                        key.push_str(&format!("[{index}]"));
                    }
                    serde_path_to_error::Segment::Map { key: k }
                    | serde_path_to_error::Segment::Enum { variant: k } => key = child(&key, k),
                    serde_path_to_error::Segment::Unknown => {}
                }
            }
            let message = one_line(e.into_inner().message());
            problems.push(serde_problem(key, message));
            None
        }
    }
}

/// A problem from serde's message: the kind it names, at the field it names when that
/// field is unknown or missing.
fn serde_problem(key: String, message: String) -> ManifestProblem {
    let field = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| {
                // The path may end at the field already (an unknown one), or at its table.
                let at = segment(name);
                if key == at || key.ends_with(&format!(".{at}")) {
                    key.clone()
                } else {
                    child(&key, name)
                }
            })
    };
    if let Some(at) = field("unknown field `") {
        ManifestProblem::new(at, ProblemKind::UnknownKey, message)
    } else if let Some(at) = field("missing field `") {
        ManifestProblem::new(at, ProblemKind::Missing, message)
    } else if message.starts_with("invalid type") {
        ManifestProblem::new(key, ProblemKind::WrongType, message)
    } else if message.starts_with("invalid value") && message.contains("expected u") {
        ManifestProblem::new(key, ProblemKind::OutOfRange, message)
    } else {
        ManifestProblem::new(key, ProblemKind::Malformed, message)
    }
}

/// A table of named entries (`[plugins.x]`, `[tenants.y]`), each checked on its own.
fn entries<T: serde::de::DeserializeOwned>(
    value: Option<toml::Value>,
    what: &str,
    problems: &mut Vec<ManifestProblem>,
) -> BTreeMap<String, T> {
    match value {
        None => BTreeMap::new(),
        Some(toml::Value::Table(t)) => t
            .into_iter()
            .filter_map(|(name, v)| typed::<T>(v, &child(what, &name), problems).map(|x| (name, x)))
            .collect(),
        Some(_) => {
            problems.push(ManifestProblem::new(
                what,
                ProblemKind::WrongType,
                "must be a table",
            ));
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
    fn dead_letter_bucket_and_key_are_checked_and_named() {
        let m = Manifest::parse(
            &format!("dead_letter_bucket = \"weir-dead-letters-1\"\ndead_letter_key = \"arn:aws:secretsmanager:us-east-1:123456789012:secret:weir/dlq-AbC123\"\n{EXAMPLE}"),
            Location::File("/srv/weir.toml".into()),
        )
        .expect("parses");
        assert_eq!(m.dead_letter_bucket.as_deref(), Some("weir-dead-letters-1"));
        assert!(
            m.dead_letter_key
                .is_some_and(|k| k.ends_with("weir/dlq-AbC123"))
        );
        let err = Manifest::parse(
            &format!(
                "dead_letter_bucket = \"Bad_Bucket\\n\"\ndead_letter_key = \"a key\"\n{EXAMPLE}"
            ),
            Location::File("/srv/weir.toml".into()),
        )
        .expect_err("refused")
        .to_string();
        assert!(
            err.contains("dead_letter_bucket: must be an S3 bucket name"),
            "{err}"
        );
        assert!(err.contains(r#"found "Bad_Bucket\n""#), "escaped: {err}");
        assert!(
            err.contains("dead_letter_key: must name a Secrets Manager secret"),
            "{err}"
        );
        for bad in ["ab", "-ab", "ab-", "a..b", "AB1", &"a".repeat(64)] {
            assert!(!is_bucket_name(bad), "{bad}");
        }
    }

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
            "event_bus: is missing or empty",
            "\"missing\"",
            "64 hex digits",
            "tenants.a.limits.time_ms: must be above 0",
        ] {
            assert!(msg.contains(part), "{msg} lacks {part}");
        }
    }

    #[test]
    fn absurd_limits_are_refused_by_name_not_panicked_on() {
        let text = format!(
            "{EXAMPLE}\n[limits]\ntime_ms = {}\nmemory_mib = 5000\nmax_entry_bytes = 2000000\nfuel = 0\n",
            i64::MAX
        );
        let err = Manifest::parse(&text, Location::File("m.toml".into())).expect_err("invalid");
        let msg = err.to_string();
        for part in [
            &format!("limits.time_ms: {} is outside 1..=900000", i64::MAX),
            "limits.memory_mib: 5000 is outside 1..=4096",
            "limits.max_entry_bytes: 2000000 is outside 1..=1048576: PutEvents",
            "limits.fuel: must be above 0",
        ] {
            assert!(msg.contains(part), "{msg} lacks {part}");
        }
    }

    #[test]
    fn native_code_pins_and_the_no_compile_switch_parse_and_are_checked() {
        let pin = "ab".repeat(32);
        let text = EXAMPLE.replace(
            "[plugins.mapping]\n",
            &format!("[plugins.mapping]\ncompiled_sha256 = \"{pin}\"\n"),
        );
        let text = format!("require_precompiled = true\n{text}");
        let m = Manifest::parse(&text, Location::File("m.toml".into())).expect("parses");
        assert!(m.require_precompiled);
        assert_eq!(
            m.plugins["mapping"].compiled_sha256.as_deref(),
            Some(pin.as_str())
        );
        let bad = text.replace(&pin, "xyz");
        let err = Manifest::parse(&bad, Location::File("m.toml".into())).expect_err("invalid");
        assert!(
            err.to_string()
                .contains("plugins.mapping.compiled_sha256: must be 64 hex digits"),
            "{err}"
        );
        assert!(
            !Manifest::parse(EXAMPLE, Location::File("m.toml".into()))
                .expect("parses")
                .require_precompiled
        );
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
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let all = all.join("\n");
        let found: Vec<(&str, ProblemKind)> =
            problems.iter().map(|p| (p.key.as_str(), p.kind)).collect();
        for expected in [
            ("colour", ProblemKind::UnknownKey),
            ("plugins.p.path", ProblemKind::WrongType),
            ("plugins.q.pathh", ProblemKind::UnknownKey),
            ("tenants.b.limits.time_ms", ProblemKind::WrongType),
            ("tenants.a.plugin", ProblemKind::Undefined),
        ] {
            assert!(found.contains(&expected), "{all}\nlacks: {expected:?}");
        }
        for part in [
            "invalid type: integer `5`, expected a string",
            "unknown field `pathh`",
            "invalid type: string \"fast\"",
            "names plugin \"missing\"",
        ] {
            assert!(all.contains(part), "{all}\nlacks: {part}");
        }
        assert_eq!(problems.len(), 5, "{all}");
    }

    #[test]
    fn problems_carry_their_key_and_kind() {
        let text = format!(
            "{EXAMPLE}\n[tenants.acme]\nplugin = \"mapping\"\nlimits = {{ time_ms = 900001 }}\n\
             [tenants.\"x\\ny\"]\nplugin = \"absent\"\n\
             [destinations.crm]\nendpoint = \"http://crm.example\"\nmethod = \"POST\"\n\
             detail_types = [\"T\"]\nauth = {{ type = \"none\" }}\n"
        );
        let err = Manifest::parse(&text, Location::File("m.toml".into())).expect_err("invalid");
        let ManifestError::Invalid { problems, file } = &err else {
            panic!("expected a list of problems, got {err}");
        };
        assert_eq!(file, "m.toml");
        let found: Vec<(&str, ProblemKind)> =
            problems.iter().map(|p| (p.key.as_str(), p.kind)).collect();
        assert_eq!(
            found,
            [
                ("tenants.acme.limits.time_ms", ProblemKind::OutOfRange),
                ("tenants.\"x\\u000Ay\".plugin", ProblemKind::Undefined),
                ("destinations.crm.endpoint", ProblemKind::Malformed),
            ],
            "{err}"
        );
        assert_eq!(
            problems[0].message,
            "900001 is outside 1..=900000: a Lambda invocation lasts at most 15 minutes"
        );
        assert!(
            problems.iter().all(|p| !p.key.contains('\n')),
            "keys are one line: {err}"
        );
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
