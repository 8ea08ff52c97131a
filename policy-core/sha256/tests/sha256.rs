#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! The FIPS 180-4 example vectors, every length around the padding boundaries, and random
//! messages split into random parts, against the `sha2` crate.
#![cfg(not(target_arch = "wasm32"))]

use policy_sha256::sha256;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn reference(message: &[u8]) -> [u8; 32] {
    Sha256::digest(message).into()
}

#[test]
fn fips_180_examples() {
    let cases: [(&[u8], &str); 4] = [
        (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        ),
        (
            b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
        ),
    ];
    for (message, expected) in cases {
        assert_eq!(
            hex(&sha256(&[message])),
            expected,
            "{:?}",
            String::from_utf8_lossy(message)
        );
    }
    let million = vec![b'a'; 1_000_000];
    assert_eq!(
        hex(&sha256(&[&million])),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
}

#[test]
fn every_length_around_the_padding_boundaries() {
    // 55 bytes is the last that fits one block with its padding; 56..=63 need a second one.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(300).collect();
    for len in 0..=bytes.len() {
        let message = &bytes[..len];
        assert_eq!(sha256(&[message]), reference(message), "length {len}");
        let (a, b) = message.split_at(len / 3);
        assert_eq!(sha256(&[a, &[], b]), reference(message), "length {len} in parts");
    }
}

proptest! {
    #[test]
    fn parts_hash_as_their_concatenation(
        parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..150), 0..6)
    ) {
        let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(sha256(&slices), reference(&parts.concat()));
    }
}
