//! Checks an entry against what EventBridge would refuse, before it is sent.
//!
//! The detail is scanned, not parsed into a tree, by the crate's one JSON scanner (the
//! private `json` module, which the image reader uses too): the scan keeps the exact text
//! (so no digit is lost) and costs one pass.

use crate::json::{JsonError, Scanner};

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
    let mut s = Scanner::new(text);
    let kind = match s.peek() {
        Some(b'{') => None,
        Some(b'[') => Some("an array"),
        Some(b'"') => Some("a string"),
        Some(b't' | b'f') => Some("a bool"),
        Some(b'n') => Some("null"),
        Some(b'-' | b'0'..=b'9') => Some("a number"),
        Some(_) => return Err(syntax(s.error("unexpected character"))),
        None => return Err(syntax(s.error("empty"))),
    };
    s.check_value(max_depth).map_err(syntax)?;
    s.end().map_err(syntax)?;
    match kind {
        None => Ok(()),
        Some(kind) => Err(DetailError::NotObject(kind)),
    }
}

/// The scanner's finding as a [`DetailError`].
fn syntax(e: JsonError) -> DetailError {
    match e {
        JsonError::TooDeep { max } => DetailError::TooDeep { max },
        JsonError::IntegerRange(n) => DetailError::IntegerRange(n),
        e @ JsonError::Syntax { .. } => DetailError::Syntax(e.to_string()),
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
