//! DynamoDB Streams records, as Lambda delivers them, decoded to the plain JSON plugins see.
//!
//! Numbers never pass through a float: an `N` is checked against DynamoDB's number grammar
//! and written out digit for digit, so a 38-digit value reaches the plugin intact.
//!
//! Its parts: [`StreamEvent`] splits an event into records (`event`); [`parse`] reads one
//! record's fields through its serde wire shape (`wire`) and leaves the images as text;
//! `transcode` turns typed JSON into plain JSON, checking each `N` against DynamoDB's
//! number grammar (`number`); `lookup` reads one top-level attribute for routing; `key`
//! makes an item's stable key and a record's position.

mod event;
mod key;
mod lookup;
mod number;
mod transcode;
mod wire;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use lookup::top_level_string;
use wire::WireRecord;

pub use event::{EventError, StreamBatch, StreamEvent};
pub use key::{item_key, position_of};
pub(crate) use number::number_as_json;
pub use number::{MAX_NUMBER_DIGITS, MAX_NUMBER_EXPONENT, MIN_NUMBER_EXPONENT};
pub use transcode::{MAX_ATTRIBUTE_DEPTH, transcode_image, write_json_string};
pub(crate) use transcode::{transcode_attribute, write_binary};

/// What happened to the item, as the stream's `eventName` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Change {
    /// A new item was written.
    #[serde(rename = "INSERT")]
    Insert,
    /// An existing item was changed.
    #[serde(rename = "MODIFY")]
    Modify,
    /// The item was deleted, by a request or by TTL.
    #[serde(rename = "REMOVE")]
    Remove,
}

impl Change {
    /// The stream's own spelling, used in metadata and in `events` filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Insert => "INSERT",
            Change::Modify => "MODIFY",
            Change::Remove => "REMOVE",
        }
    }
}

/// One record decoded: exactly what a plugin receives, images as JSON text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamRecord {
    /// The table's name, from `eventSourceARN`.
    pub table: String,
    /// The stream's `eventID` for this record.
    pub event_id: String,
    /// What happened to the item.
    pub change: Change,
    /// The record's position in its shard, a decimal string.
    pub sequence_number: String,
    /// When the change was made, in epoch milliseconds, if the stream says.
    pub approximate_creation_time_ms: Option<u64>,
    /// The item's key attributes, as plain JSON text.
    #[serde(serialize_with = "as_raw_json")]
    pub keys: String,
    /// The item after the change, as plain JSON text, when the stream carries it.
    #[serde(serialize_with = "as_raw_json_opt")]
    pub new_image: Option<String>,
    /// The item before the change, as plain JSON text, when the stream carries it.
    #[serde(serialize_with = "as_raw_json_opt")]
    pub old_image: Option<String>,
    /// Whether DynamoDB itself removed the item because its TTL expired.
    pub removed_by_ttl: bool,
}

fn as_raw_json<S: serde::Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize as _;
    RawValue::from_string(text.to_owned())
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

fn as_raw_json_opt<S: serde::Serializer>(text: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match text {
        Some(t) => as_raw_json(t, s),
        None => s.serialize_none(),
    }
}

/// Why a record could not be decoded; `path` names the attribute, e.g. `NewImage.address.zip`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DecodeError {
    /// The field or attribute at fault.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl DecodeError {
    pub(crate) fn at(path: &str, message: impl Into<String>) -> Self {
        DecodeError {
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// The error with its path (a JSON pointer) placed in an image: `dynamodb.NewImage`
    /// and `/address/zip` say `dynamodb.NewImage.address.zip`.
    pub fn in_image(mut self, image: &str) -> Self {
        // As the eager decoder names it: `dynamodb.NewImage.address.zip`.
        self.path = if self.path.starts_with('/') {
            format!("{image}{}", self.path.replace('/', "."))
        } else {
            image.to_owned()
        };
        self
    }
}

/// A record split into its parts but not yet decoded: enough to route it and find its
/// tenant without converting images that may never be needed.
pub struct ParsedRecord<'a> {
    origin: Origin,
    table: String,
    unknown_table: Option<String>,
    event_id: String,
    change: Change,
    sequence_number: String,
    approximate_creation_time_ms: Option<u64>,
    removed_by_ttl: bool,
    keys: &'a RawValue,
    new_image: Option<&'a RawValue>,
    old_image: Option<&'a RawValue>,
}

