//! Fault plugin: logs 100,000 lines (half through the log import, half on stdout) on a
//! record with a `fault` attribute, then returns one normal event.
use weir_fault_common::{faulty, normal};
use weir_plugin_sdk::{Error, Event, Record, Tenant};

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if faulty(record) {
        for i in 0..50_000 {
            weir_plugin_sdk::log::info(&format!("chatty line {i}"));
            println!("chatty stdout line {i}");
        }
    }
    Ok(normal(record))
}

weir_plugin_sdk::plugin!(transform);
