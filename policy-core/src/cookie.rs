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

/// The `name=value` pairs of a Cookie header value, in order, each trimmed; pairs without `=`
/// are skipped. One pass: a pair's bytes are looked at once, up to its `;`.
struct Pairs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let end = self
                .rest
                .iter()
                .position(|&b| b == b';' || b == b'=')
                .unwrap_or(self.rest.len());
            let (pair_name, after) = self.rest.split_at(end);
            match after.first() {
                Some(b'=') => {
                    let value_part = after.get(1..).unwrap_or_default();
                    let value_end = value_part.iter().position(|&b| b == b';').unwrap_or(value_part.len());
                    let (value, next) = value_part.split_at(value_end);
                    self.rest = next.get(1..).unwrap_or_default();
                    return Some((trim(pair_name), trim(value)));
                }
                // A pair without '=' (or the end): skip it.
                _ => self.rest = after.get(1..).unwrap_or_default(),
            }
        }
        None
    }
}

/// The value of the first non-empty cookie called `name` in a Cookie header value.
pub fn find<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    Pairs { rest: header }
        .find(|(pair_name, value)| *pair_name == name && !value.is_empty())
        .map(|(_, value)| value)
}

/// [`find`] for several names in one pass: `found[i]` gets the first non-empty value of the
/// cookie `names[i]` (entries already `Some` are kept). Stops early once every name is found.
///
/// A request whose key chain reads the client-id cookie and an app cookie scans its Cookie
/// header once instead of twice (a 4 KB header costs about 1 µs a scan).
///
/// ```
/// use policy_core::cookie::find_each;
/// let mut found = [None, None];
/// find_each(b"a=1; sc-id=x; session=s", &[b"sc-id", b"session"], &mut found);
/// assert_eq!(found, [Some(&b"x"[..]), Some(&b"s"[..])]);
/// ```
pub fn find_each<'a>(header: &'a [u8], names: &[&[u8]], found: &mut [Option<&'a [u8]>]) {
    let mut missing = names.iter().zip(found.iter()).filter(|(_, f)| f.is_none()).count();
    let mut pairs = Pairs { rest: header };
    while missing > 0 {
        let Some((pair_name, value)) = pairs.next() else {
            return;
        };
        if value.is_empty() {
            continue;
        }
        for (name, slot) in names.iter().zip(found.iter_mut()) {
            if slot.is_none() && pair_name == *name {
                *slot = Some(value);
                missing -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{find, find_each};

    #[test]
    fn find_each_agrees_with_find_for_every_name() {
        let headers: [&[u8]; 6] = [
            b"a=1; sc-id=x; session=s",
            b"session=; session=two; sc-id=\"q\"",
            b" sc-id = spaced ;session",
            b"no-equals; =empty-name; sc-id=",
            b"",
            b"session=a;session=b;sc-id=c;sc-id=d",
        ];
        let names: [&[u8]; 3] = [b"sc-id", b"session", b"absent"];
        for header in headers {
            let mut found = [None; 3];
            find_each(header, &names, &mut found);
            for (name, got) in names.iter().zip(found) {
                assert_eq!(got, find(header, name), "{:?} in {:?}", name, header);
            }
        }
    }

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
