//! Write a weir plugin as one plain function.
//!
//! ```ignore
//! use weir_plugin_sdk::{Error, Event, Record, Tenant, json};
//!
//! fn transform(record: &Record, tenant: &Tenant) -> Result<Vec<Event>, Error> {
//!     let Some(item) = record.image() else { return Ok(vec![]) };
//!     let name = item.str("/name").ok_or("the item has no name")?;
//!     let channel = tenant.config_str("channel").unwrap_or("#customers");
//!     Ok(vec![Event::new("slack", "CustomerChanged", json!({
//!         "channel": channel,
//!         "text": format!("{} {}", record.change.as_str(), name),
//!     }))])
//! }
//!
//! weir_plugin_sdk::plugin!(transform);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the plugin. Numbers in images keep every digit
//! (serde_json's `arbitrary_precision` is on); [`Image::number`] says when a conversion
//! would lose any.

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
    Insert,
    Modify,
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
    pub table: String,
    pub event_id: String,
    pub change: Change,
    pub sequence_number: String,
    pub approximate_creation_time_ms: Option<u64>,
    pub keys: Image,
    pub new_image: Option<Image>,
    pub old_image: Option<Image>,
    /// True when DynamoDB's TTL process removed the item.
    pub removed_by_ttl: bool,
}

impl Record {
    /// The item as it now is: the new image, or for a REMOVE the old one; `None` when the
    /// stream carries neither (a KEYS_ONLY stream).
    pub fn image(&self) -> Option<&Image> {
        match self.change {
            Change::Remove => self.old_image.as_ref(),
            _ => self.new_image.as_ref(),
        }
    }
}

/// An item's attributes. Look values up by RFC 6901 JSON Pointer (`/address/city`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Image(pub Map<String, Value>);

impl Image {
    /// The value at `pointer`, e.g. `/address/city` or `/tags/0`.
    pub fn get(&self, pointer: &str) -> Option<&Value> {
        if pointer.is_empty() {
            return None;
        }
        let (first, rest) = split_pointer(pointer)?;
        let v = self.0.get(&first)?;
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

    /// The whole image as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }
}

fn split_pointer(pointer: &str) -> Option<(String, &str)> {
    let body = pointer.strip_prefix('/')?;
    let (first, rest) = match body.find('/') {
        Some(i) => (&body[..i], &body[i..]),
        None => (body, ""),
    };
    Some((first.replace("~1", "/").replace("~0", "~"), rest))
}

/// A number exactly as DynamoDB stored it (up to 38 significant digits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExactNumber<'a>(&'a Number);

/// A conversion that would change the number's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WouldLoseDigits {
    pub number: String,
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

    /// As an i64, or an error if it is not an integer in i64's range.
    pub fn to_i64(&self) -> Result<i64, WouldLoseDigits> {
        self.0.as_i64().ok_or_else(|| self.lose("i64"))
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
            let text = n.to_string();
            if !text.contains(['.', 'e', 'E']) && n.as_i64().is_none() {
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
    pub id: String,
    pub config: Value,
}

impl Tenant {
    /// A string setting from the tenant's config.
    pub fn config_str(&self, key: &str) -> Option<&str> {
        self.config.get(key)?.as_str()
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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

/// Writes to weir's log (capped per call).
pub mod log {
    use crate::bindings::weir::transform::{log, types::Level};

    pub fn debug(message: &str) {
        log::log(Level::Debug, message);
    }
    pub fn info(message: &str) {
        log::log(Level::Info, message);
    }
    pub fn warn(message: &str) {
        log::log(Level::Warn, message);
    }
    pub fn error(message: &str) {
        log::log(Level::Error, message);
    }
}

fn parse_image(json: &str, what: &str) -> Result<Image, String> {
    match serde_json::from_str(json) {
        Ok(Value::Object(m)) => Ok(Image(m)),
        Ok(_) => Err(format!("{what} is not a JSON object")),
        Err(e) => Err(format!("{what} is not JSON: {e}")),
    }
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
        keys: parse_image(&record.keys, "keys")?,
        new_image: record
            .new_image
            .as_deref()
            .map(|j| parse_image(j, "new image"))
            .transpose()?,
        old_image: record
            .old_image
            .as_deref()
            .map(|j| parse_image(j, "old image"))
            .transpose()?,
        removed_by_ttl: record.removed_by_ttl,
    };
    let config = serde_json::from_str(&tenant.config)
        .map_err(|e| format!("tenant config is not JSON: {e}"))?;
    let tenant = Tenant {
        id: tenant.id,
        config,
    };
    let events = f(&record, &tenant).map_err(|e| e.0)?;
    Ok(events
        .into_iter()
        .map(|e| wit::Event {
            destination: e.destination,
            detail_type: e.detail_type,
            detail: e.detail.to_string(),
            resources: e.resources,
        })
        .collect())
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
    fn pointers_reach_nested_values() {
        let img: Image = Image(
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
        let img = Image(
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
