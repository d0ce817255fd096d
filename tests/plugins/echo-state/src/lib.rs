//! Test plugin: keeps what it saw in its instance's memory and echoes it back on the next
//! call. If instances were ever shared across tenants, one tenant's event would carry
//! another tenant's data.

use std::sync::Mutex;

use weir_plugin_sdk::{Error, Event, Record, Tenant, json};

static KEPT: Mutex<Option<(String, String, String, u64)>> = Mutex::new(None);

fn transform(record: &Record, tenant: &Tenant) -> Result<Vec<Event>, Error> {
    let mut kept = KEPT.lock().map_err(|_| "state poisoned")?;
    let name = record
        .image()
        .and_then(|i| i.str("/name"))
        .unwrap_or_default()
        .to_owned();
    let previous = kept.take();
    let calls = previous.as_ref().map_or(0, |p| p.3) + 1;
    let detail = json!({
        "tenant": tenant.id,
        "eventId": record.event_id,
        "calls": calls,
        "previousTenant": previous.as_ref().map(|p| p.0.clone()),
        "previousEventId": previous.as_ref().map(|p| p.1.clone()),
        "previousName": previous.as_ref().map(|p| p.2.clone()),
    });
    *kept = Some((tenant.id.clone(), record.event_id.clone(), name, calls));
    Ok(vec![Event::new("echo", "EchoState", detail)])
}

weir_plugin_sdk::plugin!(transform);