/// Reads one record's text (as found in the event's `Records` array) far enough to route it.
pub fn parse(raw: &str) -> Result<ParsedRecord<'_>, DecodeError> {
    let wire: WireRecord = serde_json::from_str(raw).map_err(|e| {
        let why = if e.to_string().starts_with("recursion limit exceeded") {
            format!("nested deeper than any DynamoDB item can be ({e})")
        } else {
            e.to_string()
        };
        DecodeError::at("record", format!("not a stream record: {why}"))
    })?;
    let event_id = wire
        .event_id
        .ok_or_else(|| DecodeError::at("eventID", "missing"))?;
    let change = match wire.event_name.as_deref() {
        Some("INSERT") => Change::Insert,
        Some("MODIFY") => Change::Modify,
        Some("REMOVE") => Change::Remove,
        Some(other) => {
            return Err(DecodeError::at(
                "eventName",
                format!("unknown event name {other:?} (expected INSERT, MODIFY or REMOVE)"),
            ));
        }
        None => return Err(DecodeError::at("eventName", "missing")),
    };
    if wire.table_name.is_some()
        && wire
            .dynamodb
            .as_ref()
            .is_none_or(|d| d.sequence_number.is_none())
    {
        return Err(DecodeError::at(
            "dynamodb.SequenceNumber",
            "missing: this is a DynamoDB change as Kinesis Data Streams carries it (tableName), which cannot be retried in order",
        ));
    }
    let arn = wire
        .event_source_arn
        .ok_or_else(|| DecodeError::at("eventSourceARN", "missing"))?;
    // An ARN naming no table (a sample's placeholder, "stream-ARN") leaves the table
    // unknown: only a route for every table (`table = "*"`) takes the record.
    let table = table_from_arn(&arn).unwrap_or_default().to_owned();
    let unknown_table = table.is_empty().then_some(arn);
    let ddb = wire
        .dynamodb
        .ok_or_else(|| DecodeError::at("dynamodb", "missing"))?;
    let sequence_number = ddb.sequence_number.ok_or_else(|| {
        DecodeError::at(
            "dynamodb.SequenceNumber",
            "missing: without it the record cannot be retried in order",
        )
    })?;
    if sequence_number.is_empty()
        || sequence_number.len() > 40
        || !sequence_number.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(DecodeError::at(
            "dynamodb.SequenceNumber",
            format!("{sequence_number:?} is not a decimal string of 1 to 40 digits"),
        ));
    }
    let approximate_creation_time_ms = match &ddb.approximate_creation_date_time {
        None | Some(Value::Null) => None,
        Some(v) => Some(epoch_seconds_to_ms(v).ok_or_else(|| {
            DecodeError::at(
                "dynamodb.ApproximateCreationDateTime",
                format!("{v} is not a time in epoch seconds"),
            )
        })?),
    };
    let keys = ddb
        .keys
        .ok_or_else(|| DecodeError::at("dynamodb.Keys", "missing"))?;
    let removed_by_ttl = change == Change::Remove
        && wire.user_identity.is_some_and(|u| {
            u.kind.as_deref() == Some("Service")
                && u.principal_id.as_deref() == Some("dynamodb.amazonaws.com")
        });
    let origin = match wire.event_source.as_deref() {
        Some(BACKFILL_EVENT_SOURCE) => Origin::Backfill,
        _ => Origin::Stream,
    };
    Ok(ParsedRecord {
        origin,
        table,
        unknown_table,
        event_id,
        change,
        sequence_number,
        approximate_creation_time_ms,
        removed_by_ttl,
        keys,
        new_image: ddb.new_image,
        old_image: ddb.old_image,
    })
}

impl<'a> ParsedRecord<'a> {
    /// The table's name, from `eventSourceARN`; empty when the ARN names no table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The `eventSourceARN`, when it names no table (a sample's placeholder): the record
    /// goes only to a route for every table (`table = "*"`).
    pub fn unknown_table_arn(&self) -> Option<&str> {
        self.unknown_table.as_deref()
    }

    /// The stream's `eventID` for this record.
    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// The record's position in its shard, a decimal string.
    pub fn sequence_number(&self) -> &str {
        &self.sequence_number
    }

