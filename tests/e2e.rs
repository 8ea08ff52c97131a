#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! End-to-end: the built filter in a real Envoy, two upstream versions, raw HTTP clients.
//!
//! One Envoy (or two) per test, started by `sticky_canary_harness`; tests take
//! a global lock so they run one at a time even with the default test threads
//! (each drives Envoy hard enough to disturb another's timing on 2 cores).
//! A failing assertion prints Envoy's log tail (the `Envoy` drop does it).
//!
//! Run one: `cargo test --test e2e ramp_under_load`. See docs/testing.md.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sticky_canary_harness::backend::seen_headers;
use sticky_canary_harness::load::{over_connections, Load};
use sticky_canary_harness::{
    Backend, Client, CookieJar, Envoy, EnvoyConfig, FilterSpec, HarnessError, Request, Response, SetCookie,
    UpdateOutcome,
};

const ROUTING_HEADER: &str = "x-canary-version";
const APP_HOST: &str = "app.example.com";
/// A second route whose only key is a header and whose fallback is stable.
const PLAIN_HOST: &str = "plain.example.com";
/// A host no route serves.
const OTHER_HOST: &str = "other.example.com";

/// Serialises the tests of this file.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Unwraps a harness result, printing the error with `Display` (it carries Envoy's log on start failures).
fn must<T>(result: Result<T, HarnessError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{what}: {error}"),
    }
}

/// The filter config of these tests: v2 is the canary at `canary_percent`.
fn config(canary_percent: u32) -> String {
    let stable = 100 - canary_percent;
    format!(
        r#"{{
  "routes": [
    {{
      "name": "my-app",
      "hosts": ["{APP_HOST}"],
      "salt": "e2e-salt-1",
      "routing_header": "{ROUTING_HEADER}",
      "versions": [{{"name": "v1", "weight": {stable}}}, {{"name": "v2", "weight": {canary_percent}}}],
      "key_chain": [
        {{"cookie": "session"}},
        {{"header": "x-user-id"}},
        {{"new_client_id": {{"cookie": "sc-id", "path": "/", "max_age_seconds": 2592000, "http_only": true, "secure": false, "same_site": "Lax"}}}}
      ],
      "no_key": "stable",
      "override": {{"header": "x-canary-force", "allow": ["v2"]}}
    }},
    {{
      "name": "plain",
      "hosts": ["{PLAIN_HOST}"],
      "salt": "e2e-salt-2",
      "routing_header": "{ROUTING_HEADER}",
      "versions": [{{"name": "v1", "weight": {stable}}}, {{"name": "v2", "weight": {canary_percent}}}],
      "key_chain": [{{"header": "x-user-id"}}],
      "no_key": "stable"
    }}
  ],
  "response_header": "x-canary-served"
}}"#
    )
}

/// What policy-core says `key` gets on the route for `host` under `config_json`.
struct Predictor {
    policy: policy_core::Policy,
}

impl Predictor {
    fn new(config_json: &str) -> Predictor {
        let policy = policy_core::Policy::from_json(config_json.as_bytes())
            .unwrap_or_else(|e| panic!("the test config is invalid:\n{e}\n{config_json}"));
        Predictor { policy }
    }

    fn version(&self, host: &str, key: &str) -> String {
        let route = self
            .policy
            .find_route(host.as_bytes(), b"/")
            .unwrap_or_else(|| panic!("no route for {host}"));
        let (_, index) = route.assign(key.as_bytes());
        route.versions()[index].name().to_owned()
    }

    /// The version of a client-id cookie value: its id, without the day stamp (docs/assignment.md §3).
    fn version_of_id(&self, host: &str, cookie_value: &str) -> String {
        let key = policy_core::ClientId::parse(cookie_value.as_bytes()).key;
        self.version(host, std::str::from_utf8(key).expect("an issued id is ASCII"))
    }

    /// `count` keys `prefix-N` that land on `version`.
    fn keys_on(&self, host: &str, prefix: &str, version: &str, count: usize) -> Vec<String> {
        (0..100_000)
            .map(|i| format!("{prefix}-{i}"))
            .filter(|k| self.version(host, k) == version)
            .take(count)
            .collect()
    }
}

/// Envoy with the embedded filter in front of v1 (stable) and v2. Fields drop in order: Envoy first.
struct Stack {
    envoy: Envoy,
    v1: Backend,
    v2: Backend,
}

fn stack_with(config_json: &str, concurrency: u32) -> Stack {
    let v1 = must(Backend::start("v1"), "start backend v1");
    let v2 = must(Backend::start("v2"), "start backend v2");
    let envoy_config = EnvoyConfig::by_header(ROUTING_HEADER, &[&v1, &v2])
        .with_filter(FilterSpec::embedded(config_json))
        .with_concurrency(concurrency);
    let envoy = must(Envoy::start(&envoy_config), "start Envoy with the filter");
    Stack { envoy, v1, v2 }
}

fn stack(config_json: &str) -> Stack {
    stack_with(config_json, 2)
}

fn connect(envoy: &Envoy) -> Client {
    must(Client::connect(envoy.listener()), "connect to Envoy")
}

fn send(client: &mut Client, request: &Request) -> Response {
    let response = must(client.send(request), "send a request through Envoy");
    assert_eq!(
        response.status,
        200,
        "request {:?} got {} {}",
        String::from_utf8_lossy(&request.to_bytes()),
        response.status,
        response.body_text()
    );
    response
}

/// The version that served a response (the backend's own header).
fn served(response: &Response) -> String {
    response.header_str("x-served-version")
}

fn app(path: &str) -> Request {
    Request::get(path).host(APP_HOST)
}

fn with_session(key: &str) -> Request {
    app("/").header("Cookie", format!("session={key}"))
}

/// Sends one request per key (cookie `session`) over `threads` keep-alive connections;
/// returns key -> served version.
fn serve_keys(envoy: &Envoy, keys: &[String], threads: usize) -> HashMap<String, String> {
    let replies = must(
        over_connections(envoy.listener(), keys, threads, |client, key| {
            let response = client.send(&with_session(key)).map_err(|e| format!("key {key}: {e}"))?;
            if response.status != 200 {
                return Err(format!(
                    "key {key}: status {} {}",
                    response.status,
                    response.body_text()
                ));
            }
            Ok((key.clone(), served(&response)))
        }),
        "connect to Envoy",
    );
    replies
        .into_iter()
        .map(|reply| reply.unwrap_or_else(|message| panic!("{message}")))
        .collect()
}

// ---------------------------------------------------------------------------
// The harness itself, without the filter.

#[test]
fn envoy_routes_by_routing_header_without_filter() {
    let _serial = serial();
    let v1 = must(Backend::start("v1"), "start v1");
    let v2 = must(Backend::start("v2"), "start v2");
    let envoy = must(
        Envoy::start(&EnvoyConfig::by_header(ROUTING_HEADER, &[&v1, &v2])),
        "start Envoy",
    );
    let mut client = connect(&envoy);
    assert_eq!(
        served(&send(&mut client, &Request::get("/"))),
        "v1",
        "no header goes to stable"
    );
    assert_eq!(
        served(&send(&mut client, &Request::get("/").header(ROUTING_HEADER, "v2"))),
        "v2"
    );
    assert_eq!(
        served(&send(&mut client, &Request::get("/").header("X-Canary-Version", "v2"))),
        "v2"
    );
    assert_eq!(
        served(&send(&mut client, &Request::get("/").header(ROUTING_HEADER, "v9"))),
        "v1"
    );
    let reply = send(&mut client, &Request::get("/").header(ROUTING_HEADER, "v2"));
    assert_eq!(
        seen_headers(&reply.body, ROUTING_HEADER),
        vec![b"v2".to_vec()],
        "Envoy forwards the header"
    );
    assert_eq!(client.connections_opened, 1, "one keep-alive connection");
    assert_eq!((v1.requests(), v2.requests()), (2, 3));
}

