//! `sticky-canary demo`: the AKS canary tutorial's app, bounced by plain weights and kept on one
//! version by sticky-canary, on a real Envoy, in one command.
//!
//! 1. Plain per-request weights (what an Istio VirtualService with weights does):
//!    a crowd of users, each with its own cookie jar, bounces between v1 and v2.
//! 2. The same crowd through sticky-canary: new users get a client-id cookie,
//!    then the canary is ramped 0 → 10 → 50 → 100% by hot-updating the filter
//!    config while the users keep going, and rolled back to 0%. In the middle of
//!    the ramp every user logs in (a `session` cookie, the key chain's first
//!    source, appears beside the id), has the session rotated, and later logs
//!    out. Nobody bounces, nobody moves at login, canary users never go back, no
//!    request fails, and every user is on the version `sticky-canary assign`
//!    predicts for their id.
//!
//! Exits 0 only when every check held. Envoy dies with this process (it sets
//! PR_SET_PDEATHSIG), and the app servers are threads of it, so Ctrl-C leaves
//! nothing behind.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use policy_core::{format_percent, ClientId, Policy};

use crate::harness::{
    find_or_install_envoy, Backend, Client, CookieJar, Envoy, EnvoyConfig, FilterSpec, Request, UpdateOutcome,
};

/// The id cookie the demo's filter config issues.
const ID_COOKIE: &str = "sticky-canary-id";
const ROUTING_HEADER: &str = "x-canary-version";
const SERVED_HEADER: &str = "x-served-version";

/// How big and how long.
#[derive(Debug, Clone)]
pub struct Options {
    pub users: usize,
    /// How long each phase runs.
    pub phase: Duration,
    /// Total request rate of the crowd.
    pub rate_per_second: u32,
    /// Keep the sticky Envoy up afterwards for curl and browsers.
    pub serve: bool,
    /// The Envoy binary (`--envoy`); `None`: `$ENVOY`, `PATH`, else the pinned release from the
    /// per-user cache, installed on first use.
    pub envoy: Option<PathBuf>,
}

impl Options {
    /// The README's demo: 500 users, long enough to watch.
    pub fn full() -> Options {
        Options {
            users: 500,
            phase: Duration::from_secs(4),
            rate_per_second: 600,
            serve: false,
            envoy: None,
        }
    }

    /// The CI smoke version: same checks, fewer users, shorter phases.
    pub fn quick() -> Options {
        Options {
            users: 200,
            phase: Duration::from_millis(1500),
            rate_per_second: 500,
            serve: false,
            envoy: None,
        }
    }
}

/// The filter config of the demo at a given canary weight (basis points).
pub fn filter_config(canary_basis_points: u32) -> String {
    format!(
        r#"{{"routes": [{{"name": "my-app", "hosts": ["*"], "salt": "demo-2026",
  "routing_header": "{ROUTING_HEADER}",
  "versions": [{{"name": "v1", "weight": {}}}, {{"name": "v2", "weight": {}}}],
  "key_chain": [{{"cookie": "session"}}, {{"new_client_id": {{"cookie": "{ID_COOKIE}", "secure": false}}}}],
  "override": {{"header": "x-canary-force", "allow": ["v2"]}}}}],
  "response_header": "x-canary-served-version"}}"#,
        format_percent(10_000 - canary_basis_points),
        format_percent(canary_basis_points),
    )
}

/// One simulated user: a cookie jar and what it was served.
#[derive(Default)]
struct User {
    jar: CookieJar,
    /// Version index (0 = v1, 1 = v2) of the last response.
    last: Option<usize>,
    last_at: Option<Instant>,
    /// Changes of version in the current phase, by direction.
    to_canary: u32,
    to_stable: u32,
}

/// Per-phase tallies.
#[derive(Default, Clone)]
struct Tally {
    requests: [u64; 2],
    failed: u64,
    new_ids: u64,
    failures: Vec<String>,
}

