#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! The AKS add-on's revision-canary upgrade (`az aks mesh upgrade start`, then `rollback` or
//! `complete`), with a sticky canary ramping at the same time.
//!
//! During `upgrade start` the old revision's and the new revision's ingress gateway pods sit
//! behind one load balancer. Each is configured by its own istiod (its own Istio code) and runs
//! its own Envoy line, and both serve the same users. The drill takes the two newest tested
//! revisions of `src/revisions.rs`, renders one app spec once, and starts two gateways on those
//! manifests, each translated by its own revision's Istio (`tools/istio-xds`) and run in its own
//! revision's Envoy. One population of users then alternates between the two gateways, request
//! by request, as the load balancer spreads them: users with an app session (`session=KEY`) and
//! new clients who arrive with no cookie and keep the id cookie the first gateway gives them.
//!
//! Under that load, `set-weight` ramps the canary 0 → 10 → 50: each step rendered once and pushed
//! to both gateways through each one's own translation, one after the other, as two istiods
//! would. Then `rollback` (only the old gateway serves) and `complete` (only the new one), with
//! the same users. Asserted: no failed request; at every settled step, no user whose version
//! depends on the gateway, and every request on the version `sticky-canary assign` predicts;
//! inside a push window (from the first push until the second has landed), only the versions the
//! plan allows (the step's old or new prediction), each gateway moving a user at most once and
//! only in the planned direction, the pushed gateway on the new prediction and the other on the
//! old one until its push begins; `rollback` and `complete` move nobody; each gateway's
//! assignment counters equal, per version and source, the requests it answered.
//!
//! Across the two gateways, a user the step moves can still be answered by the canary (the
//! gateway already pushed) and then by stable (the one whose istiod has not pushed yet): two
//! istiods never push at the same instant. The drill prints how many users that happened to,
//! and how many were exposed to it (answered by both gateways in the window); it is not
//! a failure, since the checks above already confine it to the window, to the users the step
//! moves, and to answers from the gateway not pushed yet.
//!
//! `gateways_rendered_with_different_salts_fail_the_drill` runs the same drill on a broken
//! setup (each gateway rendered with its own salt) and checks that the drill reports it.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{
    assign_on, assign_with, run_cli, selected, serial, served, tokens_seen, write_filter_config, OTHER_APP, SHOP_HOST,
};
use sticky_canary_harness::istio::{tested_revisions, IstioProxy, Revision, Translate};
use sticky_canary_harness::load::{Load, LoadReport};
use sticky_canary_harness::{
    envoy_release, Backend, Client, CookieJar, LocalError, Registry, Request, Response, SetCookie,
};

const HOST: &str = SHOP_HOST;
/// The app's name: its route's name in the filter's counters.
const APP: &str = "shop";
const ID_COOKIE: &str = "sticky-canary-id";
const SALT: &str = "shop-upgrade-drill";

/// Users who already have an app session when the drill starts.
const EXISTING: usize = 140;
/// New clients arriving, with no cookie, at each settled step and during each push window.
/// With the ramp's five cohorts, 200 users share [`RATE`]: each sends a request about every
/// 0.8 s, close to the skew between the two pushes (about 0.6 s here), so some users are
/// answered by both gateways between the pushes.
const NEW_PER_COHORT: usize = 12;
/// The load through both gateways together, and its connections.
const RATE: u32 = 250;
const CONNECTIONS: usize = 8;
/// What the drill must sustain through both gateways during the ramp.
const MIN_RATE: f64 = 200.0;
/// A settled step lasts at least this long, and until every user has been answered by every
/// gateway that serves in it.
const MIN_SETTLE: Duration = Duration::from_secs(3);
const SETTLE_DEADLINE: Duration = Duration::from_secs(30);

const OLD: usize = 0;
const NEW: usize = 1;
const GATEWAY_NAMES: [&str; 2] = ["old", "new"];

/// The upgrade's pair: the two newest tested revisions, oldest first.
fn upgrade_pair() -> [Revision; 2] {
    let tested = tested_revisions();
    assert!(
        tested.len() >= 2,
        "the upgrade drill needs two tested revisions in src/revisions.rs: {tested:?}"
    );
    let pair = [tested[tested.len() - 2], tested[tested.len() - 1]];
    assert!(
        pair[OLD].istio_minor < pair[NEW].istio_minor,
        "tested revisions are oldest first: {pair:?}"
    );
    // The drill means something only if the two gateways run different Istio code and Envoys.
    assert_ne!(pair[OLD].tested.istio_module, pair[NEW].tested.istio_module);
    assert_ne!(pair[OLD].envoy, pair[NEW].envoy);
    pair
}

// ---------------------------------------------------------------------------
// The world: backends, the module's source, the specs and what they render.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// EnvoyFilter carrying the module inline.
    EnvoyFilterInline,
    /// EnvoyFilter, module pulled by each gateway's istio-agent from an OCI registry.
    EnvoyFilterOci,
}

/// One spec and the directory `render` and `set-weight` write for it.
struct Rendered {
    spec: PathBuf,
    out: PathBuf,
}

struct World {
    revisions: [Revision; 2],
    form: Form,
    v1: Backend,
    v2: Backend,
    other: Backend,
    work: tempfile::TempDir,
    /// The renders: one for a real upgrade (both gateways on the same manifests).
    renders: Vec<Rendered>,
    /// Which render each gateway's istiod translates.
    gateway_render: [usize; 2],
    _registry: Option<Registry>,
}

