//! The client-id cookie's value: a 32-hex-digit id, optionally followed by the day it was last set.
//!
//! `0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.20415` is id `0af1…c5`, last set on day 20415 after the Unix
//! epoch (UTC). Only the id is ever hashed, so a stamp can be added, refreshed or forged without
//! moving anyone, and a cookie from before stamps existed (`0af1…c5` alone) keeps its bucket.
//! Any other value is a key as it stands, never refreshed (docs/assignment.md §3).
//!
//! During a cut-over (docs/assignment.md §6) the value also carries two times, in Unix seconds:
//! `ID.DAY.ISSUED.SEEN`, when the user's current assignment began and when the filter last saw
//! them. They are never hashed either.
//!
//! ```
//! use policy_core::ClientId;
//! let id = ClientId::parse(b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.20415");
//! assert_eq!(id.key, b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5");
//! assert_eq!(id.stamp, Some(20415));
//! assert!(id.needs_refresh(20416, 1));
//! assert!(!id.needs_refresh(20415, 1));
//! // Not an id the filter issued: the whole value is the key, and it is left alone.
//! let other = ClientId::parse(b"alice.7");
//! assert_eq!((other.key, other.stamp), (&b"alice.7"[..], None));
//! assert!(!other.needs_refresh(20416, 1));
//! ```

/// Length of an id the filter issues: 128 bits as lowercase hex.
pub const ID_LENGTH: usize = 32;
/// A stamp has at most this many decimal digits (days since 1970; 5 digits last until the year 2243).
const MAX_STAMP_DIGITS: usize = 9;
/// A cut-over time (Unix seconds) has at most this many decimal digits.
const MAX_TIME_DIGITS: usize = 12;
/// Seconds in a day, for turning the host clock into a stamp.
pub const SECONDS_PER_DAY: u64 = 86_400;

/// A client-id cookie value, split into the key that is hashed and its optional stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientId<'a> {
    /// The bytes hashed into the bucket.
    pub key: &'a [u8],
    /// The day (since 1970-01-01, UTC) the cookie was last set, when the value carries one.
    pub stamp: Option<u32>,
    /// During a cut-over: when the user's current assignment began (Unix seconds; 0: before any
    /// cut-over the filter saw), from `ID.DAY.ISSUED.SEEN`.
    pub issued: Option<u64>,
    /// During a cut-over: when the filter last saw this user (Unix seconds).
    pub seen: Option<u64>,
}

fn is_id(bytes: &[u8]) -> bool {
    bytes.len() == ID_LENGTH && bytes.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// `1` to `max_digits` ASCII digits as a number; anything else is not a number here.
fn digits(bytes: &[u8], max_digits: usize) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > max_digits {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.saturating_mul(10).saturating_add(u64::from(b - b'0')))
    })
}

/// `DAY` or `DAY.ISSUED.SEEN`, each part only digits.
fn stamps(rest: &[u8]) -> Option<(u32, Option<(u64, u64)>)> {
    let mut parts = rest.split(|&b| b == b'.');
    let day = u32::try_from(digits(parts.next()?, MAX_STAMP_DIGITS)?).ok()?;
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => Some((day, None)),
        (Some(issued), Some(seen), None) => Some((
            day,
            Some((digits(issued, MAX_TIME_DIGITS)?, digits(seen, MAX_TIME_DIGITS)?)),
        )),
        _ => None,
    }
}

impl<'a> ClientId<'a> {
    /// Splits a cookie value. `ID.STAMP` (32 lowercase hex digits, a dot, 1 to 9 digits) gives
    /// the id and the stamp, and `ID.STAMP.ISSUED.SEEN` (each time 1 to 12 digits) the cut-over
    /// times too; every other value is a key as it stands, with no stamp.
    pub fn parse(value: &'a [u8]) -> ClientId<'a> {
        if let (Some(id), Some(b'.'), Some(rest)) =
            (value.get(..ID_LENGTH), value.get(ID_LENGTH), value.get(ID_LENGTH + 1..))
        {
            if is_id(id) {
                if let Some((day, times)) = stamps(rest) {
                    return ClientId {
                        key: id,
                        stamp: Some(day),
                        issued: times.map(|t| t.0),
                        seen: times.map(|t| t.1),
                    };
                }
            }
        }
        ClientId {
            key: value,
            stamp: None,
            issued: None,
            seen: None,
        }
    }

    /// Whether the response should set the cookie again (same id, today's stamp, full Max-Age):
    /// only for ids the filter issues (32 lowercase hex digits), when the cookie has no stamp yet or
    /// its stamp is at least `refresh_after_days` days before `today`. A stamp in the future (a
    /// replica's clock a little ahead, or a forged value) is left alone: refreshing it only to see
    /// it refreshed back would cost a Set-Cookie per request.
    pub fn needs_refresh(&self, today: u32, refresh_after_days: u32) -> bool {
        if !is_id(self.key) {
            return false;
        }
        match self.stamp {
            None => true,
            Some(day) => day <= today && today - day >= refresh_after_days,
        }
    }

    /// The id as text, when it is one the filter issues (for a Set-Cookie).
    pub fn issued_id(&self) -> Option<&'a str> {
        if is_id(self.key) {
            core::str::from_utf8(self.key).ok()
        } else {
            None
        }
    }
}

fn hex_digit(nibble: u8) -> u8 {
    if nibble < 10 {
        b'0' + nibble
    } else {
        b'a' + nibble - 10
    }
}

/// 16 bytes as 32 lowercase hex digits: the form of every id the filter issues. Built as bytes
/// and converted once (a `char` push per digit costs a UTF-8 encoding each, on every new client).
pub fn hex_id(bytes: [u8; 16]) -> String {
    let mut out = [0u8; ID_LENGTH];
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        // Two plain stores: `copy_from_slice` of a 2-byte array compiles to a memcpy call per
        // byte pair in wasm (about 100 ns per id in V8).
        if let [high, low] = pair {
            *high = hex_digit(byte >> 4);
            *low = hex_digit(byte & 0x0f);
        }
    }
    // Hex digits are ASCII: the conversion cannot fail.
    core::str::from_utf8(&out).map(str::to_owned).unwrap_or_default()
}

/// The id issued to a user known by a trusted identity header (docs/assignment.md §3):
/// the first 16 bytes of SHA-256(salt ‖ 0x01 ‖ identity), as 32 lowercase hex digits.
/// The 0x01 keeps it apart from the bucket hash (0x00); the salt keeps identities from being
/// looked up in a table built for another app.
pub fn identity_id(salt: &[u8], identity: &[u8]) -> String {
    let digest = policy_sha256::sha256(&[salt, &[1u8], identity]);
    let mut first = [0u8; 16];
    first.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    hex_id(first)
}

/// The day number (since 1970-01-01, UTC) of a Unix time in seconds.
pub fn day_of(unix_seconds: u64) -> u32 {
    u32::try_from(unix_seconds / SECONDS_PER_DAY).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