    /// A string (or number) attribute, from the keys, else the new image, else the old
    /// image: how a record names its tenant. A number comes as the JSON number a plugin
    /// reads for it (`007` is `7`), so a record is routed on the value its plugin sees.
    ///
    /// A value DynamoDB could not have written is an error, never a fall-through to the
    /// next image or the default tenant: an attribute named twice in one image, a string
    /// that is not Unicode (a lone surrogate), a number outside DynamoDB's grammar or range.
    pub fn string_attribute(&self, name: &str) -> Result<Option<String>, DecodeError> {
        // A key attribute never changes, so when the keys hold it they hold the value
        // both images have; the keys are a few bytes to scan, an image a kilobyte.
        let images = [
            (Some(self.keys), "dynamodb.Keys"),
            (self.new_image, "dynamodb.NewImage"),
            (self.old_image, "dynamodb.OldImage"),
        ];
        for (image, path) in images {
            if let Some(image) = image
                && let Some(value) = top_level_string(image, name, path)?
            {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// The new image's typed JSON text, undecoded (to read lazily with
    /// the image module's `TypedImage`).
    pub fn new_image_text(&self) -> Option<&'a str> {
        self.new_image.map(RawValue::get)
    }

    /// The old image's typed JSON text, undecoded.
    pub fn old_image_text(&self) -> Option<&'a str> {
        self.old_image.map(RawValue::get)
    }

    /// Where the record came from: a stream, or a backfill (its `eventSource` says).
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The keys' typed JSON text, undecoded.
    pub fn keys_text(&self) -> &'a str {
        self.keys.get()
    }

    /// The item's key as a stable string: its key attributes' typed JSON, in name order,
    /// with no space between tokens (`{"customerId":{"S":"C-1"},"tenantId":{"S":"acme"}}`).
    /// The same item gives the same string in every record and in a backfill.
    pub fn item_key(&self) -> String {
        item_key(self.keys.get())
    }

    /// The record's position among its item's changes, for receivers to drop a stale
    /// update: the stream sequence number, zero-padded to 40 digits so that comparing two
    /// positions as text compares them as numbers. `None` for a backfill, whose items are
    /// read, not changed (a backfill's sequence number only orders the run).
    pub fn position(&self) -> Option<String> {
        (self.origin == Origin::Stream).then(|| position_of(&self.sequence_number))
    }

    /// What happened to the item.
    pub fn change(&self) -> Change {
        self.change
    }

    /// When the change was made, in epoch milliseconds, if the stream says.
    pub fn approximate_creation_time_ms(&self) -> Option<u64> {
        self.approximate_creation_time_ms
    }

    /// Whether DynamoDB itself removed the item because its TTL expired.
    pub fn removed_by_ttl(&self) -> bool {
        self.removed_by_ttl
    }

    /// Converts the images to plain JSON.
    pub fn decode(mut self) -> Result<StreamRecord, DecodeError> {
        let owned = (
            std::mem::take(&mut self.table),
            std::mem::take(&mut self.event_id),
            std::mem::take(&mut self.sequence_number),
        );
        self.stream_record(|_| owned)
    }

    /// The record with its images as plain JSON: the one place a [`StreamRecord`] is
    /// built. `owned` gives its table, event id and sequence number (moved out by
    /// [`Self::decode`], cloned for a [`LazyRecord`]), called only once the images decode.
    fn stream_record(
        &self,
        owned: impl FnOnce(&Self) -> (String, String, String),
    ) -> Result<StreamRecord, DecodeError> {
        let keys = transcode_image(self.keys.get(), "dynamodb.Keys")?;
        let new_image = self
            .new_image
            .map(|m| transcode_image(m.get(), "dynamodb.NewImage"))
            .transpose()?;
        let old_image = self
            .old_image
            .map(|m| transcode_image(m.get(), "dynamodb.OldImage"))
            .transpose()?;
        let (table, event_id, sequence_number) = owned(self);
        Ok(StreamRecord {
            table,
            event_id,
            change: self.change,
            sequence_number,
            approximate_creation_time_ms: self.approximate_creation_time_ms,
            keys,
            new_image,
            old_image,
            removed_by_ttl: self.removed_by_ttl,
        })
    }
}

