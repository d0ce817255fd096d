//! {{name}}: a weir plugin. weir calls `transform` once per DynamoDB stream record, with
//! the tenant's `config` from the manifest; the record's images are read by JSON pointer
//! (`item.str("/id")`), through weir, which decodes only what is read.
//!
//! - `Ok(events)` publishes the events (one PutEvents entry each);
//! - `Ok(vec![])` filters the record: nothing is sent;
//! - `Err(reason)` dead-letters the record with the reason.

use weir_plugin_sdk::{Change, Error, Event, Record, Tenant, json};

fn transform(record: &Record, tenant: &Tenant) -> Result<Vec<Event>, Error> {
    // Deletions are not sent on: no events filters the record.
    if record.change == Change::Remove {
        return Ok(vec![]);
    }
    // The item as it now is (a KEYS_ONLY stream carries no image).
    let Some(item) = record.image() else {
        return Ok(vec![]);
    };
    let id = item.str("/id").ok_or("the item has no string id")?;
    let name = item.str("/name").ok_or("the item has no name")?;
    // Per-tenant settings come from the manifest's `config` for the tenant.
    let destination = tenant.config_str("destination").unwrap_or("webhook");
    Ok(vec![Event::new(
        destination,
        "ItemChanged",
        json!({
            "change": record.change.as_str(),
            "id": id,
            "name": name,
            "tenant": tenant.id,
        }),
    )])
}

weir_plugin_sdk::plugin!(transform);
