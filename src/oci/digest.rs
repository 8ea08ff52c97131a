//! A `sha256:` content digest, as image manifests and layers are addressed.

use std::fmt;

/// Whether `hex` is a SHA-256 in hex as digests spell it: 64 lowercase hex digits.
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A `sha256:` content digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            hex: crate::sha256_hex(bytes),
        }
    }

    /// Parses `sha256:` followed by 64 lowercase hex digits.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let hex = text.strip_prefix("sha256:").ok_or("expected sha256:HEX")?;
        if !is_sha256_hex(hex) {
            return Err("expected 64 lowercase hex digits after sha256:");
        }
        Ok(Self { hex: hex.to_owned() })
    }

    /// The bare hex, as a WasmPlugin `sha256` holds it.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}