struct Crowd {
    users: Vec<User>,
    tally: Tally,
    /// While users are logged in: the generation of their `session` cookie (a new one on each
    /// login or rotation). `None`: logged out, no session cookie.
    session: Option<u32>,
}

impl Crowd {
    fn new(users: usize) -> Crowd {
        Crowd {
            users: (0..users).map(|_| User::default()).collect(),
            tally: Tally::default(),
            session: None,
        }
    }

    /// Starts a new phase: counters back to zero, what users were on is kept.
    fn next_phase(&mut self) -> Tally {
        for user in &mut self.users {
            user.to_canary = 0;
            user.to_stable = 0;
        }
        std::mem::take(&mut self.tally)
    }

    fn users_on(&self, version: usize) -> usize {
        self.users.iter().filter(|u| u.last == Some(version)).count()
    }

    /// Users who changed version more than once in this phase.
    fn flipped(&self) -> usize {
        self.users.iter().filter(|u| u.to_canary + u.to_stable > 1).count()
    }

    fn moved(&self, to: usize) -> usize {
        self.users
            .iter()
            .filter(|u| if to == 1 { u.to_canary > 0 } else { u.to_stable > 0 })
            .count()
    }
}

/// The crowd's worker threads, sending requests until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Traffic {
    fn start(target: SocketAddr, crowd: Arc<Mutex<Crowd>>, rate_per_second: u32) -> Result<Traffic, String> {
        let user_count = lock(&crowd).users.len();
        let threads = 8.min(user_count.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let interval = Duration::from_secs_f64(threads as f64 / f64::from(rate_per_second.max(1)));
        let mut workers = Vec::new();
        for t in 0..threads {
            let mine: Vec<usize> = (t..user_count).step_by(threads).collect();
            let mut clients = Vec::with_capacity(mine.len());
            for _ in &mine {
                clients.push(Client::connect(target).map_err(|e| format!("connect to Envoy: {e}"))?);
            }
            let crowd = Arc::clone(&crowd);
            let stop = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name(format!("crowd-{t}"))
                .spawn(move || {
                    let mut next = Instant::now() + interval.mul_f64(t as f64 / threads as f64);
                    'outer: loop {
                        for (slot, &user) in mine.iter().enumerate() {
                            if stop.load(Ordering::SeqCst) {
                                break 'outer;
                            }
                            let now = Instant::now();
                            if next > now {
                                std::thread::sleep(next - now);
                            }
                            next += interval;
                            if let Some(client) = clients.get_mut(slot) {
                                one_request(client, &crowd, user);
                            }
                        }
                    }
                })
                .map_err(|e| format!("start a crowd thread: {e}"))?;
            workers.push(handle);
        }
        Ok(Traffic { stop, workers })
    }

    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.halt();
    }
}

fn lock(crowd: &Mutex<Crowd>) -> std::sync::MutexGuard<'_, Crowd> {
    crowd.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One request of one user, as a browser would send it, and its bookkeeping.
fn one_request(client: &mut Client, crowd: &Mutex<Crowd>, user: usize) {
    let request = {
        let mut crowd = lock(crowd);
        let session = crowd.session;
        let Some(state) = crowd.users.get_mut(user) else { return };
        match session {
            // A login, or the framework rotating the session id: a new session cookie.
            Some(generation) => state.jar.set("session", &format!("s{generation}-user{user}")),
            None => {
                state.jar.cookies.remove("session");
            }
        }
        state.jar.apply(Request::get("/").host("my-app.example.com"))
    };
    let result = client.send(&request);
    let mut crowd = lock(crowd);
    let version = match &result {
        Ok(response) if response.status == 200 => match response.header(SERVED_HEADER) {
            Some(b"v1") => Some(0),
            Some(b"v2") => Some(1),
            _ => None,
        },
        _ => None,
    };
    let Some(version) = version else {
        crowd.tally.failed += 1;
        let message = match result {
            Ok(response) => format!("status {} from {}", response.status, response.header_str(SERVED_HEADER)),
            Err(e) => e.to_string(),
        };
        if crowd.tally.failures.len() < 5 {
            crowd.tally.failures.push(message);
        }
        return;
    };
    if let Some(count) = crowd.tally.requests.get_mut(version) {
        *count += 1;
    }
    let Some(state) = crowd.users.get_mut(user) else { return };
    let id_before = state.jar.cookies.get(ID_COOKIE).map(|v| id_of(v).to_owned());
    if let Ok(response) = &result {
        state.jar.store(response);
    }
    // A new id, not a refresh of the same one (a run across midnight UTC refreshes stamps).
    let issued = state.jar.cookies.get(ID_COOKIE).map(|v| id_of(v)) != id_before.as_deref();
    match (state.last, version) {
        (Some(0), 1) => state.to_canary += 1,
        (Some(1), 0) => state.to_stable += 1,
        _ => {}
    }
    state.last = Some(version);
    state.last_at = Some(Instant::now());
    if issued {
        crowd.tally.new_ids += 1;
    }
}

