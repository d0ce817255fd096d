//! Fault plugin: loops forever on a record whose `fault` attribute is `spin`, and maps
//! every other record normally, so a test can show the next record is unaffected.

use weir_fault_common::{faulty, normal};
use weir_plugin_sdk::{Error, Event, Record, Tenant};

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if faulty(record) {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    Ok(normal(record))
}

weir_plugin_sdk::plugin!(transform);
