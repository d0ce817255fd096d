//! A plugin driven only by the tenant's configuration: no code per tenant.
//!
//! ```toml
//! config = { detail_type = "CustomerChanged", destination = "crm",
//!            events = ["INSERT", "MODIFY"],
//!            fields = { Name = "/name", City = "/address/city" } }
//! ```
//! Each output key takes the value at an RFC 6901 pointer into the new image (the old
//! image for REMOVE). A missing value is left out. An integer EventBridge cannot carry
//! exactly (outside i64) is written as a string holding every digit.

use weir_plugin_sdk::{Error, Event, Map, Record, Tenant, Value, eventbridge_safe};

fn transform(record: &Record, tenant: &Tenant) -> Result<Vec<Event>, Error> {
    let config = &tenant.config;
    let detail_type = config
        .get("detail_type")
        .and_then(Value::as_str)
        .ok_or("config.detail_type must be a string")?;
    let destination = match config.get("destination") {
        None => "default",
        Some(v) => v.as_str().ok_or("config.destination must be a string")?,
    };
    if let Some(events) = config.get("events") {
        let events = events
            .as_array()
            .ok_or("config.events must be a list of event names")?;
        if !events
            .iter()
            .any(|e| e.as_str() == Some(record.change.as_str()))
        {
            return Ok(vec![]);
        }
    }
    let fields = config
        .get("fields")
        .and_then(Value::as_object)
        .ok_or("config.fields must be a table of output key = JSON pointer")?;
    let image = record.image().unwrap_or(&record.keys);
    let mut detail = Map::new();
    for (key, pointer) in fields {
        let pointer = pointer
            .as_str()
            .ok_or_else(|| format!("config.fields.{key} must be a JSON pointer string"))?;
        if let Some(value) = image.get(pointer) {
            detail.insert(key.clone(), eventbridge_safe(value));
        }
    }
    Ok(vec![Event::new(
        destination,
        detail_type,
        Value::Object(detail),
    )])
}

weir_plugin_sdk::plugin!(transform);
