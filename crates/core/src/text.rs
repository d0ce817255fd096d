//! Text from plugins, records and manifests, made safe to print as one line of a log or a
//! terminal: whoever wrote it cannot start a line the host did not write, move the cursor,
//! or reorder what a reader sees.

use std::borrow::Cow;

/// `text` with every character that could break a line or steer a terminal escaped as
/// Rust writes it (`\n`, `\r`, `\t`, `\u{1b}`, `\u{2028}`): the C0 and C1 controls and DEL,
/// Unicode's line and paragraph separators, and the bidirectional overrides and isolates.
/// Everything else, backslashes included, is kept as written, so ordinary text is unchanged
/// (and borrowed).
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` double-quoted in printable ASCII only: `"` and `\` escaped, every other character
/// outside printable ASCII as `\uXXXX` (or `\UXXXXXXXX` beyond the first plane). Read back by
/// a YAML double-quoted scalar (and, below U+10000, a TOML basic string) as exactly `text`,
/// with no line break, byte-order mark or control character for any reader to act on.
pub fn ascii_quoted(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08X}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

/// Whether `c` must not reach a terminal or a log line as itself.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_line_stays_on_its_own_line() {
        let forged = "ok\nrecords: 1, entries: 1, published: 1\r\x1b[2K\u{85}\u{2028}\u{202e}x";
        let shown = one_line(forged);
        assert!(!shown.chars().any(needs_escape), "{shown}");
        assert_eq!(
            shown,
            "ok\\nrecords: 1, entries: 1, published: 1\\r\\u{1b}[2K\\u{85}\\u{2028}\\u{202e}x"
        );
        assert!(matches!(one_line("plain \\n text, é"), Cow::Borrowed(_)));
    }

    proptest::proptest! {
        #[test]
        fn no_text_escapes_its_line(text in proptest::prelude::any::<String>()) {
            let shown = one_line(&text);
            proptest::prop_assert!(!shown.chars().any(needs_escape));
            proptest::prop_assert!(!shown.contains('\n'));
        }
    }
}