/// The id in a client-id cookie value, without its day stamp (what is hashed).
fn id_of(value: &str) -> &str {
    std::str::from_utf8(ClientId::parse(value.as_bytes()).key).unwrap_or(value)
}

/// One row of the table.
struct Row {
    phase: String,
    target: Option<u32>,
    tally: Tally,
    users: usize,
    on_canary: usize,
    /// Users who changed version the way the plan moves them (towards the canary on a ramp, to stable on a rollback).
    moved: usize,
    /// Users who changed version against the plan (any change, with plain weights).
    bounced: usize,
    mismatches: Option<usize>,
}

/// What the users do with their login during a phase.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Session {
    Keep,
    /// Log in (a `session` cookie appears), and get the session id rotated halfway through.
    LogIn,
    /// Log out: the session cookie goes.
    LogOut,
}

/// Which way a phase is meant to move users.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Plain weights: every change of version is a bounce.
    PerRequest,
    /// Weight kept or raised: users may only move from stable to the canary, once.
    Up,
    /// Rollback: users may only move from the canary to stable, once.
    Down,
    /// Weight unchanged (a login, a session rotation, a logout): any change is a bounce.
    Hold,
}

impl Row {
    fn share(&self) -> f64 {
        let total = self.tally.requests[0] + self.tally.requests[1];
        if total == 0 {
            0.0
        } else {
            100.0 * self.tally.requests[1] as f64 / total as f64
        }
    }

    fn render(&self, color: bool) -> String {
        let paint = |bad: bool, text: String| {
            if color && bad {
                format!("\x1b[1;31m{text}\x1b[0m")
            } else if color {
                format!("\x1b[32m{text}\x1b[0m")
            } else {
                text
            }
        };
        let target = self
            .target
            .map_or("-".to_owned(), |t| format!("{}%", format_percent(t)));
        format!(
            "{:<28} {:>7} {:>9.1}% {:>12} {:>7} {:>10} {:>8} {:>8} {:>7}",
            self.phase,
            target,
            self.share(),
            format!(
                "{} ({:.1}%)",
                self.on_canary,
                100.0 * self.on_canary as f64 / self.users.max(1) as f64
            ),
            self.moved,
            paint(self.bounced > 0, format!("{}", self.bounced)),
            self.tally.new_ids,
            paint(self.tally.failed > 0, format!("{}", self.tally.failed)),
            self.mismatches.map_or("-".to_owned(), |m| paint(m > 0, m.to_string())),
        )
    }
}

const HEADER: &str =
    "phase                         target  v2 share  users on v2   moved  bounced*  new ids   failed  off-plan";

