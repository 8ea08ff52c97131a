#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! Hostile requests and hostile configs against the built filter in a real Envoy.
//!
//! Every case checks four things: Envoy's log shows no panic or wasm trap from
//! the filter, the response is not a 5xx, the version that served it is the one
//! `policy_core` predicts for the key as sent (docs/assignment.md), and the
//! request takes about as long as a normal one. Each hostile request is sent
//! [`ROUNDS`] times, interleaved with a normal request on the same connection,
//! and the latencies of both are printed (`--nocapture`) and bounded.
//!
//! Run: `cargo test --test hostile -- --nocapture`. docs/security.md has the figures.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use policy_core::{KeySource, Policy, Request as PolicyRequest};
use sticky_canary_harness::backend::seen_headers;
use sticky_canary_harness::{
    Backend, Client, Envoy, EnvoyConfig, FilterSpec, HarnessError, Request, Response, UpdateOutcome,
};

const HOST: &str = "app.example.com";
const ROUTING_HEADER: &str = "x-canary-version";
const OVERRIDE_HEADER: &str = "x-canary-force";
const SECRET_HEADER: &str = "x-canary-key";
const SECRET: &str = "hostile-override-secret-0123";
const TOKEN_HEADER: &str = "x-canary-token";
const TOKEN: &str = "hostile-routing-token-0123";
/// Requests per hostile case (and as many normal ones), so p99 drops the two worst.
const ROUNDS: usize = 200;
/// The bound asserted on every case's p99, on a shared 2-core box. Typical figures are far lower.
const P99_BOUND: Duration = Duration::from_millis(50);
/// Envoy's request header limit in the large-header tests (its default is 60 KiB).
const LARGE_HEADERS_KB: u32 = 128;

fn config() -> String {
    format!(
        r#"{{
  "routes": [{{
    "name": "app",
    "hosts": ["{HOST}"],
    "salt": "hostile-salt",
    "routing_header": "{ROUTING_HEADER}",
    "versions": [{{"name": "v1", "weight": 70}}, {{"name": "v2", "weight": 20}}, {{"name": "v3", "weight": 10}}],
    "key_chain": [
      {{"cookie": "session"}},
      {{"header": "x-user-id"}},
      {{"new_client_id": {{"cookie": "sc-id", "secure": false}}}}
    ],
    "override": {{"header": "{OVERRIDE_HEADER}", "allow": ["v2"], "secret_header": "{SECRET_HEADER}", "secret": "{SECRET}"}},
    "routing_token": {{"header": "{TOKEN_HEADER}", "value": "{TOKEN}"}}
  }}],
  "response_header": "x-canary-served"
}}"#
    )
}

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn must<T>(result: Result<T, HarnessError>, what: &str) -> T {
    result.unwrap_or_else(|error| panic!("{what}: {error}"))
}

/// A request view of raw HTTP/1.1 header lines, as Envoy shows them to the
/// filter: names ignore case, and a repeated header gives its first value
/// (Envoy's `getHeaderMapValue` returns the first entry; over HTTP/1.1 that
/// holds for `cookie` too, while Envoy's HTTP/2 codec joins cookie crumbs into one).
struct Sent<'a>(&'a [(Vec<u8>, Vec<u8>)]);

impl PolicyRequest for Sent<'_> {
    type Header = Vec<u8>;
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.clone())
    }
    fn client_address(&mut self) -> Option<Vec<u8>> {
        None
    }
    fn random(&mut self) -> Option<[u8; 16]> {
        Some([0; 16])
    }
}

struct Stack {
    envoy: Envoy,
    policy: Policy,
    _backends: Vec<Backend>,
}

impl Stack {
    fn start(max_request_headers_kb: Option<u32>) -> Stack {
        let config_json = config();
        let policy = Policy::from_json(config_json.as_bytes()).unwrap_or_else(|e| panic!("test config: {e}"));
        let backends: Vec<Backend> = ["v1", "v2", "v3"]
            .iter()
            .map(|v| must(Backend::start(v), "start a backend"))
            .collect();
        let refs: Vec<&Backend> = backends.iter().collect();
        // Routes like the generated VirtualService: a version route needs the routing token too,
        // and the token is removed before the app.
        let mut envoy_config = EnvoyConfig::by_header(ROUTING_HEADER, &refs)
            .with_routing_token(TOKEN_HEADER, TOKEN)
            .with_filter(FilterSpec::embedded(config_json));
        if let Some(kb) = max_request_headers_kb {
            envoy_config = envoy_config.with_max_request_headers_kb(kb);
        }
        let envoy = must(Envoy::start(&envoy_config), "start Envoy with the filter");
        Stack {
            envoy,
            policy,
            _backends: backends,
        }
    }

