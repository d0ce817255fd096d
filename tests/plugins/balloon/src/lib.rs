//! Fault plugin: grows memory without bound on a record whose `fault` attribute is
//! `balloon`, and maps every other record normally.

use weir_fault_common::{faulty, normal};
use weir_plugin_sdk::{Error, Event, Record, Tenant};

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if faulty(record) {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
    Ok(normal(record))
}

weir_plugin_sdk::plugin!(transform);
