//! The test vectors of docs/assignment.md, checked against the implementation.
//! Runs natively and, through wasm-bindgen-test, compiled to wasm.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const DOC: &str = include_str!("../../docs/assignment.md");

fn unhex(text: &str) -> Vec<u8> {
    if text == "(empty)" {
        return Vec::new();
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// (salt, key, bucket) from the table rows: `| salt | key | salt hex | key hex | bucket |`.
fn vectors() -> Vec<(Vec<u8>, Vec<u8>, u16)> {
    DOC.lines()
        .filter(|line| line.starts_with('|'))
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            if cells.len() != 5 {
                return None;
            }
            let bucket = cells[4].parse().ok()?;
            Some((unhex(cells[2]), unhex(cells[3]), bucket))
        })
        .collect()
}

#[test]
fn the_doc_has_at_least_ten_vectors() {
    assert!(vectors().len() >= 10, "found {} vectors", vectors().len());
}

#[test]
fn every_vector_matches() {
    for (salt, key, expected) in vectors() {
        assert_eq!(policy_core::bucket(&salt, &key), expected, "salt {salt:?} key {key:?}");
    }
}

#[test]
fn the_worked_example_holds() {
    let doc = |v2: &str| {
        let v1 = 100 - v2.parse::<u32>().unwrap();
        format!(
            r#"{{"routes": [{{"name": "my-app", "hosts": ["*"], "salt": "my-app",
                "versions": [{{"name": "v1", "weight": {v1}}}, {{"name": "v2", "weight": {v2}}}],
                "key_chain": [{{"cookie": "session"}}]}}]}}"#
        )
    };
    let version_at = |v2: &str| {
        let policy = policy_core::Policy::from_json(doc(v2).as_bytes()).unwrap();
        let route = &policy.routes()[0];
        let (bucket, version) = route.assign(b"user-42");
        assert_eq!(bucket, 7369);
        route.versions()[version].name().to_owned()
    };
    assert_eq!(version_at("10"), "v1");
    assert_eq!(version_at("80"), "v2");
    assert_eq!(version_at("100"), "v2");
}
