//! `weir.toml`: which tables route to which tenants, which plugin serves each tenant, and
//! the limits every plugin call runs under.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::location::Location;

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

/// The tenant id that serves records whose own tenant has no entry.
pub const DEFAULT_TENANT: &str = "default";

/// Where a plugin's component lives, and optionally the sha256 it must have.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// A file path (relative to the manifest) or an `s3://` URL.
    pub path: String,
    /// The sha256 the component's bytes must have; a plugin that differs is not loaded.
    #[serde(default)]
    pub sha256: Option<String>,
    /// A precompiled `.cwasm` from `weir compile`; by default the loader looks for one
    /// next to the plugin (`name.wasm` → `name.cwasm`).
    #[serde(default)]
    pub compiled: Option<String>,
    /// The sha256 of the `.cwasm` file. A `.cwasm` is native code: it runs only when its
    /// bytes are pinned here (`weir compile` prints the line).
    #[serde(default)]
    pub compiled_sha256: Option<String>,
}

/// A route's `table` that matches every table a route does not name, and records whose
/// `eventSourceARN` names none (samples from other tools use placeholders).
pub const ANY_TABLE: &str = "*";

/// Records from `table` belong to a tenant named by `tenant`, and publish with `source`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The DynamoDB table whose stream records this route takes, or [`ANY_TABLE`].
    pub table: String,
    /// The `Source` every entry from this table is published with.
    pub source: String,
    /// How each record names its tenant.
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
    /// Configuration handed to the plugin as JSON with every record.
    #[serde(default)]
    pub config: Option<toml::Table>,
    /// Limits for this tenant, laid over the manifest's.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// When set, events for any other destination are refused (`invalid-output`).
    #[serde(default)]
    pub destinations: Option<Vec<String>>,
    /// Destinations that get only each item's latest state per batch: of an item's changes
    /// in one batch, only the events of the last change with events for the destination
    /// are published; the earlier ones are counted as coalesced.
    #[serde(default)]
    pub coalesce: Vec<String>,
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

