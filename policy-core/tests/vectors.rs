#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
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

/// Rows of `|`-tables with exactly `cells` cells (header and separator rows included; callers filter).
fn rows(cells: usize) -> Vec<Vec<String>> {
    DOC.lines()
        .filter(|line| line.starts_with('|'))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|row| row.len() == cells)
        .collect()
}

#[test]
fn every_identity_vector_matches() {
    // | salt | identity | salt hex | identity hex | identity id | bucket |
    let vectors: Vec<_> = rows(6).into_iter().filter(|r| r[5].parse::<u16>().is_ok()).collect();
    assert!(vectors.len() >= 5, "found {} identity vectors", vectors.len());
    for row in vectors {
        let (salt, identity) = (unhex(&row[2]), unhex(&row[3]));
        let id = policy_core::identity_id(&salt, &identity);
        assert_eq!(id, row[4], "identity_id for {row:?}");
        assert_eq!(
            policy_core::bucket(&salt, id.as_bytes()).to_string(),
            row[5],
            "bucket for {row:?}"
        );
    }
}

#[test]
fn every_cookie_value_vector_matches() {
    // | cookie value | key | stamp | bucket |, salt `my-app`
    let vectors: Vec<_> = rows(4).into_iter().filter(|r| r[3].parse::<u16>().is_ok()).collect();
    assert!(vectors.len() >= 5, "found {} cookie value vectors", vectors.len());
    for row in vectors {
        let value = row[0].trim_matches('`');
        let parsed = policy_core::ClientId::parse(value.as_bytes());
        let key = if row[1] == "(the whole value)" {
            value
        } else {
            row[1].trim_matches('`')
        };
        assert_eq!(parsed.key, key.as_bytes(), "key of {value}");
        assert_eq!(
            parsed.stamp.map_or("none".to_owned(), |s| s.to_string()),
            row[2],
            "stamp of {value}"
        );
        assert_eq!(
            policy_core::bucket(b"my-app", parsed.key).to_string(),
            row[3],
            "bucket of {value}"
        );
    }
}

#[test]
fn every_position_vector_matches() {
    // | salt | key | bucket | position | at 10 % | at 50 % | at 90 % |
    let vectors: Vec<_> = rows(7).into_iter().filter(|r| r[2].parse::<u16>().is_ok()).collect();
    assert!(vectors.len() >= 5, "found {} position vectors", vectors.len());
    for row in vectors {
        let salt = row[0].trim_matches('`');
        let key = row[1].trim_matches('`');
        let doc = format!(
            r#"{{"routes": [{{"name": "my-app", "hosts": ["*"], "salt": "{salt}", "position_header": "x-canary-position",
                "versions": [{{"name": "stable", "weight": 100}}, {{"name": "canary", "weight": 0}}],
                "key_chain": [{{"header": "x-user"}}]}}]}}"#
        );
        let policy = policy_core::Policy::from_json(doc.as_bytes()).unwrap();
        let route = &policy.routes()[0];
        struct User<'a>(&'a str);
        impl policy_core::Request for User<'_> {
            type Header = Vec<u8>;
            fn header(&mut self, name: &str) -> Option<Vec<u8>> {
                (name == "x-user").then(|| self.0.as_bytes().to_vec())
            }
            fn client_address(&mut self) -> Option<Vec<u8>> {
                None
            }
            fn random(&mut self) -> Option<[u8; 16]> {
                None
            }
        }
        let decision = route.decide(&mut User(key));
        let bucket = decision.bucket.unwrap();
        assert_eq!(bucket.to_string(), row[2], "bucket for {row:?}");
        assert_eq!(route.position(&decision).to_string(), row[3], "position for {row:?}");
        for (column, weight) in [(4, 10), (5, 50), (6, 90)] {
            let version = route.version_at_tool_weight(bucket, weight);
            assert_eq!(route.versions()[version].name(), row[column], "{row:?} at {weight}%");
        }
    }
}

#[test]
fn every_abn_vector_matches() {
    // | key | bucket | 10/10/10 | 20/10/10 | 20/0/10 | 5/20/30 |, canaries a, b, c with
    // max_weight 20, 20, 30 after the stable v1.
    let is_version = |cell: &str| ["v1", "a", "b", "c"].contains(&cell);
    let vectors: Vec<_> = rows(6)
        .into_iter()
        .filter(|r| r[1].parse::<u16>().is_ok() && r[2..].iter().all(|c| is_version(c)))
        .collect();
    assert!(vectors.len() >= 6, "found {} A/B/n vectors", vectors.len());
    let columns = [(10, 10, 10), (20, 10, 10), (20, 0, 10), (5, 20, 30)];
    for row in vectors {
        let key = row[0].trim_matches('`');
        for (column, (a, b, c)) in columns.iter().enumerate() {
            let doc = format!(
                r#"{{"routes": [{{"name": "my-app", "hosts": ["*"], "salt": "my-app",
                    "versions": [{{"name": "v1", "weight": {stable}}},
                        {{"name": "a", "weight": {a}, "max_weight": 20}},
                        {{"name": "b", "weight": {b}, "max_weight": 20}},
                        {{"name": "c", "weight": {c}, "max_weight": 30}}],
                    "key_chain": [{{"header": "x-user"}}]}}]}}"#,
                stable = 100 - a - b - c
            );
            let policy = policy_core::Policy::from_json(doc.as_bytes()).unwrap();
            let route = &policy.routes()[0];
            let (bucket, version) = route.assign(key.as_bytes());
            assert_eq!(bucket.to_string(), row[1], "bucket of {key}");
            assert_eq!(
                route.versions()[version].name(),
                row[column + 2],
                "{key} at {a}/{b}/{c}"
            );
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn sha256_of_every_length_around_the_padding_boundaries() {
    // 55 bytes is the last message that fits one block with its padding; 56..=63 need a second.
    // Messages of 0..=300 bytes (0, 1, ..., 255, 0, ...), each hashed whole and in three parts;
    // expected: the SHA-256 of the 301 digests concatenated, which policy-core/sha256, the sha2
    // crate and Python's hashlib all give. (The FIPS examples and the comparison with sha2 are
    // policy-core/sha256's own tests; this one also runs compiled to wasm.)
    let bytes: Vec<u8> = (0..=255u8).cycle().take(300).collect();
    let mut digests = Vec::new();
    for len in 0..=bytes.len() {
        let message = &bytes[..len];
        let digest = policy_core::sha256(&[message]);
        let (a, b) = message.split_at(len / 3);
        assert_eq!(policy_core::sha256(&[a, &[], b]), digest, "length {len} in parts");
        digests.extend_from_slice(&digest);
    }
    assert_eq!(
        hex(&policy_core::sha256(&[&digests])),
        "ddbdb189f5834c274dbe603d6d2874adf7234fd8a075c3d1bfbadc2107a75676"
    );
}