#[test]
fn weighted_clusters_are_random_per_request_without_filter() {
    let _serial = serial();
    let v1 = must(Backend::start("v1"), "start v1");
    let v2 = must(Backend::start("v2"), "start v2");
    let envoy = must(
        Envoy::start(&EnvoyConfig::weighted(&[(&v1, 50), (&v2, 50)])),
        "start Envoy",
    );
    let mut client = connect(&envoy);
    let mut counts = BTreeMap::new();
    for _ in 0..400 {
        let reply = send(&mut client, &Request::get("/").header("Cookie", "session=one-user"));
        *counts.entry(served(&reply)).or_insert(0u32) += 1;
    }
    // The same user lands on both versions: what sticky routing fixes.
    let v2_share = counts.get("v2").copied().unwrap_or(0);
    assert!(
        (120..=280).contains(&v2_share),
        "v2 served {v2_share} of 400 at weight 50: {counts:?}"
    );
}

#[test]
fn envoy_is_stopped_on_drop() {
    let _serial = serial();
    let v1 = must(Backend::start("v1"), "start v1");
    let envoy = must(
        Envoy::start(&EnvoyConfig::by_header(ROUTING_HEADER, &[&v1])),
        "start Envoy",
    );
    let pid = envoy.pid();
    let admin = envoy.admin();
    let dir = envoy.dir().map(std::path::Path::to_path_buf).expect("a temp dir");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(envoy);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "Envoy {pid} still runs"
    );
    assert!(std::net::TcpStream::connect(admin).is_err(), "admin port still open");
    assert!(!dir.exists(), "temp dir {} left behind", dir.display());
}

// ---------------------------------------------------------------------------
// Scenario 1: stickiness.

#[test]
fn stickiness_200_clients_20_requests() {
    let _serial = serial();
    let config_json = config(50);
    let stack = stack(&config_json);
    let addr = stack.envoy.listener();
    let changes = Arc::new(AtomicUsize::new(0));
    let report = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..4)
        .map(|thread| {
            let changes = Arc::clone(&changes);
            let report = Arc::clone(&report);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let client_number = thread * 50 + i;
                    let mut jar = CookieJar::default();
                    // Half bring their own session cookie, half get a client id from the filter.
                    if client_number % 2 == 0 {
                        jar.set("session", &format!("sticky-user-{client_number}"));
                    }
                    let mut client = Client::connect(addr).expect("connect");
                    let mut versions = Vec::with_capacity(20);
                    for _ in 0..20 {
                        let reply = client.send(&jar.apply(app("/"))).expect("request");
                        assert_eq!(reply.status, 200, "{}", reply.body_text());
                        jar.store(&reply);
                        versions.push(served(&reply));
                    }
                    let moved = versions.windows(2).filter(|w| w[0] != w[1]).count();
                    changes.fetch_add(moved, Ordering::Relaxed);
                    if moved > 0 {
                        report
                            .lock()
                            .unwrap()
                            .push(format!("client {client_number} ({:?}): {versions:?}", jar.cookies));
                    }
                    report.lock().unwrap().push(format!("first:{}", versions[0]));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("client thread");
    }
    let report = report.lock().unwrap();
    let moved: Vec<&String> = report.iter().filter(|l| !l.starts_with("first:")).collect();
    assert_eq!(changes.load(Ordering::Relaxed), 0, "version changes: {moved:#?}");
    let on_v2 = report.iter().filter(|l| *l == "first:v2").count();
    assert!((60..=140).contains(&on_v2), "{on_v2} of 200 clients on v2 at 50%");
    assert_eq!(stack.v1.requests() + stack.v2.requests(), 4000);
}

// ---------------------------------------------------------------------------
// Scenario 2: split accuracy and agreement with `sticky-canary assign`.

/// Runs the real CLI: `sticky-canary assign --config C --keys K` -> key -> version.
fn cli_assign(config_json: &str, keys: &[String]) -> HashMap<String, String> {
    let dir = must(sticky_canary_harness::temp_dir("assign"), "temp dir");
    let config_path = dir.path().join("config.json");
    let keys_path = dir.path().join("keys.txt");
    std::fs::write(&config_path, config_json).unwrap();
    std::fs::write(&keys_path, keys.join("\n") + "\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sticky-canary"))
        .args(["assign", "--host", APP_HOST, "--config"])
        .arg(&config_path)
        .arg("--keys")
        .arg(&keys_path)
        .output()
        .expect("run sticky-canary assign");
    assert!(
        output.status.success(),
        "sticky-canary assign failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|line| {
            let mut fields = line.split('\t');
            let key = fields.next().unwrap_or_default().to_owned();
            let _bucket = fields.next();
            (key, fields.next().unwrap_or_default().to_owned())
        })
        .collect()
}

#[test]
fn split_matches_weights_and_assign_at_10_50_90() {
    let _serial = serial();
    let keys: Vec<String> = (0..10_000).map(|i| format!("split-key-{i}")).collect();
    let mut stack = stack(&config(10));
    let mut summary = Vec::new();
    for (step, percent) in [10u32, 50, 90].into_iter().enumerate() {
        let config_json = config(percent);
        if step > 0 {
            let outcome = must(stack.envoy.update_filter_config(&config_json), "push the config");
            assert_eq!(outcome, UpdateOutcome::Accepted, "config at {percent}%");
        }
        let started = Instant::now();
        let served_by = serve_keys(&stack.envoy, &keys, 4);
        let elapsed = started.elapsed();
        let predicted = cli_assign(&config_json, &keys);
        assert_eq!(predicted.len(), keys.len(), "assign printed one line per key");
        let mismatches: Vec<_> = keys
            .iter()
            .filter(|k| served_by.get(*k) != predicted.get(*k))
            .map(|k| (k, served_by.get(k), predicted.get(k)))
            .collect();
        let on_canary = served_by.values().filter(|v| *v == "v2").count();
        let share = on_canary as f64 * 100.0 / keys.len() as f64;
        summary.push(format!(
            "{percent}%: v2 served {share:.2}% of {} keys, {} mismatches, {:.0} req/s",
            keys.len(),
            mismatches.len(),
            keys.len() as f64 / elapsed.as_secs_f64()
        ));
        assert!(
            mismatches.is_empty(),
            "{} keys served differently than predicted at {percent}%, first: {:?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(10)]
        );
        assert!(
            (share - f64::from(percent)).abs() <= 1.5,
            "v2 share {share:.2}% at weight {percent}%"
        );
    }
    eprintln!("{}", summary.join("\n"));
}

// ---------------------------------------------------------------------------
// Scenario 3: new clients get a cookie.

#[test]
fn new_clients_get_set_cookie_and_keep_their_version() {
    let _serial = serial();
    let config_json = config(50);
    let predictor = Predictor::new(&config_json);
    let stack = stack(&config_json);
    let mut client = connect(&stack.envoy);
    let mut versions = BTreeMap::new();
    for n in 0..40 {
        let first = send(&mut client, &app("/"));
        let set_cookies = first.header_all("set-cookie");
        assert_eq!(
            set_cookies.len(),
            1,
            "one Set-Cookie for a new client: {:?}",
            first.headers
        );
        let cookie = SetCookie::parse(set_cookies[0]).expect("a parsable Set-Cookie");
        assert_eq!(cookie.name, "sc-id");
        let id = policy_core::ClientId::parse(cookie.value.as_bytes());
        assert!(
            id.key.len() == 32 && id.stamp.is_some(),
            "client id {:?}: 32 hex digits, a dot, the day",
            cookie.value
        );
        assert_eq!(cookie.attribute("path"), Some(Some("/")));
        assert_eq!(cookie.attribute("max-age"), Some(Some("2592000")));
        assert_eq!(cookie.attribute("httponly"), Some(None));
        assert_eq!(cookie.attribute("samesite"), Some(Some("Lax")));
        assert_eq!(cookie.attribute("secure"), None, "secure is false in the config");
        assert_eq!(cookie.attribute("domain"), None);
        let version = served(&first);
        assert_eq!(
            version,
            predictor.version_of_id(APP_HOST, &cookie.value),
            "the new id's bucket decides"
        );
        assert_eq!(
            first.header_str("x-canary-served"),
            version,
            "response header names the version"
        );
        let mut jar = CookieJar::default();
        jar.store(&first);
        for _ in 0..10 {
            let again = send(&mut client, &jar.apply(app("/")));
            assert_eq!(served(&again), version, "client {n} with {:?} moved", jar.cookies);
            assert!(
                again.header("set-cookie").is_none(),
                "no new cookie for a returning client"
            );
        }
        *versions.entry(version).or_insert(0) += 1;
    }
    assert_eq!(
        versions.len(),
        2,
        "40 new clients at 50% all on one version: {versions:?}"
    );
    // The filter fetches random bytes for 64 ids per host call: ids stay distinct across refills.
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let reply = send(&mut client, &app("/"));
        let set_cookies = reply.header_all("set-cookie");
        let cookie = SetCookie::parse(set_cookies[0]).expect("a parsable Set-Cookie");
        // `ID.DAY`: the id is hashed, the day stamp drives the refresh (docs/assignment.md).
        let (id, day) = cookie.value.split_once('.').unwrap_or((&cookie.value, ""));
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && day.parse::<u32>().is_ok(),
            "client id {:?}",
            cookie.value
        );
        ids.insert(id.to_owned());
    }
    assert_eq!(ids.len(), 300, "new clients were given the same id");
}

