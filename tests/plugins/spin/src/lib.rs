//! Fault plugin: loops forever on a record whose `fault` attribute is `spin`, and maps
//! every other record normally, so a test can show the next record is unaffected.

use weir_plugin_sdk::{Error, Event, Record, Tenant, json};

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if record.image().and_then(|i| i.str("/fault")) == Some("spin") {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    Ok(vec![Event::new(
        "test",
        "Survived",
        json!({ "eventId": record.event_id }),
    )])
}

weir_plugin_sdk::plugin!(transform);
