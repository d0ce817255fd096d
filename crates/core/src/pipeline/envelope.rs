//! A plugin's events checked against the tenant's allow-list and EventBridge's limits, and
//! each wrapped in weir's metadata envelope.

use std::sync::Arc;

use sha2::Digest as _;

use crate::manifest::{Limits, Manifest, TenantSpec};
use crate::model::{DeadLetterKind, Entry, PluginRef};
use crate::record::{self, write_json_string};
use crate::transform::PluginEvent;
use crate::validate::{self, MAX_DETAIL_DEPTH, MAX_DETAIL_TYPE_CHARS, MAX_RESOURCE_CHARS};

/// Why a plugin's events cannot be published: the dead-letter kind and message.
#[derive(Debug)]
pub(super) struct EntryError {
    pub(super) kind: DeadLetterKind,
    pub(super) message: String,
}

fn invalid(message: String) -> EntryError {
    EntryError {
        kind: DeadLetterKind::InvalidOutput,
        message,
    }
}

/// Refuses events for a destination the tenant's allow-list does not name.
pub(super) fn check_destinations(
    tenant: &TenantSpec,
    tenant_id: &str,
    events: &[PluginEvent],
) -> Result<(), EntryError> {
    match events.iter().find(|e| !tenant.allows(&e.destination)) {
        None => Ok(()),
        Some(e) => Err(invalid(format!(
            "event for destination {:?}, which tenant {tenant_id:?} may not use (allowed: {})",
            e.destination,
            tenant
                .destinations
                .as_deref()
                .unwrap_or_default()
                .join(", ")
        ))),
    }
}

/// Validates a plugin's events and wraps each in weir's metadata envelope.
#[allow(clippy::too_many_arguments)]
pub(super) fn build_entries(
    record: &record::ParsedRecord<'_>,
    item: &str,
    spec: &TenantSpec,
    tenant: &str,
    source: &str,
    manifest: &Manifest,
    limits: &Limits,
    plugin: &Arc<PluginRef>,
    first_index: usize,
    events: Vec<PluginEvent>,
) -> Result<Vec<Entry>, EntryError> {
    if events.len() > limits.max_events {
        return Err(EntryError {
            kind: DeadLetterKind::TooManyEvents,
            message: format!(
                "plugin returned {} events for one record; the limit is {}",
                events.len(),
                limits.max_events
            ),
        });
    }
    let output_bytes: usize = events
        .iter()
        .map(|e| e.detail.len() + e.detail_type.len() + e.destination.len())
        .sum();
    if output_bytes > limits.max_output_bytes {
        return Err(EntryError {
            kind: DeadLetterKind::TooLarge,
            message: format!(
                "plugin returned {output_bytes} bytes of events for one record; the limit is {}",
                limits.max_output_bytes
            ),
        });
    }
    let mut entries = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let (n, index) = (i + 1, first_index + i);
        let chars = event.detail_type.chars().count();
        if chars == 0 || chars > MAX_DETAIL_TYPE_CHARS {
            return Err(invalid(format!(
                "event {n}: detail-type must be 1 to {MAX_DETAIL_TYPE_CHARS} characters, found {chars}"
            )));
        }
        if event.destination.is_empty() {
            return Err(invalid(format!("event {n}: destination is empty")));
        }
        if let Some(r) = event
            .resources
            .iter()
            .find(|r| r.is_empty() || r.chars().count() > MAX_RESOURCE_CHARS)
        {
            return Err(invalid(format!(
                "event {n}: each resource must be 1 to {MAX_RESOURCE_CHARS} characters, found {}",
                r.chars().count()
            )));
        }
        // The envelope adds one level of nesting around the payload.
        validate::check_detail(&event.detail, MAX_DETAIL_DEPTH - 1)
            .map_err(|e| invalid(format!("event {n}: {e}")))?;
        let detail = envelope(record, item, tenant, &plugin.name, index, &event);
        let coalesce = spec
            .coalesces(&event.destination)
            .then(|| format!("{}\u{1f}{item}\u{1f}{}", record.table(), event.destination));
        let entry = Entry {
            source: source.to_owned(),
            detail_type: event.detail_type,
            detail,
            event_bus_name: manifest.event_bus.clone(),
            resources: event.resources,
            plugin: plugin.clone(),
            coalesce,
        };
        let size = entry.size();
        if size > limits.max_entry_bytes {
            return Err(EntryError {
                kind: DeadLetterKind::TooLarge,
                message: format!(
                    "event {n}: entry is {size} bytes; the PutEvents limit is {}",
                    limits.max_entry_bytes
                ),
            });
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// `{"metadata": {...}, "payload": DETAIL}`, written as text so the payload's digits are
/// kept exactly as the plugin wrote them.
fn envelope(
    record: &record::ParsedRecord<'_>,
    item: &str,
    tenant: &str,
    plugin: &str,
    index: usize,
    event: &PluginEvent,
) -> String {
    let mut out = String::with_capacity(event.detail.len() + 320);
    out.push_str("{\"metadata\":{\"id\":");
    write_json_string(&event_id(record.event_id(), index), &mut out);
    out.push_str(",\"tenant\":");
    write_json_string(tenant, &mut out);
    out.push_str(",\"destination\":");
    write_json_string(&event.destination, &mut out);
    out.push_str(",\"plugin\":");
    write_json_string(plugin, &mut out);
    out.push_str(",\"table\":");
    write_json_string(record.table(), &mut out);
    out.push_str(",\"eventID\":");
    write_json_string(record.event_id(), &mut out);
    out.push_str(",\"eventName\":\"");
    out.push_str(record.change().as_str());
    out.push_str("\",\"sequenceNumber\":");
    write_json_string(record.sequence_number(), &mut out);
    out.push_str(",\"item\":");
    write_json_string(item, &mut out);
    out.push_str(",\"position\":");
    match record.position() {
        Some(p) => write_json_string(&p, &mut out),
        None => out.push_str("null"),
    }
    out.push_str(",\"approximateCreationTime\":");
    match record.approximate_creation_time_ms() {
        Some(ms) => write_json_string(&rfc3339_from_ms(ms), &mut out),
        None => out.push_str("null"),
    }
    if record.origin() == record::Origin::Backfill {
        out.push_str(",\"origin\":\"backfill\"");
    }
    out.push_str("},\"payload\":");
    out.push_str(&event.detail);
    out.push('}');
    out
}

/// A deterministic id for the `index`th event of a record: the same record always yields
/// the same ids, so downstream can drop the redeliveries at-least-once delivery brings.
pub fn event_id(stream_event_id: &str, index: usize) -> String {
    let digest = sha2::Sha256::digest(format!("{stream_event_id}/{index}").as_bytes());
    let h = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_from_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339_from_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_from_ms(1_700_000_000_500),
            "2023-11-14T22:13:20.500Z"
        );
        assert_eq!(rfc3339_from_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn event_ids_are_deterministic_and_distinct() {
        assert_eq!(event_id("abc", 0), event_id("abc", 0));
        assert_ne!(event_id("abc", 0), event_id("abc", 1));
        assert_ne!(event_id("abc", 0), event_id("abd", 0));
        assert_eq!(event_id("abc", 0).len(), 36);
    }
}
