//! Numbers with every digit DynamoDB stored: [`ExactNumber`], and [`eventbridge_safe`]
//! for the integers EventBridge cannot carry.

use std::fmt;

use serde_json::{Number, Value};

/// A number exactly as DynamoDB stored it (up to 38 significant digits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExactNumber<'a>(pub(crate) &'a Number);

/// A conversion that would change the number's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WouldLoseDigits {
    /// The number, as its exact decimal text.
    pub number: String,
    /// The type it did not fit (`i64`, `u64`, `f64`).
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

    /// As an i64, or an error if it is not a whole number in i64's range. `2.0` and `2e3`
    /// are whole numbers; `2.5` is not.
    pub fn to_i64(&self) -> Result<i64, WouldLoseDigits> {
        self.0
            .as_i64()
            .or_else(|| exact_integer(&self.as_str()).and_then(|i| i64::try_from(i).ok()))
            .ok_or_else(|| self.lose("i64"))
    }

    /// As a u64, or an error if it is not a whole number in u64's range.
    pub fn to_u64(&self) -> Result<u64, WouldLoseDigits> {
        self.0
            .as_u64()
            .or_else(|| exact_integer(&self.as_str()).and_then(|i| u64::try_from(i).ok()))
            .ok_or_else(|| self.lose("u64"))
    }

    /// As an i128, which holds every whole number DynamoDB can store (38 digits), or an
    /// error if it has a fraction.
    pub fn to_i128(&self) -> Result<i128, WouldLoseDigits> {
        exact_integer(&self.as_str()).ok_or_else(|| self.lose("i128"))
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

/// The whole number `text` writes (in any JSON form: `12`, `-1.20e2`), if it is one that
/// fits an i128.
fn exact_integer(text: &str) -> Option<i128> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = digits × 10^(exponent - frac.len())
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let mut scale = exponent.checked_sub(frac.len() as i64)?;
    let mut digits = digits.to_owned();
    while scale < 0 {
        if digits.is_empty() {
            break;
        }
        if !digits.ends_with('0') {
            return None;
        }
        digits.pop();
        scale += 1;
    }
    if digits.is_empty() {
        return Some(0);
    }
    if scale > 38 {
        return None;
    }
    let mut value: i128 = digits.parse().ok()?;
    for _ in 0..scale {
        value = value.checked_mul(10)?;
    }
    Some(if negative { -value } else { value })
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
            if n.as_i64().is_some() {
                return value.clone();
            }
            let text = n.to_string();
            if !text.contains(['.', 'e', 'E']) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Image;

    #[test]
    fn integer_conversions_refuse_to_lose_digits() {
        let img = Image::parse(
            r#"{"big":12345678901234567890123456789012345678,"neg":-99999999999999999999999999999999999999,
                "whole":2.0,"exp":-1.20e2,"half":2.5,"tiny":1e-40,"zero":0.000,"max":18446744073709551615,
                "huge":1e39}"#,
        )
        .expect("json");
        let n = |p: &str| img.number(p).expect(p);
        assert_eq!(
            n("/big").to_i128(),
            Ok(12345678901234567890123456789012345678)
        );
        assert_eq!(
            n("/neg").to_i128(),
            Ok(-99999999999999999999999999999999999999)
        );
        assert_eq!(n("/whole").to_i64(), Ok(2));
        assert_eq!(n("/exp").to_i64(), Ok(-120));
        assert_eq!(n("/zero").to_u64(), Ok(0));
        assert_eq!(n("/max").to_u64(), Ok(u64::MAX));
        let e = n("/max").to_i64().expect_err("above i64");
        assert_eq!(
            e.to_string(),
            "18446744073709551615 does not fit in i64 without losing digits"
        );
        assert!(n("/half").to_i64().is_err());
        assert!(n("/half").to_i128().is_err());
        assert!(n("/tiny").to_i128().is_err());
        assert!(n("/huge").to_i128().is_err());
        assert!(n("/exp").to_u64().is_err());
        assert_eq!(n("/half").to_f64(), Ok(2.5));
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