    /// The version policy-core picks for this request (override, then the key chain).
    fn predict(&self, request: &Request) -> (String, KeySource) {
        let route = self.policy.find_route(HOST.as_bytes(), b"/").expect("the test route");
        let decision = route.decide(&mut Sent(&request.headers));
        (route.versions()[decision.version].name().to_owned(), decision.source)
    }

    /// A key `make(i)` for the first `i` whose version is `version` (so a skipped filter would show).
    fn key_on(&self, version: &str, make: impl Fn(u32) -> Vec<u8>) -> Vec<u8> {
        let route = &self.policy.routes()[0];
        (0..10_000)
            .map(make)
            .find(|key| route.versions()[route.assign(key).1].name() == version)
            .expect("a key on the version")
    }

    /// No panic, trap or failed wasm call in Envoy's log so far.
    fn assert_no_panic(&self) {
        let log = self.envoy.log_tail(1_000_000);
        for line in log.lines() {
            let lower = line.to_ascii_lowercase();
            assert!(
                !(lower.contains("panic") || lower.contains("runtimeerror") || lower.contains("wasm trap")),
                "Envoy log: {line}"
            );
        }
    }
}

fn app() -> Request {
    Request::get("/").host(HOST)
}

/// Latencies of one case.
#[derive(Default)]
struct Timings(BTreeMap<String, Vec<Duration>>);

impl Timings {
    fn add(&mut self, case: &str, took: Duration) {
        self.0.entry(case.to_owned()).or_default().push(took);
    }

