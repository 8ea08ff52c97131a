#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! Our JSON reader against serde_json on generated JSON-ish input: the same verdict, and the
//! same value when both accept (tests/support/json_against_serde.rs has the rules and the
//! documented differences). The quick, stable-toolchain twin of the `json` fuzz target, which
//! compares on any bytes, numbers by their text and objects in order. Natively serde_json keeps
//! its default features (a dev-dependency's features would reach the CLI's serde_json too), so:
//! - numbers are compared by value: serde_json's integer exactly, its float bit for bit with
//!   the correctly rounded `f64` of our text. serde_json's default float reading is exact only
//!   for up to 15 significant digits times a power of ten up to 10^22, and it refuses numbers
//!   beyond `f64`, so the generated numbers stay in that range (the fuzz target covers the rest);
//! - objects are compared in key order, as its map keeps them.
#![cfg(not(target_arch = "wasm32"))]

#[path = "support/json_against_serde.rs"]
mod json_against_serde;

use json_against_serde::Reference;
use policy_core::json::{parse, Value};
use proptest::prelude::*;

/// serde_json at its default features.
const DEFAULT_FEATURES: Reference = Reference {
    ordered: false,
    same_number: |text, number| {
        if let Some(u) = number.as_u64() {
            text.parse::<u64>() == Ok(u)
        } else if let Some(i) = number.as_i64() {
            text.parse::<i64>() == Ok(i)
        } else {
            text.parse::<f64>().ok().map(f64::to_bits) == number.as_f64().map(f64::to_bits)
        }
    },
    own_protocol: |_| false,
};

fn agree(text: &[u8]) -> Result<(), String> {
    DEFAULT_FEATURES.agree(text)
}

fn bytes(text: &'static str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

/// White space, now and then a byte JSON does not count as white space.
fn space() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => Just(Vec::new()),
        4 => prop::sample::select(vec![" ", "\t", "\n", "\r", "\r\n  "]).prop_map(bytes),
        1 => prop::sample::select(vec![&b"\x0c"[..], b"\xc2\xa0", b"\x00", b"\xef\xbb\xbf"]).prop_map(<[u8]>::to_vec),
    ]
}

/// Numbers in the range serde_json reads exactly; now and then one outside JSON's syntax.
fn number() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => "-?(0|[1-9][0-9]{0,5})(\\.[0-9]{1,6})?([eE][+-]?[0-9])?".prop_map(String::into_bytes),
        1 => prop::sample::select(vec!["01", "-01", "1.", ".5", "-", "+1", "1e", "1e+", "1.5.2", "0x1", "NaN", "-Infinity", "1_0"])
            .prop_map(bytes),
    ]
}

/// One piece of a string's body: characters, escapes (good and bad), bytes that are not UTF-8.
fn string_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        10 => "[a-z0-9 $:_-]{0,4}".prop_map(String::into_bytes),
        3 => prop::sample::select(vec!["\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "é", "😀", "\u{7f}"]).prop_map(bytes),
        3 => (0u32..=0xffff).prop_map(|code| format!("\\u{code:04x}").into_bytes()),
        2 => ((0xd800u32..0xdc00), (0xdc00u32..0xe000)).prop_map(|(high, low)| format!("\\u{high:04X}\\u{low:04x}").into_bytes()),
        1 => prop::sample::select(vec![&b"\\x"[..], b"\\u12", b"\\", b"\x01", b"\x1f", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"])
            .prop_map(<[u8]>::to_vec),
    ]
}

fn string() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(string_piece(), 0..4), prop::bool::weighted(0.97)).prop_map(|(pieces, closed)| {
        let mut out = vec![b'"'];
        out.extend(pieces.concat());
        if closed {
            out.push(b'"');
        }
        out
    })
}

/// Object keys from a small set, so that duplicates (also spelt with escapes) are common.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::sample::select(vec!["\"a\"", "\"b\"", "\"\\u0061\"", "\"\"", "\"é\""]).prop_map(bytes),
        2 => string(),
        1 => prop::sample::select(vec!["a", "1", "null", "'a'"]).prop_map(bytes),
    ]
}

fn scalar() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => number(),
        4 => string(),
        3 => prop::sample::select(vec!["true", "false", "null"]).prop_map(bytes),
        1 => prop::sample::select(vec!["tru", "nul", "True", "falsey", "undefined", "}", "]", ","]).prop_map(bytes),
    ]
}