/// Every limit outside its bounds, each naming its key, its value and the range. The
/// bounds keep arithmetic on limits (deadlines, sizes) far from overflow, and say why where
/// AWS or WebAssembly sets them.
fn limit_problems(limits: &Limits) -> Vec<String> {
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
            if v == 0 && min > 0 {
                Some(format!("limit {key} must be above 0"))
            } else {
                (v < min || v > max)
                    .then(|| format!("limit {key} = {v} is outside {min}..={max}{why}"))
            }
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

/// A manifest that cannot be used; every problem found is listed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// Where the manifest was read from.
        file: String,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The manifest is not valid TOML.
    #[error("{file}: {message}")]
    Parse {
        /// Where the manifest was read from.
        file: String,
        /// The TOML error, on one line.
        message: String,
    },
    /// The manifest parses but cannot be used.
    #[error("{file}: {}", problems.join("; "))]
    Invalid {
        /// Where the manifest was read from.
        file: String,
        /// Every problem found, each a sentence naming its key.
        problems: Vec<String>,
    },
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
                problems.push("routes must be an array of tables ([[routes]])".to_owned());
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
    fn coalesce_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, tenant) in &self.tenants {
            for d in &tenant.coalesce {
                if !tenant.allows(d) {
                    problems.push(format!(
                        "tenants.{name}.coalesce names {d:?}, a destination tenant {name:?} may not use (allowed: {})",
                        tenant.destinations.as_deref().unwrap_or_default().join(", ")
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
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.event_bus.trim().is_empty() {
            problems.push("event_bus is missing or empty".to_owned());
        }
        if let Some(bucket) = &self.dead_letter_bucket
            && !is_bucket_name(bucket)
        {
            problems.push(format!(
                "dead_letter_bucket must be an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens), found {bucket:?}"
            ));
        }
        if let Some(secret) = &self.dead_letter_key
            && !is_secret_id(secret)
        {
            problems.push(format!(
                "dead_letter_key must name a Secrets Manager secret (its name or ARN: letters, digits and /_+=.@-:), found {secret:?}"
            ));
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
            problems.extend(
                limit_problems(&self.limits_for(tenant))
                    .into_iter()
                    .map(|p| format!("tenants.{name}: {p}")),
            );
        }
        for (name, plugin) in &self.plugins {
            for (key, pin) in [
                ("sha256", &plugin.sha256),
                ("compiled_sha256", &plugin.compiled_sha256),
            ] {
                if let Some(pin) = pin
                    && (pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()))
                {
                    problems.push(format!(
                        "plugins.{name}.{key} must be 64 hex digits, found {pin:?}"
                    ));
                }
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

    /// Whether events for `destination` are coalesced per item.
    pub fn coalesces(&self, destination: &str) -> bool {
        self.coalesce.iter().any(|d| d == destination)
    }

    /// The tenant's config as JSON text, `{}` when it has none.
    pub fn config_json(&self) -> String {
        match &self.config {
            Some(table) => serde_json::to_string(table).unwrap_or_else(|_| "{}".to_owned()),
            None => "{}".to_owned(),
        }
    }
}

/// One `[destinations.<name>]` section: an API destination, its connection, and the rule
/// that sends it the events plugins address to `<name>`. `weir infra` turns it into
/// CloudFormation; the pipeline refuses events for destinations a tenant may not use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSpec {
    /// The HTTPS URL EventBridge calls; each `*` is filled from `path_parameters`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The URL kept in Secrets Manager instead, for endpoints whose URL is the credential
    /// (a Slack incoming webhook).
    #[serde(default)]
    pub endpoint_secret: Option<SecretRef>,
    /// The HTTP method: GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS.
    pub method: String,
    /// How EventBridge authenticates to the endpoint.
    pub auth: DestinationAuth,
    /// Requests per second EventBridge sends at most (its default: 300).
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
    /// How long and how often EventBridge retries 429s, 5xx and timeouts.
    #[serde(default)]
    pub retry: RetrySpec,
    /// The detail types this destination takes.
    pub detail_types: Vec<String>,
    /// Only this tenant's events; the other tenants may not use the destination.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The part of the event sent as the request body (default `$.detail.payload`: the
    /// plugin's payload exactly).
    #[serde(default)]
    pub input_path: Option<String>,
    /// JSON paths into the event filling the endpoint's `*`s, in order.
    #[serde(default)]
    pub path_parameters: Vec<String>,
    /// The header carrying the event's `metadata.id` (default `Idempotency-Key`; `""` for
    /// none), so the receiver can drop the redeliveries that at-least-once implies.
    #[serde(default)]
    pub idempotency_header: Option<String>,
}

/// A value kept in AWS Secrets Manager: the secret's name or ARN, and optionally the key
/// of a JSON secret. Only the reference ever appears in the manifest and the template.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The secret's name or ARN.
    pub secret: String,
    /// The key within a JSON secret; without it the whole secret string is the value.
    #[serde(default)]
    pub key: Option<String>,
}

/// A connection's authorization: the three kinds EventBridge offers, or `none` for
/// endpoints that authenticate by their URL (EventBridge still requires a connection).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DestinationAuth {
    /// OAuth 2.0 client credentials: EventBridge fetches and caches the token.
    OauthClientCredentials {
        /// The authorization server's token endpoint.
        token_url: String,
        /// The OAuth client id.
        client_id: String,
        /// The OAuth client secret.
        client_secret: SecretRef,
        /// The scope requested with the token, if any.
        #[serde(default)]
        scope: Option<String>,
    },
    /// A header holding a key.
    ApiKey {
        /// The header's name.
        header: String,
        /// The key sent in the header.
        value: SecretRef,
    },
    /// HTTP Basic.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretRef,
    },
    /// No credential beyond the URL.
    None,
}

/// An API destination target's RetryPolicy. The defaults are EventBridge's own maximums.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Retries after the first attempt, 0 to 185.
    #[serde(default = "RetrySpec::max_attempts")]
    pub attempts: u32,
    /// How long an event is retried, 60 to 86,400 seconds.
    #[serde(default = "RetrySpec::max_age")]
    pub max_age_secs: u32,
}

impl RetrySpec {
    /// EventBridge's largest MaximumRetryAttempts.
    pub const MAX_ATTEMPTS: u32 = 185;
    /// EventBridge's largest MaximumEventAgeInSeconds (24 hours).
    pub const MAX_AGE_SECS: u32 = 86_400;
    /// EventBridge's smallest MaximumEventAgeInSeconds.
    pub const MIN_AGE_SECS: u32 = 60;

    fn max_attempts() -> u32 {
        Self::MAX_ATTEMPTS
    }

    fn max_age() -> u32 {
        Self::MAX_AGE_SECS
    }
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            attempts: Self::MAX_ATTEMPTS,
            max_age_secs: Self::MAX_AGE_SECS,
        }
    }
}

/// The header an idempotency id travels in unless a destination says otherwise.
pub const DEFAULT_IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The body an API destination receives unless a destination says otherwise.
pub const DEFAULT_INPUT_PATH: &str = "$.detail.payload";

