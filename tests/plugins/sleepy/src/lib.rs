//! Fault plugin: on a record with a `fault` attribute, sleeps an hour at a time, forever.
//! Host time does not pass for plugins: every sleep returns at once, so this is a busy loop
//! the time limit stops, not a host thread parked for an hour.

use weir_fault_common::{faulty, normal};
use weir_plugin_sdk::{Error, Event, Record, Tenant};

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if faulty(record) {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    Ok(normal(record))
}

weir_plugin_sdk::plugin!(transform);
