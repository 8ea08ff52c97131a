//! Reading one cookie out of a `Cookie` request header, as browsers send it.
//!
//! RFC 6265 §4.2 / §5.4: `name=value` pairs separated by `;` and optional white
//! space. Names are case-sensitive. When a name appears more than once the
//! **first non-empty** one wins: browsers list the cookie with the longest (most
//! specific) Path first, and an empty value counts as no cookie. Values are
//! taken byte for byte, quotes included; white space (SP, HTAB) around a value
//! is dropped. Pairs without `=` and bytes a browser would not send are skipped
//! over or carried in the value, never an error.
//!
//! ```
//! use policy_core::cookie::find;
//! let header = b"theme=dark; session=\"abc\"; session=older";
//! assert_eq!(find(header, b"session"), Some(&b"\"abc\""[..]));
//! assert_eq!(find(header, b"Session"), None);
//! ```

/// Drops HTTP optional white space (SP, HTAB) around a value.
pub(crate) fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The value of the first non-empty cookie called `name` in a Cookie header value.
///
/// One pass over the header: each pair's name is compared as soon as its `=` is found, and a
/// pair with another name is skipped to the next `;` without looking at its bytes again.
pub fn find<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut rest = header;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b';' || b == b'=').unwrap_or(rest.len());
        let (pair_name, after) = rest.split_at(end);
        match after.first() {
            Some(b'=') => {
                let value_part = after.get(1..).unwrap_or_default();
                let value_end = value_part.iter().position(|&b| b == b';').unwrap_or(value_part.len());
                let (value, next) = value_part.split_at(value_end);
                if trim(pair_name) == name {
                    let value = trim(value);
                    if !value.is_empty() {
                        return Some(value);
                    }
                }
                rest = next.get(1..).unwrap_or_default();
            }
            // A pair without '=' (or the end): skip it.
            _ => rest = after.get(1..).unwrap_or_default(),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn browser_shapes() {
        assert_eq!(find(b"a=1", b"a"), Some(&b"1"[..]));
        assert_eq!(find(b"a=1;b=2", b"b"), Some(&b"2"[..]));
        assert_eq!(find(b"  a = 1 ;  b\t=\t2  ", b"b"), Some(&b"2"[..]));
        assert_eq!(find(b"a=\"quoted value\"", b"a"), Some(&b"\"quoted value\""[..]));
        assert_eq!(find(b"a=x=y", b"a"), Some(&b"x=y"[..]));
    }

    #[test]
    fn first_non_empty_duplicate_wins() {
        assert_eq!(find(b"id=first; id=second", b"id"), Some(&b"first"[..]));
        assert_eq!(find(b"id=; id=second", b"id"), Some(&b"second"[..]));
        assert_eq!(find(b"id=", b"id"), None);
    }

    #[test]
    fn names_are_case_sensitive_and_exact() {
        assert_eq!(find(b"ID=1; id=2", b"id"), Some(&b"2"[..]));
        assert_eq!(find(b"xid=1; idx=2", b"id"), None);
        assert_eq!(find(b"id", b"id"), None);
        assert_eq!(find(b"", b"id"), None);
        assert_eq!(find(b";;;", b"id"), None);
    }

    #[test]
    fn invalid_bytes_are_carried_not_rejected() {
        assert_eq!(find(b"id=\xff\xfe; z=1", b"id"), Some(&b"\xff\xfe"[..]));
    }
}
