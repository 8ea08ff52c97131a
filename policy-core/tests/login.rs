#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! The key-choice rules that keep a user's version through login, logout, a rotated session,
//! a second device and months of visits (docs/assignment.md §3): unit tests for each rule and
//! property tests over random ids, identities, stamps and weights.
//! Native only: proptest needs an OS RNG (rules.rs runs the config checks under wasm too).
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeMap;

use policy_core::{bucket, identity_id, ClientId, Decision, KeySource, Policy, Request, Route};
use proptest::prelude::*;

/// A request made of a cookie jar, headers, randomness and a date.
#[derive(Default, Clone)]
struct Req {
    cookies: Vec<(String, String)>,
    headers: BTreeMap<String, Vec<u8>>,
    random: Option<[u8; 16]>,
    today: Option<u32>,
}

impl Req {
    fn cookie(mut self, name: &str, value: &str) -> Req {
        self.cookies.push((name.to_owned(), value.to_owned()));
        self
    }
    fn header(mut self, name: &str, value: &[u8]) -> Req {
        self.headers.insert(name.to_owned(), value.to_vec());
        self
    }
    fn random(mut self, bytes: [u8; 16]) -> Req {
        self.random = Some(bytes);
        self
    }
    fn on_day(mut self, day: u32) -> Req {
        self.today = Some(day);
        self
    }
}

impl Request for Req {
    type Header = Vec<u8>;
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        if name == "cookie" {
            if self.cookies.is_empty() {
                return None;
            }
            let pairs: Vec<String> = self.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
            return Some(pairs.join("; ").into_bytes());
        }
        self.headers.get(name).cloned()
    }
    fn client_address(&mut self) -> Option<Vec<u8>> {
        None
    }
    fn random(&mut self) -> Option<[u8; 16]> {
        self.random
    }
    fn today(&mut self) -> Option<u32> {
        self.today
    }
}

/// A browser's cookie jar for one site: the last Set-Cookie of a name wins.
#[derive(Default, Clone)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn store(&mut self, decision: &Decision) {
        if let Some(set_cookie) = &decision.set_cookie {
            let pair = set_cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.set(name, value);
        }
    }
    fn set(&mut self, name: &str, value: &str) {
        self.0.retain(|(n, _)| n != name);
        self.0.push((name.to_owned(), value.to_owned()));
    }
    fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn request(&self) -> Req {
        Req {
            cookies: self.0.clone(),
            ..Req::default()
        }
    }
}

const DAY: u32 = 20_415;

/// The recommended chain (docs/config.md): a trusted identity header, then the client id.
fn recommended(canary_basis_points: u32) -> Policy {
    policy(
        canary_basis_points,
        r#"[{"identity_header": "x-user-sub"}, {"new_client_id": {"cookie": "sc-id"}}]"#,
    )
}

/// The chain written for the old semantics (and still the demo's): the app's session cookie first.
fn session_first(canary_basis_points: u32) -> Policy {
    policy(
        canary_basis_points,
        r#"[{"cookie": "session"}, {"header": "x-user-id"}, {"new_client_id": {"cookie": "sc-id"}}]"#,
    )
}

fn policy(canary_basis_points: u32, key_chain: &str) -> Policy {
    let canary = policy_core::format_percent(canary_basis_points);
    let stable = policy_core::format_percent(10_000 - canary_basis_points);
    let doc = format!(
        r#"{{"routes": [{{"name": "app", "hosts": ["*"], "salt": "login-salt",
            "versions": [{{"name": "v1", "weight": {stable}}}, {{"name": "v2", "weight": {canary}}}],
            "key_chain": {key_chain}}}]}}"#
    );
    Policy::from_json(doc.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{doc}"))
}

/// One browser's visit: first page, login, rotated session, logout; the versions it was served.
fn journey(route: &Route, jar: &mut Jar, random: [u8; 16], identity: Option<&[u8]>, day: u32) -> Vec<usize> {
    let mut served = Vec::new();
    let mut send = |jar: &mut Jar, logged_in: bool| {
        let mut req = jar.request().random(random).on_day(day);
        if let (true, Some(identity)) = (logged_in, identity) {
            req = req.header("x-user-sub", identity);
        }
        let decision = route.decide(&mut req);
        jar.store(&decision);
        served.push(decision.version);
    };
    send(jar, false); // first page: a new id
    send(jar, false); // second page
    jar.set("session", "s-before-login");
    send(jar, true); // login
    jar.set("session", "s-rotated-at-login");
    send(jar, true); // the framework rotates the session id
    send(jar, true);
    jar.remove("session");
    send(jar, false); // logout
    served
}