/// Runs the whole demo; `Ok(true)` when every check held.
pub fn run(options: &Options) -> Result<bool, String> {
    let out = &mut std::io::stdout();
    let color = out.is_terminal();
    let say = |text: &str| {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    };
    say("sticky-canary demo: the AKS tutorial's app (v1 stable, v2 canary) behind a real Envoy on loopback.");
    say(&format!(
        "A crowd of {} users, each with its own cookie jar, sends about {} requests/s.\n",
        options.users, options.rate_per_second
    ));
    let envoy = find_or_install_envoy(options.envoy.as_deref()).map_err(|e| e.to_string())?;
    say(&format!("Envoy: {}\n", envoy.display()));

    say("[1/4] starting app v1 and app v2 (the tutorial's deployment-my-app-v1/-v2) ...");
    let v1 = Backend::start("v1").map_err(|e| e.to_string())?;
    let v2 = Backend::start("v2").map_err(|e| e.to_string())?;

    say("[2/4] starting Envoy with plain weighted routing, v1 90 / v2 10 (what the VirtualService weights do) ...");
    let weighted = Envoy::start(&EnvoyConfig::weighted(&[(&v1, 90), (&v2, 10)]).with_envoy(Some(envoy.clone())))
        .map_err(|e| e.to_string())?;
    say("[3/4] starting Envoy with the sticky-canary filter (routes on x-canary-version like the generated VirtualService) ...");
    let sticky_config = EnvoyConfig::by_header(ROUTING_HEADER, &[&v1, &v2])
        .with_filter(FilterSpec::embedded(filter_config(0)))
        .with_envoy(Some(envoy));
    let mut sticky = Envoy::start(&sticky_config).map_err(|e| e.to_string())?;
    say("[4/4] running the crowd.\n");
    say(HEADER);

    let mut all_ok = true;
    let mut rows = Vec::new();

    // Act 1: plain weights.
    let crowd = Arc::new(Mutex::new(Crowd::new(options.users)));
    let traffic = Traffic::start(weighted.listener(), Arc::clone(&crowd), options.rate_per_second)?;
    let row = watch(
        &crowd,
        "plain Istio weights 90/10",
        (Some(1000), Plan::PerRequest),
        options.phase * 2,
        None,
        color,
    );
    traffic.stop();
    let bounced_plain = row.bounced;
    all_ok &= row.tally.failed == 0;
    rows.push(row);
    drop(weighted);

    // Act 2: the same crowd size, fresh users, through sticky-canary.
    let crowd = Arc::new(Mutex::new(Crowd::new(options.users)));
    let traffic = Traffic::start(sticky.listener(), Arc::clone(&crowd), options.rate_per_second)?;
    let mut previous = 0u32;
    let mut login_rows = Vec::new();
    for (label, weight, session) in [
        ("sticky-canary 0%", 0u32, Session::Keep),
        ("sticky-canary ramp to 10%", 1000, Session::Keep),
        ("log in, rotate session, 10%", 1000, Session::LogIn),
        ("sticky-canary ramp to 50%", 5000, Session::Keep),
        ("log out at 50%", 5000, Session::LogOut),
        ("sticky-canary ramp to 100%", 10_000, Session::Keep),
        ("sticky-canary rollback to 0%", 0, Session::Keep),
    ] {
        let plan = if session != Session::Keep {
            Plan::Hold
        } else if weight < previous {
            Plan::Down
        } else {
            Plan::Up
        };
        // Counters start before the push, so moves during the update window are counted too.
        // (The first phase keeps what the crowd did since it started: the new ids.)
        if rows.len() > 1 {
            lock(&crowd).next_phase();
        }
        if weight != previous {
            match sticky.update_filter_config(&filter_config(weight)) {
                Ok(UpdateOutcome::Accepted) => {}
                Ok(UpdateOutcome::Rejected { log }) => return Err(format!("Envoy rejected the demo config:\n{log}")),
                Err(e) => return Err(format!("hot update failed: {e}")),
            }
        }
        let policy = Policy::from_json(filter_config(weight).as_bytes()).map_err(|e| e.to_string())?;
        // A login sets a session cookie beside the id; halfway through, the app rotates it.
        let rotation = match session {
            Session::Keep => None,
            Session::LogIn => {
                lock(&crowd).session = Some(1);
                let crowd = Arc::clone(&crowd);
                let half = options.phase / 2;
                Some(std::thread::spawn(move || {
                    std::thread::sleep(half);
                    lock(&crowd).session = Some(2);
                }))
            }
            Session::LogOut => {
                lock(&crowd).session = None;
                None
            }
        };
        let row = watch(&crowd, label, (Some(weight), plan), options.phase, Some(&policy), color);
        if let Some(rotation) = rotation {
            let _ = rotation.join();
        }
        if session == Session::LogIn {
            // What the session-first rule did before: the key switched from the id to the session.
            if let Some(route) = policy.routes().first() {
                let c = lock(&crowd);
                let old_rule_moves = (0..c.users.len())
                    .filter(|&i| {
                        let by_id = c
                            .users
                            .get(i)
                            .and_then(|u| u.jar.cookies.get(ID_COOKIE))
                            .map(|v| route.assign(id_of(v).as_bytes()).1);
                        by_id != Some(route.assign(format!("s1-user{i}").as_bytes()).1)
                    })
                    .count();
                login_rows.push((row.bounced, old_rule_moves));
            }
        } else if session == Session::LogOut {
            login_rows.push((row.bounced, 0));
        }
        all_ok &= row.tally.failed == 0 && row.bounced == 0 && row.mismatches == Some(0);
        if weight == 0 {
            all_ok &= row.on_canary == 0;
        }
        if weight == 10_000 {
            all_ok &= row.on_canary == row.users;
        }
        rows.push(row);
        previous = weight;
    }
    traffic.stop();

    let sticky_rows = rows.get(1..).unwrap_or_default();
    let failed: u64 = rows.iter().map(|r| r.tally.failed).sum();
    let bounced: usize = sticky_rows.iter().map(|r| r.bounced).sum();
    let mismatches: usize = sticky_rows.iter().filter_map(|r| r.mismatches).sum();
    let checked_users: usize = sticky_rows.iter().map(|r| r.users).sum();
    let share_at = |label: &str| {
        sticky_rows
            .iter()
            .find(|r| r.phase == label)
            .map_or(0.0, |r| 100.0 * r.on_canary as f64 / r.users.max(1) as f64)
    };
    let ten = share_at("sticky-canary ramp to 10%");
    let fifty = share_at("sticky-canary ramp to 50%");
    let login_moves: usize = login_rows.iter().map(|(moved, _)| moved).sum();
    let old_rule_moves: usize = login_rows.iter().map(|(_, would)| would).sum();
    // Ids are random, so the canary's share of users is a binomial draw: allow 4.5 standard
    // deviations (a false alarm about once in 100,000 runs). Exactness is what off-plan checks.
    let tolerance = |p: f64| 4.5 * 100.0 * (p * (1.0 - p) / options.users.max(1) as f64).sqrt();
    let shares_ok = (ten - 10.0).abs() <= tolerance(0.1) && (fifty - 50.0).abs() <= tolerance(0.5);
    all_ok &= shares_ok;
    for row in &rows {
        for failure in &row.tally.failures {
            say(&format!("  failed request in {:?}: {failure}", row.phase));
        }
    }

    say("\n* bounced: users who changed version against the plan: with plain weights, every change;");
    say("  with sticky-canary, a canary user sent back to stable during the ramp, or any user who changed twice;");
    say("  at a login, a session rotation or a logout (weight unchanged), any change.");
    say("  off-plan: users whose version differs from `sticky-canary assign` for their id cookie.\n");
    let mark = |ok: bool| if ok { "ok " } else { "FAIL" };
    say(&format!(
        "plain weights:   {bounced_plain} of {} users ({:.0}%) bounced between v1 and v2 within seconds.",
        options.users,
        100.0 * bounced_plain as f64 / options.users.max(1) as f64
    ));
    say(&format!(
        "[{}] sticky-canary: {bounced} users bounced; no canary user went back during the ramp (0 is the only passing answer).",
        mark(bounced == 0)
    ));
    say(&format!(
        "[{}] login, session rotation and logout mid-ramp: {login_moves} of {} users changed version (keyed by the session, as before, {old_rule_moves} would have moved at login).",
        mark(login_moves == 0 && login_rows.len() == 2),
        options.users
    ));
    say(&format!(
        "[{}] every user on the version predicted from their id: {mismatches} mismatches in {checked_users} checks.",
        mark(mismatches == 0)
    ));
    say(&format!(
        "[{}] users on the canary: {ten:.1}% at 10%, {fifty:.1}% at 50% (within {:.1} and {:.1} points: 4.5 σ for {} random ids), all at 100%, none after rollback.",
        mark(shares_ok),
        tolerance(0.1),
        tolerance(0.5),
        options.users
    ));
    say(&format!("[{}] failed requests: {failed}.", mark(failed == 0)));
    say(if all_ok {
        "\nEvery check held."
    } else {
        "\nSOME CHECKS FAILED (see above)."
    });

    if options.serve {
        serve(&mut sticky)?;
    }
    Ok(all_ok)
}

