//! An item image read lazily, straight from DynamoDB's typed JSON, by JSON pointer
//! (RFC 6901): what `weir:transform@0.2.0`'s image resource will answer from. The top-level
//! attributes are indexed on the first read (one pass that only finds where each one lies);
//! an attribute is decoded when a read reaches it, and only as far as the read goes.
//! Attributes nobody reads are never decoded, so a bad one nobody reads is never an error.
//!
//! Every answer agrees with the plain JSON [`transcode_image`](crate::record::transcode_image)
//! writes for the whole image (the property test below holds them against each other): maps
//! and the image have sorted keys, sets are arrays, numbers keep every digit, binary is the
//! base64 text (or its bytes, from [`TypedImage::binary`]).

use std::borrow::Cow;
use std::cell::OnceCell;

use base64::Engine as _;
use serde::de::{Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::record::{DecodeError, number_as_json, transcode_attribute, transcode_image};

/// What a value is, as a plugin asks before reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `S`, or a member of an `SS`.
    String,
    /// `N`, or a member of an `NS`.
    Number,
    /// `B`, or a member of a `BS`.
    Binary,
    /// `BOOL`.
    Bool,
    /// `NULL`.
    Null,
    /// `M`, or the image itself.
    Map,
    /// `L`, `SS`, `NS` or `BS`.
    List,
}

/// A map's entries: each name and its value's typed JSON text.
type Entries<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// One image, borrowed from the record's text.
pub struct TypedImage<'a> {
    text: &'a str,
    /// The top-level attributes by name, sorted, each as its typed JSON text.
    index: OnceCell<Result<Entries<'a>, DecodeError>>,
    /// Each top-level attribute decoded one level, on its first read (a mapping reads
    /// several fields of one map: `/address/city`, `/address/zip`).
    nodes: OnceCell<Vec<OnceCell<Result<Node<'a>, DecodeError>>>>,
}