/// HTTP methods an API destination may use (EventBridge takes any but CONNECT and TRACE).
pub const DESTINATION_METHODS: &[&str] =
    &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Headers EventBridge does not let a target set.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-encoding",
    "content-length",
    "host",
    "max-forwards",
    "te",
    "transfer-encoding",
    "trailer",
    "upgrade",
    "via",
    "www-authenticate",
    "x-forwarded-for",
];

impl DestinationSpec {
    /// The body's JSON path.
    pub fn input_path(&self) -> &str {
        self.input_path.as_deref().unwrap_or(DEFAULT_INPUT_PATH)
    }

    /// The idempotency header's name, if the destination sends one.
    pub fn idempotency_header(&self) -> Option<&str> {
        match self.idempotency_header.as_deref() {
            None => Some(DEFAULT_IDEMPOTENCY_HEADER),
            Some("") => None,
            Some(h) => Some(h),
        }
    }
}

/// Whether `name` can name a destination: it becomes part of CloudFormation logical ids.
fn is_destination_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.bytes().any(|b| b.is_ascii_alphanumeric())
}

/// A JSON path EventBridge evaluates: `$` then `.name` segments of letters, digits, `-`, `_`.
fn is_simple_json_path(path: &str) -> bool {
    path.strip_prefix('$').is_some_and(|rest| {
        rest.split('.').skip(1).all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) && (rest.is_empty() || rest.starts_with('.'))
    })
}

/// Text that may sit inside a CloudFormation dynamic reference and a header or URL:
/// printable ASCII without spaces or braces.
fn is_plain_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
}

fn secret_problems(what: &str, secret: &SecretRef, problems: &mut Vec<String>) {
    if !is_plain_token(&secret.secret) {
        problems.push(format!(
            "{what}.secret must be a Secrets Manager secret name or ARN, found {:?}",
            secret.secret
        ));
    }
    if let Some(key) = &secret.key
        && (!is_plain_token(key) || key.contains(':'))
    {
        problems.push(format!(
            "{what}.key must be a JSON key without spaces, braces or ':', found {key:?}"
        ));
    }
}

fn https_problems(what: &str, url: &str, problems: &mut Vec<String>) {
    let host = url
        .strip_prefix("https://")
        .map(|r| r.split('/').next().unwrap_or_default());
    if host.is_none_or(str::is_empty) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        problems.push(format!(
            "{what} must be an https:// URL (API destinations call public HTTPS endpoints only), found {url:?}"
        ));
    }
}

