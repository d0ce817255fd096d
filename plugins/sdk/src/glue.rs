//! The glue between the WIT bindings and the SDK's types: [`__run`] is what `plugin!`
//! exports, turning the host's stream record into a [`Record`] and the plugin's events
//! into WIT events. Under `weir:transform@0.2.0` the images are host resources, read
//! through [`HostImage`](crate::host_image::HostImage); under 0.1.0 (the `contract-0-1`
//! feature) they are JSON text, parsed on first read.

use crate::bindings::exports::weir::transform::transformer as wit;
use crate::bindings::weir::transform::types as wit_types;
use crate::error::Error;
use crate::event::Event;
use crate::record::{Change, LazyImage, Record};
use crate::tenant::Tenant;

#[doc(hidden)]
pub fn __run(
    record: wit::StreamRecord,
    tenant: wit::Tenant,
    f: fn(&Record, &Tenant) -> Result<Vec<Event>, Error>,
) -> Result<Vec<wit::Event>, String> {
    let record = record_from(record)?;
    let events = with_tenant(tenant, |tenant| f(&record, tenant).map_err(|e| e.0))?;
    events
        .into_iter()
        .map(|e| {
            // `to_string` writes straight into a buffer; `Display` goes through a
            // formatter a token at a time.
            let detail = serde_json::to_string(&e.detail)
                .map_err(|why| format!("detail cannot be written as JSON: {why}"))?;
            Ok(wit::Event {
                destination: e.destination,
                detail_type: e.detail_type,
                detail,
                resources: e.resources,
            })
        })
        .collect()
}

fn change(change: wit_types::Change) -> Change {
    match change {
        wit_types::Change::Insert => Change::Insert,
        wit_types::Change::Modify => Change::Modify,
        wit_types::Change::Remove => Change::Remove,
    }
}

/// A 0.2 record: its images are handles, read through the host.
#[cfg(not(feature = "contract-0-1"))]
fn record_from(record: wit::StreamRecord) -> Result<Record, String> {
    use crate::host_image::HostImage;
    use crate::image::Image;
    use crate::record::Origin;
    let image = |handle| LazyImage::parsed(Image::host(HostImage::new(handle)));
    Ok(Record {
        table: record.table,
        event_id: record.event_id,
        change: change(record.change),
        origin: match record.origin {
            wit_types::Origin::Stream => Origin::Stream,
            wit_types::Origin::Backfill => Origin::Backfill,
        },
        sequence_number: record.sequence_number,
        approximate_creation_time_ms: record.approximate_creation_time_ms,
        keys: Image::host(HostImage::new(record.keys)),
        new_image: record.new_image.map(image).unwrap_or_default(),
        old_image: record.old_image.map(image).unwrap_or_default(),
        removed_by_ttl: record.removed_by_ttl,
    })
}

/// A 0.1 record: its images are JSON text.
#[cfg(feature = "contract-0-1")]
fn record_from(record: wit::StreamRecord) -> Result<Record, String> {
    use crate::image::parse_image;
    use crate::record::Origin;
    Ok(Record {
        table: record.table,
        event_id: record.event_id,
        change: change(record.change),
        origin: Origin::Stream,
        sequence_number: record.sequence_number,
        approximate_creation_time_ms: record.approximate_creation_time_ms,
        keys: parse_image(record.keys, "keys")?,
        new_image: LazyImage::text(record.new_image),
        old_image: LazyImage::text(record.old_image),
        removed_by_ttl: record.removed_by_ttl,
    })
}

thread_local! {
    /// The last tenant seen, with the config text it was parsed from. An instance serves
    /// one tenant, so every call after the first reuses the parsed config.
    static LAST_TENANT: std::cell::RefCell<Option<(String, Tenant)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with `tenant`, its config parsed once per instance rather than once per call.
fn with_tenant<T>(
    tenant: wit::Tenant,
    f: impl FnOnce(&Tenant) -> Result<T, String>,
) -> Result<T, String> {
    LAST_TENANT.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((text, t)) = &*last
            && *text == tenant.config
            && t.id == tenant.id
        {
            return f(t);
        }
        let config = serde_json::from_str(&tenant.config)
            .map_err(|e| format!("tenant config is not JSON: {e}"))?;
        let (_, parsed) = last.insert((
            tenant.config,
            Tenant {
                id: tenant.id,
                config,
            },
        ));
        f(parsed)
    })
}
