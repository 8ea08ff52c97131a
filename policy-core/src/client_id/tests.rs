use super::*;

const ID: &[u8] = b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5";

#[test]
fn stamped_and_unstamped_ids_have_the_same_key() {
    assert_eq!(
        ClientId::parse(ID),
        ClientId {
            key: ID,
            stamp: None,
            issued: None,
            seen: None
        }
    );
    let stamped = [ID, b".20415"].concat();
    assert_eq!(
        ClientId::parse(&stamped),
        ClientId {
            key: ID,
            stamp: Some(20415),
            issued: None,
            seen: None,
        }
    );
    let zero = [ID, b".0"].concat();
    assert_eq!(ClientId::parse(&zero).stamp, Some(0));
}

#[test]
fn cut_over_values_keep_the_key_and_carry_their_times() {
    let value = [ID, b".20415.1764820000.1764820300"].concat();
    assert_eq!(
        ClientId::parse(&value),
        ClientId {
            key: ID,
            stamp: Some(20415),
            issued: Some(1_764_820_000),
            seen: Some(1_764_820_300),
        }
    );
    let zero = [ID, b".1.0.0"].concat();
    assert_eq!(ClientId::parse(&zero).issued, Some(0));
}

#[test]
fn odd_values_are_whole_keys() {
    for value in [
        &b""[..],
        b"abc",
        b"abc.123",
        b"0AF1C3E5D7B9A8F6E4C2B0A9F8E7D6C5.1", // upper case: not an issued id
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.",  // no digits
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.1234567890", // too many digits
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.-1",
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.1.2",
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.1.2.3.4", // a cut-over value has exactly three parts
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.1.2.",
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.1..3",
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.1.1234567890123.3", // 13 digits
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.1.2.x",
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5x.1",
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5 .1",
        b"\xff\xfe0af1c3e5d7b9a8f6e4c2b0a9f8e7d6.1",
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.\xff",
    ] {
        assert_eq!(
            ClientId::parse(value),
            ClientId {
                key: value,
                stamp: None,
                issued: None,
                seen: None,
            },
            "{value:?}"
        );
    }
}

#[test]
fn refresh_rules() {
    let id = |stamp| ClientId {
        key: ID,
        stamp,
        issued: None,
        seen: None,
    };
    assert!(id(None).needs_refresh(100, 1), "an unstamped id is stamped once");
    assert!(!id(Some(100)).needs_refresh(100, 1));
    assert!(id(Some(99)).needs_refresh(100, 1));
    assert!(!id(Some(95)).needs_refresh(100, 7));
    assert!(id(Some(93)).needs_refresh(100, 7));
    assert!(
        !id(Some(101)).needs_refresh(100, 1),
        "a stamp from the future is left alone"
    );
    assert!(!id(Some(u32::MAX)).needs_refresh(100, 1));
    assert!(id(Some(0)).needs_refresh(u32::MAX, 1));
    let other = ClientId {
        key: b"alice",
        stamp: None,
        issued: None,
        seen: None,
    };
    assert!(!other.needs_refresh(100, 1), "only ids the filter issues are refreshed");
}

#[test]
fn ids_are_32_lowercase_hex_digits() {
    assert_eq!(hex_id([0xab; 16]), "ab".repeat(16));
    assert_eq!(hex_id([0; 16]).len(), 32);
    let derived = identity_id(b"my-app", b"alice");
    assert!(is_id(derived.as_bytes()), "{derived}");
    assert_ne!(derived, identity_id(b"other-app", b"alice"));
    assert_ne!(derived, identity_id(b"my-app", b"bob"));
}

#[test]
fn days() {
    assert_eq!(day_of(0), 0);
    assert_eq!(day_of(86_399), 0);
    assert_eq!(day_of(86_400), 1);
    assert_eq!(day_of(1_763_856_000), 20415);
    assert_eq!(day_of(u64::MAX), u32::MAX);
}
