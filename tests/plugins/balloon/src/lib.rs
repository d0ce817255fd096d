//! Fault plugin: grows memory without bound on a record whose `fault` attribute is
//! `balloon`, and maps every other record normally.

use weir_plugin_sdk::{Error, Event, Record, Tenant, json};

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if record.image().and_then(|i| i.str("/fault")) == Some("balloon") {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
    Ok(vec![Event::new(
        "test",
        "Survived",
        json!({ "eventId": record.event_id }),
    )])
}

weir_plugin_sdk::plugin!(transform);
