//! Routing: which tenant entry serves a record, or why none does.

use crate::manifest::{DEFAULT_TENANT, Route, TenantSpec};
use crate::record;
use crate::transform::Slot;

use super::{FilterReason, Pipeline};

/// Where routing sent a record.
pub(super) enum Routed<'m> {
    /// To a tenant entry (`entry`), running as tenant `tenant_id`.
    Tenant {
        route: &'m Route,
        entry: &'m str,
        tenant: &'m TenantSpec,
        tenant_id: String,
    },
    /// Nowhere, and why (with the tenant it named, if any).
    Filtered(FilterReason, Option<String>),
    /// Nowhere: the value routing reads is one DynamoDB could not have written.
    Bad(record::DecodeError),
}

impl<S: Slot> Pipeline<S> {
    /// Which tenant entry serves a record, or why none does.
    pub(super) fn route(&self, parsed: &record::ParsedRecord<'_>) -> Routed<'_> {
        let manifest = &self.manifest;
        let Some(route) = manifest.route(parsed.table()) else {
            return Routed::Filtered(FilterReason::NoRoute, None);
        };
        let attribute = match parsed.string_attribute(route.tenant.attribute_name()) {
            Ok(attribute) => attribute,
            Err(e) => return Routed::Bad(e),
        };
        let own_id = attribute.as_deref().and_then(|v| route.tenant.extract(v));
        if let Some(only) = &self.only
            && !own_id.is_some_and(|id| only.contains(id))
        {
            return Routed::Filtered(FilterReason::OtherTenant, own_id.map(str::to_owned));
        }
        match manifest.tenant_entry(own_id.unwrap_or(DEFAULT_TENANT)) {
            Some((entry, tenant)) => Routed::Tenant {
                route,
                entry,
                tenant,
                // A record served by the default entry still runs as its own tenant.
                tenant_id: own_id.unwrap_or(DEFAULT_TENANT).to_owned(),
            },
            None => Routed::Filtered(
                if own_id.is_some() {
                    FilterReason::UnknownTenant
                } else {
                    FilterReason::NoTenant
                },
                own_id.map(str::to_owned),
            ),
        }
    }
}
