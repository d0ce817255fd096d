//! weir's one JSON scanner: it walks JSON text byte by byte and finds where values lie,
//! without building a tree or setting up a deserializer per value, and without changing a
//! digit. Two readers stand on it: `validate` checks a plugin's detail
//! strictly ([`Scanner::check_value`]), and `image` finds an item image's
//! attributes ([`Scanner::object`], [`Scanner::value`]) and reads them one level at a time.
//!
//! Text that is not JSON is an error, never a panic: every index and slice is checked, and
//! depth costs heap, not stack.

use std::borrow::Cow;

/// Why text is not the JSON asked for, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// The text is not JSON: what was expected or found, at which byte.
    Syntax {
        /// What is wrong (`expected ':'`).
        what: Cow<'static, str>,
        /// The byte offset it was found at.
        at: usize,
    },
    /// Objects and arrays nested deeper than the check allows.
    TooDeep {
        /// The deepest nesting allowed.
        max: usize,
    },
    /// An integer outside the signed 64-bit range, as written.
    IntegerRange(String),
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonError::Syntax { what, at } => write!(f, "{what} at byte {at}"),
            JsonError::TooDeep { max } => write!(f, "nested deeper than {max} levels"),
            JsonError::IntegerRange(n) => {
                write!(f, "the integer {n} does not fit in a signed 64-bit integer")
            }
        }
    }
}

/// Callers that report a problem as text (the image reader) take a [`JsonError`] with `?`.
impl From<JsonError> for String {
    fn from(e: JsonError) -> String {
        e.to_string()
    }
}

/// A container [`Scanner::check_value`] is inside.
enum Frame {
    Object,
    Array,
}

