//! DynamoDB's number grammar and range, and a number's JSON form with every digit kept.

/// DynamoDB numbers carry at most 38 significant digits.
pub const MAX_NUMBER_DIGITS: usize = 38;

/// The smallest magnitude DynamoDB stores is 1E-130; the largest 9.99...E+125 (38 nines).
pub const MIN_NUMBER_EXPONENT: i64 = -130;

/// See [`MIN_NUMBER_EXPONENT`].
pub const MAX_NUMBER_EXPONENT: i64 = 125;

/// A DynamoDB number's text as the JSON number [`transcode_image`](super::transcode_image) writes for it.
pub(crate) fn number_as_json(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    write_number(text, &mut out)?;
    Ok(out)
}

/// Writes a DynamoDB number as a JSON number, keeping every digit.
///
/// DynamoDB's grammar is looser than JSON's (`+1`, `.5`, `5.`, `007`), so the text is
/// normalised to JSON's form without changing its value or dropping a digit.
pub(super) fn write_number(text: &str, out: &mut String) -> Result<(), String> {
    let shown = Shown(text);
    let n = parse_number(text).map_err(|why| format!("N value {shown} is not a number: {why}"))?;
    let digits = n.significant_digits();
    if digits > MAX_NUMBER_DIGITS {
        return Err(format!(
            "N value {shown} has {digits} significant digits; DynamoDB allows {MAX_NUMBER_DIGITS}"
        ));
    }
    if let Some(e) = n.exponent()
        && !(MIN_NUMBER_EXPONENT..=MAX_NUMBER_EXPONENT).contains(&e)
    {
        return Err(format!(
            "N value {shown} is outside DynamoDB's range (a magnitude from 1E{MIN_NUMBER_EXPONENT} to 9.99...E+{MAX_NUMBER_EXPONENT}, or 0)"
        ));
    }
    n.write_json(out);
    Ok(())
}

struct Number<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
    exp: Option<(bool, &'a str)>,
}

fn parse_number(text: &str) -> Result<Number<'_>, &'static str> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut negative = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        negative = b[i] == b'-';
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int = &text[int_start..i];
    let mut frac = "";
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac = &text[s..i];
    }
    if int.is_empty() && frac.is_empty() {
        return Err("no digits");
    }
    let mut exp = None;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let mut exp_negative = false;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            exp_negative = b[i] == b'-';
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if s == i {
            return Err("exponent has no digits");
        }
        exp = Some((exp_negative, &text[s..i]));
    }
    if i != b.len() {
        return Err("unexpected character");
    }
    Ok(Number {
        negative,
        int,
        frac,
        exp,
    })
}

/// A value in an error message: quoted and escaped, and cut after 64 characters (a number
/// can be 400 KB of digits).
struct Shown<'a>(&'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MOST: usize = 64;
        match self.0.char_indices().nth(MOST) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}... ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

impl Number<'_> {
    /// The decimal exponent of the first significant digit (`123` is 2, `0.05` is -2),
    /// or `None` for zero. An exponent too long to add up is saturated: far out of range.
    fn exponent(&self) -> Option<i64> {
        let first = self
            .int
            .bytes()
            .chain(self.frac.bytes())
            .position(|c| c != b'0')?;
        let int_len = i64::try_from(self.int.len()).unwrap_or(i64::MAX);
        let first = i64::try_from(first).unwrap_or(i64::MAX);
        let written = match self.exp {
            None => 0,
            Some((negative, digits)) => {
                let digits = digits.trim_start_matches('0');
                let magnitude = if digits.len() > 15 {
                    i64::MAX / 4
                } else {
                    digits.parse::<i64>().unwrap_or(i64::MAX / 4)
                };
                if negative { -magnitude } else { magnitude }
            }
        };
        Some(
            int_len
                .saturating_sub(1)
                .saturating_sub(first)
                .saturating_add(written),
        )
    }

    fn significant_digits(&self) -> usize {
        let all = self.int.bytes().chain(self.frac.bytes());
        let trimmed: Vec<u8> = all.skip_while(|&c| c == b'0').collect();
        trimmed
            .iter()
            .rposition(|&c| c != b'0')
            .map_or(0, |p| p + 1)
    }

    fn write_json(&self, out: &mut String) {
        let int = self.int.trim_start_matches('0');
        if self.negative {
            out.push('-');
        }
        if int.is_empty() {
            out.push('0');
        } else {
            out.push_str(int);
        }
        if !self.frac.is_empty() {
            out.push('.');
            out.push_str(self.frac);
        }
        if let Some((neg, digits)) = self.exp {
            out.push('e');
            if neg {
                out.push('-');
            }
            out.push_str(digits);
        }
    }
}
