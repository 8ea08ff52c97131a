#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! The soak: a real Envoy with the filter under mixed traffic as fast as this machine serves it,
//! then the same traffic with config pushes back to back through ECDS (weights changing, routes
//! added and removed, one push in ten invalid). The same run with the no-op Wasm filter gives
//! the floor any Wasm filter has.
//!
//! `STICKY_CANARY_SOAK_SECONDS` (default 60, as in CI; `make soak` runs 600) is the length of
//! each run. Each run: warm-up (10 %), traffic alone (25 %), traffic with config churn (65 %).
//! The churn's first 100 pushes are its own warm-up (Envoy's and V8's allocators reach their
//! working size: about 3 MB, once); growth per push is measured after them.
//!
//! Checked: 0 failed requests; every valid push accepted and every invalid one rejected, with a
//! probe request after each push served as the config in force says (the old one after a
//! rejection); the filter's counters equal the requests it decided; Envoy's RSS growth per
//! million requests (traffic phase) and per push (churn phase, less what the traffic alone
//! grows). The figures go to `target/soak/<run>.json` and a markdown table
//! (`target/soak/soak.md`), which `make soak` puts into docs/benchmarks.md.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use policy_core::format_percent;
use sticky_canary_harness::load::Load;
use sticky_canary_harness::{
    stat_value, Backend, Client, Envoy, EnvoyConfig, FilterSpec, HarnessError, Request, UpdateOutcome, WasmCode,
};

const ROUTING_HEADER: &str = "x-canary-version";
const SHOP: &str = "shop.example.com";
const API: &str = "api.example.com";
const UNROUTED: &str = "unrouted.example.com";
const USERS: u64 = 5000;

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn must<T>(result: Result<T, HarnessError>, what: &str) -> T {
    result.unwrap_or_else(|error| panic!("{what}: {error}"))
}

fn seconds() -> u64 {
    match std::env::var("STICKY_CANARY_SOAK_SECONDS") {
        Ok(text) => {
            let n: u64 = text
                .parse()
                .unwrap_or_else(|_| panic!("STICKY_CANARY_SOAK_SECONDS={text:?}: give whole seconds"));
            assert!(n >= 20, "STICKY_CANARY_SOAK_SECONDS={n}: at least 20 (CI runs 60)");
            n
        }
        Err(_) => 60,
    }
}

/// A small deterministic generator (the churn is the same on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// The filter config: the shop (session cookie, then a client id; tester override for v2), an
/// API keyed by a header, and `extra` other apps keyed by a session cookie.
fn config(v2_bp: u32, extra: u64) -> String {
    let (stable, canary) = (format_percent(10_000 - v2_bp), format_percent(v2_bp));
    let mut routes = vec![
        format!(
            r#"{{"name": "shop", "hosts": ["{SHOP}"], "salt": "soak-1", "routing_header": "{ROUTING_HEADER}",
  "versions": [{{"name": "v1", "weight": {stable}}}, {{"name": "v2", "weight": {canary}}}],
  "key_chain": [{{"cookie": "session"}}, {{"new_client_id": {{"cookie": "sc-id", "secure": false}}}}],
  "override": {{"header": "x-canary-force", "allow": ["v2"]}}}}"#
        ),
        format!(
            r#"{{"name": "api", "hosts": ["{API}"], "salt": "soak-2", "routing_header": "{ROUTING_HEADER}",
  "versions": [{{"name": "v1", "weight": {stable}}}, {{"name": "v2", "weight": {canary}}}],
  "key_chain": [{{"header": "x-user-id"}}]}}"#
        ),
    ];
    for i in 0..extra {
        routes.push(format!(
            r#"{{"name": "app-{i}", "hosts": ["app-{i}.example.com"], "salt": "soak-app-{i}", "routing_header": "{ROUTING_HEADER}",
  "versions": [{{"name": "v1", "weight": {stable}}}, {{"name": "v2", "weight": {canary}}}],
  "key_chain": [{{"cookie": "session"}}]}}"#
        ));
    }
    format!("{{\"routes\": [{}]}}", routes.join(",\n"))
}

