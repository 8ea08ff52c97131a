//! Weights as percentages with at most two decimals, read and written exactly: the config's
//! `weight` members, and the CLI's weights.
//!
//! A weight is kept in basis points (0.01% units, 10000 is 100%). [`parse_percent`] reads a
//! decimal number as written (`12.5`, `12.50`, `1250e-2`) without going through a float, so
//! `0.1 + 0.2` problems cannot arise and too many decimals are an error, not a rounding.
//!
//! ```
//! use policy_core::{format_percent, parse_percent, PercentError};
//! assert_eq!(parse_percent("12.50"), Ok(1250));
//! assert_eq!(parse_percent("1250e-2"), Ok(1250));
//! assert_eq!(format_percent(1250), "12.5");
//! let error = parse_percent("12.505").unwrap_err();
//! assert!(matches!(error, PercentError::TooManyDecimals(_)));
//! assert_eq!(error.to_string(), "12.505 has more than two decimals (weights have 0.01% resolution)");
//! ```

use core::fmt;

use crate::config::TOTAL_BASIS_POINTS;

/// Why a text is not a weight. Each variant holds the text as given; the message (Display)
/// names it: `120 is above 100`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PercentError {
    /// Not a number in JSON's syntax (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`), or one
    /// whose exponent does not fit in 64 bits.
    NotANumber(String),
    /// Below zero (`-0` and `-0.0` are zero).
    Negative(String),
    /// Finer than 0.01%.
    TooManyDecimals(String),
    /// Above 100%.
    AboveHundred(String),
}

impl fmt::Display for PercentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PercentError::NotANumber(text) => write!(f, "{text} is not a weight"),
            PercentError::Negative(text) => write!(f, "{text} is negative"),
            PercentError::TooManyDecimals(text) => {
                write!(f, "{text} has more than two decimals (weights have 0.01% resolution)")
            }
            PercentError::AboveHundred(text) => write!(f, "{text} is above 100"),
        }
    }
}

impl core::error::Error for PercentError {}

/// Whether `text` is a number in JSON's syntax.
fn is_json_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    let digits_from = |i: usize| {
        bytes
            .get(i..)
            .map_or(0, |rest| rest.iter().take_while(|b| b.is_ascii_digit()).count())
    };
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits_from(i),
        _ => return false,
    }
    if bytes.get(i) == Some(&b'.') {
        let fraction = digits_from(i + 1);
        if fraction == 0 {
            return false;
        }
        i += 1 + fraction;
    }
    if let Some(b'e' | b'E') = bytes.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = bytes.get(i) {
            i += 1;
        }
        let exponent = digits_from(i);
        if exponent == 0 {
            return false;
        }
        i += exponent;
    }
    i == bytes.len()
}

/// Reads a percentage written as a JSON number (0 to 100, at most two decimals, any spelling:
/// `12.5`, `12.50`, `1.25e1`) into basis points, exactly.
pub fn parse_percent(text: &str) -> Result<u16, PercentError> {
    if !is_json_number(text) {
        return Err(PercentError::NotANumber(text.to_owned()));
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => {
            let exponent = exponent.strip_prefix('+').unwrap_or(exponent);
            match exponent.parse::<i64>() {
                Ok(exponent) => (mantissa, exponent),
                Err(_) => return Err(PercentError::NotANumber(text.to_owned())),
            }
        }
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // The significant digits, leading zeros dropped: value = digits * 10^(exponent - decimals).
    let digits = int_part.bytes().chain(frac_part.bytes()).skip_while(|&b| b == b'0');
    let significant = digits.clone().count();
    if significant == 0 {
        return Ok(0);
    }
    if negative {
        return Err(PercentError::Negative(text.to_owned()));
    }
    // Basis points = value * 100: the digits shifted by this many places (negative: to the right).
    let shift = exponent.saturating_add(2).saturating_sub(frac_part.len() as i64);
    let kept = if shift >= 0 {
        significant
    } else {
        usize::try_from((significant as i64).saturating_add(shift)).unwrap_or(0)
    };
    if digits.clone().skip(kept).any(|b| b != b'0') {
        return Err(PercentError::TooManyDecimals(text.to_owned()));
    }
    let zeros = shift.max(0);
    // 10000 has five digits: six or more (after the shift) are above 100 whatever they are.
    if (kept as i64).saturating_add(zeros) > 6 {
        return Err(PercentError::AboveHundred(text.to_owned()));
    }
    let mut value: u64 = 0;
    for b in digits.take(kept) {
        value = value * 10 + u64::from(b - b'0');
    }
    for _ in 0..zeros {
        value *= 10;
    }
    if value > u64::from(TOTAL_BASIS_POINTS) {
        return Err(PercentError::AboveHundred(text.to_owned()));
    }
    Ok(value as u16)
}

/// Formats basis points as a percentage without trailing zeros (`1250` -> `12.5`).
pub fn format_percent(basis_points: u32) -> String {
    let whole = basis_points / 100;
    let frac = basis_points % 100;
    if frac == 0 {
        format!("{whole}")
    } else if frac.is_multiple_of(10) {
        format!("{whole}.{}", frac / 10)
    } else {
        format!("{whole}.{frac:02}")
    }
}

#[cfg(test)]
mod tests;