/// Where a pointer led.
enum Found<'a> {
    /// The image itself.
    Root,
    /// An attribute value (`{"TAG": value}`), decoded one level.
    Value(Node<'a>),
    /// A member of a set: its tag and its text.
    Member(Kind, Cow<'a, str>),
}

/// An attribute value decoded one level: what is below stays typed JSON text.
#[derive(Clone)]
enum Node<'a> {
    S(Cow<'a, str>),
    N(Cow<'a, str>),
    B(Cow<'a, str>),
    Bool(bool),
    Null,
    M(Vec<(Cow<'a, str>, &'a RawValue)>),
    L(Vec<&'a RawValue>),
    Set(Kind, Vec<Cow<'a, str>>),
}

impl<'a> TypedImage<'a> {
    /// An image given as its typed JSON text (a stream record's `NewImage`, `OldImage` or
    /// `Keys`). Nothing is read yet.
    pub fn new(text: &'a str) -> Self {
        TypedImage {
            text,
            index: OnceCell::new(),
            nodes: OnceCell::new(),
        }
    }

    /// What is at `pointer`, if anything.
    pub fn kind(&self, pointer: &str) -> Result<Option<Kind>, DecodeError> {
        Ok(self.find(pointer)?.map(|f| match f {
            Found::Root => Kind::Map,
            Found::Member(kind, _) => kind,
            Found::Value(node) => match node {
                Node::S(_) => Kind::String,
                Node::N(_) => Kind::Number,
                Node::B(_) => Kind::Binary,
                Node::Bool(_) => Kind::Bool,
                Node::Null => Kind::Null,
                Node::M(_) => Kind::Map,
                Node::L(_) | Node::Set(..) => Kind::List,
            },
        }))
    }

    /// The string at `pointer` (`S`, or an `SS` member).
    pub fn string(&self, pointer: &str) -> Result<Option<String>, DecodeError> {
        Ok(match self.find(pointer)? {
            Some(Found::Value(Node::S(s))) | Some(Found::Member(Kind::String, s)) => {
                Some(s.into_owned())
            }
            _ => None,
        })
    }

    /// The number at `pointer` (`N`, or an `NS` member) as its exact decimal text, written
    /// as the JSON number the plain image holds: every digit kept.
    pub fn number(&self, pointer: &str) -> Result<Option<String>, DecodeError> {
        match self.find(pointer)? {
            Some(Found::Value(Node::N(n))) | Some(Found::Member(Kind::Number, n)) => {
                number_as_json(&n)
                    .map(Some)
                    .map_err(|why| DecodeError::at(pointer, why))
            }
            _ => Ok(None),
        }
    }

    /// The bool at `pointer`.
    pub fn bool(&self, pointer: &str) -> Result<Option<bool>, DecodeError> {
        Ok(match self.find(pointer)? {
            Some(Found::Value(Node::Bool(b))) => Some(b),
            _ => None,
        })
    }

    /// Whether `pointer` holds `NULL`.
    pub fn is_null(&self, pointer: &str) -> Result<bool, DecodeError> {
        Ok(matches!(
            self.find(pointer)?,
            Some(Found::Value(Node::Null))
        ))
    }

    /// The bytes at `pointer` (`B`, or a `BS` member), decoded from base64.
    pub fn binary(&self, pointer: &str) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.find(pointer)? {
            Some(Found::Value(Node::B(b))) | Some(Found::Member(Kind::Binary, b)) => {
                base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .map(Some)
                    .map_err(|e| DecodeError::at(pointer, format!("invalid base64: {e}")))
            }
            _ => Ok(None),
        }
    }

    /// The names of the map at `pointer` (the image itself for `""`), sorted.
    pub fn keys(&self, pointer: &str) -> Result<Option<Vec<String>>, DecodeError> {
        Ok(match self.find(pointer)? {
            Some(Found::Root) => Some(
                self.attributes()?
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .collect(),
            ),
            Some(Found::Value(Node::M(m))) => {
                Some(m.into_iter().map(|(n, _)| n.into_owned()).collect())
            }
            _ => None,
        })
    }

    /// How many entries the map, list or set at `pointer` holds.
    pub fn len(&self, pointer: &str) -> Result<Option<usize>, DecodeError> {
        Ok(match self.find(pointer)? {
            Some(Found::Root) => Some(self.attributes()?.len()),
            Some(Found::Value(Node::M(m))) => Some(m.len()),
            Some(Found::Value(Node::L(l))) => Some(l.len()),
            Some(Found::Value(Node::Set(_, s))) => Some(s.len()),
            _ => None,
        })
    }

    /// The value at `pointer` as plain JSON text, exactly as it appears in the plain image.
    pub fn to_json(&self, pointer: &str) -> Result<Option<String>, DecodeError> {
        let Some(found) = self.find(pointer)? else {
            return Ok(None);
        };
        Ok(Some(match found {
            Found::Root => transcode_image(self.text, pointer)?,
            Found::Member(Kind::Number, n) => {
                number_as_json(&n).map_err(|why| DecodeError::at(pointer, why))?
            }
            Found::Member(_, s) => {
                let mut out = String::with_capacity(s.len() + 2);
                crate::record::write_json_string(&s, &mut out);
                out
            }
            Found::Value(_) => {
                let raw = self
                    .raw(pointer)?
                    .ok_or_else(|| DecodeError::at(pointer, "not found"))?;
                transcode_attribute(raw.get(), pointer)?
            }
        }))
    }

    /// The top-level attributes, indexed on first use.
    fn attributes(&self) -> Result<&[(Cow<'a, str>, &'a RawValue)], DecodeError> {
        let index = self.index.get_or_init(|| {
            let mut de = serde_json::Deserializer::from_str(self.text);
            let found = de
                .deserialize_map(EntriesVisitor)
                .map_err(|e| DecodeError::at("image", format!("not an object of attributes: {e}")));
            found.map(sorted_last_wins)
        });
        index.as_deref().map_err(Clone::clone)
    }

    /// The top-level attribute `name`, decoded one level (once).
    fn top(&self, name: &str, pointer: &str) -> Result<Option<&Node<'a>>, DecodeError> {
        let attributes = self.attributes()?;
        let Ok(i) = attributes.binary_search_by(|(n, _)| n.as_ref().cmp(name)) else {
            return Ok(None);
        };
        let nodes = self
            .nodes
            .get_or_init(|| attributes.iter().map(|_| OnceCell::new()).collect());
        match nodes.get(i) {
            Some(cell) => cell
                .get_or_init(|| decode_node(attributes[i].1, pointer))
                .as_ref()
                .map(Some)
                .map_err(Clone::clone),
            None => Ok(None),
        }
    }

    /// The typed JSON text of the attribute value at `pointer` (not for `""` or a member).
    fn raw(&self, pointer: &str) -> Result<Option<&'a RawValue>, DecodeError> {
        let mut segments = segments(pointer);
        let Some(first) = segments.next() else {
            return Ok(None);
        };
        let Some(mut raw) = lookup(self.attributes()?, &first) else {
            return Ok(None);
        };
        for segment in segments {
            raw = match decode_node(raw, pointer)? {
                Node::M(m) => match lookup(&m, &segment) {
                    Some(r) => r,
                    None => return Ok(None),
                },
                Node::L(l) => match index_of(&segment).and_then(|i| l.get(i)) {
                    Some(r) => r,
                    None => return Ok(None),
                },
                _ => return Ok(None),
            };
        }
        Ok(Some(raw))
    }

    /// What `pointer` leads to, decoding only the values on its way.
    fn find(&self, pointer: &str) -> Result<Option<Found<'a>>, DecodeError> {
        if pointer.is_empty() {
            // The index is built (and checked) even for the root.
            self.attributes()?;
            return Ok(Some(Found::Root));
        }
        if !pointer.starts_with('/') {
            return Ok(None);
        }
        let mut segments = segments(pointer);
        let Some(first) = segments.next() else {
            return Ok(None);
        };
        let Some(top) = self.top(&first, pointer)? else {
            return Ok(None);
        };
        let mut node = top.clone();
        for segment in segments {
            node = match node {
                Node::M(m) => match lookup(&m, &segment) {
                    Some(r) => decode_node(r, pointer)?,
                    None => return Ok(None),
                },
                Node::L(l) => match index_of(&segment).and_then(|i| l.get(i)) {
                    Some(r) => decode_node(r, pointer)?,
                    None => return Ok(None),
                },
                Node::Set(kind, members) => {
                    return Ok(index_of(&segment)
                        .and_then(|i| members.into_iter().nth(i))
                        .map(|m| Found::Member(kind, m)));
                }
                _ => return Ok(None),
            };
        }
        Ok(Some(Found::Value(node)))
    }
}

/// A pointer's reference tokens, `~1` and `~0` unescaped.
fn segments(pointer: &str) -> impl Iterator<Item = Cow<'_, str>> {
    pointer.split('/').skip(1).map(|s| {
        if s.contains('~') {
            Cow::Owned(s.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(s)
        }
    })
}

/// An array index as RFC 6901 writes it: digits, no leading zero.
fn index_of(segment: &str) -> Option<usize> {
    let ok = !segment.is_empty()
        && segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    ok.then(|| segment.parse().ok()).flatten()
}

fn lookup<'a>(entries: &[(Cow<'a, str>, &'a RawValue)], name: &str) -> Option<&'a RawValue> {
    entries
        .binary_search_by(|(n, _)| n.as_ref().cmp(name))
        .ok()
        .map(|i| entries[i].1)
}

/// Sorted by name; of equal names the last written wins, as in a JSON map.
fn sorted_last_wins<'a>(
    mut entries: Vec<(Cow<'a, str>, &'a RawValue)>,
) -> Vec<(Cow<'a, str>, &'a RawValue)> {
    // A stable sort keeps equal names in written order; keep the last of each run.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.reverse();
    entries.dedup_by(|a, b| a.0 == b.0);
    entries.reverse();
    entries
}

