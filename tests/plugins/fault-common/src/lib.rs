//! What every fault plugin shares: it misbehaves only on a record carrying a `fault`
//! attribute, and maps every other record to one ordinary event, so a test can show the
//! same tenant's next record is unaffected.

use weir_plugin_sdk::{Event, Record, json};

/// Whether this record asks the plugin to misbehave.
pub fn faulty(record: &Record) -> bool {
    record.image().and_then(|i| i.get("/fault")).is_some()
}

/// The ordinary event for a record that does not ask for a fault.
pub fn normal(record: &Record) -> Vec<Event> {
    vec![Event::new(
        "test",
        "Survived",
        json!({ "eventId": record.event_id }),
    )]
}
