//! The bucket: where a key falls in 0..10000, the same on every replica.
//!
//! `bucket(salt, key)` = the first 8 bytes of SHA-256(salt ‖ 0x00 ‖ key), read
//! as a big-endian u64, modulo 10000. docs/assignment.md has the test vectors.
//!
//! ```
//! // docs/assignment.md, the first test vector: salt `my-app`, key `user-42`.
//! assert_eq!(policy_core::bucket(b"my-app", b"user-42"), 7369);
//! // The 0x00 between them keeps salt and key apart: `my-app` + `user` is not `my-appu` + `ser`.
//! assert_eq!((policy_core::bucket(b"my-app", b"user"), policy_core::bucket(b"my-appu", b"ser")), (3873, 382));
//! ```

use crate::config::TOTAL_BASIS_POINTS;

/// Hashes a key with a salt into a bucket in `0..10000`.
pub fn bucket(salt: &[u8], key: &[u8]) -> u16 {
    let [a, b, c, d, e, f, g, h, ..] = policy_sha256::sha256(&[salt, &[0u8], key]);
    from_first_eight([a, b, c, d, e, f, g, h])
}

/// A bucket from 8 random bytes, for the per-request weighted pick.
pub(crate) fn random_bucket(random: [u8; 16]) -> u16 {
    let [a, b, c, d, e, f, g, h, ..] = random;
    from_first_eight([a, b, c, d, e, f, g, h])
}

/// Eight bytes read as a big-endian u64, modulo 10000.
fn from_first_eight(bytes: [u8; 8]) -> u16 {
    (u64::from_be_bytes(bytes) % u64::from(TOTAL_BASIS_POINTS)) as u16
}
