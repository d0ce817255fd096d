//! Checks an entry against what EventBridge would refuse, before it is sent.
//!
//! The detail is scanned, not parsed into a tree: the scan keeps the exact text (so no
//! digit is lost) and costs one pass.

/// EventBridge refuses JSON nested deeper than this.
pub const MAX_DETAIL_DEPTH: usize = 1000;

/// EventBridge's limit on DetailType, in characters.
pub const MAX_DETAIL_TYPE_CHARS: usize = 128;

/// EventBridge's limit on one Resources ARN, in characters.
pub const MAX_RESOURCE_CHARS: usize = 2048;

/// Why a detail is not one EventBridge accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetailError {
    /// The text is not JSON; says what is wrong and where.
    #[error("detail is not valid JSON: {0}")]
    Syntax(String),
    /// The text is JSON but not an object; names what it is instead (`an array`).
    #[error("detail must be a JSON object, found {0}")]
    NotObject(&'static str),
    /// Objects and arrays are nested too deep.
    #[error("detail is nested deeper than {max} levels")]
    TooDeep {
        /// The deepest nesting allowed.
        max: usize,
    },
    /// An integer outside the signed 64-bit range, as written.
    #[error("detail holds the integer {0}, which does not fit in a signed 64-bit integer")]
    IntegerRange(String),
}

/// Checks that `text` is a JSON object EventBridge would accept as Detail, nested at most
/// `max_depth` deep.
pub fn check_detail(text: &str, max_depth: usize) -> Result<(), DetailError> {
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
        max_depth,
    };
    s.ws();
    let kind = match s.peek() {
        Some(b'{') => None,
        Some(b'[') => Some("an array"),
        Some(b'"') => Some("a string"),
        Some(b't' | b'f') => Some("a bool"),
        Some(b'n') => Some("null"),
        Some(b'-' | b'0'..=b'9') => Some("a number"),
        Some(_) => return Err(s.error("unexpected character")),
        None => return Err(s.error("empty")),
    };
    s.value()?;
    s.ws();
    if s.i != s.b.len() {
        return Err(s.error("trailing characters after the value"));
    }
    match kind {
        None => Ok(()),
        Some(kind) => Err(DetailError::NotObject(kind)),
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    max_depth: usize,
}

enum Frame {
    Object,
    Array,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn error(&self, what: &str) -> DetailError {
        DetailError::Syntax(format!("{what} at byte {}", self.i))
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), DetailError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", c as char)))
        }
    }

    /// One value, iteratively, so depth costs heap, not stack.
    fn value(&mut self) -> Result<(), DetailError> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            // Read one value (or open a container).
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.i += 1;
                    stack.push(Frame::Object);
                    if stack.len() > self.max_depth {
                        return Err(DetailError::TooDeep {
                            max: self.max_depth,
                        });
                    }
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        stack.pop();
                    } else {
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    stack.push(Frame::Array);
                    if stack.len() > self.max_depth {
                        return Err(DetailError::TooDeep {
                            max: self.max_depth,
                        });
                    }
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        stack.pop();
                    } else {
                        continue;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b't') => self.literal("true")?,
                Some(b'f') => self.literal("false")?,
                Some(b'n') => self.literal("null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return Err(self.error("expected a value")),
            }
            // After a value: close containers or move to the next member.
            loop {
                let Some(top) = stack.last() else {
                    return Ok(());
                };
                self.ws();
                match (top, self.peek()) {
                    (_, Some(b',')) => {
                        self.i += 1;
                        if let Frame::Object = top {
                            self.ws();
                            self.key()?;
                        }
                        break;
                    }
                    (Frame::Object, Some(b'}')) | (Frame::Array, Some(b']')) => {
                        self.i += 1;
                        stack.pop();
                    }
                    _ => return Err(self.error("expected ',' or a closing bracket")),
                }
            }
        }
    }

    fn key(&mut self) -> Result<(), DetailError> {
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a string key"));
        }
        self.string()?;
        self.ws();
        self.expect(b':')
    }

    fn literal(&mut self, word: &str) -> Result<(), DetailError> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.error("invalid literal"))
        }
    }

    fn string(&mut self) -> Result<(), DetailError> {
        self.i += 1; // opening quote
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let hex = self.b.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.error("invalid \\u escape"));
                            }
                            self.i += 5;
                        }
                        _ => return Err(self.error("invalid escape")),
                    }
                }
                Some(c) if c < 0x20 => return Err(self.error("control character in string")),
                Some(_) => self.i += 1,
            }
        }
    }

    fn number(&mut self) -> Result<(), DetailError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.i += 1;
                }
            }
            _ => return Err(self.error("invalid number")),
        }
        let int_end = self.i;
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
        }
        if integer && int_end - int_start >= 19 {
            // 19 digits may or may not fit; more never do.
            let text = std::str::from_utf8(&self.b[start..self.i]).unwrap_or_default();
            if text.parse::<i64>().is_err() {
                return Err(DetailError::IntegerRange(text.to_owned()));
            }
        }
        Ok(())
    }
}