    fn percentile(sorted: &[Duration], p: f64) -> Duration {
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    /// Prints p50 / p99 / max per case and asserts the p99 bound.
    fn report_and_bound(&self, title: &str) {
        println!("\n{title}: latency per request, {ROUNDS} requests per case (ms)");
        println!("{:<58} {:>8} {:>8} {:>8}", "case", "p50", "p99", "max");
        let mut over = Vec::new();
        for (case, times) in &self.0 {
            let mut sorted = times.clone();
            sorted.sort();
            let (p50, p99, max) = (
                Self::percentile(&sorted, 0.50),
                Self::percentile(&sorted, 0.99),
                sorted[sorted.len() - 1],
            );
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!("{case:<58} {:>8.2} {:>8.2} {:>8.2}", ms(p50), ms(p99), ms(max));
            if p99 > P99_BOUND {
                over.push(format!("{case}: p99 {p99:?}"));
            }
        }
        assert!(over.is_empty(), "p99 above {P99_BOUND:?}: {over:?}");
    }
}

fn timed(client: &mut Client, request: &Request) -> (Response, Duration) {
    let start = Instant::now();
    let response = must(client.send(request), "send a request through Envoy");
    (response, start.elapsed())
}

/// Sends `request` [`ROUNDS`] times, each followed by a normal request, and checks every answer.
fn run_case(stack: &Stack, client: &mut Client, timings: &mut Timings, case: &str, request: &Request) {
    let (expected, _) = stack.predict(request);
    let normal_key = "normal-user-1";
    let normal = app().header("Cookie", format!("session={normal_key}"));
    let (normal_expected, _) = stack.predict(&normal);
    for _ in 0..ROUNDS {
        let (response, took) = timed(client, request);
        check(&response, case, &expected);
        timings.add(case, took);
        let (response, took) = timed(client, &normal);
        check(&response, "normal request", &normal_expected);
        timings.add("  normal request (same Envoy, interleaved)", took);
    }
    stack.assert_no_panic();
}

fn check(response: &Response, case: &str, expected: &str) {
    assert_eq!(
        response.status,
        200,
        "{case}: status {} {}",
        response.status,
        String::from_utf8_lossy(&response.body[..response.body.len().min(300)])
    );
    let served = response.header_str("x-served-version");
    assert_eq!(served, expected, "{case}: served by {served}, expected {expected}");
    // Exactly one routing header reached the app, the filter's. A canary version served means
    // the route saw the filter's token (forged ones match no route); the route then removed it.
    assert_eq!(
        seen_headers(&response.body, ROUTING_HEADER),
        vec![expected.as_bytes().to_vec()],
        "{case}: routing headers seen upstream"
    );
    assert!(
        seen_headers(&response.body, TOKEN_HEADER).is_empty(),
        "{case}: the routing token reached the app"
    );
    assert!(
        seen_headers(&response.body, OVERRIDE_HEADER).is_empty(),
        "{case}: {OVERRIDE_HEADER} reached the app"
    );
}

#[test]
fn hostile_requests_get_the_documented_version_quickly() {
    let _serial = serial();
    let stack = Stack::start(Some(LARGE_HEADERS_KB));
    let mut client = must(Client::connect(stack.envoy.listener()), "connect to Envoy");
    let mut timings = Timings::default();
    let mut case = |name: &str, request: Request| run_case(&stack, &mut client, &mut timings, name, &request);

    let token = |prefix: &str, len: usize| {
        let prefix = prefix.to_owned();
        move |i: u32| {
            let mut key = format!("{prefix}{i}-").into_bytes();
            key.resize(len, b'k');
            key
        }
    };
    let session = |key: &[u8]| [b"session=".as_slice(), key].concat();

    // 64 KiB Cookie headers (above Envoy's default limit, so this Envoy allows 128 KiB).
    let padding = format!("pad={}", "p".repeat(64 * 1024));
    let key = stack.key_on("v3", token("big-", 12));
    case(
        "64 KiB cookie header, key after the padding",
        app().raw_header(b"Cookie", &[padding.as_bytes(), b"; ", &session(&key)].concat()),
    );
    case(
        "64 KiB cookie header, key before the padding",
        app().raw_header(
            b"Cookie",
            &[session(&key).as_slice(), b"; ", padding.as_bytes()].concat(),
        ),
    );

    // 1,000 cookies in one header, and 1,000 empty `session` cookies before the real one.
    let thousand: Vec<String> = (0..1000).map(|i| format!("c{i}=value-{i}")).collect();
    let key = stack.key_on("v2", token("many-", 12));
    case(
        "1,000 cookies, key last",
        app().raw_header(
            b"Cookie",
            &[thousand.join("; ").as_bytes(), b"; ", &session(&key)].concat(),
        ),
    );
    case(
        "1,000 empty duplicates of the key cookie, then it",
        app().raw_header(
            b"Cookie",
            &["session=; ".repeat(1000).as_bytes(), &session(&key)].concat(),
        ),
    );

    // Non-UTF-8 bytes in the key (cookie and header): hashed byte for byte.
    let key = stack.key_on("v3", |i| {
        [b"\xff\xfe\x80".as_slice(), format!("{i}").as_bytes(), b"\xc3\x28"].concat()
    });
    case(
        "non-UTF-8 key in the cookie",
        app().raw_header(b"Cookie", &session(&key)),
    );
    case("non-UTF-8 key in x-user-id", app().raw_header(b"x-user-id", &key));

    // A 10 KB key.
    let key = stack.key_on("v2", token("ten-kb-", 10 * 1024));
    case("10 KB key in the cookie", app().raw_header(b"Cookie", &session(&key)));
    case("10 KB key in x-user-id", app().raw_header(b"x-user-id", &key));

    // Duplicate and mixed-case routing headers: replaced by the filter's one.
    let stable_key = stack.key_on("v1", token("spoof-", 12));
    case(
        "duplicate mixed-case routing headers (key on v1)",
        app()
            .raw_header(b"Cookie", &session(&stable_key))
            .header("X-Canary-Version", "v2")
            .header("x-canary-version", "v3")
            .header("X-CANARY-VERSION", "v2"),
    );
    // Forged routing tokens (duplicated, mixed case) beside a forged routing header: replaced too.
    case(
        "forged routing tokens and routing header (key on v1)",
        app()
            .raw_header(b"Cookie", &session(&stable_key))
            .header("X-Canary-Token", "forged-token-value-0000")
            .header(TOKEN_HEADER, TOKEN)
            .header(ROUTING_HEADER, "v3"),
    );
    // Duplicate key headers: Envoy hands the filter the first value.
    let first = stack.key_on("v3", token("first-", 12));
    let second = stack.key_on("v1", token("second-", 12));
    let request = app().raw_header(b"x-user-id", &first).raw_header(b"X-User-Id", &second);
    assert_eq!(stack.predict(&request).0, "v3");
    case("duplicate mixed-case key headers (first wins)", request);
    // Two Cookie lines over HTTP/1.1 (browsers never send that): the filter reads the first
    // line only, so the key in the second is not seen and the next source (x-user-id) decides.
    let request = app()
        .header("Cookie", "session=; a=1")
        .raw_header(b"cookie", &session(&first))
        .raw_header(b"x-user-id", &second);
    assert_eq!(stack.predict(&request), ("v1".to_owned(), KeySource::Header));
    case("two Cookie lines: only the first is read", request);

    // The override: only `v2`, only with the secret; anything else falls through to the key.
    let key = stack.key_on("v1", token("tester-", 12));
    let with_key = || app().raw_header(b"Cookie", &session(&key));
    for (name, request) in [
        (
            "override to a version not allowed (v3), right secret",
            with_key().header(OVERRIDE_HEADER, "v3").header(SECRET_HEADER, SECRET),
        ),
        (
            "override to an unknown version, right secret",
            with_key().header(OVERRIDE_HEADER, "v9").header(SECRET_HEADER, SECRET),
        ),
        (
            "override V2 in upper case, right secret",
            with_key().header(OVERRIDE_HEADER, "V2").header(SECRET_HEADER, SECRET),
        ),
        (
            "override v2 without the secret",
            with_key().header(OVERRIDE_HEADER, "v2"),
        ),
        (
            "override v2, wrong secret of the right length",
            with_key()
                .header(OVERRIDE_HEADER, "v2")
                .header(SECRET_HEADER, "x".repeat(SECRET.len())),
        ),
        (
            "override v2, secret header sent twice (right one second)",
            with_key()
                .header(OVERRIDE_HEADER, "v2")
                .header(SECRET_HEADER, "wrong")
                .header(SECRET_HEADER, SECRET),
        ),
    ] {
        assert_eq!(stack.predict(&request), ("v1".to_owned(), KeySource::Cookie), "{name}");
        case(name, request);
    }
    let honoured = with_key().header(OVERRIDE_HEADER, " v2 ").header(SECRET_HEADER, SECRET);
    assert_eq!(stack.predict(&honoured), ("v2".to_owned(), KeySource::Override));
    case("override v2 with the secret (honoured)", honoured);

    timings.report_and_bound("hostile requests, Envoy with max_request_headers_kb 128");
}

/// What Envoy itself does before the filter runs, with its default limits.
#[test]
fn envoy_refuses_oversized_heads_before_the_filter_runs() {
    let _serial = serial();
    let stack = Stack::start(None);
    let mut client = must(Client::connect(stack.envoy.listener()), "connect to Envoy");
    let assignments = || {
        // After the filter's next tick, which hands its counts to Envoy.
        let text = must(stack.envoy.stats_flushed(), "read stats");
        text.lines()
            .filter(|l| l.starts_with("wasmcustom.sticky_canary_assignments_total"))
            .filter_map(|l| l.rsplit(": ").next()?.trim().parse::<u64>().ok())
            .sum::<u64>()
    };
    let key = stack.key_on("v2", |i| format!("limit-{i}").into_bytes());
    let session = format!("session={}", String::from_utf8_lossy(&key));

    // Just under the default 60 KiB head: passes through the filter as usual.
    let fits = app().header("Cookie", format!("pad={}; {session}", "p".repeat(56 * 1024)));
    let (response, _) = timed(&mut client, &fits);
    check(&response, "56 KiB cookie, default limits", "v2");

    let before = assignments();
    assert!(before > 0, "the filter's assignment counters are not in /stats");
    // 64 KiB: Envoy's codec answers 431 itself; the filter never sees the request.
    let too_big = app().header("Cookie", format!("pad={}; {session}", "p".repeat(64 * 1024)));
    let response = must(client.send(&too_big), "send a 64 KiB cookie");
    assert_eq!(
        response.status,
        431,
        "64 KiB head on default Envoy: {}",
        response.body_text()
    );
    // 1,000 separate Cookie lines: above Envoy's default of 100 headers, also 431.
    let mut many_lines = app();
    for i in 0..1000 {
        many_lines = many_lines.header("Cookie", format!("c{i}=v"));
    }
    let response = must(client.send(&many_lines), "send 1,000 Cookie lines");
    assert_eq!(
        response.status,
        431,
        "1,000 header lines on default Envoy: {}",
        response.body_text()
    );
    assert_eq!(assignments(), before, "the filter counted a request Envoy refused");

    // The connection was closed by Envoy; a new one works normally.
    let (response, _) = timed(&mut client, &fits);
    check(&response, "56 KiB cookie after the refusals", "v2");
    stack.assert_no_panic();
}

/// Configs whose names try to inject headers or cookie attributes: refused, old config kept.
#[test]
fn injection_configs_are_refused_and_the_old_config_stays() {
    let _serial = serial();
    let mut stack = Stack::start(None);
    let mut client = must(Client::connect(stack.envoy.listener()), "connect to Envoy");
    let key = stack.key_on("v3", |i| format!("inject-{i}").into_bytes());
    let request = app().raw_header(b"Cookie", &[b"session=".as_slice(), &key].concat());

    let good = config();
    let attempts: Vec<(&str, String, &str)> = vec![
        (
            "routing header with CRLF and a second header",
            good.replace(
                r#""routing_header": "x-canary-version""#,
                r#""routing_header": "x-canary-version\r\nx-evil: 1""#,
            ),
            "routes[0].routing_header",
        ),
        (
            "routing header with a colon",
            good.replace(
                r#""routing_header": "x-canary-version""#,
                r#""routing_header": "x-canary-version: v2""#,
            ),
            "routes[0].routing_header",
        ),
        (
            "cookie name with attributes",
            good.replace(r#"{"cookie": "session"}"#, r#"{"cookie": "session; Domain=evil.com"}"#),
            "routes[0].key_chain[0].cookie",
        ),
        (
            "client-id cookie name with '='",
            good.replace(r#""cookie": "sc-id""#, r#""cookie": "sc-id=x; Path""#),
            "routes[0].key_chain[2].new_client_id.cookie",
        ),
        (
            "client-id path with a Domain attribute",
            good.replace(
                r#""cookie": "sc-id""#,
                r#""cookie": "sc-id", "path": "/; Domain=evil.com""#,
            ),
            "routes[0].key_chain[2].new_client_id.path",
        ),
        (
            "client-id domain with CRLF Set-Cookie",
            good.replace(
                r#""cookie": "sc-id""#,
                r#""cookie": "sc-id", "domain": "example.com\r\nSet-Cookie: admin=1""#,
            ),
            "routes[0].key_chain[2].new_client_id.domain",
        ),
        (
            "version name with CRLF",
            good.replace(
                r#"{"name": "v3", "weight": 10}"#,
                r#"{"name": "v3\r\nx-evil: 1", "weight": 10}"#,
            ),
            "routes[0].versions[2].name",
        ),
        (
            "override header with a space",
            good.replace(
                r#""header": "x-canary-force""#,
                r#""header": "x-canary-force x-canary-version""#,
            ),
            "routes[0].override.header",
        ),
        (
            "response header named set-cookie",
            good.replace(
                r#""response_header": "x-canary-served""#,
                r#""response_header": "Set-Cookie""#,
            ),
            "response_header",
        ),
        (
            "routing token value with CRLF and a second header",
            good.replace(
                &format!(r#""value": "{TOKEN}""#),
                r#""value": "hostile-routing-token\r\nx-evil: 1""#,
            ),
            "routes[0].routing_token.value",
        ),
        (
            "salt with a NUL",
            good.replace(r#""salt": "hostile-salt""#, r#""salt": "hostile\u0000salt""#),
            "routes[0].salt",
        ),
    ];
    for (name, bad, field) in &attempts {
        assert_ne!(bad, &good, "{name}: the replacement did not apply");
        let errors = Policy::from_json(bad.as_bytes()).expect_err(name).to_string();
        assert!(errors.contains(field), "{name}: policy-core said {errors}");
        match must(stack.envoy.update_filter_config(bad), "push a config") {
            UpdateOutcome::Rejected { log } => {
                assert!(log.contains(field), "{name}: Envoy's log does not name {field}:\n{log}");
            }
            UpdateOutcome::Accepted => panic!("{name}: Envoy accepted it"),
        }
        let (response, _) = timed(&mut client, &request);
        check(&response, name, "v3");
        assert_eq!(response.header_str("x-canary-served"), "v3", "{name}: response header");
        assert!(response.header("x-evil").is_none(), "{name}");
    }
    stack.assert_no_panic();
}

/// The override secret must never reach the app, whatever else the request holds.
#[test]
fn the_override_secret_never_reaches_the_app() {
    let _serial = serial();
    let stack = Stack::start(None);
    let mut client = must(Client::connect(stack.envoy.listener()), "connect to Envoy");
    let mut leaks = Vec::new();
    for (name, request) in [
        (
            "override v2 with the secret",
            app().header(OVERRIDE_HEADER, "v2").header(SECRET_HEADER, SECRET),
        ),
        (
            "override v3 (not allowed)",
            app().header(OVERRIDE_HEADER, "v3").header(SECRET_HEADER, SECRET),
        ),
        (
            "override v9 (unknown)",
            app().header(OVERRIDE_HEADER, "v9").header(SECRET_HEADER, SECRET),
        ),
        (
            "secret without override",
            app().header("x-user-id", "u1").header(SECRET_HEADER, SECRET),
        ),
    ] {
        let (response, _) = timed(&mut client, &request);
        assert_eq!(response.status, 200, "{name}");
        if !seen_headers(&response.body, SECRET_HEADER).is_empty() {
            leaks.push(name);
        }
    }
    assert!(leaks.is_empty(), "{SECRET_HEADER} reached the app for: {leaks:?}");
    stack.assert_no_panic();
}
