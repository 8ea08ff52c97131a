use super::{find, find_byte, find_each, trim, Pairs};

/// The pairs the plain way: split on every `;`, then at the first `=`.
fn reference_pairs(header: &[u8]) -> Vec<(&[u8], &[u8])> {
    header
        .split(|&b| b == b';')
        .filter_map(|pair| {
            let equals = pair.iter().position(|&b| b == b'=')?;
            Some((trim(&pair[..equals]), trim(&pair[equals + 1..])))
        })
        .collect()
}

#[test]
fn the_word_scan_agrees_with_the_plain_one() {
    // Headers of every length to 40 over an alphabet rich in separators, so that `;` and
    // `=` fall at every position of the eight-byte words, plus bytes one off from `;`.
    let alphabet = [b';', b'=', b' ', b'a', b'\t', b':', b'<', 0x3b ^ 0x80, 0xff, 0x00];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for length in 0..40 {
        for _ in 0..400 {
            let header: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            for needle in [b';', b'='] {
                assert_eq!(
                    find_byte(&header, needle),
                    header.iter().position(|&b| b == needle),
                    "{header:?}"
                );
            }
            let pairs: Vec<_> = Pairs { rest: &header }.collect();
            assert_eq!(pairs, reference_pairs(&header), "{header:?}");
        }
    }
}

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
