//! An item's stable key and a record's position, as receivers compare them.

use serde_json::value::RawValue;

use super::write_json_string;

/// The stable string of an item's key (see [`ParsedRecord::item_key`](super::ParsedRecord::item_key)), from the keys'
/// typed JSON text.
pub fn item_key(keys_text: &str) -> String {
    let Ok(keys) = serde_json::from_str::<std::collections::BTreeMap<String, &RawValue>>(keys_text)
    else {
        return keys_text.trim().to_owned();
    };
    let mut out = String::with_capacity(keys_text.len());
    out.push('{');
    for (i, (name, value)) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(name, &mut out);
        out.push(':');
        // Values are a tag and a string: dropping whitespace outside strings is enough.
        let mut in_string = false;
        let mut escaped = false;
        for c in value.get().chars() {
            if in_string {
                out.push(c);
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
                out.push(c);
            } else if !c.is_whitespace() {
                out.push(c);
            }
        }
    }
    out.push('}');
    out
}

/// A sequence number as a position: zero-padded to 40 digits (DynamoDB's are at most 40),
/// so positions compare as text the way they compare as numbers.
pub fn position_of(sequence_number: &str) -> String {
    format!("{sequence_number:0>40}")
}