// ---------------------------------------------------------------------------
// Scenario 4: key chain order.

#[test]
fn key_chain_cookie_then_header_then_fallback() {
    let _serial = serial();
    let config_json = config(50);
    let predictor = Predictor::new(&config_json);
    let stack = stack(&config_json);
    let mut client = connect(&stack.envoy);
    let header_keys_v2 = predictor.keys_on(APP_HOST, "hdr", "v2", 5);
    let header_keys_v1 = predictor.keys_on(APP_HOST, "hdr", "v1", 5);
    let cookie_keys_v1 = predictor.keys_on(APP_HOST, "ck", "v1", 5);
    let cookie_keys_v2 = predictor.keys_on(APP_HOST, "ck", "v2", 5);
    for i in 0..5 {
        // Header only: the header decides, and no client id is issued.
        let reply = send(&mut client, &app("/").header("x-user-id", &header_keys_v2[i]));
        assert_eq!(served(&reply), "v2", "header key {}", header_keys_v2[i]);
        assert!(
            reply.header("set-cookie").is_none(),
            "a header key needs no new client id"
        );
        // Both: the cookie comes first in the chain.
        let both = app("/")
            .header("Cookie", format!("session={}", cookie_keys_v1[i]))
            .header("x-user-id", &header_keys_v2[i]);
        assert_eq!(
            served(&send(&mut client, &both)),
            "v1",
            "cookie {} before header",
            cookie_keys_v1[i]
        );
        let both = app("/")
            .header("Cookie", format!("other=x; session={}", cookie_keys_v2[i]))
            .header("x-user-id", &header_keys_v1[i]);
        assert_eq!(
            served(&send(&mut client, &both)),
            "v2",
            "cookie {} before header",
            cookie_keys_v2[i]
        );
    }
    // Neither, on the route whose chain ends with a client id: one is issued.
    let reply = send(&mut client, &app("/").header("Cookie", "unrelated=1"));
    assert!(reply.header("set-cookie").is_some(), "fallback issues a client id");
    // Neither, on the route without a client id: stable, every time, no cookie.
    for _ in 0..30 {
        let reply = send(&mut client, &Request::get("/").host(PLAIN_HOST));
        assert_eq!(served(&reply), "v1", "no key falls back to stable");
        assert!(reply.header("set-cookie").is_none());
    }
    // And that route's header key works.
    let plain_v2 = predictor.keys_on(PLAIN_HOST, "plain", "v2", 1);
    let reply = send(
        &mut client,
        &Request::get("/").host(PLAIN_HOST).header("x-user-id", &plain_v2[0]),
    );
    assert_eq!(served(&reply), "v2");
}

// ---------------------------------------------------------------------------
// Unusual but legal requests: the key is still found.

#[test]
fn huge_and_odd_cookies_still_find_the_key() {
    let _serial = serial();
    let config_json = config(50);
    let predictor = Predictor::new(&config_json);
    let stack = stack(&config_json);
    let mut client = connect(&stack.envoy);
    for key in predictor
        .keys_on(APP_HOST, "odd", "v2", 3)
        .iter()
        .chain(&predictor.keys_on(APP_HOST, "odd", "v1", 3))
    {
        let expected = predictor.version(APP_HOST, key);
        // 30 KB of other cookies before ours (Envoy's default header limit is 60 KiB).
        let filler: Vec<String> = (0..1000).map(|i| format!("filler{i}=xxxxxxxxxxxxxxxxxxxx")).collect();
        let huge = app("/").header("Cookie", format!("{}; session={key}", filler.join("; ")));
        assert_eq!(
            served(&send(&mut client, &huge)),
            expected,
            "huge cookie header, key {key}"
        );
        // Non-UTF-8 bytes in another cookie, odd spacing around ours.
        let cookie_line = [b"x=\xff\xfe;  session=".as_slice(), key.as_bytes(), b" ;y=2"].concat();
        let odd = app("/").raw_header(b"COOKIE", &cookie_line);
        assert_eq!(
            served(&send(&mut client, &odd)),
            expected,
            "non-UTF-8 neighbour cookie, key {key}"
        );
    }
    // Cookie names are case-sensitive: `Session` is not our cookie, so a client id is issued.
    let reply = send(&mut client, &app("/").header("Cookie", "Session=someone"));
    assert!(
        reply.header("set-cookie").is_some(),
        "`Session` was taken for `session`"
    );
}

// ---------------------------------------------------------------------------
// Scenario 5: spoofed routing headers and the override.

#[test]
fn spoofed_routing_header_never_changes_the_version() {
    let _serial = serial();
    let config_json = config(50);
    let predictor = Predictor::new(&config_json);
    let stack = stack(&config_json);
    let mut client = connect(&stack.envoy);
    let stable_user = &predictor.keys_on(APP_HOST, "spoof", "v1", 1)[0];
    let spoofs: Vec<Request> = vec![
        with_session(stable_user).header(ROUTING_HEADER, "v2"),
        with_session(stable_user).header("X-Canary-Version", "v2"),
        with_session(stable_user)
            .header("X-CANARY-VERSION", "v2")
            .header(ROUTING_HEADER, "v2"),
        with_session(stable_user)
            .header(ROUTING_HEADER, "v2")
            .header(ROUTING_HEADER, "v1")
            .header(ROUTING_HEADER, "v2"),
        with_session(stable_user).raw_header(b"x-Canary-version", b"v2\xff\xfe"),
        with_session(stable_user).header(ROUTING_HEADER, "v2, v2"),
        with_session(stable_user).header(ROUTING_HEADER, ""),
    ];
    for request in &spoofs {
        let reply = send(&mut client, request);
        let wire = String::from_utf8_lossy(&request.to_bytes()).into_owned();
        assert_eq!(served(&reply), "v1", "spoofed request moved the user:\n{wire}");
        assert_eq!(
            seen_headers(&reply.body, ROUTING_HEADER),
            vec![b"v1".to_vec()],
            "the upstream must see exactly the filter's routing header for:\n{wire}"
        );
    }
    // A new client spoofing gets its own id's version, not the spoofed one.
    for _ in 0..20 {
        let reply = send(
            &mut client,
            &app("/").header(ROUTING_HEADER, "v2").header("X-Canary-Version", "v2"),
        );
        let cookie = SetCookie::parse(reply.header("set-cookie").expect("a new id")).expect("Set-Cookie");
        assert_eq!(served(&reply), predictor.version_of_id(APP_HOST, &cookie.value));
        assert_eq!(seen_headers(&reply.body, ROUTING_HEADER).len(), 1);
    }
}