/// Lets the crowd run for `duration`, redrawing the row on a terminal; then
/// checks every user against the policy's prediction.
fn watch(
    crowd: &Arc<Mutex<Crowd>>,
    label: &str,
    (target, plan): (Option<u32>, Plan),
    duration: Duration,
    policy: Option<&Policy>,
    color: bool,
) -> Row {
    let started = Instant::now();
    let live = std::io::stdout().is_terminal();
    let snapshot = |mismatches: Option<usize>| {
        let c = lock(crowd);
        Row {
            phase: label.to_owned(),
            target,
            tally: c.tally.clone(),
            users: c.users.len(),
            on_canary: c.users_on(1),
            moved: match plan {
                Plan::PerRequest | Plan::Hold => 0,
                Plan::Up => c.moved(1),
                Plan::Down => c.moved(0),
            },
            bounced: match plan {
                Plan::PerRequest | Plan::Hold => c.users.iter().filter(|u| u.to_canary + u.to_stable > 0).count(),
                Plan::Up => c.moved(0).max(c.flipped()),
                Plan::Down => c.moved(1).max(c.flipped()),
            },
            mismatches,
        }
    };
    while started.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(200));
        if live {
            print!("\r{}", snapshot(None).render(color));
            let _ = std::io::stdout().flush();
        }
    }
    let mismatches = policy.map(|policy| off_plan(&lock(crowd), policy, started));
    let row = snapshot(mismatches);
    if live {
        print!("\r");
    }
    println!("{}", row.render(color));
    row
}

