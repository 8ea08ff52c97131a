//! A header map read in one host call (`proxy_get_header_map_pairs`), looked up without copying.
//!
//! ```
//! use sticky_canary_filter::headers::{serialise, HeaderPairs};
//! let bytes = serialise(&[(":authority", "shop.example.com"), ("cookie", "session=abc")]);
//! let headers = HeaderPairs::parse(&bytes).unwrap();
//! assert_eq!(headers.get("cookie"), Some(&b"session=abc"[..]));
//! assert_eq!(headers.get("x-canary-force"), None);
//! ```
//!
//! The ABI's form: a little-endian `u32` count, then each pair's name and value lengths as
//! `u32`s, then each name and value followed by a NUL byte. One read answers every question the
//! filter asks (host, path, override, cookie, and which headers it must strip): a returning
//! client costs this call and the routing header's write, where reading the headers one by one
//! costs one call each, and a blind removal for each header that must never go upstream.

use policy_core::Route;

/// A validated view over the serialised pairs.
#[derive(Debug, Clone, Copy)]
pub struct HeaderPairs<'a> {
    count: usize,
    sizes: &'a [u8],
    data: &'a [u8],
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(word)).ok()
}

impl<'a> HeaderPairs<'a> {
    /// Checks the layout once (every length inside the buffer, every NUL in place); `None` when the
    /// bytes are not a well-formed map, so lookups never fail afterwards.
    pub fn parse(bytes: &'a [u8]) -> Option<HeaderPairs<'a>> {
        if bytes.is_empty() {
            return Some(HeaderPairs {
                count: 0,
                sizes: &[],
                data: &[],
            });
        }
        let count = read_u32(bytes, 0)?;
        let sizes_end = count.checked_mul(8)?.checked_add(4)?;
        let sizes = bytes.get(4..sizes_end)?;
        let data = bytes.get(sizes_end..)?;
        let view = HeaderPairs { count, sizes, data };
        let mut end = 0usize;
        for i in 0..count {
            let name = read_u32(sizes, i * 8)?;
            let value = read_u32(sizes, i * 8 + 4)?;
            let name_end = end.checked_add(name)?;
            let value_end = name_end.checked_add(1)?.checked_add(value)?;
            if data.get(name_end) != Some(&0) || data.get(value_end) != Some(&0) {
                return None;
            }
            end = value_end + 1;
        }
        (end == data.len()).then_some(view)
    }

    /// Every (name, value) pair, in the host's order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let (sizes, data) = (self.sizes, self.data);
        let mut at = 0usize;
        (0..self.count).map_while(move |i| {
            let name_len = read_u32(sizes, i * 8)?;
            let value_len = read_u32(sizes, i * 8 + 4)?;
            let name = data.get(at..at + name_len)?;
            let value_start = at + name_len + 1;
            let value = data.get(value_start..value_start + value_len)?;
            at = value_start + value_len + 1;
            Some((name, value))
        })
    }

    /// The first value under `name` (names are lowercase on both sides), as Envoy's single-header
    /// read answers it.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter().find(|(n, _)| *n == name.as_bytes()).map(|(_, v)| v)
    }

    /// Whether the request carries `name` at all.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// The ABI's serialised form of `pairs`: what the host sends; for tests and examples.