#[test]
fn override_header_works_only_for_allowed_versions() {
    let _serial = serial();
    let config_json = config(50);
    let predictor = Predictor::new(&config_json);
    let stack = stack(&config_json);
    let mut client = connect(&stack.envoy);
    let stable_user = &predictor.keys_on(APP_HOST, "ovr", "v1", 1)[0];
    let canary_user = &predictor.keys_on(APP_HOST, "ovr", "v2", 1)[0];
    // v2 is allow-listed: the override wins over the key.
    let reply = send(&mut client, &with_session(stable_user).header("x-canary-force", "v2"));
    assert_eq!(served(&reply), "v2", "allowed override");
    assert!(
        seen_headers(&reply.body, "x-canary-force").is_empty(),
        "override header is not forwarded"
    );
    let reply = send(&mut client, &with_session(stable_user).header("X-Canary-Force", "v2"));
    assert_eq!(served(&reply), "v2", "header names are case-insensitive");
    // v1 is not allow-listed: ignored, the key decides.
    let reply = send(&mut client, &with_session(canary_user).header("x-canary-force", "v1"));
    assert_eq!(
        served(&reply),
        "v2",
        "override to a version not on the allow list is ignored"
    );
    // Versions that are not allow-listed, or unknown, are ignored.
    for value in ["v1", "v3", "", "../v2", "v2v2"] {
        let reply = send(&mut client, &with_session(canary_user).header("x-canary-force", value));
        assert_eq!(served(&reply), "v2", "override value {value:?} on a canary user");
        let reply = send(&mut client, &with_session(stable_user).header("x-canary-force", value));
        assert_eq!(served(&reply), "v1", "override value {value:?} on a stable user");
    }
    // The override works without any key too.
    let reply = send(&mut client, &app("/").header("x-canary-force", "v2"));
    assert_eq!(served(&reply), "v2");
}

// ---------------------------------------------------------------------------
// Scenario 6: hosts no route serves.

/// On a gateway shared by many apps, a request for a host no route owns belongs to another app:
/// the filter leaves it exactly as the client sent it (routing headers included). What guards
/// those hosts from a spoofed header is their own VirtualService (the generated ones require the
/// routing token: tests/istio_chain.rs); this test's plain route table routes on the header alone.
#[test]
fn unmatched_host_is_left_untouched() {
    let _serial = serial();
    let stack = stack(&config(100));
    let mut client = connect(&stack.envoy);
    let request = Request::get("/some/path?q=1")
        .host(OTHER_HOST)
        .header(ROUTING_HEADER, "v1")
        .header("X-Canary-Version", "v1")
        .header("Cookie", "session=someone; sc-id=abc")
        .header("x-user-id", "u-1")
        .header("x-canary-force", "v2")
        .header("x-custom", "keep-me");
    for _ in 0..5 {
        let reply = send(&mut client, &request);
        assert_eq!(served(&reply), "v1");
        assert_eq!(
            seen_headers(&reply.body, ROUTING_HEADER),
            vec![b"v1".to_vec(), b"v1".to_vec()],
            "the filter touched the routing headers of a host it does not own"
        );
        assert_eq!(
            seen_headers(&reply.body, "cookie"),
            vec![b"session=someone; sc-id=abc".to_vec()]
        );
        assert_eq!(seen_headers(&reply.body, "x-user-id"), vec![b"u-1".to_vec()]);
        assert_eq!(seen_headers(&reply.body, "x-custom"), vec![b"keep-me".to_vec()]);
        assert_eq!(seen_headers(&reply.body, "x-canary-force"), vec![b"v2".to_vec()]);
        assert!(
            reply.body_text().contains("request: GET /some/path?q=1 HTTP/1.1"),
            "{}",
            reply.body_text()
        );
        assert!(
            reply.header("set-cookie").is_none(),
            "no client id on an unmatched host"
        );
        assert!(
            reply.header("x-canary-served").is_none(),
            "no version header on an unmatched host"
        );
    }
    // The same request on the app host does go to the canary (100%).
    let reply = send(
        &mut client,
        &Request::get("/").host(APP_HOST).header("Cookie", "session=someone"),
    );
    assert_eq!(served(&reply), "v2");
}

// ---------------------------------------------------------------------------
// Scenario 7: ramp without restart, under load.

/// One request of the ramp load.
#[derive(Debug)]
struct Observation {
    user: usize,
    started: Instant,
    /// Index of the config in force when the request started, or `TRANSITION`.
    phase: usize,
    version: String,
}

#[test]
fn ramp_10_50_100_under_load_keeps_canary_users() {
    let _serial = serial();
    const USERS: usize = 300;
    const RATE: u32 = 250;
    const PHASE: Duration = Duration::from_secs(3);
    let percents = [10u32, 50, 100];
    let predictors: Vec<Predictor> = percents.iter().map(|p| Predictor::new(&config(*p))).collect();
    let expected: Vec<Vec<String>> = predictors
        .iter()
        .map(|p| {
            (0..USERS)
                .map(|u| p.version(APP_HOST, &format!("ramp-user-{u}")))
                .collect()
        })
        .collect();
    let mut stack = stack(&config(percents[0]));

    /// Index of the config in force, or `TRANSITION` while an update is being applied.
    const TRANSITION: usize = usize::MAX;
    let phase = Arc::new(AtomicUsize::new(0));
    let log: Arc<Mutex<Vec<Observation>>> = Arc::new(Mutex::new(Vec::with_capacity(4000)));
    let job_phase = Arc::clone(&phase);
    let job_log = Arc::clone(&log);
    let job = Arc::new(move |sequence: u64, client: &mut Client| -> Result<(), String> {
        let user = (sequence as usize) % USERS;
        let phase_at_start = job_phase.load(Ordering::SeqCst);
        let started = Instant::now();
        let reply = client
            .send(&with_session(&format!("ramp-user-{user}")))
            .map_err(|e| format!("user {user}: {e}"))?;
        if reply.status != 200 {
            return Err(format!("user {user}: status {} {}", reply.status, reply.body_text()));
        }
        job_log.lock().map_err(|_| "poisoned")?.push(Observation {
            user,
            started,
            phase: phase_at_start,
            version: served(&reply),
        });
        Ok(())
    });
    let load = must(Load::start(stack.envoy.listener(), 10, RATE, job), "start the load");
    std::thread::sleep(PHASE);
    let mut update_times = Vec::new();
    for (index, percent) in percents.iter().enumerate().skip(1) {
        phase.store(TRANSITION, Ordering::SeqCst);
        let pushed = Instant::now();
        let outcome = must(
            stack.envoy.update_filter_config(&config(*percent)),
            "push the ramp step",
        );
        assert_eq!(outcome, UpdateOutcome::Accepted, "ramp to {percent}%");
        update_times.push(pushed.elapsed());
        phase.store(index, Ordering::SeqCst);
        std::thread::sleep(PHASE);
    }
    let report = load.stop();
    let log = log.lock().unwrap();
    eprintln!(
        "ramp: {} requests at {:.0} req/s, {} failed; updates applied in {:?}",
        report.sent,
        report.rate(),
        report.failed,
        update_times
    );
    if let Err(problem) = report.check(200.0) {
        panic!("during the ramp: {problem}");
    }

    // Every request outside an update window got exactly the predicted version.
    let wrong: Vec<_> = log
        .iter()
        .filter(|o| o.phase != TRANSITION && expected[o.phase][o.user] != o.version)
        .take(10)
        .collect();
    assert!(wrong.is_empty(), "versions differing from the prediction: {wrong:?}");

    // Nobody who was on the canary ever went back.
    let mut by_user: Vec<Vec<(Instant, &str)>> = vec![Vec::new(); USERS];
    for o in log.iter() {
        by_user[o.user].push((o.started, o.version.as_str()));
    }
    let mut went_back = Vec::new();
    for (user, seen) in by_user.iter_mut().enumerate() {
        seen.sort_by_key(|(t, _)| *t);
        if let Some(first_canary) = seen.iter().position(|(_, v)| *v == "v2") {
            if seen[first_canary..].iter().any(|(_, v)| *v != "v2") {
                went_back.push((user, seen.iter().map(|(_, v)| *v).collect::<Vec<_>>()));
            }
        }
    }
    assert!(went_back.is_empty(), "canary users moved back to stable: {went_back:?}");
    // The canary population only grows: 10% users are inside the 50% ones.
    let canary_at = |phase: usize| -> usize { expected[phase].iter().filter(|v| *v == "v2").count() };
    eprintln!(
        "canary users: {} -> {} -> {} of {USERS}",
        canary_at(0),
        canary_at(1),
        canary_at(2)
    );
    assert_eq!(canary_at(2), USERS);
    let last_phase_stable = log.iter().filter(|o| o.phase == 2 && o.version != "v2").count();
    assert_eq!(last_phase_stable, 0, "requests on stable after the 100% step");
}