/// The `eventSource` of a record a backfill made from an item already in the table (a
/// stream's records say `aws:dynamodb`). It travels with the record's text, so a dead letter
/// of a backfilled item is still a backfill when redriven.
pub const BACKFILL_EVENT_SOURCE: &str = "weir:backfill";

/// Where a record came from: what a `weir:transform@0.2.0` plugin reads as `origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Origin {
    /// A change read from the table's stream.
    Stream,
    /// An item already in the table, read by a backfill (an INSERT with a new image).
    Backfill,
}

/// A routed record as a plugin instance gets it: its fields, its images as the stream's
/// typed JSON text (which `weir:transform@0.2.0` plugins read in place, decoding only what
/// they read), and the plain JSON form, made on first request and then kept (0.1 plugins
/// and mappings written in Rust take that; a tenant's second plugin reuses it).
pub struct LazyRecord<'a> {
    parsed: ParsedRecord<'a>,
    decoded: std::cell::OnceCell<Result<StreamRecord, DecodeError>>,
}

impl<'a> LazyRecord<'a> {
    /// A record, nothing decoded yet.
    pub fn new(parsed: ParsedRecord<'a>) -> Self {
        LazyRecord {
            parsed,
            decoded: std::cell::OnceCell::new(),
        }
    }

    /// Its fields, and its images' typed JSON text.
    pub fn parsed(&self) -> &ParsedRecord<'a> {
        &self.parsed
    }

    /// Where it came from.
    pub fn origin(&self) -> Origin {
        self.parsed.origin
    }

    /// The record with its images as plain JSON, decoded on the first call.
    pub fn decoded(&self) -> Result<&StreamRecord, DecodeError> {
        self.decoded
            .get_or_init(|| {
                self.parsed.stream_record(|p| {
                    (
                        p.table.clone(),
                        p.event_id.clone(),
                        p.sequence_number.clone(),
                    )
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// The record's sequence number, read leniently: a record that fails to decode still
/// needs one to be retried.
pub fn sequence_number_of(raw: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Seq {
        dynamodb: SeqInner,
    }
    #[derive(Deserialize)]
    struct SeqInner {
        #[serde(rename = "SequenceNumber")]
        sequence_number: String,
    }
    let s: Seq = serde_json::from_str(raw).ok()?;
    let n = s.dynamodb.sequence_number;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(n)
}

/// Decodes one record's text, as found in the event's `Records` array.
pub fn decode(raw: &str) -> Result<StreamRecord, DecodeError> {
    parse(raw)?.decode()
}

/// `arn:aws:dynamodb:REGION:ACCOUNT:table/NAME[/stream/LABEL]` → `NAME`.
pub fn table_from_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let _partition = parts.next()?;
    if parts.next()? != "dynamodb" {
        return None;
    }
    let resource = parts.nth(2)?;
    let name = resource.strip_prefix("table/")?.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

fn epoch_seconds_to_ms(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    if let Some(s) = n.as_u64() {
        return s.checked_mul(1000);
    }
    let f = n.as_f64()?;
    (0.0..1.0e16)
        .contains(&f)
        .then(|| (f * 1000.0).round() as u64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

    fn image(v: Value) -> Result<String, DecodeError> {
        transcode_image(&v.to_string(), "NewImage")
    }

    #[test]
    fn every_type_decodes_to_plain_json() {
        let out = image(json!({
            "s": {"S": "x\"y\n"},
            "n": {"N": "12345678901234567890123456789012345678"},
            "tiny": {"N": "0.000000000000000000000000000000000001"},
            "neg": {"N": "-1.50"},
            "b": {"B": "aGVsbG8="},
            "t": {"BOOL": true},
            "nul": {"NULL": true},
            "ss": {"SS": ["a", "b"]},
            "ns": {"NS": ["1", "99999999999999999999999999999999999999"]},
            "bs": {"BS": ["AAE="]},
            "m": {"M": {"inner": {"L": [{"N": "1"}, {"S": "two"}, {"M": {}}]}}}
        }))
        .expect("decodes");
        assert_eq!(
            out,
            concat!(
                r#"{"b":"aGVsbG8=","bs":["AAE="],"m":{"inner":[1,"two",{}]},"n":12345678901234567890123456789012345678,"#,
                r#""neg":-1.50,"ns":[1,99999999999999999999999999999999999999],"nul":null,"s":"x\"y\n","ss":["a","b"],"#,
                r#""t":true,"tiny":0.000000000000000000000000000000000001}"#
            )
        );
        // And it is JSON a reader accepts.
        let v: Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(v["s"], "x\"y\n");
    }

    #[test]
    fn dynamodb_number_forms_are_normalised_without_losing_digits() {
        for (n, want) in [
            ("+7", "7"),
            ("007", "7"),
            (".5", "0.5"),
            ("-0.25", "-0.25"),
            ("1E+5", "1e5"),
            ("1e-130", "1e-130"),
            ("5.", "5"),
        ] {
            let out = image(json!({"n": {"N": n}})).expect(n);
            assert_eq!(out, format!("{{\"n\":{want}}}"), "for {n}");
        }
    }

    #[test]
    fn bad_attributes_name_their_path() {
        let cases = [
            (
                json!({"a": {"M": {"b": {"N": "12abc"}}}}),
                "NewImage.a.b",
                "not a number",
            ),
            (
                json!({"a": {"L": [{"S": "ok"}, {"X": 1}]}}),
                "NewImage.a[1]",
                "unknown type tag",
            ),
            (
                json!({"bin": {"B": "***"}}),
                "NewImage.bin",
                "invalid base64",
            ),
            (
                json!({"big": {"N": "123456789012345678901234567890123456789"}}),
                "NewImage.big",
                "39 significant digits",
            ),
            (
                json!({"two": {"S": "a", "N": "1"}}),
                "NewImage.two",
                "exactly one type tag",
            ),
            (
                json!({"s": {"S": 5}}),
                "NewImage.s",
                "type S holds a string",
            ),
            (
                json!({"ns": {"NS": ["1", "x"]}}),
                "NewImage.ns[1]",
                "not a number",
            ),
        ];
        for (img, path, msg) in cases {
            let err = image(img.clone()).expect_err("must fail");
            assert_eq!(err.path, path, "{img}");
            assert!(err.message.contains(msg), "{err} should contain {msg}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut v = json!({"S": "leaf"});
        for _ in 0..100 {
            v = json!({"M": {"x": v}});
        }
        let err = image(json!({ "root": v })).expect_err("too deep");
        assert!(err.message.contains("nested deeper"), "{err}");
    }

    #[test]
    fn table_names_come_from_stream_and_table_arns() {
        assert_eq!(
            table_from_arn(
                "arn:aws:dynamodb:eu-west-1:123456789012:table/Customers/stream/2024-01-01T00:00:00.000"
            ),
            Some("Customers")
        );
        assert_eq!(
            table_from_arn("arn:aws:dynamodb:us-east-1:1:table/Orders"),
            Some("Orders")
        );
        assert_eq!(table_from_arn("arn:aws:sqs:us-east-1:1:table/Orders"), None);
        assert_eq!(table_from_arn("Customers"), None);
    }

    fn record(v: Value) -> String {
        v.to_string()
    }

    #[test]
    fn ttl_removal_and_view_types_are_represented() {
        let base = |name: &str, ddb: Value, identity: Option<Value>| {
            let mut r = json!({
                "eventID": "e1", "eventName": name, "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "eu-west-1",
                "eventSourceARN": "arn:aws:dynamodb:eu-west-1:1:table/T/stream/x",
                "dynamodb": ddb
            });
            if let Some(i) = identity {
                r["userIdentity"] = i;
            }
            record(r)
        };
        let keys = json!({"pk": {"S": "a"}});
        let ttl = decode(&base(
            "REMOVE",
            json!({"Keys": keys, "OldImage": {"pk": {"S": "a"}}, "SequenceNumber": "100", "SizeBytes": 5, "StreamViewType": "OLD_IMAGE", "ApproximateCreationDateTime": 1700000000.5}),
            Some(json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"})),
        ))
        .expect("ttl");
        assert!(ttl.removed_by_ttl);
        assert_eq!(ttl.change, Change::Remove);
        assert_eq!(ttl.new_image, None);
        assert_eq!(ttl.old_image.as_deref(), Some(r#"{"pk":"a"}"#));
        assert_eq!(ttl.approximate_creation_time_ms, Some(1_700_000_000_500));

        let user_delete = decode(&base(
            "REMOVE",
            json!({"Keys": keys, "SequenceNumber": "101", "SizeBytes": 5, "StreamViewType": "KEYS_ONLY"}),
            None,
        ))
        .expect("keys only");
        assert!(!user_delete.removed_by_ttl);
        assert_eq!(user_delete.keys, r#"{"pk":"a"}"#);
        assert_eq!((user_delete.new_image, user_delete.old_image), (None, None));

        let both = decode(&base(
            "MODIFY",
            json!({"Keys": keys, "NewImage": {"v": {"N": "2"}}, "OldImage": {"v": {"N": "1"}}, "SequenceNumber": "1234567890123456789012345678901234567890", "SizeBytes": 5, "StreamViewType": "NEW_AND_OLD_IMAGES"}),
            None,
        ))
        .expect("both");
        assert_eq!(both.new_image.as_deref(), Some(r#"{"v":2}"#));
        assert_eq!(both.old_image.as_deref(), Some(r#"{"v":1}"#));
        assert_eq!(both.sequence_number.len(), 40);
    }

    #[test]
    fn missing_fields_are_named() {
        let err = decode(r#"{"eventName":"INSERT","dynamodb":{}}"#).expect_err("no id");
        assert_eq!(err.path, "eventID");
        let err = decode(r#"{"eventID":"1","eventName":"UPSERT"}"#).expect_err("bad name");
        assert!(err.message.contains("UPSERT"));
        let err = decode("[1,2]").expect_err("not an object");
        assert_eq!(err.path, "record");
        let err = decode(
            r#"{"eventID":"1","eventName":"INSERT","eventSourceARN":"arn:aws:dynamodb:r:1:table/T","dynamodb":{"Keys":{},"SequenceNumber":"12x"}}"#,
        )
        .expect_err("bad seq");
        assert_eq!(err.path, "dynamodb.SequenceNumber");
    }

    use proptest::prelude::*;

    /// DynamoDB attribute values, nested a few levels, of every type.
    pub(crate) fn attribute() -> impl Strategy<Value = Value> {
        // At most 38 significant digits: 18 + 20 with a fraction, or 38 without.
        let digits = "[1-9][0-9]{0,17}";
        let leaf = prop_oneof![
            "-?[1-9][0-9]{37}".prop_map(|n| json!({ "N": n })),
            any::<String>().prop_map(|s| json!({ "S": s })),
            (digits, prop::option::of("[0-9]{1,20}"), any::<bool>()).prop_map(|(i, f, neg)| {
                let mut n = format!("{}{i}", if neg { "-" } else { "" });
                if let Some(f) = f {
                    n = format!("{n}.{f}");
                }
                json!({ "N": n })
            }),
            prop::collection::vec(any::<u8>(), 0..32).prop_map(|b| {
                json!({ "B": base64::engine::general_purpose::STANDARD.encode(b) })
            }),
            any::<bool>().prop_map(|b| json!({ "BOOL": b })),
            Just(json!({ "NULL": true })),
            prop::collection::vec(any::<String>(), 0..4).prop_map(|v| json!({ "SS": v })),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({ "L": v })),
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                    .prop_map(|m| json!({ "M": m })),
            ]
        })
    }

    fn record_with(image: Value) -> String {
        json!({
            "eventID": "e", "eventName": "MODIFY",
            "eventSourceARN": "arn:aws:dynamodb:r:1:table/T/stream/s",
            "dynamodb": {"Keys": {"k": {"S": "1"}}, "NewImage": image, "SequenceNumber": "1"}
        })
        .to_string()
    }

    /// One written value of a tenant attribute, as JSON text: a string (any Unicode, or
    /// with a lone surrogate only an escape can write), or a number (valid, loose, out of
    /// range, or not one).
    fn tenant_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>().prop_map(|s| json!({ "S": s }).to_string()),
            "[a-z]{0,4}".prop_map(|s| format!(r#"{{"S":"\\ud800{s}"}}"#)),
            "[a-z]{0,4}".prop_map(|s| format!(r#"{{"S":"{s}\\udc00"}}"#)),
            prop_oneof![
                Just("007".to_owned()),
                Just("+5".to_owned()),
                Just("1e125".to_owned()),
                Just("1e126".to_owned()),
                Just("1e-130".to_owned()),
                Just("0.1e-130".to_owned()),
                Just("1e99999999999999999999".to_owned()),
                Just("12abc".to_owned()),
                "-?[0-9]{1,40}(\\.[0-9]{0,5})?(e-?[0-9]{1,4})?",
            ]
            .prop_map(|n| json!({ "N": n }).to_string()),
        ]
    }

    proptest! {
        /// A record is routed on exactly the value its plugin reads (lazily, 0.2) and is
        /// given (decoded whole, 0.1), or it is dead-lettered: routing never takes one
        /// value while a plugin sees another, or skips a value it cannot read.
        #[test]
        fn a_record_is_routed_on_the_value_its_plugin_reads_or_refused(
            values in prop::collection::vec(tenant_value(), 1..3),
            before in prop::bool::ANY,
        ) {
            let mut fields: Vec<String> = values.iter().map(|v| format!(r#""tenantId":{v}"#)).collect();
            let other = r#""name":{"S":"x"}"#.to_owned();
            if before { fields.insert(0, other) } else { fields.push(other) }
            let image = format!("{{{}}}", fields.join(","));
            let text = format!(
                r#"{{"eventID":"e","eventName":"INSERT","eventSourceARN":"arn:aws:dynamodb:r:1:table/T/stream/s","dynamodb":{{"Keys":{{"k":{{"S":"1"}}}},"NewImage":{image},"SequenceNumber":"1"}}}}"#
            );
            let Ok(parsed) = parse(&text) else {
                // The whole record refused (a lone surrogate serde will not read even
                // as raw text): dead-lettered, which is allowed.
                return Ok(());
            };
            let routed = parsed.string_attribute("tenantId");
            let lazy = crate::image::TypedImage::new(parsed.new_image_text().unwrap_or("{}"));
            let read = lazy
                .string("/tenantId")
                .and_then(|s| match s {
                    Some(s) => Ok(Some(s)),
                    None => lazy.number("/tenantId"),
                });
            let whole = transcode_image(parsed.new_image_text().unwrap_or("{}"), "dynamodb.NewImage");
            match &routed {
                Err(_) => {}
                Ok(tenant) => {
                    prop_assert_eq!(values.len(), 1, "a repeated name was routed: {}", image);
                    prop_assert_eq!(tenant, &read.clone().expect("the plugin reads what routing read"), "{}", image);
                    // Keys are sorted, so the tenant is the plain image's last value; a
                    // number is compared as text (a float would drop digits).
                    let whole = whole.expect("decodes whole");
                    let raw = whole
                        .rsplit_once("\"tenantId\":")
                        .and_then(|(_, v)| v.strip_suffix('}'))
                        .expect("the tenant is in the plain image");
                    let given = match serde_json::from_str::<Value>(raw) {
                        Ok(Value::String(s)) => s,
                        _ => raw.to_owned(),
                    };
                    prop_assert_eq!(tenant.as_deref(), Some(given.as_str()), "{}", image);
                }
            }
        }

        #[test]
        fn fuzz_decode_never_panics_on_arbitrary_text(text in any::<String>()) {
            let _ = decode(&text);
        }

        #[test]
        fn fuzz_decode_never_panics_on_arbitrary_json_shapes(image in prop::collection::btree_map("[a-z]{1,4}", any::<String>().prop_map(Value::String), 0..4), tag in "[A-Z]{1,4}") {
            let image: serde_json::Map<String, Value> = image.into_iter().map(|(k, v)| (k, json!({ tag.clone(): v }))).collect();
            let _ = decode(&record_with(Value::Object(image)));
        }

        #[test]
        fn fuzz_generated_items_decode_to_valid_json_with_every_digit(attrs in prop::collection::btree_map("[a-z]{1,6}", attribute(), 1..6)) {
            let image = Value::Object(attrs.into_iter().collect());
            let r = decode(&record_with(image.clone())).expect("generated items are valid");
            let text = r.new_image.expect("new image");
            let back: Value = serde_json::from_str(&text).expect("valid JSON");
            prop_assert_eq!(back.as_object().map(|m| m.len()), image.as_object().map(|m| m.len()));
            // Every N in the input appears, digit for digit, in the output.
            let input = image.to_string();
            for n in input.split("{\"N\":\"").skip(1).filter_map(|rest| rest.split('"').next()) {
                prop_assert!(text.contains(n), "{} lost from {}", n, text);
            }
        }
    }
}