/// Decodes an attribute value one level: its tag, and its scalar or its children's spans.
fn decode_node<'a>(raw: &'a RawValue, pointer: &str) -> Result<Node<'a>, DecodeError> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_map(NodeVisitor)
        .map_err(|e| DecodeError::at(pointer, format!("not an attribute value: {e}")))
}

/// A map's entries, each value kept as its text.
struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            out.push((name, map.next_value::<&'de RawValue>()?));
        }
        Ok(out)
    }
}

/// One attribute value: `{"TAG": value}`.
struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an attribute value like {\"S\": \"x\"}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        use serde::de::Error as _;
        let Some(tag) = map.next_key::<Cow<'de, str>>()? else {
            return Err(A::Error::custom("no type tag"));
        };
        let node = match tag.as_ref() {
            "S" => Node::S(map.next_value()?),
            "N" => Node::N(map.next_value()?),
            "B" => Node::B(map.next_value()?),
            "BOOL" => Node::Bool(map.next_value()?),
            "NULL" => {
                map.next_value::<bool>()?;
                Node::Null
            }
            "M" => Node::M(sorted_last_wins(map.next_value_seed(EntriesSeed)?)),
            "L" => Node::L(map.next_value::<Vec<&'de RawValue>>()?),
            "SS" => Node::Set(Kind::String, map.next_value_seed(MembersSeed)?),
            "NS" => Node::Set(Kind::Number, map.next_value_seed(MembersSeed)?),
            "BS" => Node::Set(Kind::Binary, map.next_value_seed(MembersSeed)?),
            other => return Err(A::Error::custom(format!("unknown type tag {other:?}"))),
        };
        if map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            return Err(A::Error::custom("more than one type tag"));
        }
        Ok(node)
    }
}

/// A map's entries, as a seed (for `M`).
struct EntriesSeed;

impl<'de> serde::de::DeserializeSeed<'de> for EntriesSeed {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(EntriesVisitor)
    }
}

/// A set's members, borrowed where they have no escapes.
struct MembersSeed;

