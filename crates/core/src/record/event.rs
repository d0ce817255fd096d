//! A Lambda event split into its records, each kept as the exact text received.

use serde::Deserialize;
use serde_json::value::RawValue;

/// A Lambda event for DynamoDB Streams with each record kept as the exact text received,
/// so a dead letter can carry the original byte for byte.
#[derive(Debug, Deserialize)]
pub struct StreamEvent<'a> {
    /// Each record's text, undecoded.
    #[serde(rename = "Records", borrow)]
    pub records: Vec<&'a RawValue>,
}

/// The same event owning each record's text: what the function receives from Lambda's
/// runtime, which hands over an owned payload (a [`StreamEvent`] borrows from a buffer the
/// caller keeps). Records are kept as text rather than a typed record, so a dead letter
/// holds the original bytes and a record that does not decode fails alone. Strict:
/// `Records` must be there, since an event without it is not a stream batch.
#[derive(Debug, Deserialize)]
pub struct StreamBatch {
    /// Each record's text, undecoded.
    #[serde(rename = "Records")]
    pub records: Vec<Box<RawValue>>,
}

/// Why a file is not an event weir can read, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not JSON at all.
    #[error("not a DynamoDB Streams event: not valid JSON ({0})")]
    Json(serde_json::Error),
    /// JSON, but neither `{"Records": [...]}` nor one stream record.
    #[error(
        "not a DynamoDB Streams event: expected {{\"Records\": [...]}} or one stream record (an object with eventName and dynamodb)"
    )]
    Shape,
    /// A Kinesis event: DynamoDB changes sent through Kinesis Data Streams, base64 inside.
    #[error(
        "a Kinesis event (Records[].kinesis.data, base64), not DynamoDB Streams: weir reads the table's stream, whose records carry eventSourceARN and dynamodb.SequenceNumber"
    )]
    Kinesis,
    /// A record in the shape DynamoDB gives changes it sends to Kinesis Data Streams.
    #[error(
        "record {0} is a DynamoDB change as Kinesis Data Streams carries it (tableName, no dynamodb.SequenceNumber): weir reads DynamoDB Streams records, which name the table in eventSourceARN and carry a SequenceNumber"
    )]
    KinesisRecord(usize),
}

impl<'a> StreamEvent<'a> {
    /// Splits an event into its records without decoding them, so one bad record cannot
    /// fail the others. Takes what samples from other tools look like: a UTF-8 byte-order
    /// mark before the JSON, and a single record instead of `{"Records": [...]}` (a batch of
    /// one). Refuses, in one line saying what it is, the shapes of DynamoDB changes sent
    /// through Kinesis Data Streams.
    pub fn parse(text: &'a str) -> Result<Self, EventError> {
        #[derive(Deserialize)]
        struct Top<'a> {
            #[serde(rename = "Records", borrow, default)]
            records: Option<Vec<&'a RawValue>>,
            #[serde(rename = "eventName", borrow, default)]
            event_name: Option<&'a RawValue>,
            #[serde(borrow, default)]
            dynamodb: Option<&'a RawValue>,
        }
        /// Just enough of a record to tell a Kinesis shape from a stream record.
        #[derive(Deserialize)]
        struct Peek<'a> {
            #[serde(borrow, default)]
            kinesis: Option<&'a RawValue>,
            #[serde(rename = "tableName", borrow, default)]
            table_name: Option<&'a RawValue>,
            #[serde(default)]
            dynamodb: Option<PeekStream>,
        }
        #[derive(Deserialize)]
        struct PeekStream {
            #[serde(rename = "SequenceNumber", default)]
            sequence_number: Option<serde::de::IgnoredAny>,
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let top: Top<'a> = serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                EventError::Shape
            } else {
                EventError::Json(e)
            }
        })?;
        let records = match top.records {
            Some(records) => records,
            None if top.event_name.is_some() || top.dynamodb.is_some() => {
                vec![serde_json::from_str::<&'a RawValue>(text).map_err(EventError::Json)?]
            }
            None => return Err(EventError::Shape),
        };
        for (i, record) in records.iter().enumerate() {
            let Ok(peek) = serde_json::from_str::<Peek>(record.get()) else {
                continue; // Not an object: the record's own decode says why.
            };
            if peek.kinesis.is_some() {
                return Err(EventError::Kinesis);
            }
            let sequenced = peek
                .dynamodb
                .as_ref()
                .is_some_and(|d| d.sequence_number.is_some());
            if peek.table_name.is_some() && !sequenced {
                return Err(EventError::KinesisRecord(i + 1));
            }
        }
        Ok(StreamEvent { records })
    }
}
