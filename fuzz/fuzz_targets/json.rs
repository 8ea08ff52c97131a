//! Our JSON reader against serde_json: the same bytes go to `policy_core::json::parse` and to
//! `serde_json::from_slice::<serde_json::Value>`, compared by the rules, and with the documented
//! differences, of policy-core/tests/support/json_against_serde.rs (shared with the native
//! property test policy-core/tests/json.rs). serde_json has `arbitrary_precision` here, so
//! numbers keep their text, and `preserve_order`, so objects keep their order:
//! - numbers are compared by their text. serde_json writes the exponent as `e` with its sign
//!   (`1E5` is `1e+5`); ours is normalised that way before comparing, nothing else is;
//! - objects member by member in order;
//! - serde_json's private number token: with `arbitrary_precision`, serde_json carries a number
//!   inside its data model as an object whose one key is `$serde_json::private::Number`, and
//!   reads an object with that first key in the input as a number, or refuses it. RFC 8259
//!   makes it a plain object, as ours reads it: serde_json's own protocol, not compared.
#![no_main]

#[path = "../../policy-core/tests/support/json_against_serde.rs"]
mod json_against_serde;

use json_against_serde::Reference;
use libfuzzer_sys::fuzz_target;

/// serde_json's number text for ours: `E` as `e`, and the exponent's sign written out.
fn serde_number_text(ours: &str) -> String {
    match ours.find(['e', 'E']) {
        None => ours.to_owned(),
        Some(at) => {
            let (mantissa, exponent) = (&ours[..at], &ours[at + 1..]);
            let sign = if exponent.starts_with(['+', '-']) { "" } else { "+" };
            format!("{mantissa}e{sign}{exponent}")
        }
    }
}

/// serde_json with `arbitrary_precision` and `preserve_order`.
const ARBITRARY_PRECISION: Reference = Reference {
    ordered: true,
    same_number: |ours, theirs| serde_number_text(ours) == theirs.to_string(),
    own_protocol: |members| {
        members
            .first()
            .is_some_and(|(key, _)| key == "$serde_json::private::Number")
    },
};

fuzz_target!(|data: &[u8]| {
    if let Err(difference) = ARBITRARY_PRECISION.agree(data) {
        panic!("our JSON reader and serde_json differ: {difference}");
    }
});