/// One push in ten is invalid, in turns: each is a mistake the filter must refuse while keeping
/// the config in force.
fn invalid(turn: u64, good: &str) -> String {
    match turn % 4 {
        0 => good.replacen(r#""weight": "#, r#""weight": 120, "was": "#, 1),
        1 => good.replacen(r#""salt": "soak-1","#, r#""salt": "soak-1", "colour": "red","#, 1),
        2 => good.replacen(r#""key_chain": [{"header": "x-user-id"}]"#, r#""key_chain": 5"#, 1),
        _ => good[..good.len() / 2].to_owned(),
    }
}

/// The version `policy-core` gives `session=KEY` on the shop under `config`.
fn shop_version(config: &str, key: &str) -> String {
    let policy = policy_core::Policy::from_json(config.as_bytes()).unwrap();
    let route = policy.find_route(SHOP.as_bytes(), b"/").unwrap();
    route.versions()[route.assign(key.as_bytes()).1].name().to_owned()
}

/// A Cookie header of about `size` bytes with the session last.
fn big_cookie(size: usize, key: &str) -> String {
    let mut cookie = String::with_capacity(size + 64);
    let mut i = 0;
    while cookie.len() < size {
        cookie.push_str(&format!("pad{i}={}; ", "x".repeat(90)));
        i += 1;
    }
    cookie.push_str(&format!("session={key}"));
    cookie
}

/// Envoy's resident set, from /proc.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// A counter or gauge from `/stats`; 0 when absent.
fn stat(text: &str, name: &str) -> u64 {
    stat_value(text, name).unwrap_or(0)
}

/// What the load's requests were, counted as they are sent.
#[derive(Default)]
struct Mix {
    /// Requests on a route the filter decides (everything but the unrouted host).
    decided: AtomicU64,
    new_clients: AtomicU64,
    big: AtomicU64,
}

/// The traffic: returning users, new clients, 4 KB and 30 KB Cookie headers, spoofed routing and
/// position headers, an unrouted host, an API keyed by a header, the tester override.
fn job(mix: Arc<Mix>, filter: bool) -> Arc<sticky_canary_harness::load::Job> {
    let cookie_4k: Vec<String> = (0..50).map(|u| big_cookie(4 * 1024, &format!("user-{u}"))).collect();
    let cookie_30k: Vec<String> = (0..10).map(|u| big_cookie(30 * 1024, &format!("user-{u}"))).collect();
    Arc::new(move |sequence: u64, client: &mut Client| -> Result<(), String> {
        let user = format!("user-{}", (sequence / 10) % USERS);
        let shop = Request::get("/").host(SHOP);
        let (request, kind) = match sequence % 10 {
            0..=2 => (shop.header("cookie", format!("session={user}")), "returning"),
            3 => (shop, "new client"),
            4 => (
                shop.header("cookie", cookie_4k[(sequence as usize / 10) % 50].clone()),
                "4 KB cookie",
            ),
            5 => (
                shop.header("cookie", cookie_30k[(sequence as usize / 10) % 10].clone()),
                "30 KB cookie",
            ),
            6 => (
                shop.header("cookie", format!("session={user}"))
                    .header(ROUTING_HEADER, "v2")
                    .header("x-canary-position", "99")
                    .header("x-canary-force", "v1"),
                "spoofed",
            ),
            7 => (Request::get("/").host(UNROUTED), "unrouted"),
            8 => (Request::get("/").host(API).header("x-user-id", user.clone()), "api"),
            _ => (shop.header("x-canary-force", "v2"), "override"),
        };
        if kind != "unrouted" {
            mix.decided.fetch_add(1, Ordering::Relaxed);
        }
        if kind == "new client" {
            mix.new_clients.fetch_add(1, Ordering::Relaxed);
        }
        if kind.ends_with("cookie") {
            mix.big.fetch_add(1, Ordering::Relaxed);
        }
        let reply = client.send(&request).map_err(|e| format!("{kind}: {e}"))?;
        if reply.status != 200 {
            return Err(format!("{kind}: status {} {}", reply.status, reply.body_text()));
        }
        if filter {
            let served = reply.header_str("x-served-version");
            if kind == "override" && served != "v2" {
                return Err(format!("override: served {served}"));
            }
            if kind == "new client" && !reply.header_str("set-cookie").starts_with("sc-id=") {
                return Err("new client: no sc-id Set-Cookie".to_owned());
            }
        }
        Ok(())
    })
}

#[derive(Debug, Default, serde::Serialize)]
struct Figures {
    run: String,
    seconds: u64,
    requests: u64,
    failed: u64,
    rate: f64,
    traffic_requests: u64,
    churn_requests: u64,
    pushes: u64,
    accepted: u64,
    rejected: u64,
    probes_off: u64,
    rss_start_kb: u64,
    rss_warm_kb: u64,
    rss_traffic_end_kb: u64,
    rss_churn_warm_kb: u64,
    rss_end_kb: u64,
    kb_per_million_requests: f64,
    kb_per_push: f64,
    counters: u64,
    decided: u64,
    vm_created: u64,
    vm_active_start: u64,
    vm_active: u64,
    memory_allocated_end: u64,
}

/// The no-op filter (bench/noop-filter), built as bench/gateway.py builds it (`wasm` profile).
fn noop_module() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = repo.join("target/filter-wasm");
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--locked",
            "--quiet",
            "-p",
            "bench-noop-filter",
            "--target",
            "wasm32-wasip1",
        ])
        .args(["--profile", "wasm", "--target-dir"])
        .arg(&target)
        .current_dir(&repo)
        .status()
        .unwrap();
    assert!(status.success(), "building bench/noop-filter failed");
    target.join("wasm32-wasip1/wasm/bench_noop_filter.wasm")
}

