//! Cookie header parsing: `cookie::find` against an independent reading of RFC 6265 §5.4,
//! and `cookie::find_each` against `find`.
//!
//! Input: the first byte is the cookie name's length (mod 17), the name follows,
//! the rest is the Cookie header value. The result must be a sub-slice of the
//! header without `;`, trimmed and non-empty, and exactly what the reference
//! below finds (the first non-empty value of a pair whose trimmed name equals
//! the name).
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy_core::cookie::{find, find_each};

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Reference: walks the header by index, one pair at a time.
fn reference(header: &[u8], name: &[u8]) -> Option<(usize, usize)> {
    let mut start = 0;
    while start <= header.len() {
        let end = header[start..]
            .iter()
            .position(|&b| b == b';')
            .map_or(header.len(), |i| start + i);
        if let Some(eq) = header[start..end].iter().position(|&b| b == b'=').map(|i| start + i) {
            let (mut ns, mut ne) = (start, eq);
            while ns < ne && is_space(header[ns]) {
                ns += 1;
            }
            while ne > ns && is_space(header[ne - 1]) {
                ne -= 1;
            }
            let (mut vs, mut ve) = (eq + 1, end);
            while vs < ve && is_space(header[vs]) {
                vs += 1;
            }
            while ve > vs && is_space(header[ve - 1]) {
                ve -= 1;
            }
            if &header[ns..ne] == name && vs < ve {
                return Some((vs, ve));
            }
        }
        start = end + 1;
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let len = usize::from(len % 17).min(rest.len());
    let (name, header) = rest.split_at(len);
    let found = find(header, name);
    // The one-pass lookup of several names agrees with `find` for each of them.
    let mut each = [None, None];
    find_each(header, &[name, b"session"], &mut each);
    assert_eq!(each, [found, find(header, b"session")], "find_each differs from find");
    match (found, reference(header, name)) {
        (None, None) => {}
        (Some(value), Some((start, end))) => {
            let offset = value.as_ptr() as usize - header.as_ptr() as usize;
            assert!(offset + value.len() <= header.len(), "not a sub-slice of the header");
            assert_eq!((offset, offset + value.len()), (start, end), "a different occurrence");
            assert!(!value.is_empty());
            assert!(!value.contains(&b';'));
            assert!(!is_space(value[0]) && !is_space(value[value.len() - 1]));
        }
        (found, expected) => panic!("find gave {found:?}, the reference {expected:?}"),
    }
});
