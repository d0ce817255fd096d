//! Fault plugin: returns a detail that is a JSON array on a record with a `fault` attribute.
use weir_fault_common::{faulty, normal};
use weir_plugin_sdk::{Error, Event, Record, Tenant, json};

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if faulty(record) {
        return Ok(vec![Event::new("test", "Array", json!([1, 2, 3]))]);
    }
    Ok(normal(record))
}

weir_plugin_sdk::plugin!(transform);
