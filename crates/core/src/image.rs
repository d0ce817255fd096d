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

use crate::json::Scanner;
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
type Entries<'a> = Vec<(Cow<'a, str>, &'a str)>;

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
    M(Entries<'a>),
    L(Vec<&'a str>),
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
            // A scalar is written from its node: no second walk, no transcoder set up.
            Found::Value(Node::S(text)) => {
                let mut out = String::with_capacity(text.len() + 2);
                crate::record::write_json_string(&text, &mut out);
                out
            }
            Found::Value(Node::N(n)) => {
                number_as_json(&n).map_err(|why| DecodeError::at(pointer, why))?
            }
            Found::Value(Node::B(b)) => {
                let mut out = String::with_capacity(b.len() + 2);
                crate::record::write_binary(&b, &mut out)
                    .map_err(|why| DecodeError::at(pointer, why))?;
                out
            }
            Found::Value(Node::Bool(b)) => b.to_string(),
            Found::Value(Node::Null) => "null".to_owned(),
            Found::Value(_) => {
                let raw = self
                    .raw(pointer)?
                    .ok_or_else(|| DecodeError::at(pointer, "not found"))?;
                transcode_attribute(raw, pointer)?
            }
        }))
    }

    /// The top-level attributes, indexed on first use.
    fn attributes(&self) -> Result<&[(Cow<'a, str>, &'a str)], DecodeError> {
        let index = self.index.get_or_init(|| {
            let mut scan = Scanner::new(self.text);
            scan.object()
                .and_then(|entries| scan.end().map(|()| entries))
                .map_err(String::from)
                .and_then(sorted_unique)
                .map_err(|e| DecodeError::at("image", format!("not an object of attributes: {e}")))
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
    fn raw(&self, pointer: &str) -> Result<Option<&'a str>, DecodeError> {
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
        // The top node is cached: step from it by reference, decoding only what is below.
        let Some(second) = segments.next() else {
            return Ok(Some(Found::Value(top.clone())));
        };
        let mut node = match step(top, &second, pointer)? {
            Some(Step::Node(n)) => n,
            Some(Step::Member(kind, m)) => {
                return Ok(segments.next().is_none().then_some(Found::Member(kind, m)));
            }
            None => return Ok(None),
        };
        while let Some(segment) = segments.next() {
            node = match step(&node, &segment, pointer)? {
                Some(Step::Node(n)) => n,
                // A set member is a leaf: nothing is below it.
                Some(Step::Member(kind, m)) => {
                    return Ok(segments.next().is_none().then_some(Found::Member(kind, m)));
                }
                None => return Ok(None),
            };
        }
        Ok(Some(Found::Value(node)))
    }
}

/// One step down from a node.
enum Step<'a> {
    Node(Node<'a>),
    Member(Kind, Cow<'a, str>),
}

/// The child `segment` of `node`, decoded one level.
fn step<'a>(
    node: &Node<'a>,
    segment: &str,
    pointer: &str,
) -> Result<Option<Step<'a>>, DecodeError> {
    Ok(match node {
        Node::M(m) => match lookup(m, segment) {
            Some(r) => Some(Step::Node(decode_node(r, pointer)?)),
            None => None,
        },
        Node::L(l) => match index_of(segment).and_then(|i| l.get(i)) {
            Some(r) => Some(Step::Node(decode_node(r, pointer)?)),
            None => None,
        },
        Node::Set(kind, members) => index_of(segment)
            .and_then(|i| members.get(i))
            .map(|m| Step::Member(*kind, m.clone())),
        _ => None,
    })
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

fn lookup<'a>(entries: &[(Cow<'a, str>, &'a str)], name: &str) -> Option<&'a str> {
    entries
        .binary_search_by(|(n, _)| n.as_ref().cmp(name))
        .ok()
        .map(|i| entries[i].1)
}

/// Sorted by name. A name written twice is an error: DynamoDB never writes one, and a router
/// reading one of them and a plugin the other would see two items in one.
fn sorted_unique(mut entries: Entries<'_>) -> Result<Entries<'_>, String> {
    if entries.windows(2).all(|w| w[0].0 < w[1].0) {
        return Ok(entries);
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    match entries.windows(2).find(|w| w[0].0 == w[1].0) {
        Some(w) => Err(format!(
            "the name {:?} appears twice in one map, which DynamoDB never writes",
            w[0].0
        )),
        None => Ok(entries),
    }
}

/// Decodes an attribute value one level: its tag, and its scalar or its children's spans.
fn decode_node<'a>(text: &'a str, pointer: &str) -> Result<Node<'a>, DecodeError> {
    let mut scan = Scanner::new(text);
    node(&mut scan)
        .and_then(|node| scan.end().map(|()| node).map_err(String::from))
        .map_err(|e| DecodeError::at(pointer, format!("not an attribute value: {e}")))
}

/// `true` or `false`.
fn boolean(scan: &mut Scanner<'_>) -> Result<bool, String> {
    match scan.peek() {
        Some(b't') => scan.literal("true").map(|()| true),
        Some(b'f') => scan.literal("false").map(|()| false),
        _ => Err(scan.error("expected true or false")),
    }
    .map_err(String::from)
}

/// One attribute value, `{"TAG": value}`, decoded one level.
fn node<'a>(scan: &mut Scanner<'a>) -> Result<Node<'a>, String> {
    scan.eat(b'{')?;
    let tag = scan.string()?;
    scan.eat(b':')?;
    let node = match tag.as_ref() {
        "S" => Node::S(scan.string()?),
        "N" => Node::N(scan.string()?),
        "B" => Node::B(scan.string()?),
        "BOOL" => Node::Bool(boolean(scan)?),
        "NULL" => {
            if !boolean(scan)? {
                return Err("NULL must hold true".into());
            }
            Node::Null
        }
        "M" => Node::M(sorted_unique(scan.object()?)?),
        "L" => Node::L(scan.array()?),
        "SS" | "NS" | "BS" => {
            let kind = match tag.as_ref() {
                "SS" => Kind::String,
                "NS" => Kind::Number,
                _ => Kind::Binary,
            };
            let members = scan
                .array()?
                .into_iter()
                .map(|m| Scanner::new(m).string())
                .collect::<Result<_, _>>()?;
            Node::Set(kind, members)
        }
        other => return Err(format!("unknown type tag {other:?}")),
    };
    if scan.peek() != Some(b'}') {
        return Err("an attribute value has exactly one type tag".into());
    }
    scan.advance();
    Ok(node)
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
    fn names_read_sorted_and_a_repeated_name_is_an_error_for_every_reader() {
        // As the stream may write them: unsorted.
        agrees(
            r#"{"zeta": {"S": "z"}, "alpha": {"M": {"y": {"N": "2"}, "x": {"N": "1"}}},
                "mid": {"S": "first"}}"#,
        );
        // Repeated, as only a forged record can be: the lazy reader, the plain decoder and
        // routing all refuse it, at the top level and inside a map.
        for (text, pointer) in [
            (
                r#"{"b": {"S": "1"}, "a": {"S": "2"}, "b": {"S": "3"}}"#,
                "/b",
            ),
            (
                r#"{"m": {"M": {"y": {"N": "2"}, "x": {"N": "1"}, "y": {"N": "3"}}}}"#,
                "/m/y",
            ),
        ] {
            let image = TypedImage::new(text);
            let err = image.string(pointer).and(image.number(pointer));
            assert!(err.is_err(), "{text}: {err:?}");
            let plain = transcode_image(text, "dynamodb.NewImage").expect_err("refused");
            assert!(plain.message.contains("twice"), "{plain}");
        }
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

    /// Every read of `text` at `pointer`, for the no-panic test.
    fn read_all(text: &str, pointer: &str) {
        let image = TypedImage::new(text);
        let _ = image.kind(pointer);
        let _ = image.string(pointer);
        let _ = image.number(pointer);
        let _ = image.bool(pointer);
        let _ = image.is_null(pointer);
        let _ = image.binary(pointer);
        let _ = image.keys(pointer);
        let _ = image.len(pointer);
        let _ = image.to_json(pointer);
    }

    proptest! {
        #[test]
        fn text_that_is_not_an_image_is_an_error_never_a_panic(
            text in r#"[{}\[\]":,a-zSNMLB\\ é0-9]{0,40}"#,
            pointer in "(/[a-z0-9~]{0,3}){0,3}",
        ) {
            read_all(&text, &pointer);
        }

        #[test]
        fn cut_images_are_an_error_never_a_panic(
            attrs in prop::collection::btree_map("[a-z]{1,3}", attribute(), 1..4),
            cut in 0usize..400,
        ) {
            let text = serde_json::to_string(&attrs).expect("image");
            let mut end = cut.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            for pointer in ["", "/a", "/a/0", "/a/b"] {
                read_all(&text[..end], pointer);
            }
        }

        #[test]
        fn lazy_reads_agree_with_the_plain_image(
            attrs in prop::collection::btree_map("[a-z~/]{1,6}", attribute(), 0..6)
        ) {
            agrees(&serde_json::to_string(&attrs).expect("image"));
        }
    }
}