pub fn serialise(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_value_and_reports_absence() {
        let bytes = serialise(&[("cookie", "a=1"), ("x-canary-force", ""), ("cookie", "b=2")]);
        let headers = HeaderPairs::parse(&bytes).unwrap();
        assert_eq!(headers.get("cookie"), Some(&b"a=1"[..]));
        assert_eq!(headers.get("x-canary-force"), Some(&b""[..]));
        assert!(headers.contains("x-canary-force"));
        assert!(!headers.contains("x-canary-secret"));
        assert_eq!(headers.iter().count(), 3);
    }

    /// `proxy_get_header_map_pairs`' form, written by hand from the ABI spec (0.2.1), not by
    /// [`serialise`]: a little-endian u32 count, then per pair a u32 key length and a u32 value
    /// length, then each key and each value followed by a NUL.
    const TWO_PAIRS: [u8; 56] = [
        2, 0, 0, 0, // 2 pairs
        10, 0, 0, 0, // key 1: 10 bytes (":authority")
        13, 0, 0, 0, // value 1: 13 bytes ("a.example.com")
        6, 0, 0, 0, // key 2: 6 bytes ("cookie")
        3, 0, 0, 0, // value 2: 3 bytes ("s=1")
        b':', b'a', b'u', b't', b'h', b'o', b'r', b'i', b't', b'y', 0, //
        b'a', b'.', b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm', 0, //
        b'c', b'o', b'o', b'k', b'i', b'e', 0, //
        b's', b'=', b'1', 0,
    ];

    #[test]
    fn reads_the_abi_layout_written_by_hand() {
        let headers = HeaderPairs::parse(&TWO_PAIRS).unwrap();
        let pairs: Vec<(&[u8], &[u8])> = headers.iter().collect();
        assert_eq!(
            pairs,
            [
                (&b":authority"[..], &b"a.example.com"[..]),
                (&b"cookie"[..], &b"s=1"[..])
            ]
        );
        assert_eq!(headers.get(":authority"), Some(&b"a.example.com"[..]));
        assert_eq!(headers.get("cookie"), Some(&b"s=1"[..]));
        assert_eq!(headers.get("cookie2"), None);
        // And the serialiser the tests and the fuzz target use writes exactly these bytes.
        assert_eq!(
            serialise(&[(":authority", "a.example.com"), ("cookie", "s=1")]),
            TWO_PAIRS
        );
        // A value length one too long (so its NUL is misplaced) is refused.
        let mut wrong = TWO_PAIRS;
        wrong[8] = 14;
        assert!(HeaderPairs::parse(&wrong).is_none());
    }

    #[test]
    fn empty_buffers_are_empty_maps() {
        for bytes in [Vec::new(), serialise(&[])] {
            let headers = HeaderPairs::parse(&bytes).unwrap();
            assert_eq!(headers.iter().count(), 0);
            assert_eq!(headers.get(":authority"), None);
        }
    }

    #[test]
    fn malformed_buffers_are_refused_not_misread() {
        let good = serialise(&[(":authority", "a.example.com"), ("cookie", "s=1")]);
        for cut in 1..good.len() {
            assert!(HeaderPairs::parse(&good[..cut]).is_none(), "accepted a cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(HeaderPairs::parse(&longer).is_none());
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert!(HeaderPairs::parse(&no_nul).is_none());
        let mut huge = good;
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderPairs::parse(&huge).is_none());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap exhaustive-ish sweep: every short buffer shape around a valid one.
        let good = serialise(&[("a", "b")]);
        for i in 0..good.len() {
            for byte in [0u8, 1, 2, 0xff] {
                let mut bytes = good.clone();
                bytes[i] = byte;
                if let Some(headers) = HeaderPairs::parse(&bytes) {
                    let _ = headers.iter().count();
                    let _ = headers.get("a");
                }
            }
        }
    }
}

/// The route's override and secret headers: removed from every request on the route before it
/// goes upstream, whether the client sent them and whether or not they were honoured (policy-core
/// reads the secret only for an allowed override). Removing an absent header is a no-op.
pub fn headers_to_strip(route: &Route) -> impl Iterator<Item = &str> {
    let rule = route.override_rule();
    let override_header = rule.map(|r| r.header.as_str());
    let secret_header = rule.and_then(|r| r.secret.as_ref()).map(|s| s.header.as_str());
    override_header.into_iter().chain(secret_header)
}

/// A position (0 to 99) in decimal, without allocating: "7", "42".
pub fn two_digits(position: u8, buf: &mut [u8; 2]) -> &[u8] {
    let position = position.min(99);
    *buf = [b'0' + position / 10, b'0' + position % 10];
    if position < 10 {
        buf.get(1..).unwrap_or_default()
    } else {
        buf
    }
}

/// A decision reads only the headers it needs. (That the override headers never reach the
/// upstream is tested on the filter's own calls: `lifecycle_tests`.)
#[cfg(test)]
mod upstream_tests {
    use super::*;
    use crate::metrics::tests::policy;
    use policy_core::{KeySource, Request};
    use std::collections::HashMap;

    struct Fake {
        headers: HashMap<&'static str, &'static [u8]>,
        reads: Vec<String>,
    }

    impl Request for Fake {
        type Header = Vec<u8>;
        fn header(&mut self, name: &str) -> Option<Vec<u8>> {
            self.reads.push(name.to_owned());
            self.headers.get(name).map(|v| v.to_vec())
        }
        fn client_address(&mut self) -> Option<Vec<u8>> {
            Some(b"10.1.2.3:4567".to_vec())
        }
        fn random(&mut self) -> Option<[u8; 16]> {
            Some([7; 16])
        }
    }

    #[test]
    fn returning_client_costs_one_header_read_besides_the_override() {
        let policy = policy();
        let route = &policy.routes()[0];
        let mut fake = Fake {
            headers: HashMap::from([("cookie", &b"session=abc"[..])]),
            reads: Vec::new(),
        };
        let decision = route.decide(&mut fake);
        assert_eq!(decision.source, KeySource::Cookie);
        assert_eq!(fake.reads, ["x-canary-force", "cookie"]);
    }

    #[test]
    fn new_client_gets_a_cookie_that_decides_the_same_way_next_time() {
        let policy = policy();
        let route = &policy.routes()[0];
        let mut fake = Fake {
            headers: HashMap::new(),
            reads: Vec::new(),
        };
        let first = route.decide(&mut fake);
        assert_eq!(first.source, KeySource::NewId);
        let cookie = first.set_cookie.clone().unwrap();
        assert!(cookie.starts_with(
            "sc=07070707070707070707070707070707; Path=/; Max-Age=2592000; HttpOnly; Secure; SameSite=Lax"
        ));
        let pair: &'static str = Box::leak(cookie.split(';').next().unwrap().to_owned().into_boxed_str());
        let mut fake = Fake {
            headers: HashMap::from([("cookie", pair.as_bytes())]),
            reads: Vec::new(),
        };
        let second = route.decide(&mut fake);
        assert_eq!(second.source, KeySource::Cookie);
        assert_eq!(second.version, first.version);
    }

    #[test]
    fn positions_are_written_in_decimal() {
        let mut buf = [0u8; 2];
        assert_eq!(two_digits(0, &mut buf), b"0");
        assert_eq!(two_digits(7, &mut buf), b"7");
        assert_eq!(two_digits(42, &mut buf), b"42");
        assert_eq!(two_digits(99, &mut buf), b"99");
        assert_eq!(two_digits(200, &mut buf), b"99");
    }
}
