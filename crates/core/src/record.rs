//! DynamoDB Streams records, as Lambda delivers them, decoded to the plain JSON plugins see.
//!
//! Numbers never pass through a float: an `N` is checked against DynamoDB's number grammar
//! and written out digit for digit, so a 38-digit value reaches the plugin intact.

use std::fmt::Write as _;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// DynamoDB allows 32 levels of nesting; anything far deeper is refused before recursion
/// can exhaust the stack.
pub const MAX_ATTRIBUTE_DEPTH: usize = 64;

/// DynamoDB numbers carry at most 38 significant digits.
pub const MAX_NUMBER_DIGITS: usize = 38;

/// The smallest magnitude DynamoDB stores is 1E-130; the largest 9.99...E+125 (38 nines).
pub const MIN_NUMBER_EXPONENT: i64 = -130;

/// See [`MIN_NUMBER_EXPONENT`].
pub const MAX_NUMBER_EXPONENT: i64 = 125;

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

/// A Lambda event for DynamoDB Streams with each record kept as the exact text received,
/// so a dead letter can carry the original byte for byte.
#[derive(Debug, Deserialize)]
pub struct StreamEvent<'a> {
    /// Each record's text, undecoded.
    #[serde(rename = "Records", borrow)]
    pub records: Vec<&'a RawValue>,
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