impl<'de> serde::de::DeserializeSeed<'de> for MembersSeed {
    type Value = Vec<Cow<'de, str>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for MembersSeed {
    type Value = Vec<Cow<'de, str>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(m) = seq.next_element::<Cow<'de, str>>()? {
            out.push(m);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::record::tests::attribute;

    /// Every pointer into a plain JSON value, with the value there.
    fn pointers(v: &Value, at: String, out: &mut Vec<(String, Value)>) {
        out.push((at.clone(), v.clone()));
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let token = k.replace('~', "~0").replace('/', "~1");
                    pointers(child, format!("{at}/{token}"), out);
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    pointers(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    /// Holds every lazy answer against the plain image `transcode_image` writes.
    fn agrees(text: &str) {
        let plain_text = transcode_image(text, "image").expect("valid image");
        let plain: Value = serde_json::from_str(&plain_text).expect("plain JSON");
        let image = TypedImage::new(text);
        let mut all = Vec::new();
        pointers(&plain, String::new(), &mut all);
        for (p, v) in all {
            let json = image.to_json(&p).expect("reads").expect("found");
            assert_eq!(
                serde_json::from_str::<Value>(&json).expect("JSON"),
                v,
                "{p} in {plain_text}"
            );
            match &v {
                Value::Object(m) => {
                    let keys: Vec<String> = m.keys().cloned().collect();
                    assert_eq!(image.keys(&p).expect("reads"), Some(keys), "{p}");
                    assert_eq!(image.len(&p).expect("reads"), Some(m.len()), "{p}");
                }
                Value::Array(a) => assert_eq!(image.len(&p).expect("reads"), Some(a.len())),
                Value::Bool(b) => assert_eq!(image.bool(&p).expect("reads"), Some(*b)),
                Value::Null => assert!(image.is_null(&p).expect("reads")),
                Value::Number(_) => {
                    // The exact text, as the plain image writes it.
                    let n = image.number(&p).expect("reads").expect("a number");
                    assert_eq!(n, json, "{p}");
                }
                Value::String(s) => {
                    let kind = image.kind(&p).expect("reads");
                    match kind {
                        Some(Kind::String) => {
                            assert_eq!(image.string(&p).expect("reads").as_ref(), Some(s))
                        }
                        Some(Kind::Binary) => assert!(image.binary(&p).expect("reads").is_some()),
                        other => panic!("{p}: a string in plain JSON is {other:?}"),
                    }
                }
            }
        }
        assert_eq!(image.to_json("/no such attribute").expect("reads"), None);
    }

    #[test]
    fn every_type_reads_as_the_plain_image_holds_it() {
        agrees(
            &json!({
                "s": {"S": "x \"q\" ~/"}, "n": {"N": "-0012.500"}, "big": {"N": "12345678901234567890123456789012345678"},
                "b": {"B": "AAEC"}, "t": {"BOOL": true}, "z": {"NULL": true},
                "m": {"M": {"a/b": {"S": "slash"}, "c~d": {"N": "1"}, "z": {"L": [{"S": "in"}, {"N": "2"}]}}},
                "ss": {"SS": ["b", "a"]}, "ns": {"NS": ["1", "2.50"]}, "bs": {"BS": ["AAEC"]},
                "dup": {"S": "first"}
            })
            .to_string(),
        );
    }

    #[test]
    fn names_read_sorted_and_a_repeated_name_keeps_its_last_value() {
        // As the stream may write them: unsorted, and (in a hand-made sample) repeated.
        agrees(
            r#"{"zeta": {"S": "z"}, "alpha": {"M": {"y": {"N": "2"}, "x": {"N": "1"}, "y": {"N": "3"}}},
                "mid": {"S": "first"}, "mid": {"S": "last"}}"#,
        );
        let image = TypedImage::new(r#"{"b": {"S": "1"}, "a": {"S": "2"}, "b": {"S": "3"}}"#);
        assert_eq!(
            image.keys("").expect("reads"),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(image.string("/b").expect("reads"), Some("3".into()));
    }

    #[test]
    fn an_attribute_nobody_reads_is_never_decoded() {
        let text = r#"{"ok": {"S": "fine"}, "bad": {"N": "not a number"}, "worse": {"Q": 1}}"#;
        let image = TypedImage::new(text);
        assert_eq!(image.string("/ok").expect("reads"), Some("fine".into()));
        assert!(image.number("/bad").is_err(), "read, it is an error");
        assert!(image.kind("/worse").is_err(), "read, it is an error");
        assert_eq!(image.kind("/ok/0").expect("reads"), None);
        assert_eq!(image.string("ok").expect("not a pointer"), None);
    }

    proptest! {
        #[test]
        fn lazy_reads_agree_with_the_plain_image(
            attrs in prop::collection::btree_map("[a-z~/]{1,6}", attribute(), 0..6)
        ) {
            agrees(&serde_json::to_string(&attrs).expect("image"));
        }
    }
}
