//! Fault plugin: returns 10,000 events for a record with a `fault` attribute.
use weir_fault_common::{faulty, normal};
use weir_plugin_sdk::{Error, Event, Record, Tenant, json};

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if faulty(record) {
        return Ok((0..10_000)
            .map(|i| Event::new("test", "Flood", json!({ "i": i })))
            .collect());
    }
    Ok(normal(record))
}

weir_plugin_sdk::plugin!(transform);