#[derive(Deserialize)]
struct WireRecord<'a> {
    #[serde(rename = "eventID")]
    event_id: Option<String>,
    #[serde(rename = "eventName")]
    event_name: Option<String>,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: Option<String>,
    /// `aws:dynamodb` from a stream; [`BACKFILL_EVENT_SOURCE`] for an item a backfill read.
    #[serde(rename = "eventSource", borrow)]
    event_source: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "userIdentity")]
    user_identity: Option<WireIdentity>,
    #[serde(borrow)]
    dynamodb: Option<WireStreamRecord<'a>>,
    /// Present in the shape DynamoDB sends to Kinesis Data Streams (never in a stream's).
    #[serde(rename = "tableName")]
    table_name: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct WireIdentity {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "principalId")]
    principal_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireStreamRecord<'a> {
    approximate_creation_date_time: Option<Value>,
    // Images stay as the text received until decoded, straight to plain JSON.
    #[serde(borrow)]
    keys: Option<&'a RawValue>,
    #[serde(borrow)]
    new_image: Option<&'a RawValue>,
    #[serde(borrow)]
    old_image: Option<&'a RawValue>,
    sequence_number: Option<String>,
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
    pub fn decode(self) -> Result<StreamRecord, DecodeError> {
        let (keys, new_image, old_image) = self.decode_images()?;
        Ok(StreamRecord {
            table: self.table,
            event_id: self.event_id,
            change: self.change,
            sequence_number: self.sequence_number,
            approximate_creation_time_ms: self.approximate_creation_time_ms,
            keys,
            new_image,
            old_image,
            removed_by_ttl: self.removed_by_ttl,
        })
    }

    /// The keys and images as plain JSON text.
    #[allow(clippy::type_complexity)]
    fn decode_images(&self) -> Result<(String, Option<String>, Option<String>), DecodeError> {
        let keys = transcode_image(self.keys.get(), "dynamodb.Keys")?;
        let new_image = self
            .new_image
            .map(|m| transcode_image(m.get(), "dynamodb.NewImage"))
            .transpose()?;
        let old_image = self
            .old_image
            .map(|m| transcode_image(m.get(), "dynamodb.OldImage"))
            .transpose()?;
        Ok((keys, new_image, old_image))
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
                let p = &self.parsed;
                let (keys, new_image, old_image) = p.decode_images()?;
                Ok(StreamRecord {
                    table: p.table.clone(),
                    event_id: p.event_id.clone(),
                    change: p.change,
                    sequence_number: p.sequence_number.clone(),
                    approximate_creation_time_ms: p.approximate_creation_time_ms,
                    keys,
                    new_image,
                    old_image,
                    removed_by_ttl: p.removed_by_ttl,
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

/// Converts an attribute map's JSON text straight into plain JSON text, in one pass and
/// without building a tree. Object keys come out sorted, as a JSON map sorts them, so the
/// output does not depend on the order the stream happened to write; a name written twice
/// in one map is an error.
pub fn transcode_image(image: &str, path: &str) -> Result<String, DecodeError> {
    use serde::de::DeserializeSeed as _;
    let cx = Cx::default();
    let mut out = String::with_capacity(image.len());
    let root = Path::Root(path);
    let mut de = serde_json::Deserializer::from_str(image);
    let result = ImageSeed {
        out: &mut out,
        path: &root,
        cx: &cx,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match result {
        Ok(()) => Ok(out),
        Err(e) => Err(cx.error.take().unwrap_or_else(|| json_error(path, &e))),
    }
}

/// Why `path`'s text could not be read as JSON: nesting past the reader's limit is named
/// as what it is.
fn json_error(path: &str, e: &serde_json::Error) -> DecodeError {
    if e.to_string().starts_with("recursion limit exceeded") {
        DecodeError::at(
            path,
            format!(
                "nested deeper than any DynamoDB item can be (over {MAX_ATTRIBUTE_DEPTH} levels)"
            ),
        )
    } else {
        DecodeError::at(path, format!("not valid JSON: {e}"))
    }
}

/// Converts one attribute value's typed JSON text (`{"TAG": value}`) into plain JSON text,
/// as [`transcode_image`] writes it inside an image; `path` names it in an error.
pub(crate) fn transcode_attribute(attribute: &str, path: &str) -> Result<String, DecodeError> {
    use serde::de::DeserializeSeed as _;
    let cx = Cx::default();
    let mut out = String::with_capacity(attribute.len());
    let root = Path::Root(path);
    let mut de = serde_json::Deserializer::from_str(attribute);
    let result = AttributeSeed {
        out: &mut out,
        path: &root,
        depth: 1,
        cx: &cx,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match result {
        Ok(()) => Ok(out),
        Err(e) => Err(cx.error.take().unwrap_or_else(|| json_error(path, &e))),
    }
}

/// A DynamoDB number's text as the JSON number [`transcode_image`] writes for it.
pub(crate) fn number_as_json(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    write_number(text, &mut out)?;
    Ok(out)
}

/// Where an attribute is, built up as the transcoder descends and written out only for
/// an error.
enum Path<'a> {
    Root(&'a str),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root(s) => (*s).to_owned(),
            Path::Key(p, k) => format!("{}.{k}", p.render()),
            Path::Index(p, i) => format!("{}[{i}]", p.render()),
        }
    }
}

/// The first decode error found; serde's own error only says that one was.
#[derive(Default)]
struct Cx {
    error: std::cell::RefCell<Option<DecodeError>>,
}

impl Cx {
    fn fail<E: serde::de::Error>(&self, path: &Path<'_>, message: impl Into<String>) -> E {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(DecodeError::at(&path.render(), message));
        }
        E::custom("invalid attribute")
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct Key;

impl<'de> serde::de::DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v))
    }
}

/// A whole image: an object of attributes.
struct ImageSeed<'o, 'p> {
    out: &'o mut String,
    path: &'p Path<'p>,
    cx: &'o Cx,
}

impl<'de> serde::de::DeserializeSeed<'de> for ImageSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ImageSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object of attributes")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        write_attribute_map(map, self.out, self.path, 0, self.cx)
    }
}