/// Users whose last response (within this phase) is not the version their id predicts.
fn off_plan(crowd: &Crowd, policy: &Policy, since: Instant) -> usize {
    let Some(route) = policy.routes().first() else {
        return crowd.users.len();
    };
    crowd
        .users
        .iter()
        .filter(|user| {
            let Some(id) = user.jar.cookies.get(ID_COOKIE) else {
                return true;
            };
            let predicted = route.assign(id_of(id).as_bytes()).1;
            user.last_at.is_none_or(|at| at < since) || user.last != Some(predicted)
        })
        .count()
}

/// Keeps the sticky Envoy up for people: curl and browsers.
fn serve(envoy: &mut Envoy) -> Result<(), String> {
    if let Err(e) = envoy.update_filter_config(&filter_config(5000)) {
        return Err(format!("could not set the 50% config for --serve: {e}"));
    }
    let url = format!("http://{}/", envoy.listener());
    println!("\nEnvoy with sticky-canary at 50% is serving {url}");
    println!(
        "  curl -i {url}                          # a new client: Set-Cookie sticky-canary-id=..., and its version"
    );
    println!("  curl -i -H 'cookie: session=alice' {url}   # the same key always gets the same version");
    println!("  curl -i -H 'x-canary-force: v2' {url}      # the tester override (allow-listed: v2)");
    println!("  a browser at {url} keeps its version across reloads, and across a login, a rotated session");
    println!(
        "  and a logout (its sticky-canary-id cookie decides ahead of `session`; the response names the version)."
    );
    println!("Press Ctrl-C to stop.");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
