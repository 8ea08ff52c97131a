//! The filter's reading of the host's serialised header map (`filter/src/headers.rs`).
//!
//! Two properties on every input: whatever `HeaderPairs::parse` accepts serialises back to the
//! same bytes (it accepts exactly the ABI's layout, and its pairs are the ones encoded), and any
//! list of pairs, serialised, is accepted and read back unchanged with the first value winning
//! in `get`. The input is read as NUL-separated name/value strings for the second property.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sticky_canary_filter::headers::{serialise, HeaderPairs};

fuzz_target!(|data: &[u8]| {
    if let Some(headers) = HeaderPairs::parse(data) {
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let all_utf8 = headers.iter().all(|(n, v)| std::str::from_utf8(n).is_ok() && std::str::from_utf8(v).is_ok());
        if all_utf8 && !data.is_empty() {
            let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            assert_eq!(serialise(&borrowed), data, "accepted bytes that are not the ABI layout");
        }
    }
    let text = String::from_utf8_lossy(data).replace('\0', "");
    let words: Vec<&str> = text.split('\u{1}').collect();
    let pairs: Vec<(&str, &str)> = words.chunks(2).map(|c| (c[0], c.get(1).copied().unwrap_or(""))).collect();
    let bytes = serialise(&pairs);
    let headers = HeaderPairs::parse(&bytes).expect("a serialised map is accepted");
    let read: Vec<(&[u8], &[u8])> = headers.iter().collect();
    assert_eq!(read.len(), pairs.len());
    for ((n, v), (rn, rv)) in pairs.iter().zip(&read) {
        assert_eq!((n.as_bytes(), v.as_bytes()), (*rn, *rv));
    }
    for (name, _) in &pairs {
        let first = pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_bytes());
        assert_eq!(headers.get(name), first);
    }
});