/// Writes a map of attributes as a JSON object with sorted keys.
fn write_attribute_map<'de, A: serde::de::MapAccess<'de>>(
    mut map: A,
    out: &mut String,
    path: &Path<'_>,
    depth: usize,
    cx: &Cx,
) -> Result<(), A::Error> {
    use std::borrow::Cow;
    out.push('{');
    let body = out.len();
    // Each entry's key and where its `"key":value` text lies in `out`.
    let mut spans: Vec<(Cow<'de, str>, usize, usize)> = Vec::new();
    while let Some(name) = map.next_key_seed(Key)? {
        if !spans.is_empty() {
            out.push(',');
        }
        let start = out.len();
        write_json_string(&name, out);
        out.push(':');
        let child = Path::Key(path, &name);
        map.next_value_seed(AttributeSeed {
            out: &mut *out,
            path: &child,
            depth: depth + 1,
            cx,
        })?;
        let end = out.len();
        spans.push((name, start, end));
    }
    if !spans.windows(2).all(|w| w[0].0 < w[1].0) {
        let text = out[body..].to_owned();
        spans.sort_by(|a, b| a.0.cmp(&b.0));
        // A name written twice: a router reading the first and a plugin the last would
        // see two items in one. DynamoDB never writes that, so the record is refused.
        if let Some(w) = spans.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(cx.fail(
                &Path::Key(path, &w[0].0),
                "the name appears twice in one map, which DynamoDB never writes",
            ));
        }
        out.truncate(body);
        for (i, (_, start, end)) in spans.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&text[start - body..end - body]);
        }
    }
    out.push('}');
    Ok(())
}

/// One attribute value: `{"TAG": value}`.
struct AttributeSeed<'o, 'p> {
    out: &'o mut String,
    path: &'p Path<'p>,
    depth: usize,
    cx: &'o Cx,
}

const NOT_AN_ATTRIBUTE: &str = "an attribute value must be an object like {\"S\": \"x\"}";

impl<'de> serde::de::DeserializeSeed<'de> for AttributeSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.depth > MAX_ATTRIBUTE_DEPTH {
            return Err(self.cx.fail(
                self.path,
                format!("nested deeper than {MAX_ATTRIBUTE_DEPTH} levels"),
            ));
        }
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for AttributeSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(NOT_AN_ATTRIBUTE)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(tag) = map.next_key_seed(Key)? else {
            return Err(self.cx.fail(
                self.path,
                "an attribute value must have exactly one type tag, found 0",
            ));
        };
        let tag = match Tag::of(&tag) {
            Some(t) => t,
            None => {
                return Err(self.cx.fail(
                    self.path,
                    format!(
                        "unknown type tag {tag:?} (expected S, N, B, BOOL, NULL, M, L, SS, NS or BS)"
                    ),
                ));
            }
        };
        map.next_value_seed(TypedSeed {
            tag,
            out: &mut *self.out,
            path: self.path,
            depth: self.depth,
            cx: self.cx,
        })?;
        let mut tags = 1;
        while map.next_key_seed(Key)?.is_some() {
            map.next_value::<serde::de::IgnoredAny>()?;
            tags += 1;
        }
        if tags > 1 {
            return Err(self.cx.fail(
                self.path,
                format!("an attribute value must have exactly one type tag, found {tags}"),
            ));
        }
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.cx.fail(self.path, NOT_AN_ATTRIBUTE))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.cx.fail(self.path, NOT_AN_ATTRIBUTE))
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.cx.fail(self.path, NOT_AN_ATTRIBUTE))
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.cx.fail(self.path, NOT_AN_ATTRIBUTE))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.cx.fail(self.path, NOT_AN_ATTRIBUTE))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Err(self.cx.fail(self.path, NOT_AN_ATTRIBUTE))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.cx.fail(self.path, NOT_AN_ATTRIBUTE))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tag {
    S,
    N,
    B,
    Bool,
    Null,
    M,
    L,
    Ss,
    Ns,
    Bs,
}

