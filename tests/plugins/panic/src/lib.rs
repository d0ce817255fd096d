//! Fault plugin: panics on a record with a `fault` attribute.
use weir_fault_common::{faulty, normal};
use weir_plugin_sdk::{Error, Event, Record, Tenant};

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if faulty(record) {
        panic!("customer {} has no billing country", record.event_id);
    }
    Ok(normal(record))
}

weir_plugin_sdk::plugin!(transform);