/// Between items: a comma, now and then something else.
fn separator() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![20 => Just(bytes(",")), 1 => prop::sample::select(vec![",,", ";", ":", " , ,"]).prop_map(bytes)]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        8 => scalar(),
        // 60 to 70 containers around a scalar: either side of MAX_DEPTH.
        1 => (60usize..=70, scalar(), any::<bool>()).prop_map(|(depth, inner, objects)| {
            let (open, close): (&[u8], &[u8]) = if objects { (b"{\"k\":", b"}") } else { (b"[", b"]") };
            [open.repeat(depth), inner, close.repeat(depth)].concat()
        }),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let item = (space(), inner.clone(), space()).prop_map(|(a, v, b)| [a, v, b].concat());
        let member = (
            space(),
            key(),
            space(),
            prop::bool::weighted(0.97),
            space(),
            inner,
            space(),
        )
            .prop_map(|(a, k, b, colon, c, v, d)| {
                [a, k, b, if colon { bytes(":") } else { Vec::new() }, c, v, d].concat()
            });
        let join = |parts: Vec<(Vec<u8>, Vec<u8>)>, trailing: bool| {
            let mut out = Vec::new();
            for (i, (part, separator)) in parts.iter().enumerate() {
                if i > 0 {
                    out.extend(separator);
                }
                out.extend(part);
            }
            if trailing && !parts.is_empty() {
                out.push(b',');
            }
            out
        };
        prop_oneof![
            (
                prop::collection::vec((item, separator()), 0..5),
                prop::bool::weighted(0.03),
                space()
            )
                .prop_map(move |(items, trailing, s)| [bytes("["), s, join(items, trailing), bytes("]")].concat()),
            (
                prop::collection::vec((member, separator()), 0..5),
                prop::bool::weighted(0.03),
                space()
            )
                .prop_map(move |(members, trailing, s)| [
                    bytes("{"),
                    s,
                    join(members, trailing),
                    bytes("}")
                ]
                .concat()),
        ]
    })
}

/// A document: a value in white space, now and then followed by something more.
fn document() -> impl Strategy<Value = Vec<u8>> {
    let after = prop_oneof![20 => Just(Vec::new()), 1 => prop::sample::select(vec![" 1", "x", ",", "}", " {}", "\"a\""]).prop_map(bytes)];
    (space(), value(), space(), after).prop_map(|(a, v, b, c)| [a, v, b, c].concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn our_reader_agrees_with_serde_json(text in document()) {
        if let Err(difference) = agree(&text) {
            prop_assert!(false, "{difference}\n  input: {:?}", String::from_utf8_lossy(&text));
        }
    }
}

/// The generator reaches every verdict and both sides of the depth limit (a generator that only
/// produced invalid documents would agree trivially).
#[test]
fn the_generated_documents_cover_every_verdict() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut accepted, mut refused, mut too_deep, mut duplicates) = (0, 0, 0, 0);
    for _ in 0..4_000 {
        let text = document().new_tree(&mut runner).unwrap().current();
        match parse(&text) {
            Ok(Value::Object(members))
                if members
                    .iter()
                    .enumerate()
                    .any(|(i, (k, _))| members[..i].iter().any(|(l, _)| l == k)) =>
            {
                duplicates += 1;
                accepted += 1;
            }
            Ok(_) => accepted += 1,
            Err(e) if e.message == "nesting is too deep" => too_deep += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(
        accepted > 400 && refused > 400 && too_deep > 20 && duplicates > 20,
        "accepted {accepted}, refused {refused}, too deep {too_deep}, with duplicate keys {duplicates}"
    );
}

#[test]
fn the_differences_are_the_documented_ones() {
    // Duplicate keys: ours keeps both members, serde_json the last value.
    let text = br#"{"a": 1, "b": 2, "a": {"c": [true]}}"#;
    let Ok(Value::Object(members)) = parse(text) else {
        panic!()
    };
    assert_eq!(members.len(), 3);
    assert_eq!(agree(text), Ok(()));
    // Nesting: 64 containers around a value are fine for both; 65 only for serde_json.
    let nest = |depth: usize| ["[".repeat(depth), "1".into(), "]".repeat(depth)].concat();
    assert!(parse(nest(64).as_bytes()).is_ok());
    assert_eq!(parse(nest(65).as_bytes()).unwrap_err().message, "nesting is too deep");
    assert!(serde_json::from_str::<serde_json::Value>(&nest(65)).is_ok());
    assert_eq!(agree(nest(65).as_bytes()), Ok(()));
    // A real difference is reported.
    let compare = |ours: &Value, theirs: serde_json::Value| DEFAULT_FEATURES.compare("", ours, &theirs);
    assert!(compare(&Value::Number("1.5".into()), serde_json::json!(1.25)).is_err());
    assert!(compare(
        &Value::Object(vec![("a".into(), Value::Null)]),
        serde_json::json!({"b": null})
    )
    .is_err());
}