fn soak(run: &str, filter: FilterSpec, seconds: u64) -> Figures {
    let is_sticky = run == "sticky-canary";
    let v1 = must(Backend::start("v1"), "start v1");
    let v2 = must(Backend::start("v2"), "start v2");
    let envoy_config = EnvoyConfig::by_header(ROUTING_HEADER, &[&v1, &v2])
        .with_filter(filter.clone())
        .with_concurrency(2)
        .with_max_request_headers_kb(64);
    let mut envoy = must(Envoy::start(&envoy_config), "start Envoy");
    let pid = envoy.pid();
    let mut figures = Figures {
        run: run.to_owned(),
        seconds,
        rss_start_kb: rss_kb(pid),
        ..Figures::default()
    };
    let total = Duration::from_secs(seconds);
    let (warm, traffic) = (total.mul_f64(0.1), total.mul_f64(0.25));
    let churn = total.saturating_sub(warm + traffic);

    let mix = Arc::new(Mix::default());
    // As fast as it goes: 4 connections, no pacing (the rate is far above what 2 cores serve).
    let load = must(
        Load::start(envoy.listener(), 4, 1_000_000, job(Arc::clone(&mix), is_sticky)),
        "start the load",
    );
    std::thread::sleep(warm);
    figures.rss_warm_kb = rss_kb(pid);
    let at_warm = load.sent();
    std::thread::sleep(traffic);
    figures.rss_traffic_end_kb = rss_kb(pid);
    let at_traffic_end = load.sent();
    figures.traffic_requests = at_traffic_end - at_warm;

    // Churn: pushes back to back, a probe after each.
    let mut rng = Lcg(0x5eed);
    let mut in_force = filter.configuration.clone();
    let mut probe = must(Client::connect(envoy.listener()), "connect the probe");
    let mut probes_decided = 0u64;
    let churn_started = Instant::now();
    let mut at_churn_warm = (at_traffic_end, Instant::now());
    let start_stats = must(envoy.stats(), "read /stats");
    figures.vm_active_start = stat(&start_stats, "wasm.envoy.wasm.runtime.v8.active");
    let vm_created_start = stat(&start_stats, "wasm.envoy.wasm.runtime.v8.created");
    // A probe off plan ends the churn (the test then fails on it).
    while churn_started.elapsed() < churn && figures.probes_off == 0 {
        if figures.pushes == CHURN_WARM_UP {
            figures.rss_churn_warm_kb = rss_kb(pid);
            at_churn_warm = (load.sent(), Instant::now());
        }
        figures.pushes += 1;
        let n = figures.pushes;
        let (pushed, valid) = if !is_sticky {
            // The no-op filter takes any config: a different header to read on each push, so each
            // push is a new config, as each of the sticky-canary run's is.
            (format!("get:x-soak-{n}"), true)
        } else if n.is_multiple_of(10) {
            (invalid(n / 10, &in_force), false)
        } else {
            (config((rng.next() % 10_001) as u32, rng.next() % 50), true)
        };
        let outcome = must(
            envoy.update_filter_config_settling(&pushed, Duration::from_millis(2)),
            "push a config",
        );
        match (&outcome, valid) {
            (UpdateOutcome::Accepted, true) => {
                figures.accepted += 1;
                in_force = pushed;
            }
            (UpdateOutcome::Rejected { .. }, false) => figures.rejected += 1,
            (UpdateOutcome::Accepted, false) => panic!("push {n}: an invalid config was accepted:\n{pushed}"),
            (UpdateOutcome::Rejected { log }, true) => panic!("push {n}: a valid config was rejected:\n{log}"),
        }
        if is_sticky {
            // Served as the config in force says; right after an accepted push a worker may
            // still run the previous one for a moment, so retry for up to 1 s.
            let key = format!("probe-{n}");
            let expected = shop_version(&in_force, &key);
            let started = Instant::now();
            loop {
                let reply = must(
                    probe.send(&Request::get("/").host(SHOP).header("cookie", format!("session={key}"))),
                    "probe",
                );
                probes_decided += 1;
                assert_eq!(reply.status, 200, "probe after push {n}");
                if reply.header_str("x-served-version") == expected {
                    break;
                }
                if !valid || started.elapsed() > Duration::from_secs(1) {
                    figures.probes_off += 1;
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    let report = load.stop();
    figures.rss_end_kb = rss_kb(pid);
    figures.churn_requests = report.sent - at_traffic_end;
    figures.requests = report.sent;
    figures.failed = report.failed;
    figures.rate = report.rate();
    let million = |n: u64| n as f64 / 1e6;
    figures.kb_per_million_requests =
        (figures.rss_traffic_end_kb as f64 - figures.rss_warm_kb as f64) / million(figures.traffic_requests).max(1e-9);
    assert!(
        figures.pushes > CHURN_WARM_UP,
        "{run}: only {} pushes in {churn:?}: the churn needs more than its {CHURN_WARM_UP} warm-up pushes",
        figures.pushes
    );
    let measured_pushes = figures.pushes - CHURN_WARM_UP;
    let traffic_share = figures.kb_per_million_requests.max(0.0) * million(report.sent - at_churn_warm.0);
    figures.kb_per_push =
        (figures.rss_end_kb as f64 - figures.rss_churn_warm_kb as f64 - traffic_share) / measured_pushes as f64;
    eprintln!(
        "{run}: {measured_pushes} pushes measured in {:?} ({:.1} ms each)",
        at_churn_warm.1.elapsed(),
        at_churn_warm.1.elapsed().as_secs_f64() * 1000.0 / measured_pushes as f64
    );

    let stats = must(envoy.stats_flushed(), "read /stats");
    figures.vm_created = stat(&stats, "wasm.envoy.wasm.runtime.v8.created") - vm_created_start;
    figures.vm_active = stat(&stats, "wasm.envoy.wasm.runtime.v8.active");
    figures.memory_allocated_end = stat(&stats, "server.memory_allocated");
    if is_sticky {
        figures.counters = stats
            .lines()
            .filter(|l| l.contains("sticky_canary_assignments_total"))
            .filter_map(|l| l.rsplit_once(": ").and_then(|(_, v)| v.trim().parse::<u64>().ok()))
            .sum();
        figures.decided = mix.decided.load(Ordering::Relaxed) + probes_decided;
    }
    drop(envoy);
    eprintln!("{run}: {figures:#?}");
    assert_eq!(report.failed, 0, "{run}: failed requests: {:?}", report.failures);
    assert_eq!(
        figures.probes_off, 0,
        "{run}: a probe was not served as the config in force says"
    );
    if is_sticky {
        assert_eq!(
            figures.counters, figures.decided,
            "{run}: the filter's counters differ from the requests it decided"
        );
        assert_eq!(figures.accepted + figures.rejected, figures.pushes);
        assert!(figures.rejected > 0 && figures.accepted > 0);
    }
    assert!(mix.new_clients.load(Ordering::Relaxed) > 0 && mix.big.load(Ordering::Relaxed) > 0);
    // No VM leaked: Envoy makes a VM per new config and retires the old one.
    assert_eq!(
        figures.vm_active, figures.vm_active_start,
        "{run}: Wasm VMs left active"
    );
    assert!(
        figures.vm_created <= figures.pushes,
        "{run}: more VMs created than pushes"
    );
    // Traffic alone: under 1 MB per million requests. A short run serves too few requests for
    // that to be above the allocator's step, so its bound is 512 KB in all.
    let traffic_growth = figures.rss_traffic_end_kb as f64 - figures.rss_warm_kb as f64;
    let bound = (1024.0 * million(figures.traffic_requests)).max(512.0);
    assert!(
        traffic_growth <= bound,
        "{run}: RSS grew {traffic_growth} KB over {} requests of traffic alone (bound {bound:.0} KB)",
        figures.traffic_requests
    );
    figures
}

/// Pushes at the start of the churn that are not measured (see the file's comment).
const CHURN_WARM_UP: u64 = 100;

fn publish(results: &[Figures]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/soak");
    std::fs::create_dir_all(&dir).unwrap();
    let mut md = String::new();
    md.push_str("| filter | length | requests | req/s | failed | pushes (accepted / rejected) | RSS after warm-up | RSS growth per million requests | RSS growth per push (after the first 100) | V8 VMs created during the churn / active at the end |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for f in results {
        md.push_str(&format!(
            "| {} | {} s | {} | {:.0} | {} | {} ({} / {}) | {:.1} MB | {:+.0} KB | {:+.2} KB | {} / {} |\n",
            f.run,
            f.seconds,
            f.requests,
            f.rate,
            f.failed,
            f.pushes,
            f.accepted,
            f.rejected,
            f.rss_warm_kb as f64 / 1024.0,
            f.kb_per_million_requests,
            f.kb_per_push,
            f.vm_created,
            f.vm_active
        ));
        std::fs::write(
            dir.join(format!("{}.json", f.run)),
            serde_json::to_string_pretty(f).unwrap(),
        )
        .unwrap();
    }
    std::fs::write(dir.join("soak.md"), &md).unwrap();
    eprintln!("{md}");
}

#[test]
fn soak_with_config_churn_keeps_every_request_and_memory_flat() {
    let _serial = serial();
    let seconds = seconds();
    let sticky = soak("sticky-canary", FilterSpec::embedded(config(1000, 10)), seconds);
    let noop = soak(
        "no-op wasm",
        FilterSpec {
            code: WasmCode::File(noop_module()),
            configuration: String::new(),
            ..FilterSpec::embedded("")
        },
        seconds,
    );
    // Per push, the filter adds at most 1 KB to what Envoy itself grows with the no-op filter
    // (plus 1 MB in all, for the allocator's steps).
    let slack = 1024.0 / (sticky.pushes - CHURN_WARM_UP) as f64;
    assert!(
        sticky.kb_per_push <= noop.kb_per_push.max(0.0) + 1.0 + slack,
        "RSS per push: sticky-canary {:.2} KB, no-op {:.2} KB",
        sticky.kb_per_push,
        noop.kb_per_push
    );
    publish(&[sticky, noop]);
}
