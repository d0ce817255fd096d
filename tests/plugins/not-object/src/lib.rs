//! Fault plugin: returns a detail that is a JSON array on a record with a `fault` attribute.
use weir_plugin_sdk::{Error, Event, Record, Tenant, json};

fn faulty(record: &Record) -> bool {
    record.image().and_then(|i| i.get("/fault")).is_some()
}

fn normal(record: &Record) -> Vec<Event> {
    vec![Event::new(
        "test",
        "Survived",
        json!({ "eventId": record.event_id }),
    )]
}

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if faulty(record) {
        return Ok(vec![Event::new("test", "Array", json!([1, 2, 3]))]);
    }
    Ok(normal(record))
}

weir_plugin_sdk::plugin!(transform);