/// The size EventBridge charges an entry against its limit: the UTF-8 bytes of Source,
/// DetailType, Detail and each Resources string, plus 14 when Time is set.
pub fn entry_size(
    source: &str,
    detail_type: &str,
    detail: &str,
    resources: &[String],
    has_time: bool,
) -> usize {
    source.len()
        + detail_type.len()
        + detail.len()
        + resources.iter().map(String::len).sum::<usize>()
        + if has_time { 14 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_pass() {
        for ok in [
            "{}",
            r#" {"a": [1, -2.5e3, "x\"\u00e9", true, false, null, {"b": []}]} "#,
            r#"{"max":9223372036854775807,"min":-9223372036854775808,"big":1e300}"#,
        ] {
            assert_eq!(check_detail(ok, MAX_DETAIL_DEPTH), Ok(()), "{ok}");
        }
    }

    #[test]
    fn what_eventbridge_refuses_is_refused() {
        assert_eq!(
            check_detail("[1]", 10),
            Err(DetailError::NotObject("an array"))
        );
        assert_eq!(
            check_detail("\"s\"", 10),
            Err(DetailError::NotObject("a string"))
        );
        assert_eq!(
            check_detail(r#"{"n":9223372036854775808}"#, 10),
            Err(DetailError::IntegerRange("9223372036854775808".into()))
        );
        assert_eq!(
            check_detail(r#"{"n":-12345678901234567890123456789012345678}"#, 10),
            Err(DetailError::IntegerRange(
                "-12345678901234567890123456789012345678".into()
            ))
        );
        for bad in [
            "{",
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1} x"#,
            r#"{a:1}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":[1 2]}"#,
            "",
            "not json",
        ] {
            assert!(
                matches!(check_detail(bad, 10), Err(DetailError::Syntax(_))),
                "{bad:?} should be a syntax error, got {:?}",
                check_detail(bad, 10)
            );
        }
    }

    #[test]
    fn depth_is_bounded_without_recursion() {
        let deep = format!("{}{}", "{\"a\":".repeat(5), "1}}}}}");
        assert_eq!(check_detail(&deep, 5), Ok(()));
        assert_eq!(check_detail(&deep, 4), Err(DetailError::TooDeep { max: 4 }));
        let very = format!("{{\"a\":{}{}}}", "[".repeat(200_000), "]".repeat(200_000));
        assert_eq!(
            check_detail(&very, MAX_DETAIL_DEPTH),
            Err(DetailError::TooDeep {
                max: MAX_DETAIL_DEPTH
            })
        );
    }

    #[test]
    fn size_follows_the_aws_formula() {
        assert_eq!(entry_size("src", "Type", "{}", &[], false), 9);
        assert_eq!(
            entry_size("é", "T", "{}", &["arn:x".to_owned()], true),
            2 + 1 + 2 + 5 + 14
        );
    }
}
