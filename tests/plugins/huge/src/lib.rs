//! Fault plugin: returns one 5 MB event for a record with a `fault` attribute.
use weir_fault_common::{faulty, normal};
use weir_plugin_sdk::{Error, Event, Record, Tenant, json};

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if faulty(record) {
        return Ok(vec![Event::new(
            "test",
            "Huge",
            json!({ "blob": "x".repeat(5 << 20) }),
        )]);
    }
    Ok(normal(record))
}

weir_plugin_sdk::plugin!(transform);
