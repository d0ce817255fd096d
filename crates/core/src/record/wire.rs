//! A stream record's fields as serde reads them; the images stay undecoded text.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// A stream record as Lambda delivers it, every field optional so a missing one is named.
#[derive(Deserialize)]
pub(super) struct WireRecord<'a> {
    #[serde(rename = "eventID")]
    pub(super) event_id: Option<String>,
    #[serde(rename = "eventName")]
    pub(super) event_name: Option<String>,
    #[serde(rename = "eventSourceARN")]
    pub(super) event_source_arn: Option<String>,
    /// `aws:dynamodb` from a stream; [`BACKFILL_EVENT_SOURCE`](super::BACKFILL_EVENT_SOURCE) for an item a backfill read.
    #[serde(rename = "eventSource", borrow)]
    pub(super) event_source: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "userIdentity")]
    pub(super) user_identity: Option<WireIdentity>,
    #[serde(borrow)]
    pub(super) dynamodb: Option<WireStreamRecord<'a>>,
    /// Present in the shape DynamoDB sends to Kinesis Data Streams (never in a stream's).
    #[serde(rename = "tableName")]
    pub(super) table_name: Option<serde::de::IgnoredAny>,
}

/// Who made the change: DynamoDB itself for a TTL removal.
#[derive(Deserialize)]
pub(super) struct WireIdentity {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    #[serde(rename = "principalId")]
    pub(super) principal_id: Option<String>,
}

/// The record's `dynamodb` object.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireStreamRecord<'a> {
    pub(super) approximate_creation_date_time: Option<Value>,
    // Images stay as the text received until decoded, straight to plain JSON.
    #[serde(borrow)]
    pub(super) keys: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) new_image: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) old_image: Option<&'a RawValue>,
    pub(super) sequence_number: Option<String>,
}