#[test]
fn login_rotation_and_logout_never_move_a_user_with_either_chain() {
    for make in [recommended as fn(u32) -> Policy, session_first] {
        for canary in [1000, 5000] {
            let policy = make(canary);
            let route = &policy.routes()[0];
            let mut moved = 0;
            for user in 0..2000u32 {
                let mut random = [0u8; 16];
                random[..4].copy_from_slice(&user.to_be_bytes());
                let identity = format!("user-{user}");
                let served = journey(route, &mut Jar::default(), random, Some(identity.as_bytes()), DAY);
                if served.iter().any(|&v| v != served[0]) {
                    moved += 1;
                }
            }
            assert_eq!(moved, 0, "users moved at {canary} basis points");
        }
    }
}

#[test]
fn the_old_semantics_moved_users_at_login() {
    // The old rule (keyed by the session once it appears) moves about 2·p·(1−p) at login.
    let policy = policy(5000, r#"[{"cookie": "session"}]"#);
    let route = &policy.routes()[0];
    let moved = (0..2000)
        .filter(|user| {
            let id = policy_core::hex_id([*user as u8; 16]);
            let before = route.assign(format!("{id}-{user}").as_bytes()).1;
            let after = route.assign(format!("session-{user}").as_bytes()).1;
            before != after
        })
        .count();
    assert!((800..1200).contains(&moved), "{moved} of 2000 would have moved");
}

#[test]
fn the_id_cookie_wins_over_session_header_and_identity() {
    let policy = session_first(5000);
    let route = &policy.routes()[0];
    let id = "0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5";
    let mut req = Req::default()
        .cookie("session", "abc")
        .cookie("sc-id", &format!("{id}.{DAY}"))
        .header("x-user-id", b"u1")
        .on_day(DAY);
    let d = route.decide(&mut req);
    assert_eq!(
        (d.source, d.bucket, d.set_cookie),
        (KeySource::Cookie, Some(bucket(b"login-salt", id.as_bytes())), None)
    );

    let policy = recommended(5000);
    let route = &policy.routes()[0];
    let d = route.decide(
        &mut Req::default()
            .cookie("sc-id", id)
            .header("x-user-sub", b"alice")
            .on_day(DAY),
    );
    assert_eq!(d.source, KeySource::Cookie);
    assert_eq!(d.bucket, Some(bucket(b"login-salt", id.as_bytes())));
}

#[test]
fn without_the_id_cookie_the_chain_decides_as_before() {
    let policy = session_first(5000);
    let route = &policy.routes()[0];
    // A client that keeps only the app's session (an API client, or a user from before this
    // version): keyed by the session, and no id is pushed on it (it would move them next time).
    let d = route.decide(&mut Req::default().cookie("session", "abc").random([9; 16]).on_day(DAY));
    assert_eq!(
        (d.source, d.bucket, d.set_cookie),
        (KeySource::Cookie, Some(bucket(b"login-salt", b"abc")), None)
    );
    let d = route.decide(&mut Req::default().header("x-user-id", b"u1").random([9; 16]));
    assert_eq!((d.source, d.set_cookie), (KeySource::Header, None));
}

#[test]
fn a_second_device_logged_in_gets_the_identity_version_and_keeps_it_after_logout() {
    let policy = recommended(5000);
    let route = &policy.routes()[0];
    let derived = identity_id(b"login-salt", b"alice");
    let expected = route.assign(derived.as_bytes());
    for device in 0..3u8 {
        let mut jar = Jar::default();
        let first = route.decide(
            &mut jar
                .request()
                .header("x-user-sub", b" alice ")
                .random([device; 16])
                .on_day(DAY),
        );
        assert_eq!(
            (first.source, first.bucket, first.version),
            (KeySource::Identity, Some(expected.0), expected.1)
        );
        assert_eq!(
            first.set_cookie.as_deref(),
            Some(format!("sc-id={derived}.{DAY}; Path=/; Max-Age=2592000; HttpOnly; Secure; SameSite=Lax").as_str())
        );
        jar.store(&first);
        let logged_in = route.decide(&mut jar.request().header("x-user-sub", b"alice").on_day(DAY));
        assert_eq!(
            (logged_in.source, logged_in.version, logged_in.set_cookie),
            (KeySource::Cookie, expected.1, None)
        );
        let logged_out = route.decide(&mut jar.request().random([0xee; 16]).on_day(DAY + 3));
        assert_eq!((logged_out.source, logged_out.version), (KeySource::Cookie, expected.1));
    }
}

#[test]
fn an_api_client_with_only_a_header_is_keyed_by_it_every_time() {
    let policy = recommended(5000);
    let route = &policy.routes()[0];
    let decisions: Vec<Decision> = (0..5u8)
        .map(|i| {
            route.decide(
                &mut Req::default()
                    .header("x-user-sub", b"service-7")
                    .random([i; 16])
                    .on_day(DAY),
            )
        })
        .collect();
    assert!(decisions
        .iter()
        .all(|d| d.source == KeySource::Identity && d.version == decisions[0].version));
    // It ignores cookies, so it is offered the id each time; the id would decide the same way.
    assert!(decisions.iter().all(|d| d.set_cookie.is_some()));
}

#[test]
fn identity_without_a_client_id_issues_no_cookie() {
    let policy = policy(5000, r#"[{"identity_header": "x-user-sub"}]"#);
    let d = policy.routes()[0].decide(&mut Req::default().header("x-user-sub", b"alice").on_day(DAY));
    assert_eq!((d.source, d.set_cookie), (KeySource::Identity, None));
    assert_eq!(
        d.bucket,
        Some(bucket(b"login-salt", identity_id(b"login-salt", b"alice").as_bytes()))
    );
    let empty = policy.routes()[0].decide(&mut Req::default().header("x-user-sub", b"  "));
    assert_eq!(empty.source, KeySource::None);
}

#[test]
fn new_ids_are_stamped_with_today_when_the_date_is_known() {
    let policy = recommended(5000);
    let route = &policy.routes()[0];
    let d = route.decide(&mut Req::default().random([0xab; 16]).on_day(DAY));
    let id = "ab".repeat(16);
    assert_eq!(d.source, KeySource::NewId);
    assert!(d
        .set_cookie
        .as_deref()
        .unwrap()
        .starts_with(&format!("sc-id={id}.{DAY}; ")));
    let undated = route.decide(&mut Req::default().random([0xab; 16]));
    assert!(undated
        .set_cookie
        .as_deref()
        .unwrap()
        .starts_with(&format!("sc-id={id}; ")));
    assert_eq!(undated.bucket, d.bucket);
}

#[test]
fn the_refresh_slides_at_most_once_per_interval() {
    let policy = policy(
        5000,
        r#"[{"new_client_id": {"cookie": "sc-id", "refresh_after_days": 7}}]"#,
    );
    let route = &policy.routes()[0];
    let id = "0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5";
    let at = |value: &str, today: Option<u32>| {
        let mut req = Req::default().cookie("sc-id", value);
        req.today = today;
        route.decide(&mut req)
    };
    let expected_bucket = Some(bucket(b"login-salt", id.as_bytes()));
    let refreshed = format!("sc-id={id}.{DAY}; Path=/; Max-Age=2592000; HttpOnly; Secure; SameSite=Lax");
    for (value, today, set_cookie) in [
        (format!("{id}.{DAY}"), Some(DAY), None),
        (format!("{id}.{}", DAY - 6), Some(DAY), None),
        (format!("{id}.{}", DAY - 7), Some(DAY), Some(refreshed.clone())),
        (format!("{id}.0"), Some(DAY), Some(refreshed.clone())),
        (id.to_owned(), Some(DAY), Some(refreshed.clone())), // today's format, stamped once
        (id.to_owned(), None, None),                         // no clock: left alone
        (format!("{id}.{}", DAY + 1), Some(DAY), None),      // from the future: left alone
        (format!("{id}.999999999"), Some(DAY), None),
    ] {
        let d = at(&value, today);
        assert_eq!(d.bucket, expected_bucket, "{value}");
        assert_eq!(d.set_cookie, set_cookie, "{value} on {today:?}");
    }
    // A value the filter never issued is a key as it stands, and never refreshed.
    for value in [
        "alice",
        "alice.5",
        "0AF1C3E5D7B9A8F6E4C2B0A9F8E7D6C5.5",
        "0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.1234567890",
    ] {
        let d = at(value, Some(DAY));
        assert_eq!(
            (d.bucket, d.set_cookie),
            (Some(bucket(b"login-salt", value.as_bytes())), None),
            "{value}"
        );
    }
}

#[test]
fn refresh_and_identity_settings_are_validated() {
    let errors = |chain: &str| {
        let doc = format!(
            r#"{{"routes": [{{"name": "app", "hosts": ["*"], "salt": "s",
            "versions": [{{"name": "v1", "weight": 100}}], "key_chain": {chain}}}]}}"#
        );
        Policy::from_json(doc.as_bytes()).unwrap_err().to_string()
    };
    assert_eq!(
        errors(r#"[{"new_client_id": {"refresh_after_days": 0}}]"#),
        "routes[0].key_chain[0].new_client_id.refresh_after_days: must be at least 1 (a day)"
    );
    assert_eq!(
        errors(r#"[{"new_client_id": {"max_age_seconds": 604800, "refresh_after_days": 7}}]"#),
        "routes[0].key_chain[0].new_client_id.refresh_after_days: 7 day(s) is not shorter than max_age_seconds (604800 s): the cookie would expire before its refresh"
    );
    assert_eq!(
        errors(r#"[{"new_client_id": {"refresh_after_days": 1.5}}]"#),
        "routes[0].key_chain[0].new_client_id.refresh_after_days: 1.5 is not a whole number of days"
    );
    assert_eq!(
        errors(r#"[{"new_client_id": {"max_age_seconds": -1, "refresh_after_days": 2}}]"#),
        "routes[0].key_chain[0].new_client_id.max_age_seconds: -1 is not a whole number of seconds",
        "a bad max_age is reported once, not again through the refresh"
    );
    assert_eq!(
        errors(r#"[{"identity_header": "cookie"}]"#),
        r#"routes[0].key_chain[0].identity_header: "cookie" is reserved by HTTP and cannot be used here"#
    );
    assert_eq!(
        errors(r#"[{"identity_header": 3}]"#),
        "routes[0].key_chain[0].identity_header: must be a string (the name), not a number"
    );
    assert_eq!(
        errors(r#"[{"new_client_id": {}}, {"identity_header": "x-user-sub"}]"#),
        "routes[0].key_chain[1]: can never be reached: new_client_id and client_address always yield a key, so they must come last"
    );
    // Old configs stay valid: a short Max-Age with the default refresh is accepted.
    let ok = r#"{"routes": [{"name": "app", "hosts": ["*"], "salt": "s", "versions": [{"name": "v1", "weight": 100}],
        "key_chain": [{"cookie": "session"}, {"new_client_id": {"max_age_seconds": 3600}}]}]}"#;
    assert!(Policy::from_json(ok.as_bytes()).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever else the request carries, a client with the id cookie is keyed by the id alone.
    #[test]
    fn the_id_cookie_decides_whatever_else_comes(
        id in proptest::array::uniform16(any::<u8>()),
        stamp in proptest::option::of(0u32..1_000_000_000), // 1 to 9 digits: a stamp
        today in proptest::option::of(any::<u32>()),
        session in "[a-zA-Z0-9]{1,30}",
        identity in proptest::collection::vec(1u8..=255, 1..40),
        canary in 0u32..=10_000,
    ) {
        let id = policy_core::hex_id(id);
        let value = match stamp { Some(s) => format!("{id}.{s}"), None => id.clone() };
        for policy in [recommended(canary), session_first(canary)] {
            let route = &policy.routes()[0];
            let mut req = Req::default()
                .cookie("session", &session)
                .cookie("sc-id", &value)
                .header("x-user-sub", &identity)
                .header("x-user-id", &identity);
            req.today = today;
            let d = route.decide(&mut req);
            prop_assert_eq!(d.source, KeySource::Cookie);
            prop_assert_eq!((d.bucket.unwrap(), d.version), route.assign(id.as_bytes()));
            if let Some(set_cookie) = &d.set_cookie {
                // Only ever the same id, with today's stamp.
                prop_assert_eq!(set_cookie.split(';').next().unwrap(), format!("sc-id={id}.{}", today.unwrap()));
            }
        }
    }

    /// Nothing appended to a cookie value lets a client choose its bucket through the stamp:
    /// either the value is `ID.DAY` and only ID is hashed, or the whole value is.
    #[test]
    fn hostile_values_never_panic_and_hash_the_id_or_the_whole_value(
        value in proptest::collection::vec(any::<u8>(), 0..80),
        today in any::<u32>(),
    ) {
        let parsed = ClientId::parse(&value);
        prop_assert!(parsed.key == value.as_slice() || (parsed.key.len() == 32 && value.starts_with(parsed.key)));
        if parsed.key != value.as_slice() {
            prop_assert!(parsed.stamp.is_some());
        }
        let _ = parsed.needs_refresh(today, 1);
    }

    /// A user on a version stays on it through any sequence of logins, rotations and logouts,
    /// and a ramp step moves them only from stable to the canary.
    #[test]
    fn journeys_move_nobody_and_a_ramp_moves_only_stable_users_up(
        random in proptest::array::uniform16(any::<u8>()),
        identity in proptest::option::of("[a-z0-9]{1,20}"),
        low in 0u32..=10_000, raise in 0u32..=10_000,
        day in 1u32..100_000,
    ) {
        let high = (low + raise).min(10_000);
        let before = recommended(low);
        let mut jar = Jar::default();
        let served = journey(&before.routes()[0], &mut jar, random, identity.as_deref().map(str::as_bytes), day);
        prop_assert!(served.iter().all(|&v| v == served[0]), "{:?}", served);
        let after = recommended(high);
        let later = after.routes()[0].decide(&mut jar.request().on_day(day + 40));
        prop_assert!(later.version == served[0] || (served[0] == 0 && later.version == 1));
        prop_assert!(jar.get("sc-id").is_some());
    }
}
