use super::*;

#[test]
fn parses_nested_values_in_order() {
    let v = parse(br#" {"a": [1, -2.50, 3e2], "b": {"c": null, "d": true}, "a": "x"} "#).unwrap();
    let Value::Object(m) = v else { panic!() };
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].0, "a");
    assert_eq!(
        m[0].1,
        Value::Array(vec![
            Value::Number("1".into()),
            Value::Number("-2.50".into()),
            Value::Number("3e2".into())
        ])
    );
    assert_eq!(m[2].1, Value::String("x".into()));
}

#[test]
fn decodes_escapes_and_surrogates() {
    let v = parse(br#""a\"b\\c\/\n\u00e9\ud83d\ude00""#).unwrap();
    assert_eq!(v, Value::String("a\"b\\c/\n\u{e9}\u{1f600}".into()));
}

#[test]
fn rejects_bad_documents_with_an_offset() {
    for (doc, offset) in [
        (&b"{"[..], 1),
        (b"[1,]", 3),
        (b"01", 1),
        (b"\"abc", 4),
        (b"{\"a\" 1}", 5),
        (b"tru", 0),
        (b"1 2", 2),
        (b"\"\\ud800\"", 7),
        (b"\"a\x01\"", 2),
        (b"-", 1),
        (b"1.", 2),
        (b"\"\xff\"", 3),
    ] {
        let err = parse(doc).unwrap_err();
        assert_eq!(err.offset, offset, "{:?}: {err}", String::from_utf8_lossy(doc));
    }
}

#[test]
fn refuses_deep_nesting_without_overflowing() {
    let doc = "[".repeat(100_000);
    let err = parse(doc.as_bytes()).unwrap_err();
    assert_eq!(err.message, "nesting is too deep");
}
