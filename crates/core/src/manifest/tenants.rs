//! `[plugins]`, `[[routes]]` and `[tenants]`: which plugin serves which tenant's records.

use serde::Deserialize;

use super::LimitOverrides;

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
