//! A plugin driven only by the tenant's configuration: no code per tenant.
//!
//! ```toml
//! config = { detail_type = "CustomerChanged", destination = "crm",
//!            events = ["INSERT", "MODIFY"],
//!            fields = { Name = "/name", City = "/address/city" } }
//! ```
//! Each output key takes the value at an RFC 6901 pointer into the new image (the old
//! image for REMOVE). A missing value is left out. An integer EventBridge cannot carry
//! exactly (outside i64) is written as a string holding every digit. With
//! `position_field = "Weir_Position__c"`, the change's position (`Record::position`) goes
//! in that field too, for a destination that refuses stale updates (docs/DEPLOY.md).

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
    if let Some(field) = config.get("position_field") {
        let field = field
            .as_str()
            .ok_or("config.position_field must be a string")?;
        if let Some(position) = record.position() {
            detail.insert(field.to_owned(), Value::String(position));
        }
    }
    Ok(vec![Event::new(
        destination,
        detail_type,
        Value::Object(detail),
    )])
}

weir_plugin_sdk::plugin!(transform);

/// The mapping's logic, tested natively (`cargo test -p weir-plugin-mapping`): no
/// WebAssembly, no host.
#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::{Change, Image, json};

    fn tenant() -> Tenant {
        Tenant::new(
            "globex",
            json!({
                "detail_type": "CustomerChanged",
                "destination": "crm",
                "events": ["INSERT", "REMOVE"],
                "fields": { "Name": "/name", "LTV": "/ltv", "City": "/address/city" }
            }),
        )
    }

    fn image(text: &str) -> Image {
        Image::parse(text).expect("an object")
    }

    #[test]
    fn maps_the_configured_fields_and_keeps_every_digit() {
        let record = Record::new(Change::Insert, image(r#"{"id":"C-1"}"#)).with_new_image(image(
            r#"{"name":"Ada","ltv":12345678901234567890123456789012345678,"address":{"city":"Oslo"}}"#,
        ));
        let events = transform(&record, &tenant()).expect("events");
        assert_eq!(events.len(), 1);
        assert_eq!(
            (
                events[0].destination.as_str(),
                events[0].detail_type.as_str()
            ),
            ("crm", "CustomerChanged")
        );
        assert_eq!(
            events[0].detail,
            json!({"Name": "Ada", "LTV": "12345678901234567890123456789012345678", "City": "Oslo"})
        );
    }

    #[test]
    fn a_remove_maps_the_old_image_and_a_change_not_listed_is_skipped() {
        let keys = image(r#"{"id":"C-1"}"#);
        let removed = Record::new(Change::Remove, keys.clone())
            .with_old_image(image(r#"{"name":"Ada","address":{"city":"Oslo"}}"#));
        let events = transform(&removed, &tenant()).expect("events");
        assert_eq!(events[0].detail, json!({"Name": "Ada", "City": "Oslo"}));
        let modified =
            Record::new(Change::Modify, keys).with_new_image(image(r#"{"name":"Ada Lovelace"}"#));
        assert!(
            transform(&modified, &tenant())
                .expect("no error")
                .is_empty()
        );
    }

    #[test]
    fn the_position_goes_in_the_configured_field_for_stream_changes_only() {
        let tenant = Tenant::new(
            "acme",
            json!({"detail_type": "X", "fields": {"Name": "/name"}, "position_field": "Weir_Position__c"}),
        );
        let mut record = Record::new(Change::Modify, image(r#"{"id":"C-1"}"#))
            .with_new_image(image(r#"{"name":"Ada"}"#));
        record.sequence_number = "4200000000000000000001".to_owned();
        let events = transform(&record, &tenant).expect("events");
        assert_eq!(
            events[0].detail,
            json!({"Name": "Ada", "Weir_Position__c": "0000000000000000004200000000000000000001"})
        );
        let backfilled = record.with_origin(weir_plugin_sdk::Origin::Backfill);
        let events = transform(&backfilled, &tenant).expect("events");
        assert_eq!(events[0].detail, json!({"Name": "Ada"}));
    }

    #[test]
    fn a_config_without_fields_is_a_clear_error() {
        let record = Record::new(Change::Insert, image(r#"{"id":"C-1"}"#));
        let tenant = Tenant::new("t", json!({"detail_type": "X"}));
        let err = transform(&record, &tenant).expect_err("refused");
        assert!(err.to_string().contains("config.fields"), "{err}");
    }
}
