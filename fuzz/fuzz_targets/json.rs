//! Our JSON reader against serde_json: the same bytes go to `policy_core::json::parse` and to
//! `serde_json::from_slice::<serde_json::Value>` (features `arbitrary_precision`, so numbers
//! keep their text, and `preserve_order`, so objects keep their order). Both must accept or
//! both refuse, and what both accept must be the same value: strings byte for byte, arrays
//! item by item, objects member by member in order, numbers by their text. serde_json writes
//! a number's exponent as `e` with its sign (`1E5` is `1e+5`); ours is normalised that way
//! before comparing, nothing else is.
//!
//! The deliberate differences, each checked rather than skipped:
//! - **Duplicate keys.** Ours keeps every member, in source order, so that validation can
//!   report the duplicate with its path; serde_json keeps one: the last value, at the first
//!   one's position. Ours is reduced the same way before comparing.
//! - **Nesting.** Ours refuses a value nested deeper than `json::MAX_DEPTH` (64) containers,
//!   serde_json more than 127. The depth is counted here on the text itself: where serde_json
//!   accepts a document deeper than 64, ours must refuse it, saying "nesting is too deep";
//!   where ours accepts, the depth must be at most 64.
//! - **serde_json's private number token.** With `arbitrary_precision`, serde_json carries a
//!   number inside its own data model as an object whose one key is
//!   `$serde_json::private::Number`, and reads an object with that first key in the input as
//!   a number, or refuses it. RFC 8259 makes it a plain object, as ours reads it. Such an
//!   object is not compared, and only a document holding one may be accepted by ours and
//!   refused by serde_json.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy_core::json::{self, Value, MAX_DEPTH};

const SERDE_NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// The deepest value's depth (the document itself: 0), counted on valid JSON text: every byte
/// outside strings that starts or continues a value sits inside as many containers as are open.
fn text_depth(text: &[u8]) -> usize {
    let (mut open, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' => {}
            b']' | b'}' => open = open.saturating_sub(1),
            _ => {
                deepest = deepest.max(open);
                match b {
                    b'[' | b'{' => open += 1,
                    b'"' => in_string = true,
                    _ => {}
                }
            }
        }
    }
    deepest
}

/// serde_json's number text for ours: `E` as `e`, and the exponent's sign written out.
fn serde_number_text(ours: &str) -> String {
    match ours.find(['e', 'E']) {
        None => ours.to_owned(),
        Some(at) => {
            let (mantissa, exponent) = (&ours[..at], &ours[at + 1..]);
            let signed = if exponent.starts_with(['+', '-']) {
                exponent.to_owned()
            } else {
                format!("+{exponent}")
            };
            format!("{mantissa}e{signed}")
        }
    }
}

/// One member per key, as serde_json keeps them: at the first one's position, the last one's value.
fn last_wins(members: &[(String, Value)]) -> Vec<(&str, &Value)> {
    let mut kept: Vec<(&str, &Value)> = Vec::new();
    for (key, value) in members {
        match kept.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => kept.push((key, value)),
        }
    }
    kept
}

fn holds_serde_token(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(holds_serde_token),
        Value::Object(members) => {
            members.first().is_some_and(|(key, _)| key == SERDE_NUMBER_TOKEN)
                || members.iter().any(|(_, v)| holds_serde_token(v))
        }
        _ => false,
    }
}

/// Where ours and serde_json's differ, as `path: what`.
fn compare(path: &str, ours: &Value, theirs: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value as S;
    match (ours, theirs) {
        (Value::Object(members), _) if members.first().is_some_and(|(k, _)| k == SERDE_NUMBER_TOKEN) => Ok(()),
        (Value::Null, S::Null) => Ok(()),
        (Value::Bool(a), S::Bool(b)) if a == b => Ok(()),
        (Value::Number(a), S::Number(b)) if serde_number_text(a) == b.to_string() => Ok(()),
        (Value::String(a), S::String(b)) if a == b => Ok(()),
        (Value::Array(a), S::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .try_for_each(|(i, (x, y))| compare(&format!("{path}[{i}]"), x, y)),
        (Value::Object(a), S::Object(b)) => {
            let a = last_wins(a);
            if a.len() != b.len() || a.iter().zip(b).any(|((k, _), (l, _))| k != l) {
                let ours: Vec<&str> = a.iter().map(|(k, _)| *k).collect();
                let theirs: Vec<&str> = b.keys().map(String::as_str).collect();
                return Err(format!("{path}: keys {ours:?}, serde_json {theirs:?}"));
            }
            a.iter()
                .zip(b)
                .try_for_each(|((k, x), (_, y))| compare(&format!("{path}.{k}"), x, y))
        }
        _ => Err(format!("{path}: ours {ours:?}, serde_json {theirs}")),
    }
}

fuzz_target!(|data: &[u8]| {
    let ours = json::parse(data);
    let theirs = serde_json::from_slice::<serde_json::Value>(data);
    match (&ours, &theirs) {
        (Ok(value), Ok(reference)) => {
            assert!(
                text_depth(data) <= MAX_DEPTH,
                "ours accepted nesting deeper than {MAX_DEPTH}"
            );
            if let Err(difference) = compare("", value, reference) {
                panic!("both accept, the values differ at {difference}");
            }
        }
        (Err(error), Ok(_)) => {
            assert!(
                text_depth(data) > MAX_DEPTH && error.message == "nesting is too deep",
                "ours refuses ({error}) what serde_json accepts"
            );
        }
        (Ok(value), Err(error)) => {
            assert!(
                holds_serde_token(value),
                "ours accepts what serde_json refuses ({error})"
            );
        }
        (Err(_), Err(_)) => {}
    }
});