impl Tag {
    fn of(text: &str) -> Option<Tag> {
        Some(match text {
            "S" => Tag::S,
            "N" => Tag::N,
            "B" => Tag::B,
            "BOOL" => Tag::Bool,
            "NULL" => Tag::Null,
            "M" => Tag::M,
            "L" => Tag::L,
            "SS" => Tag::Ss,
            "NS" => Tag::Ns,
            "BS" => Tag::Bs,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Tag::S => "S",
            Tag::N => "N",
            Tag::B => "B",
            Tag::Bool => "BOOL",
            Tag::Null => "NULL",
            Tag::M => "M",
            Tag::L => "L",
            Tag::Ss => "SS",
            Tag::Ns => "NS",
            Tag::Bs => "BS",
        }
    }

    /// What the tag's value must be, for error messages.
    fn holds(self) -> &'static str {
        match self {
            Tag::S | Tag::N => "a string",
            Tag::B => "a base64 string",
            Tag::Bool => "a bool",
            Tag::Null => "true",
            Tag::M => "an object",
            Tag::L => "an array",
            Tag::Ss | Tag::Ns | Tag::Bs => "an array of strings",
        }
    }
}

/// The value under a type tag.
struct TypedSeed<'o, 'p> {
    tag: Tag,
    out: &'o mut String,
    path: &'p Path<'p>,
    depth: usize,
    cx: &'o Cx,
}

impl TypedSeed<'_, '_> {
    fn wrong<E: serde::de::Error>(&self, found: &str) -> E {
        self.cx.fail(
            self.path,
            format!(
                "type {} holds {}, found {found}",
                self.tag.name(),
                self.tag.holds()
            ),
        )
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for TypedSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TypedSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.tag.holds())
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        let result = match self.tag {
            Tag::S => {
                write_json_string(v, self.out);
                Ok(())
            }
            Tag::N => write_number(v, self.out),
            Tag::B => write_binary(v, self.out),
            _ => return Err(self.wrong("a string")),
        };
        result.map_err(|why| self.cx.fail(self.path, why))
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        match (self.tag, v) {
            (Tag::Bool, v) => {
                self.out.push_str(if v { "true" } else { "false" });
                Ok(())
            }
            (Tag::Null, true) => {
                self.out.push_str("null");
                Ok(())
            }
            _ => Err(self.wrong("a bool")),
        }
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.wrong("a number"))
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.wrong("a number"))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.wrong("a number"))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Err(self.wrong("null"))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        if self.tag != Tag::M {
            return Err(self.wrong("an object"));
        }
        write_attribute_map(map, self.out, self.path, self.depth, self.cx)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let set = match self.tag {
            Tag::L => None,
            Tag::Ss | Tag::Ns | Tag::Bs => Some(self.tag),
            _ => return Err(self.wrong("an array")),
        };
        self.out.push('[');
        let mut i = 0;
        loop {
            let child = Path::Index(self.path, i);
            if i > 0 {
                self.out.push(',');
            }
            let before = self.out.len();
            let more = match set {
                None => seq.next_element_seed(AttributeSeed {
                    out: &mut *self.out,
                    path: &child,
                    depth: self.depth + 1,
                    cx: self.cx,
                })?,
                Some(tag) => seq.next_element_seed(SetMemberSeed {
                    tag,
                    out: &mut *self.out,
                    path: &child,
                    cx: self.cx,
                })?,
            };
            if more.is_none() {
                if i > 0 {
                    // Take back the separator written for an element that was not there.
                    self.out.truncate(before - 1);
                }
                break;
            }
            i += 1;
        }
        self.out.push(']');
        Ok(())
    }
}

/// One member of a string, number or binary set.
struct SetMemberSeed<'o, 'p> {
    tag: Tag,
    out: &'o mut String,
    path: &'p Path<'p>,
    cx: &'o Cx,
}

impl<'de> serde::de::DeserializeSeed<'de> for SetMemberSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl SetMemberSeed<'_, '_> {
    fn not_a_string<E: serde::de::Error>(&self) -> E {
        self.cx.fail(
            self.path,
            format!("a {} member must be a string", self.tag.name()),
        )
    }
}

impl<'de> serde::de::Visitor<'de> for SetMemberSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        let result = match self.tag {
            Tag::Ns => write_number(v, self.out),
            Tag::Bs => write_binary(v, self.out),
            _ => {
                write_json_string(v, self.out);
                Ok(())
            }
        };
        result.map_err(|why| self.cx.fail(self.path, why))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.not_a_string())
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.not_a_string())
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.not_a_string())
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.not_a_string())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Err(self.not_a_string())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.not_a_string())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.not_a_string())
    }
}

