#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! Every rule of the config and the decision, one test each.
//! Runs natively and, through wasm-bindgen-test, compiled to wasm.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::BTreeMap;

use policy_core::{KeySource, Policy, Request};

/// A request made of plain maps.
#[derive(Default)]
struct Req {
    headers: BTreeMap<String, Vec<u8>>,
    address: Option<Vec<u8>>,
    random: Option<[u8; 16]>,
    reads: Vec<String>,
}

impl Req {
    fn with(mut self, name: &str, value: &[u8]) -> Self {
        self.headers.insert(name.to_owned(), value.to_vec());
        self
    }
}

impl Request for Req {
    type Header = Vec<u8>;
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.reads.push(name.to_owned());
        self.headers.get(name).cloned()
    }
    fn client_address(&mut self) -> Option<Vec<u8>> {
        self.address.clone()
    }
    fn random(&mut self) -> Option<[u8; 16]> {
        self.random
    }
}

/// One route whose fields can be replaced or added by `extra` (a JSON object body without braces).
fn route_json(extra: &str) -> String {
    let mut fields: Vec<(String, String)> = vec![
        ("name".into(), r#""shop""#.into()),
        ("hosts".into(), r#"["shop.example.com"]"#.into()),
        ("salt".into(), r#""s1""#.into()),
        (
            "versions".into(),
            r#"[{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}]"#.into(),
        ),
        (
            "key_chain".into(),
            r#"[{"cookie": "session"}, {"header": "x-user-id"}]"#.into(),
        ),
    ];
    if !extra.is_empty() {
        let parsed = policy_core::json::parse(format!("{{{extra}}}").as_bytes()).unwrap();
        let policy_core::json::Value::Object(members) = parsed else {
            unreachable!()
        };
        let raw = format!("{{{extra}}}");
        for (name, _) in members {
            // Re-slice the raw text of each extra member: find `"name":` and take the value text.
            let start = raw.find(&format!("\"{name}\"")).unwrap() + name.len() + 2;
            let rest = raw[start..].trim_start().strip_prefix(':').unwrap();
            let value = take_value(rest);
            if let Some(slot) = fields.iter_mut().find(|(n, _)| n == &name) {
                slot.1 = value;
            } else {
                fields.push((name, value));
            }
        }
    }
    let body: Vec<String> = fields.iter().map(|(n, v)| format!("\"{n}\": {v}")).collect();
    format!("{{{}}}", body.join(", "))
}

/// The text of the first JSON value in `s` (balanced brackets, strings respected).
fn take_value(s: &str) -> String {
    let s = s.trim_start();
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => depth += 1,
            ']' | '}' if depth == 0 => return s[..i].trim().to_owned(),
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => return s[..i].trim().to_owned(),
            _ => {}
        }
    }
    s.trim().to_owned()
}

fn policy(extra: &str) -> Policy {
    let doc = format!(r#"{{"routes": [{}]}}"#, route_json(extra));
    Policy::from_json(doc.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{doc}"))
}

fn errors(doc: &str) -> Vec<String> {
    match Policy::from_json(doc.as_bytes()) {
        Ok(_) => panic!("expected errors for {doc}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn route_errors(extra: &str) -> Vec<String> {
    errors(&format!(r#"{{"routes": [{}]}}"#, route_json(extra)))
}

fn assert_has(errors: &[String], expected: &str) {
    assert!(
        errors.iter().any(|e| e == expected),
        "missing error {expected:?} in:\n{}",
        errors.join("\n")
    );
}

// ---------- validation ----------

#[test]
fn a_minimal_config_is_valid() {
    let p = policy("");
    let route = &p.routes()[0];
    assert_eq!(route.routing_header(), "x-canary-version");
    assert_eq!(route.versions()[0].buckets(), (1000, 10000));
    assert_eq!(route.versions()[1].buckets(), (0, 1000));
}

#[test]
fn every_error_is_reported_at_once_with_its_path() {
    let e = errors(
        r#"{"routes": [{"name": "Shop", "hosts": ["bad host"], "salt": "s",
            "versions": [{"name": "v1", "weight": 120}, {"name": "v1", "weight": 1.005}],
            "key_chain": [], "extra": true}], "other": 1}"#,
    );
    assert_has(&e, "other: unknown field");
    assert_has(
        &e,
        r#"routes[0].name: "Shop" is not a valid name (lowercase letters, digits and '-', at most 63, as Kubernetes names)"#,
    );
    assert_has(
        &e,
        r#"routes[0].hosts[0]: "bad host" is not a host name (letters, digits, '-' and '.', optionally starting with '*.', or '*' alone)"#,
    );
    assert_has(&e, "routes[0].versions[0].weight: 120 is above 100");
    assert_has(
        &e,
        "routes[0].versions[1].weight: 1.005 has more than two decimals (weights have 0.01% resolution)",
    );
    assert_has(&e, r#"routes[0].versions[1].name: "v1" is listed twice"#);
    assert_has(&e, "routes[0].key_chain: is empty: give at least one key source");
    assert_has(&e, "routes[0].extra: unknown field");
    assert!(e.len() >= 8, "{e:#?}");
}

#[test]
fn weights_must_sum_to_exactly_100() {
    let e = route_errors(r#""versions": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 9.99}]"#);
    assert_has(&e, "routes[0].versions: weights sum to 99.99, not 100");
    let e = route_errors(r#""versions": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10.5}]"#);
    assert_has(&e, "routes[0].versions: weights sum to 100.5, not 100");
}

#[test]
fn weights_take_two_decimals_in_any_json_spelling() {
    let p = policy(r#""versions": [{"name": "v1", "weight": 87.50}, {"name": "v2", "weight": 1250e-2}]"#);
    assert_eq!(p.routes()[0].versions()[1].weight_basis_points(), 1250);
    let p = policy(r#""versions": [{"name": "v1", "weight": 99.99}, {"name": "v2", "weight": 0.01}]"#);
    assert_eq!(p.routes()[0].versions()[1].buckets(), (0, 1));
    let p = policy(r#""versions": [{"name": "v1", "weight": 1e2}, {"name": "v2", "weight": 0}]"#);
    assert_eq!(p.routes()[0].versions()[0].weight_basis_points(), 10000);
    let e = route_errors(r#""versions": [{"name": "v1", "weight": -0.5}, {"name": "v2", "weight": 100.5}]"#);
    assert_has(&e, "routes[0].versions[0].weight: -0.5 is negative");
    assert_has(&e, "routes[0].versions[1].weight: 100.5 is above 100");
    let e = route_errors(r#""versions": [{"name": "v1", "weight": "90"}, {"name": "v2", "weight": 1e400}]"#);
    assert_has(&e, "routes[0].versions[0].weight: must be a number, not a string");
    assert_has(&e, "routes[0].versions[1].weight: 1e400 is above 100");
}

#[test]
fn a_weight_with_an_exponent_near_the_end_of_i64_is_above_100() {
    // The exponent 9223372036854775807 once overflowed the digit count: a panic with overflow
    // checks, and in the release wasm a loop of 2^63 multiplications in on_configure.
    let e = route_errors(
        r#""versions": [{"name": "v1", "weight": 1e9223372036854775807}, {"name": "v2", "weight": 9.99e9223372036854775806}]"#,
    );
    assert_has(&e, "routes[0].versions[0].weight: 1e9223372036854775807 is above 100");
    assert_has(
        &e,
        "routes[0].versions[1].weight: 9.99e9223372036854775806 is above 100",
    );
}

#[test]
fn required_fields_are_named() {
    let e = errors(r#"{"routes": [{}]}"#);
    for field in ["name", "hosts", "salt", "versions", "key_chain"] {
        assert!(
            e.iter()
                .any(|m| m.starts_with(&format!("routes[0].{field}: is required"))),
            "{field}: {e:#?}"
        );
    }
    assert_has(&errors("{}"), "routes: is required");
    assert_has(
        &errors(r#"{"routes": []}"#),
        "routes: is empty: give at least one route",
    );
    assert_has(&errors("[]"), "must be an object, not an array");
}

#[test]
fn syntax_errors_give_the_offset() {
    let e = errors(r#"{"routes": [}"#);
    assert_eq!(e, ["invalid JSON at byte 12: unexpected character"]);
}

#[test]
fn names_that_could_inject_are_refused() {
    let e = route_errors(
        r#""routing_header": "x-version\r\nx-evil: 1",
           "key_chain": [{"cookie": "a=b; Path"}, {"header": "x y"}, {"new_client_id": {"cookie": "id;", "path": "/;Domain=evil"}}]"#,
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("routes[0].routing_header: ") && m.contains("not a valid header name")),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|m| m.starts_with("routes[0].key_chain[0].cookie: ")),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|m| m.starts_with("routes[0].key_chain[1].header: ")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("routes[0].key_chain[2].new_client_id.cookie: ")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("routes[0].key_chain[2].new_client_id.path: ")),
        "{e:#?}"
    );
    let e = route_errors(r#""routing_header": "cookie""#);
    assert_has(
        &e,
        r#"routes[0].routing_header: "cookie" is reserved by HTTP and cannot be used here"#,
    );
    let e = errors(r#"{"response_header": "set-cookie", "routes": []}"#);
    assert_has(
        &e,
        r#"response_header: "set-cookie" is reserved by HTTP and cannot be used here"#,
    );
}

#[test]
fn hosts_are_checked_and_normalised() {
    let p = policy(r#""hosts": ["Shop.Example.COM.", "*.shop.example.com", "*"]"#);
    assert_eq!(p.routes()[0].hosts(), ["shop.example.com", "*.shop.example.com", "*"]);
    let e = route_errors(r#""hosts": ["", "a.*.com", "example.com:443", "-a.com", "a..com", "a.com", "A.com"]"#);
    for i in 0..5 {
        assert!(
            e.iter().any(|m| m.starts_with(&format!("routes[0].hosts[{i}]: "))),
            "{i}: {e:#?}"
        );
    }
    assert_has(&e, r#"routes[0].hosts[6]: "a.com" is listed twice"#);
}

#[test]
fn empty_hosts_are_refused() {
    assert_has(
        &route_errors(r#""hosts": []"#),
        "routes[0].hosts: is empty: give at least one host",
    );
}

#[test]
fn two_routes_cannot_claim_the_same_host_and_prefix() {
    let e = errors(&format!(
        r#"{{"routes": [{}, {}]}}"#,
        route_json(""),
        route_json(r#""name": "other""#)
    ));
    assert_has(
        &e,
        r#"routes[1].hosts[0]: "shop.example.com" with this path prefix is already served by routes[0], so this route would never match"#,
    );
    let e = errors(&format!(
        r#"{{"routes": [{}, {}]}}"#,
        route_json(""),
        route_json(r#""hosts": ["x.com"]"#)
    ));
    assert_has(&e, r#"routes[1].name: "shop" is already the name of routes[0]"#);
}

#[test]
fn key_chain_shape_is_checked() {
    let e = route_errors(
        r#""key_chain": [{"cookie": "a"}, {"cookie": "a"}, "client_address", {"header": "x"}, {"magic": 1}, 7, {"cookie": 1}]"#,
    );
    assert_has(&e, "routes[0].key_chain[1]: repeats an earlier key source");
    assert_has(
        &e,
        "routes[0].key_chain[3]: can never be reached: new_client_id and client_address always yield a key, so they must come last",
    );
    assert_has(
        &e,
        r#"routes[0].key_chain[4].magic: unknown key source (cookie, header, identity_header, new_client_id or "client_address")"#,
    );
    assert!(
        e.iter().any(|m| m.starts_with("routes[0].key_chain[5]: must be")),
        "{e:#?}"
    );
    assert_has(
        &e,
        "routes[0].key_chain[6].cookie: must be a string (the name), not a number",
    );
}

#[test]
fn new_client_id_settings_are_checked() {
    let e = route_errors(
        r#""key_chain": [{"new_client_id": {"same_site": "None", "secure": false, "max_age_seconds": 99999999, "colour": 1}}]"#,
    );
    assert_has(
        &e,
        r#"routes[0].key_chain[0].new_client_id.same_site: "None" needs secure: true (browsers drop the cookie otherwise)"#,
    );
    assert_has(
        &e,
        "routes[0].key_chain[0].new_client_id.max_age_seconds: 99999999 is above 34560000 (400 days, what browsers allow)",
    );
    assert_has(&e, "routes[0].key_chain[0].new_client_id.colour: unknown field");
}

#[test]
fn override_rules_are_checked() {
    let e =
        route_errors(r#""override": {"header": "x-canary-version", "allow": ["v3", "v2", "v2"], "secret": "short"}"#);
    assert_has(&e, "routes[0].override.header: must differ from the routing header");
    assert_has(
        &e,
        r#"routes[0].override.allow[0]: "v3" is not one of this route's versions"#,
    );
    assert_has(&e, r#"routes[0].override.allow[2]: "v2" is listed twice"#);
    assert_has(&e, "routes[0].override.secret_header: is required when secret is set");
    let e = route_errors(r#""override": {"allow": ["v2"], "secret_header": "x-k", "secret": "short"}"#);
    assert_has(
        &e,
        "routes[0].override.secret: is shorter than 16 characters: too easy to guess",
    );
    let e = route_errors(r#""override": {"allow": []}"#);
    assert_has(
        &e,
        "routes[0].override.allow: is empty: list the versions testers may force",
    );
}

#[test]
fn salts_with_nul_are_refused() {
    let e = route_errors(r#""salt": "a\u0000b""#);
    assert_has(
        &e,
        "routes[0].salt: holds a NUL character, which the hash uses as the separator between salt and key",
    );
}

#[test]
fn duplicate_members_are_refused() {
    let e = errors(r#"{"routes": [], "routes": []}"#);
    assert_has(&e, "routes: is given more than once");
}

// ---------- routing ----------

#[test]
fn routes_match_exact_then_longest_wildcard_then_any() {
    let doc = format!(
        r#"{{"routes": [{}, {}, {}, {}, {}]}}"#,
        route_json(r#""name": "any", "hosts": ["*"]"#),
        route_json(r#""name": "wide", "hosts": ["*.example.com"]"#),
        route_json(r#""name": "narrow", "hosts": ["*.shop.example.com"]"#),
        route_json(r#""name": "exact", "hosts": ["shop.example.com"]"#),
        route_json(r#""name": "api", "hosts": ["shop.example.com"], "path_prefix": "/api/""#),
    );
    let p = Policy::from_json(doc.as_bytes()).unwrap();
    assert!(p.needs_path());
    let name = |host: &str, path: &str| {
        p.find_route(host.as_bytes(), path.as_bytes())
            .map(|r| r.name().to_owned())
    };
    assert_eq!(name("shop.example.com", "/"), Some("exact".into()));
    assert_eq!(name("SHOP.example.com:8443", "/api/cart?x=1"), Some("api".into()));
    assert_eq!(name("shop.example.com", "/apiary"), Some("exact".into()));
    assert_eq!(name("eu.shop.example.com", "/"), Some("narrow".into()));
    assert_eq!(name("a.b.shop.example.com", "/"), Some("narrow".into()));
    assert_eq!(name("www.example.com", "/"), Some("wide".into()));
    assert_eq!(name("example.com", "/"), Some("any".into()));
    assert_eq!(name("other.org", "/"), Some("any".into()));
    assert_eq!(p.find_route_index(b"www.example.com", b"/"), Some(1));
}

#[test]
fn unmatched_requests_get_no_route() {
    let p = policy(r#""path_prefix": "/shop""#);
    assert!(p.find_route(b"other.example.com", b"/shop").is_none());
    assert!(p.find_route(b"shop.example.com", b"/blog").is_none());
    assert!(p.find_route(b"", b"").is_none());
    assert!(p.find_route(&[b'a'; 1000], b"/shop").is_none());
    assert!(p.find_route(b"shop.example.com", b"/shop/cart").is_some());
}

// ---------- decisions ----------

#[test]
fn cookie_comes_before_header_and_header_before_fallback() {
    let p = policy("");
    let r = &p.routes()[0];
    let both = r.decide(&mut Req::default().with("cookie", b"session=abc").with("x-user-id", b"u1"));
    assert_eq!(both.source, KeySource::Cookie);
    assert_eq!(both.bucket, Some(policy_core::bucket(b"s1", b"abc")));
    let header = r.decide(&mut Req::default().with("x-user-id", b" u1 "));
    assert_eq!(header.source, KeySource::Header);
    assert_eq!(header.bucket, Some(policy_core::bucket(b"s1", b"u1")));
    let neither = r.decide(&mut Req::default().with("cookie", b"other=1"));
    assert_eq!(
        (neither.source, neither.version, neither.bucket),
        (KeySource::None, 0, None)
    );
}

#[test]
fn the_version_follows_the_bucket_ranges() {
    let p = policy(
        r#""versions": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 30}, {"name": "v3", "weight": 20}]"#,
    );
    let r = &p.routes()[0];
    assert_eq!(r.version_for_bucket(0), 1);
    assert_eq!(r.version_for_bucket(2999), 1);
    assert_eq!(r.version_for_bucket(3000), 2);
    assert_eq!(r.version_for_bucket(4999), 2);
    assert_eq!(r.version_for_bucket(5000), 0);
    assert_eq!(r.version_for_bucket(9999), 0);
    for key in ["a", "b", "c", "user-42", "\"q\""] {
        let d = r.decide(&mut Req::default().with("x-user-id", key.as_bytes()));
        assert_eq!(
            d.version,
            r.version_for_bucket(policy_core::bucket(b"s1", key.as_bytes()))
        );
    }
}

#[test]
fn a_new_client_gets_an_id_used_for_this_very_request() {
    let p = policy(
        r#""key_chain": [{"cookie": "session"}, {"new_client_id": {"cookie": "sc-id", "path": "/app", "domain": "example.com",
            "max_age_seconds": 3600, "http_only": false, "secure": true, "same_site": "Strict"}}]"#,
    );
    let r = &p.routes()[0];
    let mut req = Req {
        random: Some([0x5a; 16]),
        ..Req::default()
    };
    let d = r.decide(&mut req);
    let id = "5a".repeat(16);
    assert_eq!(d.source, KeySource::NewId);
    assert_eq!(d.bucket, Some(policy_core::bucket(b"s1", id.as_bytes())));
    assert_eq!(
        d.set_cookie.as_deref(),
        Some(format!("sc-id={id}; Path=/app; Domain=example.com; Max-Age=3600; Secure; SameSite=Strict").as_str())
    );
    let back = r.decide(&mut Req::default().with("cookie", format!("sc-id={id}").as_bytes()));
    assert_eq!(
        (back.source, back.version, back.set_cookie),
        (KeySource::Cookie, d.version, None)
    );
    // The Cookie header is read once even with two cookie sources.
    assert_eq!(req.reads.iter().filter(|r| *r == "cookie").count(), 1);
}

#[test]
fn without_randomness_a_new_client_falls_back_to_stable() {
    let p = policy(r#""key_chain": [{"new_client_id": {}}]"#);
    let d = p.routes()[0].decide(&mut Req::default());
    assert_eq!((d.source, d.version, d.set_cookie), (KeySource::None, 0, None));
}

#[test]
fn client_address_is_a_key_without_its_port() {
    let p = policy(r#""key_chain": [{"cookie": "s"}, "client_address"]"#);
    let r = &p.routes()[0];
    let d = r.decide(&mut Req {
        address: Some(b"203.0.113.7:51234".to_vec()),
        ..Req::default()
    });
    assert_eq!(d.source, KeySource::Address);
    assert_eq!(d.bucket, Some(policy_core::bucket(b"s1", b"203.0.113.7")));
    let v6 = r.decide(&mut Req {
        address: Some(b"[2001:db8::7]:443".to_vec()),
        ..Req::default()
    });
    assert_eq!(v6.bucket, Some(policy_core::bucket(b"s1", b"2001:db8::7")));
}

#[test]
fn weighted_fallback_picks_per_request() {
    let p = policy(r#""no_key": "weighted""#);
    let r = &p.routes()[0];
    let mut random = [0u8; 16];
    random[..8].copy_from_slice(&5u64.to_be_bytes());
    let d = r.decide(&mut Req {
        random: Some(random),
        ..Req::default()
    });
    assert_eq!((d.source, d.bucket, d.version), (KeySource::None, Some(5), 1));
    let e = route_errors(r#""no_key": "random""#);
    assert_has(&e, r#"routes[0].no_key: "random" is not one of "stable", "weighted""#);
}

#[test]
fn override_is_honoured_only_for_allowed_versions() {
    let p = policy(
        r#""versions": [{"name": "v1", "weight": 100}, {"name": "v2", "weight": 0}, {"name": "v3", "weight": 0}],
           "override": {"allow": ["v2"]}"#,
    );
    let r = &p.routes()[0];
    let forced = r.decide(
        &mut Req::default()
            .with("x-canary-force", b"v2")
            .with("cookie", b"session=a"),
    );
    assert_eq!((forced.source, forced.version), (KeySource::Override, 1));
    let refused = r.decide(
        &mut Req::default()
            .with("x-canary-force", b"v3")
            .with("cookie", b"session=a"),
    );
    assert_eq!((refused.source, refused.version), (KeySource::Cookie, 0));
    let unknown = r.decide(&mut Req::default().with("x-canary-force", b"V2"));
    assert_eq!(unknown.source, KeySource::None);
}

#[test]
fn override_with_a_secret_needs_the_proof() {
    let p = policy(r#""override": {"allow": ["v2"], "secret_header": "x-canary-key", "secret": "0123456789abcdef"}"#);
    let r = &p.routes()[0];
    let public = r.decide(&mut Req::default().with("x-canary-force", b"v2"));
    assert_ne!(public.source, KeySource::Override);
    let wrong = r.decide(
        &mut Req::default()
            .with("x-canary-force", b"v2")
            .with("x-canary-key", b"0123456789abcdeX"),
    );
    assert_ne!(wrong.source, KeySource::Override);
    let proven = r.decide(
        &mut Req::default()
            .with("x-canary-force", b"v2")
            .with("x-canary-key", b"0123456789abcdef"),
    );
    assert_eq!((proven.source, proven.version), (KeySource::Override, 1));
}

#[test]
fn rollback_to_zero_moves_everyone_to_stable() {
    let p = policy(r#""versions": [{"name": "v1", "weight": 100}, {"name": "v2", "weight": 0}]"#);
    let r = &p.routes()[0];
    for i in 0..2000 {
        let d = r.decide(&mut Req::default().with("x-user-id", format!("user-{i}").as_bytes()));
        assert_eq!(d.version, 0);
    }
}

#[test]
fn quoted_and_binary_keys_are_taken_byte_for_byte() {
    let p = policy("");
    let r = &p.routes()[0];
    let q = r.decide(&mut Req::default().with("cookie", b"session=\"abc\""));
    assert_eq!(q.bucket, Some(policy_core::bucket(b"s1", b"\"abc\"")));
    let bin = r.decide(&mut Req::default().with("cookie", b"session=\xff\x00\xfe"));
    assert_eq!(bin.bucket, Some(policy_core::bucket(b"s1", b"\xff\x00\xfe")));
}

#[test]
fn split_over_ten_thousand_keys_follows_the_weights() {
    for canary in [10u32, 50, 90] {
        let p = policy(&format!(
            r#""versions": [{{"name": "v1", "weight": {}}}, {{"name": "v2", "weight": {canary}}}]"#,
            100 - canary
        ));
        let r = &p.routes()[0];
        let on_canary = (0..10_000)
            .filter(|i| r.assign(format!("client-{i}").as_bytes()).1 == 1)
            .count();
        let share = on_canary as f64 / 100.0;
        assert!((share - f64::from(canary)).abs() <= 1.5, "{canary}%: {share}%");
    }
}

#[test]
fn routing_token_is_checked() {
    let p = policy(r#""routing_token": {"value": "0123456789abcdef-token"}"#);
    let token = p.routes()[0].routing_token().unwrap();
    assert_eq!(
        (token.header.as_str(), token.value.as_str()),
        ("x-canary-token", "0123456789abcdef-token")
    );
    assert_eq!(p.routing_headers(), ["x-canary-version"]);
    // A separate token header: the routing header carries the bare version name.
    assert!(p.routes()[0].separate_routing_token().is_some());
    let names: Vec<&str> = p.routes()[0].versions().iter().map(|v| v.routing_value()).collect();
    assert_eq!(names, ["v1", "v2"]);
    // The routing header itself: the token travels in its value, after the version and a `;`.
    let p = policy(r#""routing_token": {"header": "x-canary-version", "value": "0123456789abcdef-token"}"#);
    assert!(p.routes()[0].routing_token().is_some());
    assert!(p.routes()[0].separate_routing_token().is_none());
    let values: Vec<&str> = p.routes()[0].versions().iter().map(|v| v.routing_value()).collect();
    assert_eq!(values, ["v1;0123456789abcdef-token", "v2;0123456789abcdef-token"]);
    let e = route_errors(r#""routing_token": {"header": "x-canary-version", "value": "short"}"#);
    assert_has(
        &e,
        "routes[0].routing_token.value: is shorter than 16 characters: too easy to guess",
    );
    let e = route_errors(r#""routing_token": {"value": "has a space in it ok"}"#);
    assert_has(
        &e,
        "routes[0].routing_token.value: may hold visible ASCII characters only (it is a header value matched exactly)",
    );
    let e = route_errors(r#""routing_token": {}"#);
    assert_has(&e, "routes[0].routing_token.value: is required");
    let e = route_errors(
        r#""routing_token": {"header": "x-canary-force", "value": "0123456789abcdef"}, "override": {"allow": ["v2"]}"#,
    );
    assert_has(
        &e,
        "routes[0].routing_token.header: must differ from the override headers",
    );
}

#[test]
fn the_position_is_the_bucket_rule_at_the_tools_weight() {
    // docs/assignment.md §5: with stable listed first, Envoy sends position p to the canary
    // when p >= 100 - w, which must be exactly "bucket < 100 w", the filter's own rule.
    let p = policy(r#""position_header": "x-canary-position""#);
    let route = &p.routes()[0];
    assert_eq!(route.position_header(), Some("x-canary-position"));
    for key in 0..3000u32 {
        let key = format!("user-{key}");
        let mut req = Req::default().with("cookie", format!("session={key}").as_bytes());
        let decision = route.decide(&mut req);
        let bucket = decision.bucket.unwrap();
        assert_eq!(bucket, policy_core::bucket(b"s1", key.as_bytes()));
        let position = u32::from(route.position(&decision));
        assert!(position <= 99);
        for weight in [0u32, 1, 10, 37, 50, 99, 100] {
            // Envoy: position mod 100 over [0, 100 - w) stable, [100 - w, 100) canary.
            let envoy_canary = weight > 0 && position % 100 >= 100 - weight;
            assert_eq!(envoy_canary, u32::from(bucket) < 100 * weight, "{key} at {weight}%");
        }
    }
    // No key: 0, which is stable whenever stable has any weight.
    let decision = route.decide(&mut Req::default());
    assert_eq!(decision.source, KeySource::None);
    assert_eq!(route.position(&decision), 0);
}

#[test]
fn an_override_takes_the_ends_of_the_positions() {
    let p = policy(
        r#""position_header": "x-canary-position", "override": {"header": "x-canary-force", "allow": ["v1", "v2"]}"#,
    );
    let route = &p.routes()[0];
    let canary = route.decide(&mut Req::default().with("x-canary-force", b"v2"));
    assert_eq!(route.position(&canary), 99);
    let stable = route.decide(&mut Req::default().with("x-canary-force", b"v1"));
    assert_eq!(route.position(&stable), 0);
}

#[test]
fn a_position_header_needs_two_versions_and_its_own_name() {
    let errors = route_errors(
        r#""position_header": "x-canary-version", "versions": [{"name": "v1", "weight": 80}, {"name": "v2", "weight": 10}, {"name": "v3", "weight": 10}]"#,
    );
    assert_has(
        &errors,
        "routes[0].position_header: must differ from the routing, token and override headers",
    );
    assert_has(
        &errors,
        "routes[0].position_header: needs exactly two versions, stable then canary: the weighted clusters a tool manages are two",
    );
    assert_has(
        &route_errors(r#""position_header": "bad header""#),
        "routes[0].position_header: \"bad header\" is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)",
    );
}

#[test]
fn the_exposure_log_is_off_unless_asked_and_must_be_a_boolean() {
    assert!(!policy("").exposure_log());
    let doc = format!(r#"{{"exposure_log": true, "routes": [{}]}}"#, route_json(""));
    assert!(Policy::from_json(doc.as_bytes()).unwrap().exposure_log());
    let doc = format!(r#"{{"exposure_log": "yes", "routes": [{}]}}"#, route_json(""));
    let e = errors(&doc);
    assert!(e.iter().any(|m| m.starts_with("exposure_log:")), "{e:?}");
}
