//! The [`Tenant`] a record belongs to, and its config from the manifest.

use serde_json::Value;

use crate::error::Error;

/// The tenant whose record this is, with its `config` table from the manifest.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The tenant's id, as the route found it in the record.
    pub id: String,
    /// The tenant's `config` from the manifest (an empty object if it has none).
    pub config: Value,
}

impl Tenant {
    /// A tenant, for tests: `config` is what the manifest's `config = { ... }` would give.
    pub fn new(id: impl Into<String>, config: Value) -> Self {
        Tenant {
            id: id.into(),
            config,
        }
    }

    /// A setting from the tenant's config: a top-level key, or a JSON Pointer
    /// (`/fields/Name`) into nested tables.
    pub fn config_value(&self, key: &str) -> Option<&Value> {
        if key.starts_with('/') {
            self.config.pointer(key)
        } else {
            self.config.get(key)
        }
    }

    /// A string setting from the tenant's config.
    pub fn config_str(&self, key: &str) -> Option<&str> {
        self.config_value(key)?.as_str()
    }

    /// A bool setting from the tenant's config.
    pub fn config_bool(&self, key: &str) -> Option<bool> {
        self.config_value(key)?.as_bool()
    }

    /// A string setting the plugin cannot work without, or an error naming it.
    pub fn require_config_str(&self, key: &str) -> Result<&str, Error> {
        self.config_str(key).ok_or_else(|| {
            Error(format!(
                "config.{} must be a string",
                key.trim_start_matches('/').replace('/', ".")
            ))
        })
    }
}
