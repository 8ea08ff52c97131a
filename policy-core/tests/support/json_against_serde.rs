//! Our JSON reader against serde_json, the comparison shared by tests/json.rs (generated input,
//! serde_json at its default features) and the `json` fuzz target (any bytes, serde_json with
//! `arbitrary_precision` and `preserve_order`), which includes this file.
//!
//! Both readers must accept or both refuse, and what both accept must be the same value:
//! strings byte for byte, arrays item by item, objects member by member, numbers as the
//! [`Reference`] says. The deliberate differences, each checked rather than skipped:
//! - **Duplicate keys.** Ours keeps every member, in source order, so that validation can
//!   report the duplicate with its path; serde_json's map keeps one: the last value, at the
//!   first one's position (or in key order, without `preserve_order`). Ours is reduced the
//!   same way before comparing.
//! - **Nesting.** Ours refuses a value nested in more than `json::MAX_DEPTH` (64) containers,
//!   serde_json in more than 127. The depth is counted here on the text itself: where
//!   serde_json accepts a document deeper than 64, ours must refuse it, saying "nesting is too
//!   deep"; where ours accepts, the depth must be at most 64.
//! - **Objects serde_json reads by rules of its own** ([`Reference::own_protocol`]): not
//!   compared, and only a document holding one may be accepted by ours and refused by serde_json.

use policy_core::json::{parse, Value, MAX_DEPTH};

/// How the serde_json at hand reads what ours reads.
pub struct Reference {
    /// Whether its objects keep their members' order (feature `preserve_order`).
    pub ordered: bool,
    /// Whether a number it read is the one ours read (ours keeps the source text).
    pub same_number: fn(&str, &serde_json::Number) -> bool,
    /// Whether it reads this object, as ours read it, by rules of its own.
    pub own_protocol: fn(&[(String, Value)]) -> bool,
}

impl Reference {
    /// The same verdict on `text`, and the same value when both accept; else what differs.
    pub fn agree(&self, text: &[u8]) -> Result<(), String> {
        match (parse(text), serde_json::from_slice::<serde_json::Value>(text)) {
            (Ok(ours), Ok(theirs)) if text_depth(text) <= MAX_DEPTH => self.compare("", &ours, &theirs),
            (Ok(_), Ok(_)) => Err(format!("ours accepts nesting deeper than {MAX_DEPTH}")),
            (Err(e), Ok(_)) if text_depth(text) > MAX_DEPTH && e.message == "nesting is too deep" => Ok(()),
            (Err(e), Ok(_)) => Err(format!("ours refuses ({e}) what serde_json accepts")),
            (Ok(ours), Err(_)) if self.holds_own_protocol(&ours) => Ok(()),
            (Ok(_), Err(e)) => Err(format!("ours accepts what serde_json refuses ({e})")),
            (Err(_), Err(_)) => Ok(()),
        }
    }

    fn holds_own_protocol(&self, value: &Value) -> bool {
        match value {
            Value::Array(items) => items.iter().any(|v| self.holds_own_protocol(v)),
            Value::Object(members) => {
                (self.own_protocol)(members) || members.iter().any(|(_, v)| self.holds_own_protocol(v))
            }
            _ => false,
        }
    }

    /// Where ours and serde_json's values differ, as `path: what`.
    pub fn compare(&self, path: &str, ours: &Value, theirs: &serde_json::Value) -> Result<(), String> {
        use serde_json::Value as S;
        match (ours, theirs) {
            (Value::Object(members), _) if (self.own_protocol)(members) => Ok(()),
            (Value::Null, S::Null) => Ok(()),
            (Value::Bool(a), S::Bool(b)) if a == b => Ok(()),
            (Value::Number(a), S::Number(b)) if (self.same_number)(a, b) => Ok(()),
            (Value::String(a), S::String(b)) if a == b => Ok(()),
            (Value::Array(a), S::Array(b)) if a.len() == b.len() => a
                .iter()
                .zip(b)
                .enumerate()
                .try_for_each(|(i, (x, y))| self.compare(&format!("{path}[{i}]"), x, y)),
            (Value::Object(a), S::Object(b)) => {
                let mut a = last_wins(a);
                if !self.ordered {
                    a.sort_by_key(|(key, _)| *key);
                }
                if !a.iter().map(|(key, _)| *key).eq(b.keys().map(String::as_str)) {
                    let ours: Vec<&str> = a.iter().map(|(key, _)| *key).collect();
                    let theirs: Vec<&str> = b.keys().map(String::as_str).collect();
                    return Err(format!("{path}: keys {ours:?}, serde_json {theirs:?}"));
                }
                a.iter()
                    .zip(b)
                    .try_for_each(|((key, x), (_, y))| self.compare(&format!("{path}.{key}"), x, y))
            }
            _ => Err(format!("{path}: ours {ours:?}, serde_json {theirs}")),
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

/// The deepest value's depth (the document itself: 0), counted on valid JSON text: every byte
/// outside strings that starts or continues a value sits inside as many containers as are open.
pub fn text_depth(text: &[u8]) -> usize {
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
