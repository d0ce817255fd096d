//! An [`Event`] a plugin returns: one EventBridge PutEvents entry.

use serde_json::Value;

/// One event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The destination it is for: EventBridge rules route on it.
    pub destination: String,
    /// EventBridge's DetailType, 1 to 128 characters.
    pub detail_type: String,
    /// A JSON object: what the destination receives.
    pub detail: Value,
    /// ARNs for EventBridge's Resources field.
    pub resources: Vec<String>,
}

impl Event {
    /// An event for `destination` with EventBridge's `DetailType` and `detail`, and no
    /// resources.
    pub fn new(
        destination: impl Into<String>,
        detail_type: impl Into<String>,
        detail: Value,
    ) -> Self {
        Event {
            destination: destination.into(),
            detail_type: detail_type.into(),
            detail,
            resources: Vec::new(),
        }
    }
}
