//! Typed JSON (`{"S": "x"}`) to plain JSON (`"x"`), in one pass, without building a tree.

use std::fmt::Write as _;

use base64::Engine as _;

use super::DecodeError;
use super::number::write_number;

/// DynamoDB allows 32 levels of nesting; anything far deeper is refused before recursion
/// can exhaust the stack.
pub const MAX_ATTRIBUTE_DEPTH: usize = 64;

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
pub(super) struct Key;

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

pub(crate) fn write_binary(b64: &str, out: &mut String) -> Result<(), String> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("invalid base64: {e}"))?;
    write_json_string(b64, out);
    Ok(())
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
