//! Write a weir plugin as one plain function.
//!
//! A plugin is `fn transform(record: &Record, tenant: &Tenant) -> Result<Vec<Event>, Error>`
//! plus the line `weir_plugin_sdk::plugin!(transform);`. weir calls it once per DynamoDB
//! stream record, with the record's images as plain JSON and the tenant's `config` from
//! the manifest. It returns the events to publish (each becomes one PutEvents entry),
//! none to filter the record, or an [`Error`] to dead-letter it with the reason.
//!
//! Read values from an [`Image`] by RFC 6901 JSON Pointer (`/address/city`, `/tags/0`):
//! [`Image::str`], [`Image::bool`], [`Image::number`], [`Image::object`],
//! [`Image::array`], or any value with [`Image::get`]; the `require_*` forms turn a missing
//! value into an [`Error`] that names the pointer. Numbers keep every digit DynamoDB stored
//! (up to 38): [`ExactNumber`] converts to `i64`, `u64`, `i128` or `f64` only when no digit
//! is lost, and says so ([`WouldLoseDigits`]) otherwise. [`eventbridge_safe`] writes the
//! integers EventBridge cannot carry as strings.
//!
//! A complete plugin, with a test that runs it natively (`cargo test`), no WebAssembly
//! needed:
//!
//! ```
//! use weir_plugin_sdk::{Change, Error, Event, Image, Record, Tenant, eventbridge_safe, json};
//!
//! /// Posts "created" / "updated" / "deleted" messages about customers to a chat channel.
//! fn transform(record: &Record, tenant: &Tenant) -> Result<Vec<Event>, Error> {
//!     // Configuration is per tenant, from the manifest.
//!     if record.change == Change::Remove && !tenant.config_bool("announce_removals").unwrap_or(false) {
//!         return Ok(vec![]); // no events: the record is filtered
//!     }
//!     // The new image, or for a REMOVE the old one.
//!     let Some(item) = record.image() else { return Ok(vec![]) };
//!     let name = item.require_str("/name")?; // missing: dead-lettered, naming /name
//!     let city = item.str("/address/city").unwrap_or("somewhere");
//!     // Every digit kept; refuse a fractional head count rather than round it.
//!     let staff = match item.number("/employees") {
//!         Some(n) => Some(n.to_i64().map_err(|e| Error::new(format!("/employees: {e}")))?),
//!         None => None,
//!     };
//!     let verb = match record.change {
//!         Change::Insert => "created",
//!         Change::Modify => "updated",
//!         Change::Remove => "deleted",
//!     };
//!     let channel = tenant.config_str("channel").unwrap_or("#customers");
//!     Ok(vec![Event::new("slack", "CustomerChanged", json!({
//!         "channel": channel,
//!         "text": format!("{name} ({city}) was {verb}"),
//!         "staff": staff,
//!         "revenue": item.get("/revenue").map(eventbridge_safe),
//!     }))])
//! }
//!
//! weir_plugin_sdk::plugin!(transform);
//!
//! // What the plugin makes of one record, checked without building a component.
//! let item = Image::parse(r#"{"id": "c-1", "name": "Ada", "address": {"city": "London"},
//!     "employees": 12, "revenue": 12345678901234567890123456789012345678}"#)?;
//! let record = Record::new(Change::Insert, Image::parse(r#"{"id": "c-1"}"#)?).with_new_image(item);
//! let tenant = Tenant::new("acme", json!({"channel": "#sales"}));
//! let events = transform(&record, &tenant)?;
//! assert_eq!(events[0].detail, json!({
//!     "channel": "#sales",
//!     "text": "Ada (London) was created",
//!     "staff": 12,
//!     "revenue": "12345678901234567890123456789012345678",
//! }));
//! // Without a name, the record is rejected with a reason that says why.
//! let nameless = record.clone().with_new_image(Image::parse(r#"{"id": "c-2"}"#)?);
//! assert_eq!(transform(&nameless, &tenant).unwrap_err().to_string(), "the item has no string at /name");
//! # Ok::<(), Error>(())
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` from a crate with
//! `crate-type = ["cdylib"]`; the `.wasm` in `target/wasm32-wasip2/release/` is the plugin.
//! `weir new plugin NAME --lang rust` writes such a crate, with a golden case for
//! `weir test`; `plugins/README.md` is the whole guide.

#![deny(missing_docs)]

use std::fmt;

pub use serde_json::{self, Map, Number, Value, json};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "weir_plugin_sdk::bindings",
    });
}

use bindings::exports::weir::transform::transformer as wit;
use bindings::weir::transform::types as wit_types;

/// What happened to the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The item was created.
    Insert,
    /// The item was changed.
    Modify,
    /// The item was deleted (by a user, or by TTL: see `removed_by_ttl`).
    Remove,
}

impl Change {
    /// `INSERT`, `MODIFY` or `REMOVE`, as the stream spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Insert => "INSERT",
            Change::Modify => "MODIFY",
            Change::Remove => "REMOVE",
        }
    }
}

/// One change from the table's stream, with its images as plain JSON.
#[derive(Debug, Clone)]
pub struct Record {
    /// The table's name.
    pub table: String,
    /// The stream's `eventID`: the same on every redelivery of this change.
    pub event_id: String,
    /// What happened to the item.
    pub change: Change,
    /// Its position in the shard (up to 40 digits, exact): later changes of an item have
    /// larger ones.
    pub sequence_number: String,
    /// When the change was made, in milliseconds since the epoch, if the stream says.
    pub approximate_creation_time_ms: Option<u64>,
    /// The item's key attributes.
    pub keys: Image,
    /// Read with [`Record::new_image`]; parsed on first read.
    new_image: LazyImage,
    /// Read with [`Record::old_image`]; parsed on first read.
    old_image: LazyImage,
    /// True when DynamoDB's TTL process removed the item.
    pub removed_by_ttl: bool,
}

/// An image kept as JSON text until first read. Parsing a 1 KB image is most of a
/// plugin's work, so a plugin pays only for the images it reads (a MODIFY carries two;
/// most mappings read only the new one).
#[derive(Debug, Clone, Default)]
struct LazyImage {
    /// Taken (not copied) by the first read.
    text: std::cell::RefCell<Option<String>>,
    parsed: std::cell::OnceCell<Option<Image>>,
}

impl LazyImage {
    fn text(text: Option<String>) -> Self {
        LazyImage {
            text: std::cell::RefCell::new(text),
            parsed: std::cell::OnceCell::new(),
        }
    }

    fn parsed(image: Image) -> Self {
        LazyImage {
            text: std::cell::RefCell::new(None),
            parsed: std::cell::OnceCell::from(Some(image)),
        }
    }

    fn get(&self, what: &str) -> Option<&Image> {
        self.parsed
            .get_or_init(|| {
                let text = self.text.borrow_mut().take()?;
                // weir always sends a JSON object; anything else reads as no image.
                parse_image(text, what).map_err(|why| log::warn(&why)).ok()
            })
            .as_ref()
    }
}

impl Record {
    /// A record for tests: table `Table`, event id `test`, sequence number `1`, no images.
    /// Add images with [`Record::with_new_image`] and [`Record::with_old_image`].
    pub fn new(change: Change, keys: Image) -> Self {
        Record {
            table: "Table".to_owned(),
            event_id: "test".to_owned(),
            change,
            sequence_number: "1".to_owned(),
            approximate_creation_time_ms: None,
            keys,
            new_image: LazyImage::default(),
            old_image: LazyImage::default(),
            removed_by_ttl: false,
        }
    }

    /// The record with this new image.
    pub fn with_new_image(mut self, image: Image) -> Self {
        self.new_image = LazyImage::parsed(image);
        self
    }

    /// The record with this old image.
    pub fn with_old_image(mut self, image: Image) -> Self {
        self.old_image = LazyImage::parsed(image);
        self
    }

    /// The item as it now is: the new image, or for a REMOVE the old one; `None` when the
    /// stream carries neither (a KEYS_ONLY stream).
    pub fn image(&self) -> Option<&Image> {
        match self.change {
            Change::Remove => self.old_image(),
            _ => self.new_image(),
        }
    }

    /// The item after the change (absent for a REMOVE, or a KEYS_ONLY/OLD_IMAGE stream).
    pub fn new_image(&self) -> Option<&Image> {
        self.new_image.get("new image")
    }

    /// The item before the change (absent for an INSERT, or a KEYS_ONLY/NEW_IMAGE stream).
    pub fn old_image(&self) -> Option<&Image> {
        self.old_image.get("old image")
    }
}

/// An item's attributes. Look values up by RFC 6901 JSON Pointer (`/address/city`).
///
/// The image is kept as its JSON text with an index of its attributes; an attribute is
/// parsed the first time it is read. Most mappings read a handful of an item's fields, and
/// parsing the whole item was most of a plugin's time.
#[derive(Clone, Default)]
pub struct Image {
    text: String,
    /// Each attribute's name and where its value lies in `text`, sorted by name.
    fields: Vec<(FieldName, std::ops::Range<usize>)>,
    /// The values parsed so far, by position in `fields`.
    values: Vec<std::cell::OnceCell<Value>>,
}

impl Image {
    /// An image from JSON text holding an object (for tests, or JSON a plugin carries).
    pub fn parse(json: &str) -> Result<Image, Error> {
        Image::index(json.to_owned()).map_err(Error)
    }

    /// An image of these attributes.
    pub fn from_map(map: Map<String, Value>) -> Image {
        let text = serde_json::to_string(&Value::Object(map)).unwrap_or_default();
        Image::index(text).unwrap_or_default()
    }

    /// Indexes `text` in one pass: each attribute's name (a span of `text` unless it has
    /// escapes) and its value's span. No value is parsed and nothing else is allocated.
    fn index(text: String) -> Result<Image, String> {
        let mut fields = index_object(&text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => "an image must be a JSON object".to_owned(),
            _ => format!("not JSON: {e}"),
        })?;
        // weir sends attributes sorted; sort anyway (stable: a run over sorted input), and
        // keep the last of any repeated name, as a JSON object reader would (`dedup_by`
        // keeps the earlier of two, so it takes the later one's span first).
        fields.sort_by(|(a, _), (b, _)| a.as_str(&text).cmp(b.as_str(&text)));
        fields.dedup_by(|later, earlier| {
            let repeated = later.0.as_str(&text) == earlier.0.as_str(&text);
            if repeated {
                std::mem::swap(later, earlier);
            }
            repeated
        });
        let values = fields.iter().map(|_| std::cell::OnceCell::new()).collect();
        Ok(Image {
            text,
            fields,
            values,
        })
    }

    /// The attribute `name`, parsed on first use.
    fn field(&self, name: &str) -> Option<&Value> {
        let i = self
            .fields
            .binary_search_by(|(n, _)| n.as_str(&self.text).cmp(name))
            .ok()?;
        let range = self.fields[i].1.clone();
        Some(self.values[i].get_or_init(|| {
            // The text was checked as JSON when indexed.
            serde_json::from_str(&self.text[range]).unwrap_or(Value::Null)
        }))
    }

    /// The names of the item's attributes, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(n, _)| n.as_str(&self.text))
    }

    /// The value at `pointer`, e.g. `/address/city` or `/tags/0`.
    pub fn get(&self, pointer: &str) -> Option<&Value> {
        if pointer.is_empty() {
            return None;
        }
        let (first, rest) = split_pointer(pointer)?;
        let v = self.field(&first)?;
        if rest.is_empty() {
            Some(v)
        } else {
            v.pointer(rest)
        }
    }

    /// A string attribute.
    pub fn str(&self, pointer: &str) -> Option<&str> {
        self.get(pointer)?.as_str()
    }

    /// A bool attribute.
    pub fn bool(&self, pointer: &str) -> Option<bool> {
        self.get(pointer)?.as_bool()
    }

    /// A number attribute, with every digit DynamoDB stored.
    pub fn number(&self, pointer: &str) -> Option<ExactNumber<'_>> {
        match self.get(pointer)? {
            Value::Number(n) => Some(ExactNumber(n)),
            _ => None,
        }
    }

    /// A map attribute (`M`), as a JSON object.
    pub fn object(&self, pointer: &str) -> Option<&Map<String, Value>> {
        self.get(pointer)?.as_object()
    }

    /// A list or set attribute (`L`, `SS`, `NS`, `BS`), as JSON values.
    pub fn array(&self, pointer: &str) -> Option<&[Value]> {
        self.get(pointer)?.as_array().map(Vec::as_slice)
    }

    /// Whether the attribute is there and `NULL`.
    pub fn is_null(&self, pointer: &str) -> bool {
        self.get(pointer).is_some_and(Value::is_null)
    }

    /// A string attribute, or an error naming the pointer: for values a record must have.
    pub fn require_str(&self, pointer: &str) -> Result<&str, Error> {
        self.str(pointer)
            .ok_or_else(|| Error(format!("the item has no string at {pointer}")))
    }

    /// A number attribute, or an error naming the pointer.
    pub fn require_number(&self, pointer: &str) -> Result<ExactNumber<'_>, Error> {
        self.number(pointer)
            .ok_or_else(|| Error(format!("the item has no number at {pointer}")))
    }

    /// A bool attribute, or an error naming the pointer.
    pub fn require_bool(&self, pointer: &str) -> Result<bool, Error> {
        self.bool(pointer)
            .ok_or_else(|| Error(format!("the item has no bool at {pointer}")))
    }

    /// The whole image as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(
            self.names()
                .filter_map(|n| Some((n.to_owned(), self.field(n)?.clone())))
                .collect(),
        )
    }
}

impl PartialEq for Image {
    fn eq(&self, other: &Image) -> bool {
        self.to_value() == other.to_value()
    }
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Image({})", self.text)
    }
}

fn split_pointer(pointer: &str) -> Option<(std::borrow::Cow<'_, str>, &str)> {
    let body = pointer.strip_prefix('/')?;
    let (first, rest) = match body.find('/') {
        Some(i) => (&body[..i], &body[i..]),
        None => (body, ""),
    };
    let first = if first.contains('~') {
        std::borrow::Cow::Owned(first.replace("~1", "/").replace("~0", "~"))
    } else {
        std::borrow::Cow::Borrowed(first)
    };
    Some((first, rest))
}

/// An attribute's name: where it lies in the image's text, or unescaped if it had escapes.
#[derive(Clone, Debug)]
enum FieldName {
    At(std::ops::Range<usize>),
    Unescaped(String),
}

impl FieldName {
    fn as_str<'t>(&'t self, text: &'t str) -> &'t str {
        match self {
            FieldName::At(r) => text.get(r.clone()).unwrap_or(""),
            FieldName::Unescaped(s) => s,
        }
    }
}

/// The top-level members of the JSON object `text`: names and value spans.
fn index_object(text: &str) -> Result<Vec<(FieldName, std::ops::Range<usize>)>, serde_json::Error> {
    use serde::de::{Deserializer as _, MapAccess, Visitor};
    struct Name<'de>(Result<&'de str, String>);
    impl<'de> serde::Deserialize<'de> for Name<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Name<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an attribute name")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                    Ok(Name(Ok(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                    Ok(Name(Err(v.to_owned())))
                }
            }
            d.deserialize_str(V)
        }
    }
    struct Members<'t>(&'t str);
    impl<'de> Visitor<'de> for Members<'de> {
        type Value = Vec<(FieldName, std::ops::Range<usize>)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let start = self.0.as_ptr() as usize;
            let span = |s: &str| {
                let at = s.as_ptr() as usize - start;
                at..at + s.len()
            };
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
            while let Some((name, value)) =
                map.next_entry::<Name<'de>, &'de serde_json::value::RawValue>()?
            {
                let name = match name.0 {
                    Ok(borrowed) => FieldName::At(span(borrowed)),
                    Err(owned) => FieldName::Unescaped(owned),
                };
                out.push((name, span(value.get())));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = (&mut de).deserialize_map(Members(text))?;
    de.end()?;
    Ok(fields)
}

/// A number exactly as DynamoDB stored it (up to 38 significant digits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExactNumber<'a>(&'a Number);

/// A conversion that would change the number's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WouldLoseDigits {
    /// The number, as its exact decimal text.
    pub number: String,
    /// The type it did not fit (`i64`, `u64`, `f64`).
    pub target: &'static str,
}

impl fmt::Display for WouldLoseDigits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} does not fit in {} without losing digits",
            self.number, self.target
        )
    }
}

impl std::error::Error for WouldLoseDigits {}

impl<'a> ExactNumber<'a> {
    /// The digits as stored, e.g. `12345678901234567890123456789012345678`.
    pub fn as_str(&self) -> String {
        self.0.to_string()
    }

    /// Whether the number is written without a fraction or exponent.
    pub fn is_integer(&self) -> bool {
        !self.as_str().contains(['.', 'e', 'E'])
    }

    /// As an i64, or an error if it is not a whole number in i64's range. `2.0` and `2e3`
    /// are whole numbers; `2.5` is not.
    pub fn to_i64(&self) -> Result<i64, WouldLoseDigits> {
        self.0
            .as_i64()
            .or_else(|| exact_integer(&self.as_str()).and_then(|i| i64::try_from(i).ok()))
            .ok_or_else(|| self.lose("i64"))
    }

    /// As a u64, or an error if it is not a whole number in u64's range.
    pub fn to_u64(&self) -> Result<u64, WouldLoseDigits> {
        self.0
            .as_u64()
            .or_else(|| exact_integer(&self.as_str()).and_then(|i| u64::try_from(i).ok()))
            .ok_or_else(|| self.lose("u64"))
    }

    /// As an i128, which holds every whole number DynamoDB can store (38 digits), or an
    /// error if it has a fraction.
    pub fn to_i128(&self) -> Result<i128, WouldLoseDigits> {
        exact_integer(&self.as_str()).ok_or_else(|| self.lose("i128"))
    }

    /// As an f64, or an error if the f64 would not print back to the same value.
    pub fn to_f64(&self) -> Result<f64, WouldLoseDigits> {
        let text = self.as_str();
        let f: f64 = text.parse().map_err(|_| self.lose("f64"))?;
        if f.is_finite() && same_decimal(&text, f) {
            Ok(f)
        } else {
            Err(self.lose("f64"))
        }
    }

    /// The number as a JSON value, unchanged.
    pub fn to_value(&self) -> Value {
        Value::Number(self.0.clone())
    }

    fn lose(&self, target: &'static str) -> WouldLoseDigits {
        WouldLoseDigits {
            number: self.as_str(),
            target,
        }
    }
}

/// The whole number `text` writes (in any JSON form: `12`, `-1.20e2`), if it is one that
/// fits an i128.
fn exact_integer(text: &str) -> Option<i128> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = digits × 10^(exponent - frac.len())
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let mut scale = exponent.checked_sub(frac.len() as i64)?;
    let mut digits = digits.to_owned();
    while scale < 0 {
        if digits.is_empty() {
            break;
        }
        if !digits.ends_with('0') {
            return None;
        }
        digits.pop();
        scale += 1;
    }
    if digits.is_empty() {
        return Some(0);
    }
    if scale > 38 {
        return None;
    }
    let mut value: i128 = digits.parse().ok()?;
    for _ in 0..scale {
        value = value.checked_mul(10)?;
    }
    Some(if negative { -value } else { value })
}

/// Whether `f` printed shortest-round-trip has the same significant digits as `text`.
fn same_decimal(text: &str, f: f64) -> bool {
    fn digits(s: &str) -> (String, i64) {
        let (mant, exp) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], s[i + 1..].parse::<i64>().unwrap_or(0)),
            None => (s, 0),
        };
        let mant = mant.trim_start_matches('-');
        let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
        let all = format!("{int}{frac}");
        let lead = all.len() - all.trim_start_matches('0').len();
        let trimmed = all.trim_start_matches('0').trim_end_matches('0').to_owned();
        (trimmed, exp + int.len() as i64 - lead as i64)
    }
    let (a, ea) = digits(text);
    let (b, eb) = digits(&format!("{f:e}"));
    a == b && (a.is_empty() || ea == eb)
}

/// `value` with every integer EventBridge cannot carry exactly (outside i64) written as
/// a string holding all its digits. EventBridge refuses such integers; other numbers,
/// including long decimals, pass unchanged.
pub fn eventbridge_safe(value: &Value) -> Value {
    match value {
        Value::Number(n) => {
            if n.as_i64().is_some() {
                return value.clone();
            }
            let text = n.to_string();
            if !text.contains(['.', 'e', 'E']) {
                Value::String(text)
            } else {
                value.clone()
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(eventbridge_safe).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), eventbridge_safe(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The tenant whose record this is, with its `config` table from the manifest.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The tenant's id, as the route found it in the record.
    pub id: String,
    /// The tenant's `config` from the manifest (an empty object if it has none).
    pub config: Value,
}

impl Tenant {
    /// A tenant, for tests: `config` is what the manifest's `config = { ... }` would give.
    pub fn new(id: impl Into<String>, config: Value) -> Self {
        Tenant {
            id: id.into(),
            config,
        }
    }

    /// A setting from the tenant's config: a top-level key, or a JSON Pointer
    /// (`/fields/Name`) into nested tables.
    pub fn config_value(&self, key: &str) -> Option<&Value> {
        if key.starts_with('/') {
            self.config.pointer(key)
        } else {
            self.config.get(key)
        }
    }

    /// A string setting from the tenant's config.
    pub fn config_str(&self, key: &str) -> Option<&str> {
        self.config_value(key)?.as_str()
    }

    /// A bool setting from the tenant's config.
    pub fn config_bool(&self, key: &str) -> Option<bool> {
        self.config_value(key)?.as_bool()
    }

    /// A string setting the plugin cannot work without, or an error naming it.
    pub fn require_config_str(&self, key: &str) -> Result<&str, Error> {
        self.config_str(key).ok_or_else(|| {
            Error(format!(
                "config.{} must be a string",
                key.trim_start_matches('/').replace('/', ".")
            ))
        })
    }
}

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

/// Why a record is rejected; it is dead-lettered with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    /// An error with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Error(reason.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error(s.to_owned())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error(e.to_string())
    }
}

impl From<WouldLoseDigits> for Error {
    fn from(e: WouldLoseDigits) -> Self {
        Error(e.to_string())
    }
}

/// Writes to weir's log (capped per call). Outside WebAssembly (a plugin's native unit
/// tests) the lines go to stderr.
pub mod log {
    use crate::bindings::weir::transform::types::Level;

    fn write(level: Level, message: &str) {
        #[cfg(target_family = "wasm")]
        crate::bindings::weir::transform::log::log(level, message);
        #[cfg(not(target_family = "wasm"))]
        eprintln!("{level:?}: {message}");
    }

    /// A line at debug level.
    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }
    /// A line at info level.
    pub fn info(message: &str) {
        write(Level::Info, message);
    }
    /// A line at warn level.
    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }
    /// A line at error level.
    pub fn error(message: &str) {
        write(Level::Error, message);
    }
}

fn parse_image(json: String, what: &str) -> Result<Image, String> {
    Image::index(json).map_err(|why| format!("{what}: {why}"))
}

#[doc(hidden)]
pub fn __run(
    record: wit::StreamRecord,
    tenant: wit::Tenant,
    f: fn(&Record, &Tenant) -> Result<Vec<Event>, Error>,
) -> Result<Vec<wit::Event>, String> {
    let record = Record {
        table: record.table,
        event_id: record.event_id,
        change: match record.change {
            wit_types::Change::Insert => Change::Insert,
            wit_types::Change::Modify => Change::Modify,
            wit_types::Change::Remove => Change::Remove,
        },
        sequence_number: record.sequence_number,
        approximate_creation_time_ms: record.approximate_creation_time_ms,
        keys: parse_image(record.keys, "keys")?,
        new_image: LazyImage::text(record.new_image),
        old_image: LazyImage::text(record.old_image),
        removed_by_ttl: record.removed_by_ttl,
    };
    let events = with_tenant(tenant, |tenant| f(&record, tenant).map_err(|e| e.0))?;
    events
        .into_iter()
        .map(|e| {
            // `to_string` writes straight into a buffer; `Display` goes through a
            // formatter a token at a time.
            let detail = serde_json::to_string(&e.detail)
                .map_err(|why| format!("detail cannot be written as JSON: {why}"))?;
            Ok(wit::Event {
                destination: e.destination,
                detail_type: e.detail_type,
                detail,
                resources: e.resources,
            })
        })
        .collect()
}

thread_local! {
    /// The last tenant seen, with the config text it was parsed from. An instance serves
    /// one tenant, so every call after the first reuses the parsed config.
    static LAST_TENANT: std::cell::RefCell<Option<(String, Tenant)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with `tenant`, its config parsed once per instance rather than once per call.
fn with_tenant<T>(
    tenant: wit::Tenant,
    f: impl FnOnce(&Tenant) -> Result<T, String>,
) -> Result<T, String> {
    LAST_TENANT.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((text, t)) = &*last
            && *text == tenant.config
            && t.id == tenant.id
        {
            return f(t);
        }
        let config = serde_json::from_str(&tenant.config)
            .map_err(|e| format!("tenant config is not JSON: {e}"))?;
        let (_, parsed) = last.insert((
            tenant.config,
            Tenant {
                id: tenant.id,
                config,
            },
        ));
        f(parsed)
    })
}

/// Exports `f` as the plugin's `transform`.
#[macro_export]
macro_rules! plugin {
    ($f:path) => {
        struct __WeirPlugin;
        impl $crate::bindings::exports::weir::transform::transformer::Guest for __WeirPlugin {
            fn transform(
                record: $crate::bindings::exports::weir::transform::transformer::StreamRecord,
                tenant: $crate::bindings::exports::weir::transform::transformer::Tenant,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::bindings::exports::weir::transform::transformer::Event>,
                ::std::string::String,
            > {
                $crate::__run(record, tenant, $f)
            }
        }
        $crate::bindings::__export_plugin!(__WeirPlugin with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_reads_escaped_names_keeps_the_last_repeat_and_refuses_non_objects() {
        let img = Image::parse(r#"{"z":1,"a\"b":{"c/d":2},"m":3,"m":4,"x~y":5}"#).expect("object");
        assert_eq!(img.names().collect::<Vec<_>>(), ["a\"b", "m", "x~y", "z"]);
        assert_eq!(img.get("/a\"b/c~1d"), Some(&json!(2)));
        assert_eq!(
            img.get("/m"),
            Some(&json!(4)),
            "the last of a repeated name"
        );
        assert_eq!(img.get("/x~0y"), Some(&json!(5)));
        assert_eq!(img.get("/nope"), None);
        assert_eq!(
            Image::parse("[1]").err().map(|e| e.to_string()),
            Some("an image must be a JSON object".to_owned())
        );
        assert!(Image::parse(r#"{"a":1} x"#).is_err(), "trailing text");
    }

    #[test]
    fn pointers_reach_nested_values() {
        let img: Image = Image::from_map(
            serde_json::from_str(
                r#"{"a/b":{"c":[1,{"d":"x"}]},"n":12345678901234567890123456789012345678}"#,
            )
            .expect("json"),
        );
        assert_eq!(img.str("/a~1b/c/1/d"), Some("x"));
        let n = img.number("/n").expect("number");
        assert_eq!(n.as_str(), "12345678901234567890123456789012345678");
        assert!(n.to_i64().is_err());
        assert!(n.to_f64().is_err());
        assert!(n.is_integer());
        let img = Image::from_map(
            serde_json::from_str(
                r#"{"a":0.5,"b":1234.5,"c":0.1,"d":1e300,"e":0.30000000000000000001}"#,
            )
            .expect("json"),
        );
        assert_eq!(img.number("/a").and_then(|n| n.to_f64().ok()), Some(0.5));
        assert_eq!(img.number("/b").and_then(|n| n.to_f64().ok()), Some(1234.5));
        assert_eq!(img.number("/c").and_then(|n| n.to_f64().ok()), Some(0.1));
        assert_eq!(img.number("/d").and_then(|n| n.to_f64().ok()), Some(1e300));
        assert!(img.number("/e").expect("e").to_f64().is_err());
    }

    #[test]
    fn integer_conversions_refuse_to_lose_digits() {
        let img = Image::parse(
            r#"{"big":12345678901234567890123456789012345678,"neg":-99999999999999999999999999999999999999,
                "whole":2.0,"exp":-1.20e2,"half":2.5,"tiny":1e-40,"zero":0.000,"max":18446744073709551615,
                "huge":1e39}"#,
        )
        .expect("json");
        let n = |p: &str| img.number(p).expect(p);
        assert_eq!(
            n("/big").to_i128(),
            Ok(12345678901234567890123456789012345678)
        );
        assert_eq!(
            n("/neg").to_i128(),
            Ok(-99999999999999999999999999999999999999)
        );
        assert_eq!(n("/whole").to_i64(), Ok(2));
        assert_eq!(n("/exp").to_i64(), Ok(-120));
        assert_eq!(n("/zero").to_u64(), Ok(0));
        assert_eq!(n("/max").to_u64(), Ok(u64::MAX));
        let e = n("/max").to_i64().expect_err("above i64");
        assert_eq!(
            e.to_string(),
            "18446744073709551615 does not fit in i64 without losing digits"
        );
        assert!(n("/half").to_i64().is_err());
        assert!(n("/half").to_i128().is_err());
        assert!(n("/tiny").to_i128().is_err());
        assert!(n("/huge").to_i128().is_err());
        assert!(n("/exp").to_u64().is_err());
        assert_eq!(n("/half").to_f64(), Ok(2.5));
    }

    #[test]
    fn typed_accessors_name_what_is_missing() {
        let img = Image::parse(r#"{"a":{"b":[true,null]},"s":"x","n":1}"#).expect("json");
        assert_eq!(img.bool("/a/b/0"), Some(true));
        assert!(img.is_null("/a/b/1"));
        assert!(!img.is_null("/a/b/2"));
        assert_eq!(img.array("/a/b").map(<[Value]>::len), Some(2));
        assert!(img.object("/a").is_some_and(|m| m.contains_key("b")));
        assert_eq!(img.require_str("/s"), Ok("x"));
        assert_eq!(
            img.require_str("/n").unwrap_err().to_string(),
            "the item has no string at /n"
        );
        assert_eq!(
            img.require_bool("/s").unwrap_err().to_string(),
            "the item has no bool at /s"
        );
        assert!(img.require_number("/n").is_ok());
        assert!(Image::parse("[1]").is_err());
        let tenant = Tenant::new("t", json!({"x": {"y": "z"}, "on": true}));
        assert_eq!(tenant.config_str("/x/y"), Some("z"));
        assert_eq!(tenant.config_bool("on"), Some(true));
        assert_eq!(
            tenant.require_config_str("/x/w").unwrap_err().to_string(),
            "config.x.w must be a string"
        );
    }

    #[test]
    fn only_integers_outside_i64_become_strings() {
        let v: Value = serde_json::from_str(
            r#"{"big":[12345678901234567890123456789012345678],"max":9223372036854775807,"tiny":0.000000000000000000000000000000000001,"neg":-9223372036854775809}"#,
        )
        .expect("json");
        assert_eq!(
            eventbridge_safe(&v).to_string(),
            r#"{"big":["12345678901234567890123456789012345678"],"max":9223372036854775807,"neg":"-9223372036854775809","tiny":0.000000000000000000000000000000000001}"#
        );
    }
}