// ---------------------------------------------------------------------------
// Scenario 8: a bad update is rejected, the old config stays.

#[test]
fn bad_update_is_rejected_and_old_config_kept() {
    let _serial = serial();
    let good = config(10);
    let predictor = Predictor::new(&good);
    let mut stack = stack(&good);
    let keys: Vec<String> = (0..300).map(|i| format!("bad-update-{i}")).collect();
    let mut client = connect(&stack.envoy);
    let check_old_config_serves = |client: &mut Client, when: &str| {
        for key in &keys {
            let reply = send(client, &with_session(key));
            assert_eq!(served(&reply), predictor.version(APP_HOST, key), "{when}: key {key}");
        }
    };
    check_old_config_serves(&mut client, "before the bad update");
    let bad_updates = [
        (
            good.replace(r#""weight": 90"#, r#""weight": 120"#),
            "routes[0].versions[0].weight",
        ),
        (
            good.replace(r#""no_key": "stable","#, r#""no_key": "stable", "colour": "red","#),
            "routes[0].colour",
        ),
        (
            good.replace(r#""salt": "e2e-salt-2","#, r#""salt": "e2e-salt-2", "key_chain": 5,"#),
            "routes[1].key_chain",
        ),
        ("{\"routes\": [".to_owned(), "invalid JSON at byte"),
    ];
    for (bad, field) in &bad_updates {
        let outcome = must(stack.envoy.update_filter_config(bad), "push a bad config");
        let UpdateOutcome::Rejected { log } = outcome else {
            panic!("Envoy accepted a bad config:\n{bad}");
        };
        assert!(log.contains(field), "Envoy's log does not name {field:?}:\n{log}");
        let filter_lines: Vec<&str> = log.lines().filter(|l| l.contains("wasm log")).collect();
        eprintln!("rejected ({field}):\n{}", filter_lines.join("\n"));
        check_old_config_serves(&mut client, "after a rejected update");
    }
    // Both the filter and Envoy count the rejections.
    let prometheus = must(stack.envoy.prometheus(), "scrape /stats/prometheus");
    let rejections = bad_updates.len();
    assert!(
        prometheus.contains(&format!("\nsticky_canary_config_rejections_total{{}} {rejections}\n")),
        "sticky_canary_config_rejections_total is not {rejections}:\n{}",
        prometheus
            .lines()
            .filter(|l| l.contains("reject"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let envoy_rejections = must(
        stack
            .envoy
            .stat("extension_config_discovery.http_filter.sticky-canary.update_rejected"),
        "read /stats",
    );
    assert_eq!(envoy_rejections, Some(rejections as u64));
    // A good update still goes through afterwards.
    let outcome = must(stack.envoy.update_filter_config(&config(100)), "push a good config");
    assert_eq!(outcome, UpdateOutcome::Accepted);
    assert_eq!(served(&send(&mut client, &with_session(&keys[0]))), "v2");
    assert_eq!(client.connections_opened, 1, "updates kept the keep-alive connection");
}

// ---------------------------------------------------------------------------
// Scenario 9: replicas agree.

#[test]
fn two_envoy_replicas_agree_on_every_key() {
    let _serial = serial();
    let config_json = config(30);
    let a = stack_with(&config_json, 1);
    let b = stack_with(&config_json, 2);
    let keys: Vec<String> = (0..3000).map(|i| format!("replica-key-{i}")).collect();
    let on_a = serve_keys(&a.envoy, &keys, 2);
    let on_b = serve_keys(&b.envoy, &keys, 2);
    let differ: Vec<_> = keys.iter().filter(|k| on_a.get(*k) != on_b.get(*k)).take(10).collect();
    assert!(differ.is_empty(), "replicas disagree on {differ:?}");
    // A client id issued by one replica keeps its version on the other.
    let mut client_a = connect(&a.envoy);
    let mut client_b = connect(&b.envoy);
    for _ in 0..100 {
        let first = send(&mut client_a, &app("/"));
        let mut jar = CookieJar::default();
        jar.store(&first);
        let other = send(&mut client_b, &jar.apply(app("/")));
        assert_eq!(
            served(&first),
            served(&other),
            "cookie {:?} moved between replicas",
            jar.cookies
        );
        assert!(other.header("set-cookie").is_none());
    }
}

// ---------------------------------------------------------------------------
// Scenario 10: metrics.

/// `sticky_canary_assignments_total{route="R",version="V",source="S"} N` lines -> ((R, V, S), N).
fn assignment_counters(prometheus: &str) -> BTreeMap<(String, String, String), u64> {
    let mut out = BTreeMap::new();
    for line in prometheus.lines() {
        let Some(rest) = line.strip_prefix("sticky_canary_assignments_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| -> String {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or("")
                .to_owned()
        };
        let key = (label("route"), label("version"), label("source"));
        out.insert(key, value.trim().parse().unwrap_or(u64::MAX));
    }
    out
}

#[test]
fn metrics_count_every_request_with_a_version_label() {
    let _serial = serial();
    let config_json = config(50);
    let predictor = Predictor::new(&config_json);
    let stack = stack(&config_json);
    let mut client = connect(&stack.envoy);
    let mut sent: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let mut count = |route: &str, version: String, source: &str| {
        *sent.entry((route.to_owned(), version, source.to_owned())).or_insert(0) += 1;
    };
    for i in 0..300 {
        let key = format!("metrics-cookie-{i}");
        let reply = send(&mut client, &with_session(&key));
        assert_eq!(served(&reply), predictor.version(APP_HOST, &key));
        count("my-app", served(&reply), "cookie");
    }
    for i in 0..50 {
        let reply = send(
            &mut client,
            &app("/").header("x-user-id", format!("metrics-header-{i}")),
        );
        count("my-app", served(&reply), "header");
    }
    for i in 0..40 {
        let reply = send(
            &mut client,
            &with_session(&format!("metrics-override-{i}")).header("x-canary-force", "v2"),
        );
        assert_eq!(served(&reply), "v2");
        count("my-app", served(&reply), "override");
    }
    for _ in 0..30 {
        let reply = send(&mut client, &app("/"));
        count("my-app", served(&reply), "new_id");
    }
    for _ in 0..20 {
        let reply = send(&mut client, &Request::get("/").host(PLAIN_HOST));
        count("plain", served(&reply), "none");
    }
    for _ in 0..25 {
        send(&mut client, &Request::get("/").host(OTHER_HOST));
    }
    // Counts reach Envoy on the filter's one-second tick: scrape after one (and again while a
    // loaded machine delays a tick), and the totals are exact.
    let nonzero_counters = |prometheus: &str| -> BTreeMap<(String, String, String), u64> {
        assignment_counters(prometheus)
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut prometheus = must(stack.envoy.prometheus_flushed(), "scrape /stats/prometheus");
    while nonzero_counters(&prometheus) != sent && Instant::now() < deadline {
        prometheus = must(stack.envoy.prometheus_flushed(), "scrape /stats/prometheus");
    }
    for line in prometheus.lines().filter(|l| l.starts_with("sticky_canary_")) {
        eprintln!("{line}");
    }
    let nonzero = nonzero_counters(&prometheus);
    assert_eq!(
        nonzero,
        sent,
        "per route/version/source counters differ from the requests sent; scraped:\n{}",
        prometheus
            .lines()
            .filter(|l| l.contains("sticky_canary"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Per version, the counters equal what each backend served (unmatched hosts are not counted).
    let total_for = |version: &str| -> u64 {
        nonzero
            .iter()
            .filter(|((_, v, _), _)| v == version)
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(total_for("v2"), stack.v2.requests());
    assert_eq!(total_for("v1") + 25, stack.v1.requests());
    assert!(prometheus.contains("sticky_canary_assignments_total{route=\"my-app\",version=\"v2\",source=\"cookie\"}"));
}

// ---------------------------------------------------------------------------
// The exposure log: each decision in the access log, through the filter state.

#[test]
fn the_exposure_log_puts_each_decision_in_the_access_log_and_nothing_when_off() {
    let _serial = serial();
    let on = config(30).replacen('{', r#"{ "exposure_log": true,"#, 1);
    let predictor = Predictor::new(&on);
    let policy = &predictor.policy;
    let route = policy.find_route(APP_HOST.as_bytes(), b"/").unwrap();
    let exposed = stack(&on);
    let mut client = connect(&exposed.envoy);
    let keys: Vec<String> = (0..20).map(|i| format!("exposed-{i}")).collect();
    for key in &keys {
        send(&mut client, &with_session(key));
    }
    // A new client, a host no route serves.
    send(&mut client, &app("/new"));
    send(&mut client, &Request::get("/other").host(OTHER_HOST));
    std::thread::sleep(Duration::from_millis(1200));
    let log = exposed.envoy.access_log_tail(100);
    for key in &keys {
        let (bucket, version) = route.assign(key.as_bytes());
        let expected = format!(
            "exposure=\"route=my-app version={} source=cookie bucket={bucket}\"",
            route.versions()[version].name()
        );
        assert!(log.contains(&expected), "no {expected} in the access log:\n{log}");
    }
    assert!(
        log.lines().any(|l| l.contains("/new ")
            && l.contains("exposure=\"route=my-app version=")
            && l.contains("source=new_id bucket=")),
        "the new client's decision is not in the access log:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("{OTHER_HOST}/other")) && l.contains("exposure=\"-\"")),
        "a request on no route got an exposure entry:\n{log}"
    );
    for key in &keys {
        assert!(!log.contains(key.as_str()), "the access log holds a key:\n{log}");
    }
    drop(exposed);

    // Off (the default): nothing in the filter state.
    let plain = stack(&config(30));
    let mut client = connect(&plain.envoy);
    send(&mut client, &with_session("exposed-0"));
    std::thread::sleep(Duration::from_millis(1200));
    let log = plain.envoy.access_log_tail(10);
    assert!(log.contains("exposure=\"-\"") && !log.contains("route=my-app"), "{log}");
}

#[test]
fn the_client_address_is_read_from_envoy_and_keys_the_request() {
    let _serial = serial();
    let address_config = config(50)
        .replacen('{', r#"{ "exposure_log": true,"#, 1)
        .replace(r#"[{"header": "x-user-id"}]"#, r#"["client_address"]"#);
    let predictor = Predictor::new(&address_config);
    let route = predictor.policy.find_route(PLAIN_HOST.as_bytes(), b"/").unwrap();
    let (bucket, version) = route.assign(b"127.0.0.1");
    let stack = stack(&address_config);
    let mut client = connect(&stack.envoy);
    let reply = send(&mut client, &Request::get("/").host(PLAIN_HOST));
    assert_eq!(served(&reply), route.versions()[version].name());
    std::thread::sleep(Duration::from_millis(1200));
    let log = stack.envoy.access_log_tail(5);
    assert!(
        log.contains(&format!("source=address bucket={bucket}\"")),
        "the request was not keyed by 127.0.0.1 (bucket {bucket}):\n{log}"
    );
}

// ---------------------------------------------------------------------------
// A/B/n: arms with max_weight ramp independently (docs/assignment.md §2), through Envoy.

/// A route with stable `v1` and canaries `v2..` at `weights` with `maxes` (percent); every
/// canary but the last declares its max_weight.
fn arms_config(weights: &[u32], maxes: &[u32]) -> String {
    let stable = 100 - weights.iter().sum::<u32>();
    let all: Vec<u32> = std::iter::once(stable).chain(weights.iter().copied()).collect();
    let all_maxes: Vec<u32> = std::iter::once(0).chain(maxes.iter().copied()).collect();
    sticky_policy(&[sticky_config(APP_HOST, "e2e-arms", &all, Some(&all_maxes))])
}

/// 3 and 5 arms, a fixed pseudo-random sequence of weight changes: after each push, every key
/// lands where `sticky-canary assign` says, and every key that changed version went between
/// the changed arm and stable.
#[test]
fn abn_arms_ramp_independently_through_envoy() {
    let _serial = serial();
    let keys: Vec<String> = (0..3000).map(|i| format!("arm-user-{i}")).collect();
    let mut seed: u64 = 0x5eed_a2b3;
    let mut next = |below: u32| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) % u64::from(below)) as u32
    };
    for arms in [3usize, 5] {
        let maxes: Vec<u32> = vec![100 / arms as u32; arms];
        let mut weights: Vec<u32> = maxes.iter().map(|m| m / 2).collect();
        let backends: Vec<Backend> = (1..=arms + 1)
            .map(|v| must(Backend::start(&format!("v{v}")), "start a backend"))
            .collect();
        let refs: Vec<&Backend> = backends.iter().collect();
        let envoy_config = EnvoyConfig::by_header(ROUTING_HEADER, &refs)
            .with_filter(FilterSpec::embedded(arms_config(&weights, &maxes)))
            .with_concurrency(2);
        let mut envoy = must(Envoy::start(&envoy_config), "start Envoy with the filter");
        let mut before = serve_keys(&envoy, &keys, 4);
        assert_eq!(
            before,
            cli_assign(&arms_config(&weights, &maxes), &keys),
            "{arms} arms at start"
        );
        let mut moved_total = 0;
        for step in 0..6 {
            let arm = next(arms as u32) as usize;
            weights[arm] = next(maxes[arm] + 1);
            let config_json = arms_config(&weights, &maxes);
            assert_eq!(
                must(envoy.update_filter_config(&config_json), "push"),
                UpdateOutcome::Accepted,
                "{config_json}"
            );
            let after = serve_keys(&envoy, &keys, 4);
            assert_eq!(
                after,
                cli_assign(&config_json, &keys),
                "{arms} arms, step {step}: {weights:?}"
            );
            let changed_arm = format!("v{}", arm + 2);
            for key in &keys {
                let (was, is) = (&before[key], &after[key]);
                if was != is {
                    moved_total += 1;
                    let pair = [was.as_str(), is.as_str()];
                    assert!(
                        pair.contains(&changed_arm.as_str()) && pair.contains(&"v1"),
                        "{arms} arms, step {step}: {key} moved {was} -> {is}, but only {changed_arm} changed weight"
                    );
                }
            }
            before = after;
        }
        eprintln!(
            "{arms} arms: {moved_total} key moves over 6 weight changes, each between the changed arm and stable"
        );
        assert!(moved_total > 0, "the sequence moved nobody: it tests nothing");
    }
}

// ---------------------------------------------------------------------------
// Blue/green with session drain (docs/assignment.md §6), through Envoy's own clock.

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn bluegreen_config(cutover: Option<(u64, u64, u64)>) -> String {
    let cutover = cutover.map_or(String::new(), |(start, deadline, idle)| {
        format!(r#", "cutover": {{"to": "v2", "start": {start}, "deadline": {deadline}, "idle_seconds": {idle}}}"#)
    });
    format!(
        r#"{{"routes": [{{"name": "my-app", "hosts": ["{APP_HOST}"], "salt": "e2e-bluegreen",
            "routing_header": "{ROUTING_HEADER}",
            "versions": [{{"name": "v1", "weight": 100}}, {{"name": "v2", "weight": 0}}],
            "key_chain": [{{"new_client_id": {{"cookie": "sc-id", "secure": false}}}}]{cutover}}}]}}"#
    )
}

fn cutover_counters(prometheus: &str) -> BTreeMap<String, u64> {
    prometheus
        .lines()
        .filter_map(|line| line.strip_prefix("sticky_canary_cutover_total{"))
        .filter_map(|rest| {
            let (labels, value) = rest.split_once("} ")?;
            let outcome = labels.split(',').find_map(|p| p.strip_prefix("outcome=\""))?;
            Some((outcome.trim_end_matches('"').to_owned(), value.trim().parse().ok()?))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[test]
fn a_bluegreen_cutover_drains_existing_users_and_rolls_back_at_once() {
    let _serial = serial();
    const IDLE: u64 = 3;
    let mut stack = stack(&bluegreen_config(None));
    let mut client = connect(&stack.envoy);
    let mut visit = |jar: &mut CookieJar| -> String {
        let reply = send(&mut client, &jar.apply(app("/")));
        jar.store(&reply);
        served(&reply)
    };
    // 200 users on blue before the cut-over.
    let mut existing: Vec<CookieJar> = (0..200).map(|_| CookieJar::default()).collect();
    for jar in &mut existing {
        assert_eq!(visit(jar), "v1");
    }
    let start = unix_now() - 2;
    let push = |stack: &mut Stack, config: &str| {
        assert_eq!(
            must(stack.envoy.update_filter_config(config), "push"),
            UpdateOutcome::Accepted
        );
    };
    push(&mut stack, &bluegreen_config(Some((start, start + 3600, IDLE))));
    // Newcomers: on green from their first request, and they stay there.
    let mut newcomers: Vec<CookieJar> = (0..100).map(|_| CookieJar::default()).collect();
    for jar in &mut newcomers {
        assert_eq!(visit(jar), "v2", "a new user during the drain");
        assert_eq!(visit(jar), "v2");
    }
    // Existing users keep blue; half keep visiting every second for 5 s (longer than IDLE),
    // the other half stay away.
    let (active, away) = existing.split_at_mut(100);
    for jar in active.iter_mut().chain(away.iter_mut()) {
        assert_eq!(visit(jar), "v1", "an existing user at the start of the drain");
    }
    let away_since = Instant::now();
    while away_since.elapsed() < Duration::from_secs(IDLE + 2) {
        for jar in active.iter_mut() {
            assert_eq!(visit(jar), "v1", "an active existing user during the drain");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Back after more than IDLE: moved to green on that request, and new from then on.
    for jar in away.iter_mut() {
        assert_eq!(visit(jar), "v2", "a user back after {IDLE} s away");
        assert_eq!(visit(jar), "v2");
    }
    for jar in active.iter_mut() {
        assert_eq!(visit(jar), "v1", "still active");
    }
    // The deadline: everyone on green.
    push(
        &mut stack,
        &bluegreen_config(Some((start, unix_now().max(start + 1), IDLE))),
    );
    std::thread::sleep(Duration::from_millis(1100)); // the filter's clock: one tick
    for jar in existing.iter_mut().chain(newcomers.iter_mut()) {
        assert_eq!(visit(jar), "v2", "after the deadline");
    }
    let prometheus = must(stack.envoy.prometheus_flushed(), "scrape");
    let counted = cutover_counters(&prometheus);
    assert_eq!(counted.get("new").copied().unwrap_or(0), 100 * 2 + 100, "{counted:?}");
    assert_eq!(counted.get("moved").copied().unwrap_or(0), 100, "{counted:?}");
    assert!(
        counted.get("kept").copied().unwrap_or(0) >= 200 + 100 + 100,
        "{counted:?}"
    );
    assert_eq!(counted.get("done").copied().unwrap_or(0), 300, "{counted:?}");
    // Rollback: the cut-over removed, everyone on blue at once, whatever their cookie says.
    push(&mut stack, &bluegreen_config(None));
    for jar in existing.iter_mut().chain(newcomers.iter_mut()) {
        assert_eq!(visit(jar), "v1", "after the rollback");
    }
}

// ---------------------------------------------------------------------------
// Alternatives (docs/alternatives.md): Envoy's own hash-based split beside sticky-canary, both on
// the pinned Envoy, the same users, the same weights. The figures this test prints are the table
// of docs/alternatives.md (`cargo test --features sticky-canary/system-tests --test e2e
// alternatives -- --nocapture`).

/// One gateway of the comparison and its app versions (dropped after Envoy).
struct Gateway {
    envoy: Envoy,
    _backends: Vec<Backend>,
}

fn backends(count: usize) -> Vec<Backend> {
    (1..=count)
        .map(|v| must(Backend::start(&format!("v{v}")), "start a backend"))
        .collect()
}

/// Plain Istio weights over v1.. at `weights`: a draw per request.
fn weighted_gateway(weights: &[u32]) -> Gateway {
    let backends = backends(weights.len());
    let pairs: Vec<(&Backend, u32)> = backends.iter().zip(weights.iter().copied()).collect();
    let envoy = must(
        Envoy::start(&EnvoyConfig::weighted(&pairs)),
        "start Envoy with plain weights",
    );
    Gateway {
        envoy,
        _backends: backends,
    }
}

/// Envoy's native split over v1.. at `weights`, hashing cookie `session` (or `ttl`: Envoy sets it).
fn native_gateway(weights: &[u32], cookie: &str, ttl: Option<u32>) -> Gateway {
    let backends = backends(weights.len());
    let pairs: Vec<(&Backend, u32)> = backends.iter().zip(weights.iter().copied()).collect();
    let envoy = must(
        Envoy::start(&EnvoyConfig::hash_weighted(&pairs, cookie, ttl)),
        "start Envoy with the native split",
    );
    Gateway {
        envoy,
        _backends: backends,
    }
}

fn sticky_gateway(config_json: &str, versions: usize) -> Gateway {
    let backends = backends(versions);
    let refs: Vec<&Backend> = backends.iter().collect();
    let envoy = must(
        Envoy::start(&EnvoyConfig::by_header(ROUTING_HEADER, &refs).with_filter(FilterSpec::embedded(config_json))),
        "start Envoy with the filter",
    );
    Gateway {
        envoy,
        _backends: backends,
    }
}

/// A sticky-canary route over v1.. at `weights` (percent), keyed by the id cookie (then
/// `session`), optionally with max_weight on all but the last canary.
fn sticky_config(host: &str, salt: &str, weights: &[u32], maxes: Option<&[u32]>) -> String {
    let versions: Vec<String> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let max = match maxes {
                Some(m) if i > 0 && i + 1 < weights.len() => format!(r#", "max_weight": {}"#, m[i]),
                _ => String::new(),
            };
            format!(r#"{{"name": "v{}", "weight": {w}{max}}}"#, i + 1)
        })
        .collect();
    format!(
        r#"{{"name": "{salt}", "hosts": ["{host}"], "salt": "{salt}", "routing_header": "{ROUTING_HEADER}",
            "versions": [{}], "key_chain": [{{"cookie": "session"}}, {{"new_client_id": {{"cookie": "sc-id", "secure": false}}}}]}}"#,
        versions.join(", ")
    )
}

fn sticky_policy(routes: &[String]) -> String {
    format!(r#"{{"routes": [{}]}}"#, routes.join(", "))
}

/// One request of a user with a cookie jar, on a fresh or kept connection: the version served.
fn visit_with(client: &mut Client, jar: &mut CookieJar, host: &str) -> String {
    let reply = send(client, &jar.apply(Request::get("/").host(host)));
    jar.store(&reply);
    served(&reply)
}

/// New users, 10 requests each on their own connection, keeping what Set-Cookie gives them:
/// (users who saw more than one version, users given a cookie on the first response,
/// distinct cookie values given).
fn first_visits(gateway: &Gateway, host: &str, users: usize, cookie: &str) -> (usize, usize, usize) {
    let mut bounced = 0;
    let mut given = 0;
    let mut values = std::collections::HashSet::new();
    for _ in 0..users {
        let mut client = connect(&gateway.envoy);
        let mut jar = CookieJar::default();
        let mut seen = std::collections::HashSet::new();
        for i in 0..10 {
            seen.insert(visit_with(&mut client, &mut jar, host));
            if i == 0 {
                if let Some(value) = jar.cookies.get(cookie) {
                    given += 1;
                    values.insert(value.clone());
                }
            }
        }
        bounced += usize::from(seen.len() > 1);
    }
    (bounced, given, values.len())
}

/// Users who arrive anonymous, get an app session (`session=anon-N`) after their first
/// response, then log in (`session=auth-N`): how many changed version at the login.
fn login_moves(gateway: &Gateway, host: &str, users: usize) -> usize {
    let mut client = connect(&gateway.envoy);
    let mut moved = 0;
    for u in 0..users {
        let mut jar = CookieJar::default();
        visit_with(&mut client, &mut jar, host);
        jar.set("session", &format!("anon-{u}"));
        let before = visit_with(&mut client, &mut jar, host);
        jar.set("session", &format!("auth-{u}"));
        let after = visit_with(&mut client, &mut jar, host);
        moved += usize::from(before != after);
    }
    moved
}

/// The version of each of `keys` (cookie `session`), one request each.
fn versions_of(gateway: &Gateway, host: &str, keys: &[String]) -> Vec<String> {
    let mut client = connect(&gateway.envoy);
    keys.iter()
        .map(|k| {
            let mut jar = CookieJar::default();
            jar.set("session", k);
            let reply = send(&mut client, &jar.apply(Request::get("/").host(host)));
            served(&reply)
        })
        .collect()
}

/// Users whose version changed between `before` and `after`, and of those, how many moved
/// other than between `arm` and `v1`.
fn moves(before: &[String], after: &[String], arm: &str) -> (usize, usize) {
    let changed: Vec<(&String, &String)> = before.iter().zip(after).filter(|(b, a)| b != a).collect();
    let off = changed
        .iter()
        .filter(|(b, a)| !([b.as_str(), a.as_str()].contains(&arm) && [b.as_str(), a.as_str()].contains(&"v1")))
        .count();
    (changed.len(), off)
}

#[test]
fn alternatives_native_hash_split_beside_sticky_canary() {
    let _serial = serial();
    const USERS: usize = 300;
    let keys: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
    let host = APP_HOST;
    let mut rows: Vec<String> = Vec::new();

    // First visit, at 50/50.
    let native = native_gateway(&[50, 50], "session", None);
    let (native_bounced, native_given, _) = first_visits(&native, host, USERS, "session");
    drop(native);
    let native_ttl = native_gateway(&[50, 50], "session", Some(3600));
    let (ttl_bounced, ttl_given, ttl_values) = first_visits(&native_ttl, host, USERS, "session");
    drop(native_ttl);
    let sticky = sticky_gateway(&sticky_policy(&[sticky_config(host, "app-a", &[50, 50], None)]), 2);
    let (sticky_bounced, sticky_given, sticky_values) = first_visits(&sticky, host, USERS, "sc-id");
    let weighted = weighted_gateway(&[50, 50]);
    let (weighted_bounced, _, _) = first_visits(&weighted, host, USERS, "session");
    let weighted_login = login_moves(&weighted, host, USERS);
    drop(weighted);
    rows.push(format!(
        "| new users who saw both versions within their first 10 requests (50/50, {USERS} users) | {weighted_bounced} | {native_bounced} (no cookie set: {native_given} given one; with `ttl`: {ttl_bounced}, {ttl_given} given one, {ttl_values} distinct) | {sticky_bounced} ({sticky_given} given the id cookie, {sticky_values} distinct) |"
    ));
    assert_eq!(sticky_bounced, 0);
    assert_eq!(sticky_given, USERS);
    assert!(
        native_bounced > USERS / 2,
        "the native split without a cookie re-draws per request"
    );

    // A login mid-visit, at 50/50.
    let sticky_login = login_moves(&sticky, host, USERS);
    drop(sticky);
    let native = native_gateway(&[50, 50], "session", None);
    let native_login = login_moves(&native, host, USERS);
    drop(native);
    rows.push(format!(
        "| users who changed version when they logged in (the app's session cookie rotated; 50/50, {USERS} users) | {weighted_login} | {native_login} | {sticky_login} |"
    ));
    assert_eq!(sticky_login, 0);
    assert!(native_login > USERS / 5);

    // A two-version ramp 10 -> 50 -> 100 -> 0, 2000 users with a session cookie.
    let mut native_back = 0;
    let mut sticky_back = 0;
    let mut weighted_back = 0;
    let mut weighted_prev: Option<Vec<String>> = None;
    let (mut native_prev, mut sticky_prev): (Option<Vec<String>>, Option<Vec<String>>) = (None, None);
    for canary in [10u32, 50, 100] {
        let native = native_gateway(&[100 - canary, canary], "session", None);
        let n = versions_of(&native, host, &keys);
        let sticky = sticky_gateway(
            &sticky_policy(&[sticky_config(host, "app-a", &[100 - canary, canary], None)]),
            2,
        );
        let s = versions_of(&sticky, host, &keys);
        let w = versions_of(&weighted_gateway(&[100 - canary, canary]), host, &keys);
        if let Some(p) = &weighted_prev {
            weighted_back += p.iter().zip(&w).filter(|(b, a)| *b == "v2" && *a == "v1").count();
        }
        weighted_prev = Some(w);
        if let Some(p) = &native_prev {
            native_back += p.iter().zip(&n).filter(|(b, a)| *b == "v2" && *a == "v1").count();
        }
        if let Some(p) = &sticky_prev {
            sticky_back += p.iter().zip(&s).filter(|(b, a)| *b == "v2" && *a == "v1").count();
        }
        native_prev = Some(n);
        sticky_prev = Some(s);
    }
    rows.push(format!(
        "| canary users sent back to stable by a two-version ramp 10 → 50 → 100 % (2,000 users) | {weighted_back} | {native_back} | {sticky_back} |"
    ));
    assert_eq!((native_back, sticky_back), (0, 0));

    // Three versions: raise the last canary from 15 to 25 % (stable 70 -> 60).
    let before_w = [70, 15, 15];
    let after_w = [60, 15, 25];
    let n_before = versions_of(&native_gateway(&before_w, "session", None), host, &keys);
    let n_after = versions_of(&native_gateway(&after_w, "session", None), host, &keys);
    let maxes = [0, 20, 0];
    let s_before = versions_of(
        &sticky_gateway(
            &sticky_policy(&[sticky_config(host, "app-a", &before_w, Some(&maxes))]),
            3,
        ),
        host,
        &keys,
    );
    let s_after = versions_of(
        &sticky_gateway(
            &sticky_policy(&[sticky_config(host, "app-a", &after_w, Some(&maxes))]),
            3,
        ),
        host,
        &keys,
    );
    let (n_changed, n_off) = moves(&n_before, &n_after, "v3");
    let (s_changed, s_off) = moves(&s_before, &s_after, "v3");
    rows.push(format!(
        "| three versions, one canary raised 15 → 25 %: moves other than between that canary and stable (2,000 users) | every request re-drawn | {n_off} of {n_changed} moves | {s_off} of {s_changed} moves (`max_weight` on the first canary) |"
    ));
    assert_eq!(s_off, 0);
    assert!(
        n_off > 0,
        "the native split's cumulative ranges shift the middle canary"
    );

    // Two apps on one gateway, each 10 % canary, the same users.
    let native_a = versions_of(&native_gateway(&[90, 10], "session", None), host, &keys);
    let native_b = versions_of(&native_gateway(&[90, 10], "session", None), host, &keys);
    let two_apps = sticky_gateway(
        &sticky_policy(&[
            sticky_config("a.example.com", "app-a", &[90, 10], None),
            sticky_config("b.example.com", "app-b", &[90, 10], None),
        ]),
        2,
    );
    let sticky_a = versions_of(&two_apps, "a.example.com", &keys);
    let sticky_b = versions_of(&two_apps, "b.example.com", &keys);
    let overlap = |a: &[String], b: &[String]| {
        let on_a = a.iter().filter(|v| *v == "v2").count();
        let both = a.iter().zip(b).filter(|(x, y)| *x == "v2" && *y == "v2").count();
        (both, on_a)
    };
    let (n_both, n_on_a) = overlap(&native_a, &native_b);
    let (s_both, s_on_a) = overlap(&sticky_a, &sticky_b);
    rows.push(format!(
        "| two apps at 10 % each: app A's canary users also on app B's canary (2,000 users) | re-drawn per request | {n_both} of {n_on_a} | {s_both} of {s_on_a} (a salt per app) |"
    ));
    assert_eq!(
        n_both, n_on_a,
        "no salt: the same cookie hashes the same on every route"
    );
    assert!(
        s_both * 3 < s_on_a,
        "salted apps draw independently: {s_both} of {s_on_a}"
    );

    let version = sticky_canary_harness::find_or_install_envoy(None)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!("\nalternatives, measured on {version}:\n");
    println!("| measured | Istio weights (plain weighted clusters) | Envoy's hash split (`use_hash_policy`, cookie `session`) | sticky-canary |");
    println!("|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