/// Everything in `[destinations]` that cannot work, and every tenant allow-list that
/// names a destination it may not use.
fn destination_problems(
    destinations: &BTreeMap<String, DestinationSpec>,
    tenants: &BTreeMap<String, TenantSpec>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut logical_ids: BTreeMap<String, &str> = BTreeMap::new();
    for (name, d) in destinations {
        let what = format!("destinations.{name}");
        if !is_destination_name(name) {
            problems.push(format!(
                "{what}: a destination name is 1 to 64 letters, digits, '-' or '_'"
            ));
        } else if let Some(other) = logical_ids.insert(logical_id(name), name) {
            problems.push(format!(
                "{what}: makes the same CloudFormation names as destinations.{other}"
            ));
        }
        match (&d.endpoint, &d.endpoint_secret) {
            (Some(url), None) => {
                https_problems(&format!("{what}.endpoint"), url, &mut problems);
                let wildcards = url.matches('*').count();
                if wildcards != d.path_parameters.len() {
                    problems.push(format!(
                        "{what}: the endpoint has {wildcards} '*' but path_parameters has {} values",
                        d.path_parameters.len()
                    ));
                }
            }
            (None, Some(secret)) => {
                secret_problems(&format!("{what}.endpoint_secret"), secret, &mut problems)
            }
            _ => problems.push(format!(
                "{what} must give exactly one of endpoint = \"https://...\" or endpoint_secret = {{ secret = \"...\", key = \"...\" }}"
            )),
        }
        if !DESTINATION_METHODS.contains(&d.method.as_str()) {
            problems.push(format!(
                "{what}.method must be one of {}, found {:?}",
                DESTINATION_METHODS.join(", "),
                d.method
            ));
        }
        match &d.auth {
            DestinationAuth::OauthClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => {
                https_problems(&format!("{what}.auth.token_url"), token_url, &mut problems);
                if !is_plain_token(client_id) {
                    problems.push(format!(
                        "{what}.auth.client_id is empty or has spaces or braces"
                    ));
                }
                secret_problems(
                    &format!("{what}.auth.client_secret"),
                    client_secret,
                    &mut problems,
                );
                if scope
                    .as_deref()
                    .is_some_and(|s| s.trim().is_empty() || s.contains(['{', '}']))
                {
                    problems.push(format!("{what}.auth.scope is empty or has braces"));
                }
            }
            DestinationAuth::ApiKey { header, value } => {
                if !is_header_name(header) {
                    problems.push(format!(
                        "{what}.auth.header is not an HTTP header name: {header:?}"
                    ));
                }
                secret_problems(&format!("{what}.auth.value"), value, &mut problems);
            }
            DestinationAuth::Basic { username, password } => {
                if !is_plain_token(username) || username.contains(':') {
                    problems.push(format!(
                        "{what}.auth.username is empty or has spaces, braces or ':'"
                    ));
                }
                secret_problems(&format!("{what}.auth.password"), password, &mut problems);
            }
            DestinationAuth::None => {}
        }
        if d.rate_limit_per_second == Some(0) {
            problems.push(format!("{what}.rate_limit_per_second must be at least 1"));
        }
        if d.retry.attempts > RetrySpec::MAX_ATTEMPTS {
            problems.push(format!(
                "{what}.retry.attempts must be 0 to {}, found {}",
                RetrySpec::MAX_ATTEMPTS,
                d.retry.attempts
            ));
        }
        if !(RetrySpec::MIN_AGE_SECS..=RetrySpec::MAX_AGE_SECS).contains(&d.retry.max_age_secs) {
            problems.push(format!(
                "{what}.retry.max_age_secs must be {} to {}, found {}",
                RetrySpec::MIN_AGE_SECS,
                RetrySpec::MAX_AGE_SECS,
                d.retry.max_age_secs
            ));
        }
        if d.detail_types.is_empty() {
            problems.push(format!(
                "{what}.detail_types must name at least one detail type"
            ));
        }
        for t in &d.detail_types {
            if t.is_empty() || t.len() > 128 || t.chars().any(char::is_control) {
                problems.push(format!(
                    "{what}.detail_types: {t:?} is not a detail type (1 to 128 characters)"
                ));
            }
        }
        if let Some(t) = &d.tenant
            && (t == DEFAULT_TENANT || !tenants.contains_key(t))
        {
            problems.push(format!(
                "{what}.tenant names {t:?}, which is not a tenant with its own [tenants.{t}] entry"
            ));
        }
        let input_path = d.input_path();
        if !is_simple_json_path(input_path) || !input_path.starts_with(DEFAULT_INPUT_PATH) {
            problems.push(format!(
                "{what}.input_path must be {DEFAULT_INPUT_PATH} or a field inside it (dot notation), found {input_path:?}"
            ));
        }
        for p in &d.path_parameters {
            if !is_simple_json_path(p) || !p.starts_with("$.detail.") {
                problems.push(format!(
                    "{what}.path_parameters: {p:?} is not a JSON path into the event's detail ($.detail.payload.id)"
                ));
            }
        }
        if let Some(h) = d.idempotency_header()
            && !is_header_name(h)
        {
            problems.push(format!(
                "{what}.idempotency_header is not a header EventBridge lets a target set: {h:?}"
            ));
        }
    }
    if destinations.is_empty() {
        return problems;
    }
    for (tenant_name, tenant) in tenants {
        for allowed in tenant.destinations.iter().flatten() {
            match destinations.get(allowed) {
                None => problems.push(format!(
                    "tenants.{tenant_name}.destinations names {allowed:?}, which is not in [destinations]"
                )),
                Some(d) => {
                    if let Some(owner) = d.tenant.as_ref().filter(|o| *o != tenant_name) {
                        problems.push(format!(
                            "tenants.{tenant_name}.destinations names {allowed:?}, which is for tenant {owner:?} only"
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// An HTTP header name (RFC 9110 token) a target may set.
fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 512
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && !RESERVED_HEADERS.contains(&h.to_ascii_lowercase().as_str())
        && !h.to_ascii_lowercase().starts_with("x-amz")
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

/// A CloudFormation logical id prefix for a destination name: `crm-webhook` → `CrmWebhook`.
pub fn logical_id(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'D');
    }
    out
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
            err.contains("dead_letter_bucket must be an S3 bucket name"),
            "{err}"
        );
        assert!(err.contains(r#"found "Bad_Bucket\n""#), "escaped: {err}");
        assert!(
            err.contains("dead_letter_key must name a Secrets Manager secret"),
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
            "event_bus is missing or empty",
            "\"missing\"",
            "64 hex digits",
            "limit time_ms must be above 0",
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
            &format!("limit time_ms = {} is outside 1..=900000", i64::MAX),
            "limit memory_mib = 5000 is outside 1..=4096",
            "limit max_entry_bytes = 2000000 is outside 1..=1048576: PutEvents",
            "limit fuel must be above 0",
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
                .contains("plugins.mapping.compiled_sha256 must be 64 hex digits"),
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