impl World {
    /// The world for the drill: the app rendered once, at `v2_percent`, with each salt of
    /// `salts` (one for the real drill), gateway `g` translating render `gateway_render[g]`.
    fn new(form: Form, salts: &[&str], gateway_render: [usize; 2], v2_percent: u32) -> World {
        let revisions = upgrade_pair();
        let work = tempfile::tempdir().unwrap();
        let (plugin, registry) = match form {
            Form::EnvoyFilterInline => ("  form: envoyfilter-inline\n".to_owned(), None),
            Form::EnvoyFilterOci => {
                let (registry, url, digest) = common::registry_with_module("upgrade-drill");
                (
                    format!("  form: envoyfilter\n  url: {url}\n  sha256: \"{digest}\"\n"),
                    Some(registry),
                )
            }
        };
        std::fs::write(work.path().join("other-app.yaml"), OTHER_APP).unwrap();
        let renders = salts
            .iter()
            .enumerate()
            .map(|(i, salt)| {
                let spec = work.path().join(format!("shop-{i}.yaml"));
                let out = work.path().join(format!("rendered-{i}"));
                std::fs::write(&spec, spec_text(revisions[OLD], salt, v2_percent, &plugin)).unwrap();
                run_cli(&["render", &spec.to_string_lossy(), "--out", &out.to_string_lossy()]);
                Rendered { spec, out }
            })
            .collect();
        World {
            revisions,
            form,
            v1: Backend::start("v1").unwrap(),
            v2: Backend::start("v2").unwrap(),
            other: Backend::start("other").unwrap(),
            work,
            renders,
            gateway_render,
            _registry: registry,
        }
    }

    /// What gateway `g`'s istiod reads: its render and the other app on the shared gateway.
    fn inputs(&self, gateway: usize) -> Vec<PathBuf> {
        vec![
            self.renders[self.gateway_render[gateway]].out.clone(),
            self.work.path().join("other-app.yaml"),
        ]
    }

    /// `set-weight` once per spec, re-rendering into the same directory, as the runbook does.
    fn set_weight(&self, v2_percent: u32) {
        for render in &self.renders {
            common::set_weight(&render.spec, v2_percent, &render.out);
        }
    }

    /// A copy of each render's filter config as it is now (for `sticky-canary assign` later).
    fn save_filter_configs(&self, step: usize) -> Vec<PathBuf> {
        self.renders
            .iter()
            .enumerate()
            .map(|(i, render)| {
                write_filter_config(
                    &render.out.join("plugin.yaml"),
                    &self.work.path().join(format!("filter-config-{i}-step-{step}.json")),
                )
            })
            .collect()
    }

    fn translate(&self, gateway: usize) -> Translate {
        let mut translate = Translate::new(self.revisions[gateway], self.inputs(gateway));
        let service = "svc-shop.ns-shop.svc.cluster.local";
        translate.endpoint(&format!("outbound|80||{service}"), self.v1.addr());
        translate.endpoint(&format!("outbound|80|v1|{service}"), self.v1.addr());
        translate.endpoint(&format!("outbound|80|v2|{service}"), self.v2.addr());
        translate.endpoint("outbound|80||svc-other.other.svc.cluster.local", self.other.addr());
        translate
    }

    /// Gateway `g`: its revision's translation in its revision's Envoy.
    fn start(&self, gateway: usize) -> IstioProxy {
        let revision = self.revisions[gateway];
        let envoy = envoy_release(revision.envoy).unwrap_or_else(|e| panic!("{e}"));
        let proxy = IstioProxy::start(&envoy, self.translate(gateway)).unwrap_or_else(|e| {
            panic!(
                "{} gateway ({}): did not start: {e}",
                GATEWAY_NAMES[gateway], revision.name
            )
        });
        let outcome = proxy
            .summary()
            .outcome("sticky-canary-shop")
            .cloned()
            .unwrap_or_else(|| panic!("no extension config in the translation: {:?}", proxy.summary()));
        let expected = match self.form {
            Form::EnvoyFilterInline => "unchanged",
            Form::EnvoyFilterOci => "wasm",
        };
        assert_eq!(
            outcome.outcome, expected,
            "{}: istio-agent's conversion: {outcome:?}",
            revision.name
        );
        proxy
    }
}

fn spec_text(revision: Revision, salt: &str, v2_percent: u32, plugin: &str) -> String {
    common::shop_spec(
        revision.name,
        salt,
        v2_percent,
        &format!("{plugin}  fail_strategy: FAIL_OPEN\n"),
    )
}

/// The Envoy version a running gateway reports (`/server_info`).
fn envoy_version(proxy: &IstioProxy) -> String {
    let reply = proxy.envoy().admin_get("/server_info").unwrap();
    let info: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    info["version"].as_str().unwrap_or_default().to_owned()
}

// ---------------------------------------------------------------------------
// The users and the load balancer in front of the two gateways.

/// Which gateways serve: both during the upgrade, one after `rollback` or `complete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Upgrade,
    Rollback,
    Complete,
}

impl Phase {
    fn serving(self) -> &'static [usize] {
        match self {
            Phase::Upgrade => &[OLD, NEW],
            Phase::Rollback => &[OLD],
            Phase::Complete => &[NEW],
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_index(index: usize) -> Phase {
        [Phase::Upgrade, Phase::Rollback, Phase::Complete][index]
    }
}

struct User {
    /// The app session an existing user sends; `None` for a new client.
    session: Option<String>,
    /// A new client's cookies, as its browser keeps them.
    jar: CookieJar,
    sent: usize,
    /// The gateway the load balancer gives this user's first request; later ones alternate.
    first_gateway: usize,
    /// When the last answered request from each gateway started.
    last_seen: [Option<Instant>; 2],
}

#[derive(Debug, Clone)]
struct Observation {
    user: usize,
    gateway: usize,
    started: Instant,
    finished: Instant,
    version: String,
    /// The id cookie's value, when the response set it.
    set_cookie: Option<String>,
}

/// The population, the two gateways' addresses, and every answered request.
struct Traffic {
    users: Vec<Mutex<User>>,
    existing: usize,
    /// New clients released so far (they arrive in cohorts).
    arrived: AtomicUsize,
    phase: AtomicUsize,
    addresses: [SocketAddr; 2],
    log: Mutex<Vec<Observation>>,
}

thread_local! {
    /// Each load thread's keep-alive connection to each gateway.
    static CONNECTIONS_TO: RefCell<HashMap<SocketAddr, Client>> = RefCell::new(HashMap::new());
}

impl Traffic {
    fn new(existing: usize, new_clients: usize, addresses: [SocketAddr; 2]) -> Traffic {
        let users = (0..existing + new_clients)
            .map(|u| {
                Mutex::new(User {
                    session: (u < existing).then(|| session_key(u)),
                    jar: CookieJar::default(),
                    sent: 0,
                    first_gateway: u % 2,
                    last_seen: [None, None],
                })
            })
            .collect();
        Traffic {
            users,
            existing,
            arrived: AtomicUsize::new(0),
            phase: AtomicUsize::new(Phase::Upgrade.index()),
            addresses,
            log: Mutex::new(Vec::new()),
        }
    }