/// A cursor over JSON text.
pub(crate) struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    /// A scanner at the start of `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        Scanner { text, at: 0 }
    }

    /// The byte it is at, not skipping whitespace.
    fn byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// A syntax error at the current byte.
    pub(crate) fn error(&self, what: impl Into<Cow<'static, str>>) -> JsonError {
        JsonError::Syntax {
            what: what.into(),
            at: self.at,
        }
    }

    /// Skips whitespace.
    pub(crate) fn space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.byte() {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not taken.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.space();
        self.byte()
    }

    /// Takes the next byte after whitespace, which must be `c`.
    pub(crate) fn eat(&mut self, c: u8) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected '{}'", c as char)))
        }
    }

    /// Takes the byte just peeked (a bracket or a comma).
    pub(crate) fn advance(&mut self) {
        self.at += 1;
    }

    /// Nothing but whitespace is left.
    pub(crate) fn end(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters after the value")),
        }
    }

    fn slice(&self, from: usize, to: usize) -> Result<&'a str, JsonError> {
        self.text.get(from..to).ok_or(JsonError::Syntax {
            what: Cow::Borrowed("broken text"),
            at: from,
        })
    }

    /// A string's span, quotes included, and whether it holds an escape. Escapes are
    /// checked, and a control character is refused, as JSON says.
    pub(crate) fn string_span(&mut self) -> Result<(&'a str, bool), JsonError> {
        self.eat(b'"')?;
        let start = self.at - 1;
        let mut escaped = false;
        loop {
            match self.byte() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.at += 1;
                    match self.byte() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 1
                        }
                        Some(b'u') => {
                            let hex = self.text.as_bytes().get(self.at + 1..self.at + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.error("invalid \\u escape"));
                            }
                            self.at += 5;
                        }
                        _ => return Err(self.error("invalid escape")),
                    }
                }
                Some(c) if c < 0x20 => return Err(self.error("control character in string")),
                Some(_) => self.at += 1,
            }
        }
        self.at += 1;
        Ok((self.slice(start, self.at)?, escaped))
    }

    /// A string's content, borrowed unless it holds an escape.
    pub(crate) fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let at = self.at;
        let (span, escaped) = self.string_span()?;
        if escaped {
            // serde_json refuses what is not Unicode (a lone surrogate's escape).
            serde_json::from_str::<String>(span)
                .map(Cow::Owned)
                .map_err(|e| JsonError::Syntax {
                    what: Cow::Owned(e.to_string()),
                    at,
                })
        } else {
            span.get(1..span.len() - 1)
                .map(Cow::Borrowed)
                .ok_or(JsonError::Syntax {
                    what: Cow::Borrowed("broken string"),
                    at,
                })
        }
    }

    /// `word` (`true`, `false` or `null`), exactly.
    pub(crate) fn literal(&mut self, word: &str) -> Result<(), JsonError> {
        let rest = self.text.as_bytes().get(self.at..).unwrap_or_default();
        if rest.starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.error("invalid literal"))
        }
    }

    /// A number in JSON's grammar: its text, and whether it is an integer (no fraction,
    /// no exponent).
    fn number(&mut self) -> Result<(&'a str, bool), JsonError> {
        let start = self.at;
        if self.byte() == Some(b'-') {
            self.at += 1;
        }
        match self.byte() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        let mut integer = true;
        if self.byte() == Some(b'.') {
            integer = false;
            self.at += 1;
            if !matches!(self.byte(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.byte() {
            integer = false;
            self.at += 1;
            if let Some(b'+' | b'-') = self.byte() {
                self.at += 1;
            }
            if !matches!(self.byte(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        Ok((self.slice(start, self.at)?, integer))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.byte() {
            self.at += 1;
        }
    }

    /// A string, literal or number, taken whole; `None` when the next byte starts none
    /// (a container, a stray byte, or the end).
    fn scalar(&mut self) -> Result<Option<(&'a str, bool)>, JsonError> {
        let start = self.at;
        match self.byte() {
            Some(b'"') => self.string_span().map(|(span, _)| Some((span, false))),
            Some(b't') => self.literal("true").map(|()| Some(("true", false))),
            Some(b'f') => self.literal("false").map(|()| Some(("false", false))),
            Some(b'n') => self.literal("null").map(|()| Some(("null", false))),
            Some(b'-' | b'0'..=b'9') => self.number().map(Some),
            _ => {
                self.at = start;
                Ok(None)
            }
        }
    }

    /// Any value's span. Strings, literals and numbers are checked; an object or array is
    /// found by matching its brackets, its strings checked but its structure taken as the
    /// caller's text has it (the image reader reads text serde has already accepted).
    pub(crate) fn value(&mut self) -> Result<&'a str, JsonError> {
        self.space();
        let start = self.at;
        match self.byte() {
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.byte() {
                        None => return Err(self.error("unterminated object or array")),
                        Some(b'"') => {
                            self.string_span()?;
                        }
                        Some(b'{' | b'[') => {
                            depth += 1;
                            self.at += 1;
                        }
                        Some(b'}' | b']') => {
                            depth = depth.saturating_sub(1);
                            self.at += 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Some(_) => self.at += 1,
                    }
                }
                self.slice(start, self.at)
            }
            None => Err(self.error("expected a value, found the end")),
            Some(_) => match self.scalar()? {
                Some((span, _)) => Ok(span),
                None => Err(self.error("expected a value")),
            },
        }
    }

    /// An object's entries, each name decoded and each value as its span.
    pub(crate) fn object(&mut self) -> Result<Vec<(Cow<'a, str>, &'a str)>, JsonError> {
        self.eat(b'{')?;
        let mut out = Vec::with_capacity(16);
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(out);
        }
        loop {
            let name = self.string()?;
            self.eat(b':')?;
            out.push((name, self.value()?));
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(out);
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    /// An array's elements, each as its span.
    pub(crate) fn array(&mut self) -> Result<Vec<&'a str>, JsonError> {
        self.eat(b'[')?;
        let mut out = Vec::new();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(out);
        }
        loop {
            out.push(self.value()?);
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(out);
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    /// Checks one value strictly, as JSON's grammar says, nested at most `max_depth`
    /// deep and every integer inside the signed 64-bit range (what EventBridge refuses).
    /// Iterative, so depth costs heap, not stack.
    pub(crate) fn check_value(&mut self, max_depth: usize) -> Result<(), JsonError> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            // Read one value (or open a container).
            self.space();
            match self.byte() {
                Some(b'{') => {
                    self.at += 1;
                    stack.push(Frame::Object);
                    if stack.len() > max_depth {
                        return Err(JsonError::TooDeep { max: max_depth });
                    }
                    if self.peek() == Some(b'}') {
                        self.at += 1;
                        stack.pop();
                    } else {
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.at += 1;
                    stack.push(Frame::Array);
                    if stack.len() > max_depth {
                        return Err(JsonError::TooDeep { max: max_depth });
                    }
                    if self.peek() == Some(b']') {
                        self.at += 1;
                        stack.pop();
                    } else {
                        continue;
                    }
                }
                _ => match self.scalar()? {
                    // 19 digits may or may not fit; more never do.
                    Some((n, true)) if n.trim_start_matches('-').len() >= 19 => {
                        if n.parse::<i64>().is_err() {
                            return Err(JsonError::IntegerRange(n.to_owned()));
                        }
                    }
                    Some(_) => {}
                    None => return Err(self.error("expected a value")),
                },
            }
            // After a value: close containers or move to the next member.
            loop {
                let Some(top) = stack.last() else {
                    return Ok(());
                };
                match (top, self.peek()) {
                    (_, Some(b',')) => {
                        self.at += 1;
                        if let Frame::Object = top {
                            self.space();
                            self.key()?;
                        }
                        break;
                    }
                    (Frame::Object, Some(b'}')) | (Frame::Array, Some(b']')) => {
                        self.at += 1;
                        stack.pop();
                    }
                    _ => return Err(self.error("expected ',' or a closing bracket")),
                }
            }
        }
    }

    /// An object member's name and its colon.
    fn key(&mut self) -> Result<(), JsonError> {
        if self.byte() != Some(b'"') {
            return Err(self.error("expected a string key"));
        }
        self.string_span()?;
        self.eat(b':')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_found_and_strings_decoded_only_when_escaped() {
        let mut s = Scanner::new(r#" {"a": [1, {"b": "]"}], "c\u0041": -2.5e3, "d": true} "#);
        let entries = s.object().expect("an object");
        s.end().expect("nothing after");
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names, ["a", "cA", "d"]);
        assert!(matches!(entries[0].0, Cow::Borrowed(_)));
        assert!(matches!(entries[1].0, Cow::Owned(_)));
        let values: Vec<&str> = entries.iter().map(|(_, v)| *v).collect();
        assert_eq!(values, [r#"[1, {"b": "]"}]"#, "-2.5e3", "true"]);
    }

    #[test]
    fn errors_say_what_and_where() {
        let mut s = Scanner::new(r#"{"a" 1}"#);
        assert_eq!(
            s.object().map(|_| ()).unwrap_err().to_string(),
            "expected ':' at byte 5"
        );
        let mut s = Scanner::new(r#""abc"#);
        assert_eq!(
            s.value().unwrap_err().to_string(),
            "unterminated string at byte 4"
        );
        let mut s = Scanner::new("[1 2]");
        assert_eq!(
            s.check_value(10).unwrap_err().to_string(),
            "expected ',' or a closing bracket at byte 3"
        );
        let mut s = Scanner::new("tru");
        assert_eq!(
            s.value().unwrap_err().to_string(),
            "invalid literal at byte 0"
        );
    }
}
