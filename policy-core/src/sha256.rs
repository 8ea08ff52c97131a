//! SHA-256 over a message given in parts (`salt ‖ separator ‖ key`), hashed once: the `sha2`
//! crate, whose compact backend keeps the 64 rounds in a loop (the wasm profile builds it at
//! opt-level 3; the root Cargo.toml says why).
//!
//! ```
//! let digest = policy_core::sha256(&[b"a", b"bc"]);
//! assert_eq!(digest[..4], [0xba, 0x78, 0x16, 0xbf]); // SHA-256("abc"), FIPS 180-4
//! ```

use sha2::{Digest, Sha256};

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}
