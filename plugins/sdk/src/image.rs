//! An item's [`Image`], values looked up by JSON Pointer: read through the host in a
//! plugin, or from JSON text indexed by attribute in a test.

use std::fmt;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::number::ExactNumber;

/// An item's attributes. Look values up by RFC 6901 JSON Pointer (`/address/city`).
///
/// In a plugin the image is read through the host (`weir:transform@0.2.0`): each read asks
/// for one value, which the host decodes from the stream's typed JSON, so attributes the
/// plugin never reads are never decoded or copied. An image made with [`Image::parse`] (in
/// tests, or for JSON a plugin carries) is its JSON text with an index of its attributes,
/// each parsed on first read. Both answer every read the same way.
#[derive(Clone, Default)]
pub struct Image(Repr);

#[derive(Clone)]
enum Repr {
    Text(Indexed),
    #[cfg_attr(feature = "contract-0-1", allow(dead_code))]
    Host(std::rc::Rc<crate::host_image::HostImage>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Text(Indexed::default())
    }
}

impl Image {
    /// An image from JSON text holding an object (for tests, or JSON a plugin carries).
    pub fn parse(json: &str) -> Result<Image, Error> {
        Indexed::index(json.to_owned())
            .map(|i| Image(Repr::Text(i)))
            .map_err(Error)
    }

    /// An image of these attributes.
    pub fn from_map(map: Map<String, Value>) -> Image {
        let text = serde_json::to_string(&Value::Object(map)).unwrap_or_default();
        Image(Repr::Text(Indexed::index(text).unwrap_or_default()))
    }

    #[cfg_attr(feature = "contract-0-1", allow(dead_code))]
    pub(crate) fn host(image: crate::host_image::HostImage) -> Image {
        Image(Repr::Host(std::rc::Rc::new(image)))
    }

    /// The names of the item's attributes, in order.
    pub fn names(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match &self.0 {
            Repr::Text(i) => Box::new(i.names()),
            Repr::Host(h) => Box::new(h.keys("").into_iter().flatten().map(String::as_str)),
        }
    }

    /// The value at `pointer`, e.g. `/address/city` or `/tags/0`.
    pub fn get(&self, pointer: &str) -> Option<&Value> {
        match &self.0 {
            Repr::Text(i) => i.get(pointer),
            Repr::Host(h) => h.get(pointer),
        }
    }

    /// A string attribute.
    pub fn str(&self, pointer: &str) -> Option<&str> {
        match &self.0 {
            Repr::Text(i) => i.get(pointer)?.as_str(),
            Repr::Host(h) => h.str(pointer),
        }
    }

    /// A bool attribute.
    pub fn bool(&self, pointer: &str) -> Option<bool> {
        match &self.0 {
            Repr::Text(i) => i.get(pointer)?.as_bool(),
            Repr::Host(h) => h.bool(pointer),
        }
    }

    /// A number attribute, with every digit DynamoDB stored.
    pub fn number(&self, pointer: &str) -> Option<ExactNumber<'_>> {
        match &self.0 {
            Repr::Text(i) => match i.get(pointer)? {
                Value::Number(n) => Some(ExactNumber(n)),
                _ => None,
            },
            Repr::Host(h) => h.number(pointer).map(ExactNumber),
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
        match &self.0 {
            Repr::Text(i) => i.get(pointer).is_some_and(Value::is_null),
            Repr::Host(h) => h.is_null(pointer),
        }
    }

    /// How many entries the map, list or set at `pointer` holds (`""`: the attributes).
    pub fn len(&self, pointer: &str) -> Option<usize> {
        match &self.0 {
            Repr::Text(i) if pointer.is_empty() => Some(i.fields.len()),
            Repr::Text(i) => match i.get(pointer)? {
                Value::Object(m) => Some(m.len()),
                Value::Array(a) => Some(a.len()),
                _ => None,
            },
            Repr::Host(h) => h.len(pointer),
        }
    }

    /// The names of the map at `pointer` (`""`: the attributes), sorted.
    pub fn keys(&self, pointer: &str) -> Option<Vec<&str>> {
        if pointer.is_empty() {
            return Some(self.names().collect());
        }
        match &self.0 {
            Repr::Text(i) => Some(
                i.get(pointer)?
                    .as_object()?
                    .keys()
                    .map(String::as_str)
                    .collect(),
            ),
            Repr::Host(h) => Some(h.keys(pointer)?.iter().map(String::as_str).collect()),
        }
    }

    /// A binary attribute (`B`, or a `BS` member), decoded from base64.
    pub fn binary(&self, pointer: &str) -> Option<Vec<u8>> {
        match &self.0 {
            Repr::Text(i) => base64_decode(i.get(pointer)?.as_str()?),
            Repr::Host(h) => h.binary(pointer),
        }
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
        match &self.0 {
            Repr::Text(i) => i.to_value(),
            Repr::Host(h) => h.get("").cloned().unwrap_or_default(),
        }
    }
}

impl PartialEq for Image {
    fn eq(&self, other: &Image) -> bool {
        self.to_value() == other.to_value()
    }
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Text(i) => write!(f, "Image({})", i.text),
            Repr::Host(_) => f.write_str("Image(read through the host)"),
        }
    }
}

/// An image's JSON text indexed by attribute, values parsed on first read.
#[derive(Clone, Default)]
struct Indexed {
    text: String,
    /// Each attribute's name and where its value lies in `text`, sorted by name.
    fields: Vec<(FieldName, std::ops::Range<usize>)>,
    /// The values parsed so far, by position in `fields`.
    values: Vec<std::cell::OnceCell<Value>>,
}

impl Indexed {
    /// Indexes `text` in one pass: each attribute's name (a span of `text` unless it has
    /// escapes) and its value's span. No value is parsed and nothing else is allocated.
    fn index(text: String) -> Result<Indexed, String> {
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
        Ok(Indexed {
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
    fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(n, _)| n.as_str(&self.text))
    }

    /// The value at `pointer`, e.g. `/address/city` or `/tags/0`.
    fn get(&self, pointer: &str) -> Option<&Value> {
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

    /// The whole image as a JSON value.
    fn to_value(&self) -> Value {
        Value::Object(
            self.names()
                .filter_map(|n| Some((n.to_owned(), self.field(n)?.clone())))
                .collect(),
        )
    }
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
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

/// `json` as an image, or why it is not one, naming `what` it is (`keys`, `new image`).
pub(crate) fn parse_image(json: String, what: &str) -> Result<Image, String> {
    Indexed::index(json)
        .map(|i| Image(Repr::Text(i)))
        .map_err(|why| format!("{what}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tenant;
    use serde_json::json;

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
}