    fn new_clients(&self) -> usize {
        self.users.len() - self.existing
    }

    /// Lets the next cohort of new clients arrive.
    fn release_cohort(&self) {
        let now = self.arrived.load(Ordering::SeqCst);
        self.arrived
            .store((now + NEW_PER_COHORT).min(self.new_clients()), Ordering::SeqCst);
    }

    /// One request of the load: request `sequence` goes to a user in turn (an existing user
    /// stands in for a new client that has not arrived yet), and that user's requests alternate
    /// between the gateways while both serve. A user's requests never overlap.
    fn request(&self, sequence: u64) -> Result<(), String> {
        let phase = Phase::from_index(self.phase.load(Ordering::SeqCst));
        let slot = (sequence % self.users.len() as u64) as usize;
        let present = self.existing + self.arrived.load(Ordering::SeqCst);
        let index = if slot < present { slot } else { slot % self.existing };
        let mut user = self.users[index].lock().map_err(|_| "a user's lock is poisoned")?;
        let gateway = match phase {
            Phase::Upgrade => (user.sent + user.first_gateway) % 2,
            Phase::Rollback => OLD,
            Phase::Complete => NEW,
        };
        user.sent += 1;
        let request = match &user.session {
            Some(key) => Request::get("/").host(HOST).header("cookie", format!("session={key}")),
            None => user.jar.apply(Request::get("/").host(HOST)),
        };
        let address = self.addresses[gateway];
        let started = Instant::now();
        let reply = send_to(address, &request)
            .map_err(|e| format!("user {index} via the {} gateway: {e}", GATEWAY_NAMES[gateway]))?;
        let finished = Instant::now();
        if reply.status != 200 {
            return Err(format!(
                "user {index} via the {} gateway: status {} {}",
                GATEWAY_NAMES[gateway],
                reply.status,
                reply.body_text()
            ));
        }
        if tokens_seen(&reply.body) != 0 {
            return Err(format!("user {index}: the routing token reached the app"));
        }
        let set_cookie = reply
            .header_all("set-cookie")
            .into_iter()
            .filter_map(SetCookie::parse)
            .find(|c| c.name == ID_COOKIE)
            .map(|c| c.value);
        if user.session.is_none() {
            user.jar.store(&reply);
        }
        user.last_seen[gateway] = Some(started);
        self.log.lock().map_err(|_| "the log is poisoned")?.push(Observation {
            user: index,
            gateway,
            started,
            finished,
            version: served(&reply),
            set_cookie,
        });
        Ok(())
    }

    /// Whether every user present has been answered by each of `gateways` since `since`.
    fn all_seen_since(&self, gateways: &[usize], since: Instant) -> bool {
        let present = self.existing + self.arrived.load(Ordering::SeqCst);
        self.users[..present].iter().all(|user| {
            let user = user.lock().unwrap();
            gateways
                .iter()
                .all(|g| user.last_seen[*g].is_some_and(|seen| seen >= since))
        })
    }
}

fn session_key(user: usize) -> String {
    format!("drill-user-{user}")
}

fn send_to(address: SocketAddr, request: &Request) -> Result<Response, LocalError> {
    CONNECTIONS_TO.with(|connections| {
        let mut connections = connections.borrow_mut();
        let client = match connections.entry(address) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(Client::connect(address)?),
        };
        client.send(request)
    })
}

fn start_load(traffic: &Arc<Traffic>, phase: Phase) -> Load {
    traffic.phase.store(phase.index(), Ordering::SeqCst);
    let shared = Arc::clone(traffic);
    let job = Arc::new(move |sequence: u64, _client: &mut Client| shared.request(sequence));
    Load::start(traffic.addresses[phase.serving()[0]], CONNECTIONS, RATE, job).unwrap()
}

