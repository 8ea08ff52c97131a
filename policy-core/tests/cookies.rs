#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! Cookie headers as browsers (and attackers) send them, read by `cookie::find`.
//! RFC 6265 §4.2 (what a user agent sends) and §5.4; the unit tests beside the
//! code cover the basic shapes, these cover the edges one case each.
//! Runs natively and, through wasm-bindgen-test, compiled to wasm.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use policy_core::cookie::find;
use policy_core::{KeySource, Policy, Request};

fn found<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    find(header, name.as_bytes())
}

#[test]
fn optional_white_space_is_dropped_around_names_and_values_only() {
    assert_eq!(found(b"session=abc", "session"), Some(&b"abc"[..]));
    assert_eq!(found(b"a=1;session=abc", "session"), Some(&b"abc"[..]));
    assert_eq!(found(b"a=1;   session   =   abc   ", "session"), Some(&b"abc"[..]));
    assert_eq!(found(b"\tsession\t=\tabc\t;b=2", "session"), Some(&b"abc"[..]));
    // Inside a value white space is part of the value.
    assert_eq!(found(b"session=a b  c", "session"), Some(&b"a b  c"[..]));
    // Only SP and HTAB are white space here: CR, LF, VT and NBSP are value bytes.
    assert_eq!(found(b"session=\x0babc\x0b", "session"), Some(&b"\x0babc\x0b"[..]));
    assert_eq!(found(b"session=\xa0abc", "session"), Some(&b"\xa0abc"[..]));
}

#[test]
fn separators_are_forgiving() {
    assert_eq!(found(b";session=abc", "session"), Some(&b"abc"[..]));
    assert_eq!(found(b"session=abc;", "session"), Some(&b"abc"[..]));
    assert_eq!(found(b";;; ;session=abc;;", "session"), Some(&b"abc"[..]));
    // HTTP/2 clients send one `cookie` header per pair; Envoy joins them with "; ".
    assert_eq!(found(b"a=1; session=abc; b=2", "session"), Some(&b"abc"[..]));
    // A comma is not a separator in a Cookie header: it stays in the value.
    assert_eq!(found(b"session=abc,def", "session"), Some(&b"abc,def"[..]));
    assert_eq!(found(b"a=1, session=abc", "session"), None);
}