/// The `S` text, or the `N` as a JSON number, of a top-level attribute of an image, without
/// decoding the rest; `path` names the image in an error. The whole image is scanned, so an
/// attribute named twice is found wherever the second one stands.
fn top_level_string(
    image: &RawValue,
    name: &str,
    path: &str,
) -> Result<Option<String>, DecodeError> {
    #[derive(Deserialize)]
    struct Scalar {
        #[serde(rename = "S")]
        s: Option<String>,
        #[serde(rename = "N")]
        n: Option<String>,
    }
    struct Find<'n> {
        name: &'n str,
        path: &'n str,
        error: &'n std::cell::RefCell<Option<DecodeError>>,
    }
    impl<'de> serde::de::Visitor<'de> for Find<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Option<String>, A::Error> {
            let mut found: Option<Option<String>> = None;
            while let Some(key) = map.next_key_seed(Key)? {
                if key != self.name {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
                let at = format!("{}.{}", self.path, self.name);
                if found.is_some() {
                    *self.error.borrow_mut() = Some(DecodeError::at(
                        &at,
                        "the attribute is named twice in one image, which DynamoDB never writes",
                    ));
                    return Err(serde::de::Error::custom("duplicate attribute"));
                }
                let v: Option<Scalar> = map.next_value().map_err(|e: A::Error| {
                    // serde_json refuses a string that is not Unicode (a lone
                    // surrogate), which DynamoDB cannot hold.
                    *self.error.borrow_mut() = Some(DecodeError::at(
                        &at,
                        format!("not a value DynamoDB could have written: {e}"),
                    ));
                    e
                })?;
                let value = match v {
                    Some(Scalar { s: Some(s), .. }) => Some(s),
                    Some(Scalar { n: Some(n), .. }) => match number_as_json(&n) {
                        Ok(n) => Some(n),
                        Err(why) => {
                            *self.error.borrow_mut() = Some(DecodeError::at(&at, why));
                            return Err(serde::de::Error::custom("bad number"));
                        }
                    },
                    _ => None,
                };
                found = Some(value);
            }
            Ok(found.flatten())
        }
    }
    let error = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(image.get());
    let find = Find {
        name,
        path,
        error: &error,
    };
    match serde::Deserializer::deserialize_map(&mut de, find) {
        Ok(value) => Ok(value),
        Err(e) => Err(error
            .into_inner()
            .unwrap_or_else(|| DecodeError::at(path, format!("not valid: {e}")))),
    }
}

pub(crate) fn write_binary(b64: &str, out: &mut String) -> Result<(), String> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("invalid base64: {e}"))?;
    write_json_string(b64, out);
    Ok(())
}

/// Writes a DynamoDB number as a JSON number, keeping every digit.
///
/// DynamoDB's grammar is looser than JSON's (`+1`, `.5`, `5.`, `007`), so the text is
/// normalised to JSON's form without changing its value or dropping a digit.
fn write_number(text: &str, out: &mut String) -> Result<(), String> {
    let shown = Shown(text);
    let n = parse_number(text).map_err(|why| format!("N value {shown} is not a number: {why}"))?;
    let digits = n.significant_digits();
    if digits > MAX_NUMBER_DIGITS {
        return Err(format!(
            "N value {shown} has {digits} significant digits; DynamoDB allows {MAX_NUMBER_DIGITS}"
        ));
    }
    if let Some(e) = n.exponent()
        && !(MIN_NUMBER_EXPONENT..=MAX_NUMBER_EXPONENT).contains(&e)
    {
        return Err(format!(
            "N value {shown} is outside DynamoDB's range (a magnitude from 1E{MIN_NUMBER_EXPONENT} to 9.99...E+{MAX_NUMBER_EXPONENT}, or 0)"
        ));
    }
    n.write_json(out);
    Ok(())
}