/// Waits until the settled step begun at `since` has lasted [`MIN_SETTLE`] and every user
/// present has been answered by every serving gateway in it.
fn settle(traffic: &Traffic, phase: Phase, since: Instant, what: &str) {
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if since.elapsed() >= MIN_SETTLE && traffic.all_seen_since(phase.serving(), since) {
            return;
        }
        assert!(
            since.elapsed() < SETTLE_DEADLINE,
            "{what}: not every user was answered by every serving gateway within {SETTLE_DEADLINE:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// The drill.

/// A stretch of the drill.
#[derive(Debug, Clone)]
enum Segment {
    /// No push under way: step `step`'s manifests on every serving gateway.
    Settled {
        phase: Phase,
        step: usize,
        start: Instant,
        end: Instant,
    },
    /// Step `step` pushed to gateway `order[0]`, then to `order[1]`.
    Window {
        step: usize,
        order: [usize; 2],
        start: Instant,
        first_applied: Instant,
        end: Instant,
    },
}

/// Everything one drill measured.
struct Drill {
    weights: Vec<u32>,
    revisions: [Revision; 2],
    gateway_render: [usize; 2],
    existing: usize,
    new_clients: usize,
    segments: Vec<Segment>,
    log: Vec<Observation>,
    /// Per step, each render's filter config.
    configs: Vec<Vec<PathBuf>>,
    /// Per phase (upgrade with the ramp, rollback, complete): its load's report.
    loads: Vec<(Phase, LoadReport)>,
    /// Each push: step, gateway, how long its translation and apply took.
    pushes: Vec<(usize, usize, Duration)>,
    /// Each gateway's assignment counters at the end: (version, source) -> count.
    counters: [BTreeMap<(String, String), u64>; 2],
    started: Instant,
}

/// Runs the drill: the ramp through `weights` (the first one is what the gateways started with)
/// under alternating load, then rollback and complete.
fn run_drill(world: &World, gateways: &mut [IstioProxy; 2], weights: &[u32]) -> Drill {
    let started = Instant::now();
    let cohorts = 2 * weights.len() - 1;
    let traffic = Arc::new(Traffic::new(
        EXISTING,
        NEW_PER_COHORT * cohorts,
        [gateways[OLD].listener(), gateways[NEW].listener()],
    ));
    let mut segments = Vec::new();
    let mut configs = vec![world.save_filter_configs(0)];
    let mut pushes = Vec::new();
    let mut loads = Vec::new();

    // The upgrade is under way: both gateways serve, and the canary ramps.
    // A settled step starts before its load's first request.
    let mut start = Instant::now();
    let load = start_load(&traffic, Phase::Upgrade);
    traffic.release_cohort();
    settle(&traffic, Phase::Upgrade, start, &format!("{}%", weights[0]));
    for (step, weight) in weights.iter().enumerate().skip(1) {
        world.set_weight(*weight);
        // Two istiods push one after the other; which one first differs from step to step.
        let order = if step % 2 == 1 { [OLD, NEW] } else { [NEW, OLD] };
        let window_start = Instant::now();
        segments.push(Segment::Settled {
            phase: Phase::Upgrade,
            step: step - 1,
            start,
            end: window_start,
        });
        let mut first_applied = window_start;
        for (i, gateway) in order.iter().enumerate() {
            let push = Instant::now();
            gateways[*gateway].update(world.inputs(*gateway)).unwrap_or_else(|e| {
                panic!(
                    "{weight}%: push to the {} gateway ({}): {e}",
                    GATEWAY_NAMES[*gateway], world.revisions[*gateway].name
                )
            });
            pushes.push((step, *gateway, push.elapsed()));
            if i == 0 {
                first_applied = Instant::now();
                // New clients arriving while the gateways disagree on the weight.
                traffic.release_cohort();
            }
        }
        let end = Instant::now();
        segments.push(Segment::Window {
            step,
            order,
            start: window_start,
            first_applied,
            end,
        });
        configs.push(world.save_filter_configs(step));
        start = end;
        traffic.release_cohort();
        settle(&traffic, Phase::Upgrade, start, &format!("{weight}%"));
    }
    let report = load.stop();
    let last = weights.len() - 1;
    segments.push(Segment::Settled {
        phase: Phase::Upgrade,
        step: last,
        start,
        end: Instant::now(),
    });
    loads.push((Phase::Upgrade, report));

    // `upgrade rollback`: only the old revision's gateway is left; then `upgrade complete`:
    // only the new one. The same users, the canary's weight unchanged.
    for phase in [Phase::Rollback, Phase::Complete] {
        let start = Instant::now();
        let load = start_load(&traffic, phase);
        settle(&traffic, phase, start, &format!("{phase:?}"));
        let report = load.stop();
        segments.push(Segment::Settled {
            phase,
            step: last,
            start,
            end: Instant::now(),
        });
        loads.push((phase, report));
    }

    let log = traffic.log.lock().unwrap().clone();
    let counters = [OLD, NEW].map(|g| {
        let answered = log.iter().filter(|o| o.gateway == g).count() as u64;
        assignment_counters(&gateways[g], answered)
    });
    Drill {
        weights: weights.to_vec(),
        revisions: world.revisions,
        gateway_render: world.gateway_render,
        existing: traffic.existing,
        new_clients: traffic.new_clients(),
        segments,
        log,
        configs,
        loads,
        pushes,
        counters,
        started,
    }
}

/// The filter's assignment counters for the app's route, (version, source) -> count, once the
/// filter has flushed them: read after a full tick, then until they stop changing or reach
/// `expected_total` (at most 10 s).
fn assignment_counters(gateway: &IstioProxy, expected_total: u64) -> BTreeMap<(String, String), u64> {
    let read = |stats: &str| {
        let prefix = format!("wasmcustom.sticky_canary_assignments_total.route.{APP}.version.");
        let mut counters = BTreeMap::new();
        for line in stats.lines() {
            let Some((name, value)) = line.strip_prefix(&prefix).and_then(|rest| rest.split_once(": ")) else {
                continue;
            };
            let Some((version, source)) = name.split_once(".source.") else {
                continue;
            };
            let value: u64 = value.trim().parse().unwrap_or(0);
            if value > 0 {
                counters.insert((version.to_owned(), source.to_owned()), value);
            }
        }
        counters
    };
    let mut counters = read(&gateway.envoy().stats_flushed().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut unchanged_since = Instant::now();
    while Instant::now() < deadline {
        let total: u64 = counters.values().sum();
        if total == expected_total || unchanged_since.elapsed() >= Duration::from_millis(1_500) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let now = read(&gateway.envoy().stats().unwrap());
        if now != counters {
            counters = now;
            unchanged_since = Instant::now();
        }
    }
    counters
}

// ---------------------------------------------------------------------------
// What the drill shows.

/// A user's key, as `sticky-canary assign` takes it.
#[derive(Debug, Clone)]
enum Key {
    Session(String),
    IdCookie(String),
}

/// The figures and the failed checks of a drill.
#[derive(Debug, Default)]
struct Findings {
    failed: u64,
    /// Requests at a settled step not on the version `assign` predicts for their gateway.
    off_plan: usize,
    /// (settled step, user) pairs where the two gateways answered with different versions.
    disagreements: usize,
    /// Requests in a push window on a version the plan does not allow there.
    window_off_plan: usize,
    /// (window, user, gateway) where one gateway sent a user back to the version it had left.
    gateway_sent_back: usize,
    /// (window, user) answered on the step's new version and then on its old one by the gateway
    /// not pushed yet: the skew between two istiods' pushes, not a check (see the module doc).
    back_and_forth: usize,
    /// Users whose version changed between settled steps against the plan.
    unplanned_moves: usize,
    /// Users whose version changed at `rollback` or `complete`.
    moved_by_rollback: usize,
    moved_by_complete: usize,
    /// Check name -> what failed (examples).
    problems: Vec<String>,
}

impl Findings {
    fn problem(&mut self, check: &str, count: usize, examples: &[String]) {
        if count > 0 {
            self.problems.push(format!(
                "{check}: {count}; e.g. {:?}",
                &examples[..examples.len().min(5)]
            ));
        }
    }
}

/// `assign`'s prediction, per render and step: user -> version.
fn predictions(drill: &Drill, keys: &[Option<Key>]) -> Vec<Vec<HashMap<usize, String>>> {
    let renders = drill.configs[0].len();
    (0..renders)
        .map(|r| {
            drill
                .configs
                .iter()
                .map(|step_configs| {
                    let config = &step_configs[r];
                    let mut by_user = HashMap::new();
                    let sessions: Vec<(usize, String)> = keys
                        .iter()
                        .enumerate()
                        .filter_map(|(u, k)| match k {
                            Some(Key::Session(s)) => Some((u, s.clone())),
                            _ => None,
                        })
                        .collect();
                    let cookies: Vec<(usize, String)> = keys
                        .iter()
                        .enumerate()
                        .filter_map(|(u, k)| match k {
                            Some(Key::IdCookie(c)) => Some((u, c.clone())),
                            _ => None,
                        })
                        .collect();
                    let session_keys: Vec<String> = sessions.iter().map(|(_, k)| k.clone()).collect();
                    let predicted = assign_on(config, HOST, &session_keys);
                    for (u, key) in &sessions {
                        by_user.insert(*u, predicted[key].clone());
                    }
                    let cookie_values: Vec<String> = cookies.iter().map(|(_, c)| c.clone()).collect();
                    let predicted = assign_with(config, HOST, &cookie_values, &["--kind", "id-cookie"]);
                    for (u, cookie) in &cookies {
                        by_user.insert(*u, predicted[cookie].clone());
                    }
                    by_user
                })
                .collect()
        })
        .collect()
}

/// The id and the day stamp of a client-id cookie value (`ID.DAY`).
fn cookie_parts(value: &str) -> (&str, Option<u32>) {
    match value.split_once('.') {
        Some((id, day)) => (id, day.parse().ok()),
        None => (value, None),
    }
}

/// A settled step's phase, step, and each user's versions in it (both gateways).
type Seen = (Phase, usize, HashMap<usize, BTreeSet<String>>);

fn analyze(drill: &Drill, label: &str) -> Findings {
    let mut findings = Findings::default();
    let mut log: Vec<&Observation> = drill.log.iter().collect();
    log.sort_by_key(|o| o.started);
    let population = drill.existing + drill.new_clients;

    // Failed requests and the rate.
    for (phase, report) in &drill.loads {
        findings.failed += report.failed;
        if report.failed > 0 {
            findings.problems.push(format!(
                "{phase:?}: {} failed requests: {:#?}",
                report.failed, report.failures
            ));
        }
    }
    let upgrade = &drill.loads[0].1;
    if upgrade.rate() < MIN_RATE {
        findings.problems.push(format!(
            "the ramp ran at {:.0} req/s through both gateways, under {MIN_RATE:.0}",
            upgrade.rate()
        ));
    }

    // Cookies: existing users never get one; a new client gets one on its first answer, from
    // the gateway it reached first, and keeps its id.
    let mut keys: Vec<Option<Key>> = (0..population)
        .map(|u| (u < drill.existing).then(|| Key::Session(session_key(u))))
        .collect();
    let mut first_seen: Vec<Option<&Observation>> = vec![None; population];
    let mut cookie_problems = Vec::new();
    let mut issued_by = [0usize; 2];
    let mut refreshes = 0;
    for o in &log {
        let first = first_seen[o.user].is_none();
        if first {
            first_seen[o.user] = Some(*o);
        }
        if o.user < drill.existing {
            if let Some(value) = &o.set_cookie {
                cookie_problems.push(format!("existing user {} was given {ID_COOKIE}={value}", o.user));
            }
            continue;
        }
        match (&keys[o.user], &o.set_cookie, first) {
            (None, Some(value), true) => {
                keys[o.user] = Some(Key::IdCookie(value.clone()));
                issued_by[o.gateway] += 1;
            }
            (None, None, true) => {
                cookie_problems.push(format!("new client {}: no id cookie on its first answer", o.user))
            }
            (Some(Key::IdCookie(kept)), Some(value), false) => {
                let ((kept_id, kept_day), (id, day)) = (cookie_parts(kept), cookie_parts(value));
                if kept_id == id && day > kept_day {
                    refreshes += 1; // the next UTC day's refresh: same id, later stamp
                } else {
                    cookie_problems.push(format!(
                        "new client {}: a second id cookie {value} (kept {kept}) from the {} gateway",
                        o.user, GATEWAY_NAMES[o.gateway]
                    ));
                }
            }
            _ => {}
        }
    }
    let never_came = (drill.existing..population)
        .filter(|u| first_seen[*u].is_none())
        .count();
    if never_came > 0 {
        cookie_problems.push(format!("{never_came} new clients never sent a request"));
    }
    findings.problem("cookies", cookie_problems.len(), &cookie_problems);
    let pred = predictions(drill, &keys);
    let predicted = |gateway: usize, step: usize, user: usize| -> Option<&str> {
        pred[drill.gateway_render[gateway]][step].get(&user).map(String::as_str)
    };

    // The plan itself: a rising weight moves users from stable to the canary only.
    let mut plan_problems = Vec::new();
    for step in 1..drill.weights.len() {
        let (from, to) = if drill.weights[step] > drill.weights[step - 1] {
            ("v2", "v1")
        } else {
            ("v1", "v2")
        };
        for render in &pred {
            for (u, version) in &render[step] {
                if render[step - 1].get(u).map(String::as_str) == Some(from) && version == to {
                    plan_problems.push(format!("user {u}: {from} -> {to} at {}%", drill.weights[step]));
                }
            }
        }
    }
    findings.problem(
        "assign moves users against the weight's direction",
        plan_problems.len(),
        &plan_problems,
    );

    // Which stretch each request belongs to.
    let mut by_segment: Vec<Vec<&Observation>> = vec![Vec::new(); drill.segments.len()];
    let mut unplaced = Vec::new();
    for o in &log {
        let place = drill.segments.iter().position(|s| match s {
            Segment::Settled { start, end, .. } => *start <= o.started && o.finished <= *end,
            Segment::Window { start, end, .. } => o.started <= *end && o.finished >= *start,
        });
        match place {
            Some(i) => by_segment[i].push(o),
            None => unplaced.push(format!("{o:?}")),
        }
    }
    findings.problem("requests outside every step and window", unplaced.len(), &unplaced);

    eprintln!(
        "{label}: {} (Istio {}, Envoy {}) and {} (Istio {}, Envoy {}); ramp {:?}%, {} existing users + {} new clients",
        drill.revisions[OLD].name,
        drill.revisions[OLD].tested.istio_version,
        drill.revisions[OLD].envoy,
        drill.revisions[NEW].name,
        drill.revisions[NEW].tested.istio_version,
        drill.revisions[NEW].envoy,
        drill.weights,
        drill.existing,
        drill.new_clients,
    );

    // Settled steps: every request as predicted, the gateways agreeing on every user.
    let mut off_plan = Vec::new();
    let mut disagreeing = Vec::new();
    // Per settled segment: user -> versions seen (both gateways).
    let mut seen_at: Vec<Option<Seen>> = vec![None; drill.segments.len()];
    for (i, segment) in drill.segments.iter().enumerate() {
        let Segment::Settled {
            phase,
            step,
            start,
            end,
        } = segment
        else {
            continue;
        };
        let mut by_user: HashMap<usize, [BTreeSet<String>; 2]> = HashMap::new();
        let mut per_gateway = [0usize; 2];
        let mut segment_off_plan = 0;
        for o in &by_segment[i] {
            per_gateway[o.gateway] += 1;
            by_user.entry(o.user).or_default()[o.gateway].insert(o.version.clone());
            if predicted(o.gateway, *step, o.user) != Some(o.version.as_str()) {
                segment_off_plan += 1;
                off_plan.push(format!(
                    "{phase:?} {}%: user {} on {} via the {} gateway, assign says {:?}",
                    drill.weights[*step],
                    o.user,
                    o.version,
                    GATEWAY_NAMES[o.gateway],
                    predicted(o.gateway, *step, o.user)
                ));
            }
        }
        let mut segment_disagreeing = 0;
        for (user, [on_old, on_new]) in &by_user {
            if !on_old.is_empty() && !on_new.is_empty() && on_old != on_new {
                segment_disagreeing += 1;
                disagreeing.push(format!(
                    "{phase:?} {}%: user {user}: old gateway {on_old:?}, new gateway {on_new:?}",
                    drill.weights[*step]
                ));
            }
        }
        let union: HashMap<usize, BTreeSet<String>> = by_user
            .iter()
            .map(|(u, [a, b])| (*u, a.union(b).cloned().collect()))
            .collect();
        let on_canary = union.values().filter(|v| v.contains("v2")).count();
        let duration = end.duration_since(*start);
        eprintln!(
            "  {phase:?} at {}%: {:.1} s, {} requests (old {}, new {}), {} users ({on_canary} on v2), \
             off-plan {segment_off_plan}, users the gateways disagree on {segment_disagreeing}",
            drill.weights[*step],
            duration.as_secs_f64(),
            per_gateway[0] + per_gateway[1],
            per_gateway[0],
            per_gateway[1],
            by_user.len(),
        );
        seen_at[i] = Some((*phase, *step, union));
    }
    findings.off_plan = off_plan.len();
    findings.disagreements = disagreeing.len();
    findings.problem(
        "requests at a settled step not on assign's version",
        off_plan.len(),
        &off_plan,
    );
    findings.problem(
        "users whose version depends on the gateway at a settled step",
        disagreeing.len(),
        &disagreeing,
    );

    // Moves between settled steps of the ramp: exactly the planned ones. Rollback and complete
    // (each the end of the same upgrade) move nobody from where the last step had them.
    let settled: Vec<&Seen> = seen_at.iter().flatten().collect();
    let ramp: Vec<_> = settled.iter().filter(|(p, _, _)| *p == Phase::Upgrade).collect();
    let mut unplanned = Vec::new();
    for pair in ramp.windows(2) {
        let [(_, before_step, before), (_, step, after)] = pair else {
            continue;
        };
        let mut moved = 0;
        let mut planned = 0;
        for (user, versions) in after {
            let Some(had) = before.get(user) else {
                continue;
            };
            let plan_moves = [OLD, NEW]
                .iter()
                .any(|g| predicted(*g, *before_step, *user) != predicted(*g, *step, *user));
            planned += usize::from(plan_moves);
            if had != versions {
                moved += 1;
                if !plan_moves {
                    unplanned.push(format!(
                        "{}%: user {user} {had:?} -> {versions:?}, not in the plan",
                        drill.weights[*step]
                    ));
                }
            }
        }
        eprintln!(
            "  {}% -> {}%: {moved} users moved ({planned} planned by assign)",
            drill.weights[*before_step], drill.weights[*step]
        );
    }
    findings.unplanned_moves = unplanned.len();
    findings.problem("users moved against the plan", unplanned.len(), &unplanned);
    let mut phase_moved = Vec::new();
    if let Some((_, _, last)) = ramp.last() {
        for (phase, _, now) in settled.iter().filter(|(p, _, _)| *p != Phase::Upgrade) {
            let mut moved = 0;
            for (user, versions) in now {
                if let Some(had) = last.get(user) {
                    if had != versions {
                        moved += 1;
                        phase_moved.push(format!("{phase:?}: user {user} {had:?} -> {versions:?}"));
                    }
                }
            }
            eprintln!(
                "  {phase:?} ({} gateway only): {moved} users moved from the last step",
                GATEWAY_NAMES[phase.serving()[0]]
            );
            match phase {
                Phase::Rollback => findings.moved_by_rollback = moved,
                Phase::Complete => findings.moved_by_complete = moved,
                Phase::Upgrade => {}
            }
        }
    }
    findings.problem("users moved by rollback or complete", phase_moved.len(), &phase_moved);

    // Push windows: only the step's two predictions, each gateway moving a user once at most.
    let mut window_off_plan = Vec::new();
    let mut sent_back = Vec::new();
    let mut back_and_forth_users = Vec::new();
    for (i, segment) in drill.segments.iter().enumerate() {
        let Segment::Window {
            step,
            order,
            start,
            first_applied,
            end,
        } = segment
        else {
            continue;
        };
        let (first, second) = (order[0], order[1]);
        let mut per_user: HashMap<usize, Vec<&Observation>> = HashMap::new();
        for o in &by_segment[i] {
            per_user.entry(o.user).or_default().push(o);
            let (before, after) = (
                predicted(o.gateway, step - 1, o.user),
                predicted(o.gateway, *step, o.user),
            );
            let version = Some(o.version.as_str());
            let allowed = if o.gateway == first && o.started >= *first_applied {
                version == after
            } else if o.gateway == second && o.finished <= *first_applied {
                version == before
            } else {
                version == before || version == after
            };
            if !allowed {
                window_off_plan.push(format!(
                    "push to {}%: user {} on {} via the {} gateway, plan {before:?} -> {after:?}",
                    drill.weights[*step], o.user, o.version, GATEWAY_NAMES[o.gateway]
                ));
            }
        }
        let mut movers = 0;
        let mut exposed = 0;
        let mut back_and_forth = 0;
        for (user, seen) in &per_user {
            let plan = [OLD, NEW].map(|g| (predicted(g, step - 1, *user), predicted(g, *step, *user)));
            if plan.iter().any(|(before, after)| before != after) {
                movers += 1;
                // Answered by both gateways in the window: the only way to see the skew.
                let answered_by = |g: usize| seen.iter().any(|o| o.gateway == g);
                exposed += usize::from(answered_by(first) && answered_by(second));
            }
            // One gateway: once on the new prediction, never back (seen is in start order).
            for g in [OLD, NEW] {
                let (before, after) = plan[g];
                if before == after {
                    continue;
                }
                let on_gateway: Vec<Option<&str>> = seen
                    .iter()
                    .filter(|o| o.gateway == g)
                    .map(|o| Some(o.version.as_str()))
                    .collect();
                if let Some(moved) = on_gateway.iter().position(|v| *v == after) {
                    if on_gateway[moved..].contains(&before) {
                        sent_back.push(format!(
                            "push to {}%: user {user} on the {} gateway: {on_gateway:?}",
                            drill.weights[*step], GATEWAY_NAMES[g]
                        ));
                    }
                }
            }
            // Both gateways: answered by the new prediction, then by the old one again.
            let versions: Vec<&str> = seen.iter().map(|o| o.version.as_str()).collect();
            let (before, after) = plan[first];
            if before != after {
                if let Some(moved) = versions.iter().position(|v| Some(*v) == after) {
                    if versions[moved..].iter().any(|v| Some(*v) == before) {
                        back_and_forth += 1;
                        back_and_forth_users.push(format!(
                            "push to {}%: user {user}: {:?}",
                            drill.weights[*step],
                            seen.iter()
                                .map(|o| format!("{} {}", GATEWAY_NAMES[o.gateway], o.version))
                                .collect::<Vec<_>>()
                        ));
                    }
                }
            }
        }
        let pushes: Vec<String> = drill
            .pushes
            .iter()
            .filter(|(s, _, _)| s == step)
            .map(|(_, g, d)| format!("{} {:.2} s", GATEWAY_NAMES[*g], d.as_secs_f64()))
            .collect();
        eprintln!(
            "  push {}% -> {}% ({} first): window {:.2} s ({}), {} requests in it, {movers} users the plan moves; \
             {exposed} of them answered by both gateways in it, {back_and_forth} answered on the new version and \
             then on the old one again (by the gateway not pushed yet)",
            drill.weights[step - 1],
            drill.weights[*step],
            GATEWAY_NAMES[first],
            end.duration_since(*start).as_secs_f64(),
            pushes.join(", "),
            by_segment[i].len(),
        );
        findings.back_and_forth += back_and_forth;
    }
    for line in back_and_forth_users.iter().take(5) {
        eprintln!("    {line}");
    }
    findings.window_off_plan = window_off_plan.len();
    findings.gateway_sent_back = sent_back.len();
    findings.problem(
        "requests in a push window on a version the plan does not allow",
        window_off_plan.len(),
        &window_off_plan,
    );
    findings.problem(
        "a gateway sent a user back within a push window",
        sent_back.len(),
        &sent_back,
    );

    // The filter's own counters: per gateway, per version and source, the requests it answered.
    for g in [OLD, NEW] {
        let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
        for o in log.iter().filter(|o| o.gateway == g) {
            let is_first_visit = o.user >= drill.existing && first_seen[o.user].is_some_and(|f| std::ptr::eq(f, *o));
            let source = if is_first_visit { "new_id" } else { "cookie" };
            *expected.entry((o.version.clone(), source.to_owned())).or_default() += 1;
        }
        let answered: u64 = expected.values().sum();
        let counted: u64 = drill.counters[g].values().sum();
        eprintln!(
            "  {} gateway ({}): {answered} requests answered; its counters sum to {counted}: {:?}",
            GATEWAY_NAMES[g], drill.revisions[g].name, drill.counters[g]
        );
        if drill.counters[g] != expected {
            findings.problems.push(format!(
                "the {} gateway's assignment counters {:?} are not the requests it answered {expected:?}",
                GATEWAY_NAMES[g], drill.counters[g]
            ));
        }
    }

    // The figures of the whole run.
    for (phase, report) in &drill.loads {
        let by_gateway = [OLD, NEW].map(|g| {
            log.iter()
                .filter(|o| o.gateway == g && phase_of(drill, o) == Some(*phase))
                .count()
        });
        eprintln!(
            "  load {phase:?}: {} requests in {:.1} s = {:.0} req/s (old gateway {}, new gateway {}), {} failed",
            report.sent,
            report.elapsed.as_secs_f64(),
            report.rate(),
            by_gateway[OLD],
            by_gateway[NEW],
            report.failed
        );
    }
    let slowest = slowest_second(&log, &drill.segments);
    eprintln!(
        "  slowest second of the ramp: {slowest} requests; id cookies issued by the old gateway {}, the new {}; \
         {refreshes} refreshed; drill {:.1} s",
        issued_by[OLD],
        issued_by[NEW],
        drill.started.elapsed().as_secs_f64()
    );
    findings
}

/// Which phase a request belongs to (by the settled segments and windows around it).
fn phase_of(drill: &Drill, o: &Observation) -> Option<Phase> {
    drill.segments.iter().find_map(|s| match s {
        Segment::Settled { phase, start, end, .. } if *start <= o.started && o.started <= *end => Some(*phase),
        Segment::Window { start, end, .. } if *start <= o.started && o.started <= *end => Some(Phase::Upgrade),
        _ => None,
    })
}

/// The fewest requests started in any whole second of the ramp (both gateways).
fn slowest_second(log: &[&Observation], segments: &[Segment]) -> usize {
    let ramp: Vec<(Instant, Instant)> = segments
        .iter()
        .filter_map(|s| match s {
            Segment::Settled {
                phase: Phase::Upgrade,
                start,
                end,
                ..
            }
            | Segment::Window { start, end, .. } => Some((*start, *end)),
            Segment::Settled { .. } => None,
        })
        .collect();
    let (Some(begin), Some(finish)) = (ramp.iter().map(|(s, _)| *s).min(), ramp.iter().map(|(_, e)| *e).max()) else {
        return 0;
    };
    let seconds = finish.duration_since(begin).as_secs() as usize;
    let mut counts = vec![0usize; seconds.max(1)];
    for o in log {
        if o.started >= begin {
            let second = o.started.duration_since(begin).as_secs() as usize;
            if second < seconds {
                counts[second] += 1;
            }
        }
    }
    counts.into_iter().min().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The tests.

/// Both revisions selected by `STICKY_CANARY_REVISIONS` (all, unless it names some).
fn pair_selected() -> bool {
    let pair = upgrade_pair();
    if pair.iter().all(selected) {
        true
    } else {
        eprintln!(
            "{} or {} not selected by STICKY_CANARY_REVISIONS: nothing to run",
            pair[OLD].name, pair[NEW].name
        );
        false
    }
}

/// Starts the two gateways, prints what each runs, and runs the drill.
fn drill_on(world: &World, weights: &[u32], label: &str) -> Findings {
    let started = Instant::now();
    let mut gateways = [world.start(OLD), world.start(NEW)];
    for g in [OLD, NEW] {
        let revision = world.revisions[g];
        let version = envoy_version(&gateways[g]);
        eprintln!(
            "{label}: {} gateway: {} translated by {} ({}), Envoy {version}",
            GATEWAY_NAMES[g],
            revision.name,
            gateways[g].summary().istio_module,
            gateways[g].summary().istio_version,
        );
        assert!(
            version.contains(&format!("/{}/", revision.envoy)),
            "{}: the gateway runs Envoy {version}, not {}",
            revision.name,
            revision.envoy
        );
    }
    eprintln!("{label}: both gateways up in {:.1} s", started.elapsed().as_secs_f64());
    let drill = run_drill(world, &mut gateways, weights);
    analyze(&drill, label)
}

fn upgrade_drill(form: Form) {
    if !pair_selected() {
        return;
    }
    let _serial = serial();
    let started = Instant::now();
    let world = World::new(form, &[SALT], [0, 0], 0);
    let label = format!("upgrade drill {form:?}");
    let findings = drill_on(&world, &[0, 10, 50], &label);
    eprintln!("{label}: {:.1} s in all", started.elapsed().as_secs_f64());
    assert!(
        findings.problems.is_empty(),
        "{label}: the upgrade moved users or lost requests:\n{}",
        findings.problems.join("\n")
    );
    let counts = (
        findings.failed,
        findings.off_plan,
        findings.disagreements,
        findings.window_off_plan,
        findings.gateway_sent_back,
        findings.unplanned_moves,
        findings.moved_by_rollback,
        findings.moved_by_complete,
    );
    assert_eq!(counts, (0, 0, 0, 0, 0, 0, 0, 0), "{findings:?}");
}

#[test]
fn upgrade_start_rollback_complete_keep_every_user_on_one_version_envoyfilter_inline() {
    upgrade_drill(Form::EnvoyFilterInline);
}

#[test]
fn upgrade_start_rollback_complete_keep_every_user_on_one_version_envoyfilter_oci() {
    upgrade_drill(Form::EnvoyFilterOci);
}

/// The control: the same drill, but each revision's istiod is given manifests rendered with
/// another salt (as if the new revision's gateway had been configured from another spec). Each
/// gateway on its own does what `assign` says for its config; the drill must still fail, on the
/// users the two gateways put on different versions and on the users `rollback` moves.
#[test]
fn gateways_rendered_with_different_salts_fail_the_drill() {
    if !pair_selected() {
        return;
    }
    let _serial = serial();
    let started = Instant::now();
    let other_salt = format!("{SALT}-other");
    let world = World::new(Form::EnvoyFilterInline, &[SALT, &other_salt], [0, 1], 0);
    let label = "control: two salts";
    let findings = drill_on(&world, &[0, 50], label);
    eprintln!(
        "{label}: {:.1} s in all; the drill reports:\n  {}",
        started.elapsed().as_secs_f64(),
        findings.problems.join("\n  ")
    );
    assert_eq!(findings.failed, 0, "{:?}", findings.problems);
    assert_eq!(
        findings.off_plan, 0,
        "each gateway alone routes as assign predicts for its own config: {:?}",
        findings.problems
    );
    assert!(
        findings.disagreements > 0,
        "two salts, yet no user saw the gateways disagree: {:?}",
        findings.problems
    );
    assert!(
        findings.moved_by_rollback > 0 && findings.moved_by_complete > 0,
        "two salts, yet rollback and complete moved nobody: {findings:?}"
    );
    assert!(
        findings
            .problems
            .iter()
            .any(|p| p.starts_with("users whose version depends on the gateway at a settled step")),
        "{:?}",
        findings.problems
    );
}
