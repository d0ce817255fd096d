//! Fault plugin: returns a detail that is not JSON on a record with a `fault` attribute.
//! The SDK only ever writes valid JSON, so this plugin speaks the raw contract.

use weir_plugin_sdk::bindings::exports::weir::transform::transformer::{
    Event, Guest, StreamRecord, Tenant,
};

struct Garbage;

impl Guest for Garbage {
    fn transform(record: StreamRecord, _tenant: Tenant) -> Result<Vec<Event>, String> {
        let faulty = record
            .new_image
            .is_some_and(|image| image.kind("/fault").is_some());
        let detail = if faulty {
            "{\"unterminated\": tru".to_owned()
        } else {
            format!("{{\"eventId\":\"{}\"}}", record.event_id)
        };
        Ok(vec![Event {
            destination: "test".into(),
            detail_type: "Survived".into(),
            detail,
            resources: Vec::new(),
        }])
    }
}

weir_plugin_sdk::bindings::__export_plugin!(Garbage with_types_in weir_plugin_sdk::bindings);