#[test]
fn quoted_values_keep_their_quotes() {
    assert_eq!(found(br#"session="abc""#, "session"), Some(&br#""abc""#[..]));
    assert_eq!(found(br#"session=" a b ""#, "session"), Some(&br#"" a b ""#[..]));
    // `""` is two bytes, so a non-empty key (RFC 6265 allows a quoted empty value).
    assert_eq!(found(br#"session="""#, "session"), Some(&br#""""#[..]));
    // An unbalanced quote is taken as it is.
    assert_eq!(found(br#"session="abc; b=2"#, "session"), Some(&br#""abc"#[..]));
}

/// Written in the module doc: the first non-empty occurrence wins.
#[test]
fn duplicate_names_first_non_empty_wins() {
    assert_eq!(found(b"session=first; session=second", "session"), Some(&b"first"[..]));
    assert_eq!(found(b"session=; session=second", "session"), Some(&b"second"[..]));
    assert_eq!(
        found(b"session=  ; session=\t; session=third", "session"),
        Some(&b"third"[..])
    );
    assert_eq!(found(b"session; session=second", "session"), Some(&b"second"[..]));
    assert_eq!(found(b"session=; session=", "session"), None);
    let doc = include_str!("../src/cookie.rs");
    assert!(
        doc.contains("**first non-empty** one wins"),
        "the module doc states which duplicate wins"
    );
}

#[test]
fn names_are_case_sensitive() {
    assert_eq!(found(b"Session=upper; session=lower", "session"), Some(&b"lower"[..]));
    assert_eq!(found(b"Session=upper; session=lower", "Session"), Some(&b"upper"[..]));
    assert_eq!(found(b"SESSION=upper", "session"), None);
    assert_eq!(found(b"ID=1; Id=2; iD=3", "id"), None);
}

#[test]
fn names_match_whole_not_by_prefix_or_suffix() {
    assert_eq!(found(b"sessionx=1; xsession=2; session_=3", "session"), None);
    assert_eq!(found(b"__Host-session=abc", "session"), None);
    assert_eq!(found(b"__Host-session=abc", "__Host-session"), Some(&b"abc"[..]));
}

#[test]
fn empty_values_are_no_cookie() {
    assert_eq!(found(b"session=", "session"), None);
    assert_eq!(found(b"session=   ", "session"), None);
    assert_eq!(found(b"session", "session"), None);
    assert_eq!(found(b"", "session"), None);
    assert_eq!(found(b"=abc", "session"), None);
    assert_eq!(found(b"  =abc; session=x", "session"), Some(&b"x"[..]));
}

#[test]
fn values_may_hold_equals_signs() {
    assert_eq!(found(b"session=a=b==", "session"), Some(&b"a=b=="[..]));
    assert_eq!(found(b"session==abc", "session"), Some(&b"=abc"[..]));
}

#[test]
fn invalid_bytes_are_carried_not_rejected() {
    // Not UTF-8, controls, NUL, DEL: no error, the key is the bytes as sent.
    assert_eq!(
        found(b"session=\xff\xfe\x00\x01\x7f", "session"),
        Some(&b"\xff\xfe\x00\x01\x7f"[..])
    );
    assert_eq!(found(b"\xff\xfe=1; session=ok", "session"), Some(&b"ok"[..]));
    assert_eq!(found(b"ses\x00sion=1; session=ok", "session"), Some(&b"ok"[..]));
    assert_eq!(found(b"session=caf\xc3\xa9", "session"), Some("café".as_bytes()));
}

#[test]
fn a_thousand_cookies() {
    let header: Vec<u8> = (0..1000)
        .map(|i| format!("c{i}=value-{i}"))
        .collect::<Vec<_>>()
        .join("; ")
        .into_bytes();
    assert_eq!(found(&header, "c0"), Some(&b"value-0"[..]));
    assert_eq!(found(&header, "c500"), Some(&b"value-500"[..]));
    assert_eq!(found(&header, "c999"), Some(&b"value-999"[..]));
    assert_eq!(found(&header, "c1000"), None);
    // A thousand empty duplicates before the real one.
    let mut header = b"session=; ".repeat(1000);
    header.extend_from_slice(b"session=last");
    assert_eq!(found(&header, "session"), Some(&b"last"[..]));
}

#[test]
fn a_64_kib_header() {
    // One huge value: the key is all of it.
    let mut header = b"session=".to_vec();
    header.extend(std::iter::repeat_n(b'k', 64 * 1024));
    assert_eq!(found(&header, "session").map(<[u8]>::len), Some(64 * 1024));
    // 64 KiB of other cookies before the one we want.
    let mut header = b"padding=".to_vec();
    header.extend(std::iter::repeat_n(b'p', 64 * 1024));
    header.extend_from_slice(b"; session=abc");
    assert_eq!(found(&header, "session"), Some(&b"abc"[..]));
    // 64 KiB of separators only.
    assert_eq!(found(&b";".repeat(64 * 1024), "session"), None);
    assert_eq!(found(&b"=".repeat(64 * 1024), "session"), None);
}

/// A request that only has a Cookie header.
struct Cookies(&'static [u8]);

impl Request for Cookies {
    type Header = Vec<u8>;
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        (name == "cookie").then(|| self.0.to_vec())
    }
    fn client_address(&mut self) -> Option<Vec<u8>> {
        None
    }
    fn random(&mut self) -> Option<[u8; 16]> {
        None
    }
}

#[test]
fn the_decision_hashes_the_value_exactly_as_found() {
    let policy = Policy::from_json(
        br#"{"routes": [{"name": "app", "hosts": ["*"], "salt": "s1",
          "versions": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}],
          "key_chain": [{"cookie": "session"}]}]}"#,
    )
    .unwrap();
    let route = &policy.routes()[0];
    let cases: [(&'static [u8], &[u8]); 4] = [
        (b"  session = \"quoted value\" ; x=1", b"\"quoted value\""),
        (b"Session=no; session=; session=\xff\xfe", b"\xff\xfe"),
        (b"session=a b", b"a b"),
        (b"session=x=y", b"x=y"),
    ];
    for (header, key) in cases {
        let decision = route.decide(&mut Cookies(header));
        assert_eq!(decision.source, KeySource::Cookie);
        assert_eq!(decision.bucket, Some(policy_core::bucket(b"s1", key)));
    }
    let none = route.decide(&mut Cookies(b"Session=abc; session=; SESSION=x"));
    assert_eq!((none.source, none.version), (KeySource::None, 0));
}