struct Number<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
    exp: Option<(bool, &'a str)>,
}

fn parse_number(text: &str) -> Result<Number<'_>, &'static str> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut negative = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        negative = b[i] == b'-';
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int = &text[int_start..i];
    let mut frac = "";
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac = &text[s..i];
    }
    if int.is_empty() && frac.is_empty() {
        return Err("no digits");
    }
    let mut exp = None;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let mut exp_negative = false;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            exp_negative = b[i] == b'-';
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if s == i {
            return Err("exponent has no digits");
        }
        exp = Some((exp_negative, &text[s..i]));
    }
    if i != b.len() {
        return Err("unexpected character");
    }
    Ok(Number {
        negative,
        int,
        frac,
        exp,
    })
}

/// A value in an error message: quoted and escaped, and cut after 64 characters (a number
/// can be 400 KB of digits).
struct Shown<'a>(&'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MOST: usize = 64;
        match self.0.char_indices().nth(MOST) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}... ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

impl Number<'_> {
    /// The decimal exponent of the first significant digit (`123` is 2, `0.05` is -2),
    /// or `None` for zero. An exponent too long to add up is saturated: far out of range.
    fn exponent(&self) -> Option<i64> {
        let first = self
            .int
            .bytes()
            .chain(self.frac.bytes())
            .position(|c| c != b'0')?;
        let int_len = i64::try_from(self.int.len()).unwrap_or(i64::MAX);
        let first = i64::try_from(first).unwrap_or(i64::MAX);
        let written = match self.exp {
            None => 0,
            Some((negative, digits)) => {
                let digits = digits.trim_start_matches('0');
                let magnitude = if digits.len() > 15 {
                    i64::MAX / 4
                } else {
                    digits.parse::<i64>().unwrap_or(i64::MAX / 4)
                };
                if negative { -magnitude } else { magnitude }
            }
        };
        Some(
            int_len
                .saturating_sub(1)
                .saturating_sub(first)
                .saturating_add(written),
        )
    }

    fn significant_digits(&self) -> usize {
        let all = self.int.bytes().chain(self.frac.bytes());
        let trimmed: Vec<u8> = all.skip_while(|&c| c == b'0').collect();
        trimmed
            .iter()
            .rposition(|&c| c != b'0')
            .map_or(0, |p| p + 1)
    }

    fn write_json(&self, out: &mut String) {
        let int = self.int.trim_start_matches('0');
        if self.negative {
            out.push('-');
        }
        if int.is_empty() {
            out.push('0');
        } else {
            out.push_str(int);
        }
        if !self.frac.is_empty() {
            out.push('.');
            out.push_str(self.frac);
        }
        if let Some((neg, digits)) = self.exp {
            out.push('e');
            if neg {
                out.push('-');
            }
            out.push_str(digits);
        }
    }
}

/// The stable string of an item's key (see [`ParsedRecord::item_key`]), from the keys'
/// typed JSON text.
pub fn item_key(keys_text: &str) -> String {
    let Ok(keys) = serde_json::from_str::<std::collections::BTreeMap<String, &RawValue>>(keys_text)
    else {
        return keys_text.trim().to_owned();
    };
    let mut out = String::with_capacity(keys_text.len());
    out.push('{');
    for (i, (name, value)) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(name, &mut out);
        out.push(':');
        // Values are a tag and a string: dropping whitespace outside strings is enough.
        let mut in_string = false;
        let mut escaped = false;
        for c in value.get().chars() {
            if in_string {
                out.push(c);
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
                out.push(c);
            } else if !c.is_whitespace() {
                out.push(c);
            }
        }
    }
    out.push('}');
    out
}

/// A sequence number as a position: zero-padded to 40 digits (DynamoDB's are at most 40),
/// so positions compare as text the way they compare as numbers.
pub fn position_of(sequence_number: &str) -> String {
    format!("{sequence_number:0>40}")
}

/// Writes `s` as a JSON string literal.
pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
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
