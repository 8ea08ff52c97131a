#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! Flagger and Argo Rollouts running their own loops on the cluster suite's control plane
//! (`sticky_canary_harness::cluster`: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, KWOK as the kubelet, istiod, the gateway as istio-agent with upstream
//! Envoy), deciding from a real Prometheus that scrapes the gateway, while a crowd of users
//! with cookie jars keeps sending requests:
//!
//! - each controller is its release's own binary (`sticky_canary_harness::controllers`);
//! - its analysis is the template `sticky-canary render` writes (`analysis.yaml`), on the
//!   gateway's Envoy cluster stats, kept by the `proxyStatsMatcher` render names;
//! - the pods are KWOK's, answering at their addresses as the version their template says,
//!   with the error rate it says (`sticky_canary_harness::pods`);
//! - per tool two runs: a healthy canary (v2) that the tool steps up, promotes and finishes,
//!   then a broken one (v3, 20 % of its answers 500) whose analysis fails and that the tool
//!   rolls back.
//!
//! Every answer a user got is checked against the plan: the version `sticky-canary assign
//! --canary-weight W` gives the user, for a weight W Envoy itself routed with within [`LAG`]
//! of the request (Envoy's route config, polled from its admin API). The tool's own weights
//! (a watch on the VirtualService) give the run's steps, and no user may change version more
//! often than those steps plan for them (no bounce). Nobody is off the plan; the runs' figures
//! (steps, verdict, time, users moved and when, how long each weight took to reach Envoy,
//! Flagger's promotion window) are printed for docs/progressive-delivery.md.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{assign_with, edit, progressive_test_spec, revision, run_cli, selected, serial, write_filter_config};
use serde_json::Value;
use sticky_canary::render::{self, analysis};
use sticky_canary_harness::cluster::{self, Cluster, Events, Gateway, GATEWAY_IP, NODE_IP};
use sticky_canary_harness::controllers::{self, Controller};
use sticky_canary_harness::load::Load;
use sticky_canary_harness::pods::Pods;
use sticky_canary_harness::prometheus::{Prometheus, Target};
use sticky_canary_harness::{Client, CookieJar, Request};

const HOST: &str = "my-app.example.com";
const NAMESPACE: &str = "ns-canary-istio";
/// Users in the crowd: half logged in (a `session` cookie in the jar), half anonymous (the
/// filter's id cookie, once the first answer set it).
const USERS: usize = 300;
/// Requests per second of the whole crowd: each user every 2 s.
const RATE: u32 = 150;
/// How far an answer may be from a change of Envoy's route (its admin API, polled every
/// 100 ms) and still follow the other weight: requests in flight, and the poll's own delay
/// (a config dump, parsed, on a busy 2-core machine).
const LAG: Duration = Duration::from_secs(1);
/// The id cookie of the example spec's `new_client_id`.
const ID_COOKIE: &str = "sticky-canary-id";
const PROMETHEUS_PORT: u16 = 9090;

/// One answer a user got.
#[derive(Debug, Clone)]
struct Seen {
    user: usize,
    sent: Instant,
    status: u16,
    version: String,
    pod: String,
}

/// The crowd: each user a cookie jar, one request every `USERS / RATE` seconds.
struct Crowd {
    load: Load,
    seen: Arc<Mutex<Vec<Seen>>>,
    jars: Arc<Vec<Mutex<CookieJar>>>,
}

impl Crowd {
    fn start(gateway: SocketAddr) -> Crowd {
        let jars: Arc<Vec<Mutex<CookieJar>>> = Arc::new(
            (0..USERS)
                .map(|user| {
                    let mut jar = CookieJar::default();
                    if user % 2 == 0 {
                        jar.set("session", &format!("user-{user}"));
                    }
                    Mutex::new(jar)
                })
                .collect(),
        );
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(Vec::new()));
        let (job_jars, job_seen) = (Arc::clone(&jars), Arc::clone(&seen));
        let job = Arc::new(move |sequence: u64, client: &mut Client| -> Result<(), String> {
            let user = (sequence as usize) % USERS;
            let mut jar = job_jars[user].lock().map_err(|_| "poisoned")?;
            let sent = Instant::now();
            let reply = client
                .send(&jar.apply(Request::get("/").host(HOST)))
                .map_err(|e| format!("user {user}: {e}"))?;
            jar.store(&reply);
            let mut pod = reply.header_str("x-served-pod");
            if pod.is_empty() {
                // Not a pod's answer: Envoy's own (its body says why).
                pod = format!("envoy: {}", reply.body_text().chars().take(120).collect::<String>());
            }
            job_seen.lock().map_err(|_| "poisoned")?.push(Seen {
                user,
                sent,
                status: reply.status,
                version: reply.header_str("x-served-version"),
                pod,
            });
            Ok(())
        });
        Crowd {
            load: Load::start(gateway, 4, RATE, job).unwrap(),
            seen,
            jars,
        }
    }

    /// Stops the crowd: every answer, and each user's key for `assign` as (kind, key).
    fn stop(self) -> (Vec<Seen>, Vec<(&'static str, String)>) {
        let report = self.load.stop();
        assert!(
            report.failures.is_empty(),
            "requests without an answer: {:?}",
            report.failures
        );
        let seen = self.seen.lock().unwrap().clone();
        let keys = (0..USERS)
            .map(|user| {
                let jar = self.jars[user].lock().unwrap();
                if user % 2 == 0 {
                    ("key", format!("user-{user}"))
                } else {
                    let id = jar
                        .get(ID_COOKIE)
                        .unwrap_or_else(|| panic!("user {user} never got {ID_COOKIE}"));
                    ("id-cookie", id.to_owned())
                }
            })
            .collect();
        (seen, keys)
    }
}

/// Who is on the canary at each weight the tool set: weight -> per user.
struct Plan {
    config: PathBuf,
    keys: Vec<(&'static str, String)>,
    sides: HashMap<u8, Vec<bool>>,
}

impl Plan {
    /// Whether `user` is on the canary side at `weight` (`assign --canary-weight`).
    fn on_canary(&mut self, weight: u8, user: usize) -> bool {
        if !self.sides.contains_key(&weight) {
            let mut sides = vec![false; self.keys.len()];
            for kind in ["key", "id-cookie"] {
                let users: Vec<usize> = (0..self.keys.len()).filter(|u| self.keys[*u].0 == kind).collect();
                let keys: Vec<String> = users.iter().map(|u| self.keys[*u].1.clone()).collect();
                let answer = assign_with(
                    &self.config,
                    HOST,
                    &keys,
                    &["--kind", kind, "--canary-weight", &weight.to_string()],
                );
                for (u, key) in users.iter().zip(&keys) {
                    sides[*u] = answer[key] == "canary";
                }
            }
            self.sides.insert(weight, sides);
        }
        self.sides[&weight][user]
    }
}

/// The canary weight the tool set in the VirtualService, as it changed: (when seen, weight).
fn weights(events: &Events, canary_host: &str) -> Vec<(Instant, u8)> {
    changes(events, |vs| {
        let route = vs["spec"]["http"].as_array()?.first()?.clone();
        let weight = route["route"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["destination"]["host"].as_str() == Some(canary_host))
            .and_then(|d| d["weight"].as_u64())
            .unwrap_or(0);
        Some(u8::try_from(weight).unwrap())
    })
}

/// A value of the watched object (`None`: the event has none), as it changed: (when seen, value).
fn changes<T: PartialEq>(events: &Events, value: impl Fn(&Value) -> Option<T>) -> Vec<(Instant, T)> {
    let mut out: Vec<(Instant, T)> = Vec::new();
    for (at, event) in events.lock().unwrap().iter() {
        let Some(value) = value(&event["object"]) else { continue };
        if out.last().is_none_or(|(_, v)| *v != value) {
            out.push((*at, value));
        }
    }
    out
}

/// The canary weight Envoy itself routes `HOST` with, polled from its admin API every 100 ms
/// while the runs go: (when seen, weight). 0 when the route has no canary cluster (Istio
/// leaves a weight-0 destination out).
struct EnvoyWeights {
    stop: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<Mutex<Vec<(Instant, u8)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EnvoyWeights {
    fn start(admin: SocketAddr, canary_cluster: String) -> EnvoyWeights {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<(Instant, u8)>>> = Arc::new(Mutex::new(Vec::new()));
        let (flag, out) = (Arc::clone(&stop), Arc::clone(&seen));
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                let asked = Instant::now();
                if let Some((200, body)) = cluster::http_get(admin, "/config_dump?resource=dynamic_route_configs") {
                    if let Some(weight) = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|dump| route_canary_weight(&dump, &canary_cluster))
                    {
                        let mut out = out.lock().unwrap();
                        if out.last().is_none_or(|(_, w)| *w != weight) {
                            out.push((asked, weight));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        EnvoyWeights {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn timeline(&self) -> Vec<(Instant, u8)> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until Envoy routes `HOST` with the canary at `weight`, then one more second.
    fn wait_for(&self, weight: u8, limit: Duration) {
        let started = Instant::now();
        while self.timeline().last().map(|(_, w)| *w) != Some(weight) {
            assert!(
                started.elapsed() < limit,
                "Envoy does not route the canary at {weight}% after {limit:?}: {:?}",
                self.timeline().iter().map(|(_, w)| *w).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

impl Drop for EnvoyWeights {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The canary's weight in percent on `HOST`'s forwarding route of an Envoy route config dump.
fn route_canary_weight(dump: &Value, canary_cluster: &str) -> Option<u8> {
    let configs = dump["configs"].as_array()?;
    for config in configs {
        let hosts = config["route_config"]["virtual_hosts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for host in hosts {
            let domains = host["domains"].as_array().cloned().unwrap_or_default();
            if !domains.iter().any(|d| d.as_str() == Some(HOST)) {
                continue;
            }
            for route in host["routes"].as_array().cloned().unwrap_or_default() {
                let action = &route["route"];
                if let Some(clusters) = action["weighted_clusters"]["clusters"].as_array() {
                    let weight = |c: &Value| c["weight"].as_u64().unwrap_or(0);
                    let total: u64 = clusters.iter().map(weight).sum();
                    let canary: u64 = clusters
                        .iter()
                        .filter(|c| c["name"].as_str() == Some(canary_cluster))
                        .map(weight)
                        .sum();
                    return u8::try_from(canary * 100 / total.max(1)).ok();
                }
                if let Some(name) = action["cluster"].as_str() {
                    return Some(if name == canary_cluster { 100 } else { 0 });
                }
            }
        }
    }
    None
}

/// The weights an answer to a request sent at `sent` may follow: the one Envoy had `LAG`
/// before, and every one seen up to `LAG` after (the poll sees a change up to a poll, a
/// config dump and its parsing after Envoy made it).
fn weights_in_force(timeline: &[(Instant, u8)], sent: Instant) -> Vec<u8> {
    let from = sent.checked_sub(LAG).unwrap_or(sent);
    let until = sent + LAG;
    let mut out: Vec<u8> = timeline
        .iter()
        .rfind(|(at, _)| *at <= from)
        .map(|(_, w)| vec![*w])
        .unwrap_or_else(|| vec![0]);
    out.extend(
        timeline
            .iter()
            .filter(|(at, _)| *at > from && *at <= until)
            .map(|(_, w)| *w),
    );
    out
}

/// A status value the tool wrote, as it changed: (when seen, value).
fn status_timeline(events: &Events, field: impl Fn(&Value) -> String) -> Vec<(Instant, String)> {
    changes(events, |object| Some(field(object)))
}

/// Waits until the watched object's `field` is `want`; the tool's log on a timeout.
fn wait_status(
    events: &Events,
    field: impl Fn(&Value) -> String,
    want: &str,
    since: Instant,
    limit: Duration,
    controller: &mut Controller,
) -> Instant {
    let started = Instant::now();
    loop {
        let hit = events
            .lock()
            .unwrap()
            .iter()
            .find(|(at, event)| *at >= since && field(&event["object"]) == want)
            .map(|(at, _)| *at);
        if let Some(at) = hit {
            return at;
        }
        assert!(
            controller.running(),
            "the controller exited:\n{}",
            controller.log_tail(60)
        );
        assert!(
            started.elapsed() < limit,
            "not {want} after {limit:?}: {:?}\n--- controller ---\n{}",
            status_timeline(events, &field)
                .iter()
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>(),
            controller.log_tail(80)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What one run did, for the note and the docs.
struct RunReport {
    label: String,
    steps: Vec<u8>,
    verdict: String,
    took: Duration,
    answers: usize,
    errors: usize,
    off_plan: Vec<String>,
    /// (seconds after the run's start, from -> to, users).
    moves: BTreeMap<(u64, String), usize>,
    users_moved: usize,
    /// Answers no pod gave (Envoy's own), each at a change of Envoy's route; not in `errors`,
    /// which counts the pods' 5xx.
    without_pod: Vec<String>,
    /// Users who changed version more often than their plan does over the tool's weights (a
    /// bounce: v1, v2, v1 where the plan says v1, v2).
    bounced: Vec<String>,
    /// Per weight the tool set: how long until Envoy routed with it (API server, istiod's
    /// debounce and push, the agent), and until the last user it moved was served the new
    /// version.
    applied_after: Vec<(u8, Option<Duration>, Option<Duration>)>,
    /// Flagger's promotion: (window length, users served by old and new primary pods in it).
    promotion_window: Option<(Duration, usize, usize)>,
}

impl RunReport {
    fn assert_on_plan(&self) {
        assert!(
            self.off_plan.is_empty(),
            "{}: {} answers off the plan, e.g. {:?}",
            self.label,
            self.off_plan.len(),
            &self.off_plan[..self.off_plan.len().min(8)]
        );
        assert!(
            self.bounced.is_empty(),
            "{}: {} users bounced, e.g. {:?}",
            self.label,
            self.bounced.len(),
            &self.bounced[..self.bounced.len().min(8)]
        );
    }

    fn print(&self) {
        let moves: Vec<String> = self
            .moves
            .iter()
            .map(|((at, change), users)| format!("{users} {change} at +{at}s"))
            .collect();
        let applied: Vec<String> = self
            .applied_after
            .iter()
            .map(|(w, routed, moved)| {
                let secs = |d: &Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()));
                format!("{w}%: Envoy {}, last move {}", secs(routed), secs(moved))
            })
            .collect();
        eprintln!(
            "{}: steps {:?}, verdict {} after {:.1}s; {} answers ({} 5xx from pods; {} of Envoy's own, at a route change: {:?}), {} off the plan, {} bounced; {} users changed version: {}; after each weight the tool set: {}{}",
            self.label,
            self.steps,
            self.verdict,
            self.took.as_secs_f64(),
            self.answers,
            self.errors,
            self.without_pod.len(),
            self.without_pod,
            self.off_plan.len(),
            self.bounced.len(),
            self.users_moved,
            moves.join(", "),
            applied.join(", "),
            self.promotion_window
                .map(|(length, both, primary_users)| format!(
                    "; promotion window {:.1}s: {both} of {primary_users} primary-side users served by old and new primary pods",
                    length.as_secs_f64()
                ))
                .unwrap_or_default()
        );
    }
}

/// One run between `start` (the new template applied) and `end` (the tool's verdict + LAG).
struct Run<'a> {
    label: &'a str,
    start: Instant,
    verdict_at: Instant,
    end: Instant,
    verdict: &'a str,
    old: &'a str,
    new: &'a str,
    /// When stable-side pods may serve the new version (Flagger's primary update, Argo's
    /// stable Service switch), if the run promotes.
    promotion: Option<Instant>,
    /// Flagger: which pods are the primary's (by name).
    primary_prefix: Option<&'a str>,
    /// From when Envoy routes 0 % to the canary again after the verdict: everyone is on the
    /// stable side's version from then on (`new` after a promotion, `old` after a rollback).
    settled: Instant,
}

/// Checks every answer of the run against the plan and measures it.
/// `tool` is the weights the tool set (the VirtualService), `envoy` what Envoy routed with.
fn check_run(
    run: &Run<'_>,
    seen: &[Seen],
    tool: &[(Instant, u8)],
    envoy: &[(Instant, u8)],
    plan: &mut Plan,
) -> RunReport {
    let answers: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.sent >= run.start && s.sent < run.end)
        .collect();
    let mut off_plan = Vec::new();
    let mut without_pod = Vec::new();
    let mut errors = 0;
    // Each user's version before the run: where a move starts from.
    let mut last: HashMap<usize, String> = HashMap::new();
    for s in seen.iter().filter(|s| s.sent < run.start && !s.version.is_empty()) {
        last.insert(s.user, s.version.clone());
    }
    let mut moves: BTreeMap<(u64, String), usize> = BTreeMap::new();
    let mut changes: HashMap<usize, usize> = HashMap::new();
    let mut last_move: Vec<Instant> = Vec::new();
    for s in &answers {
        if s.status >= 500 && !s.version.is_empty() {
            errors += 1;
        }
        if s.version.is_empty() {
            // Envoy's own answer (no pod's): only where Envoy's route just changed, when the
            // push can bring a cluster's endpoints before the route that stops using it.
            let at_change = envoy.iter().any(|(at, _)| s.sent + LAG >= *at && s.sent <= *at + LAG);
            let text = format!(
                "user {} at +{:.1}s: status {}, {}",
                s.user,
                s.sent.duration_since(run.start).as_secs_f64(),
                s.status,
                s.pod
            );
            if at_change {
                without_pod.push(text);
            } else {
                off_plan.push(format!("{text} (no route change within {LAG:?})"));
            }
            continue;
        }
        let in_force = weights_in_force(envoy, s.sent);
        let promoted = run.promotion.is_some_and(|p| s.sent + LAG >= p);
        let mut allowed: HashSet<&str> = HashSet::new();
        for weight in &in_force {
            if plan.on_canary(*weight, s.user) {
                allowed.insert(run.new);
            } else {
                allowed.insert(run.old);
                if promoted {
                    allowed.insert(run.new);
                }
            }
        }
        if !allowed.contains(s.version.as_str()) {
            off_plan.push(format!(
                "user {} at +{:.1}s: {} from {}, planned {allowed:?} (weights {in_force:?})",
                s.user,
                s.sent.duration_since(run.start).as_secs_f64(),
                s.version,
                s.pod
            ));
        }
        // Flagger: the side is the pod's Deployment; a canary-side user is never served by
        // the primary while the canary has weight, and the reverse.
        if let Some(prefix) = run.primary_prefix {
            let on_primary = s.pod.starts_with(prefix);
            let sides: HashSet<bool> = in_force.iter().map(|w| !plan.on_canary(*w, s.user)).collect();
            if !sides.contains(&on_primary) {
                off_plan.push(format!(
                    "user {} at +{:.1}s: served by {}, planned the {} (weights {in_force:?})",
                    s.user,
                    s.sent.duration_since(run.start).as_secs_f64(),
                    s.pod,
                    if on_primary { "canary" } else { "primary" }
                ));
            }
        }
        if let Some(before) = last.insert(s.user, s.version.clone()) {
            if before != s.version {
                *changes.entry(s.user).or_default() += 1;
                last_move.push(s.sent);
                let at = s.sent.duration_since(run.start).as_secs();
                *moves.entry((at, format!("{before}->{}", s.version))).or_default() += 1;
            }
        }
    }
    // After the verdict, once Envoy routes nothing to the canary: everyone on the stable
    // side's version, from the stable side's pods.
    let after = if run.promotion.is_some() { run.new } else { run.old };
    let late: Vec<&&Seen> = answers.iter().filter(|s| s.sent >= run.settled).collect();
    assert!(!late.is_empty(), "{}: no answers after the verdict", run.label);
    for s in late {
        let on_stable_pods = run.primary_prefix.is_none_or(|prefix| s.pod.starts_with(prefix));
        if s.version != after || !on_stable_pods {
            off_plan.push(format!(
                "user {} at +{:.1}s, after the verdict: {} from {}, planned {after} for everyone",
                s.user,
                s.sent.duration_since(run.start).as_secs_f64(),
                s.version,
                s.pod
            ));
        }
    }
    // The run's weights in order, each with whether the stable side serves the new version
    // by then (after the promotion).
    let run_weights: Vec<(Instant, u8)> = tool
        .iter()
        .filter(|(at, _)| *at >= run.start && *at <= run.end)
        .copied()
        .collect();
    let mut bounced = Vec::new();
    for (user, observed) in &changes {
        let mut versions = vec![run.old.to_owned()];
        for (at, weight) in &run_weights {
            let promoted = run.promotion.is_some_and(|p| *at >= p);
            let version = if plan.on_canary(*weight, *user) || promoted {
                run.new
            } else {
                run.old
            };
            if versions.last().is_none_or(|v| v != version) {
                versions.push(version.to_owned());
            }
        }
        let planned = versions.len() - 1;
        if *observed > planned {
            bounced.push(format!(
                "user {user}: {observed} version changes, the plan has {planned} ({versions:?})"
            ));
        }
    }
    // For each weight the tool set: when Envoy routed with it, and when the last user it
    // moved was served the new version.
    let mut applied_after = Vec::new();
    for (i, (at, weight)) in run_weights.iter().enumerate() {
        let next = run_weights.get(i + 1).map_or(run.end, |(next, _)| *next);
        let routed = envoy
            .iter()
            .find(|(seen_at, w)| *seen_at >= *at && *w == *weight)
            .map(|(seen_at, _)| seen_at.duration_since(*at));
        let latest = last_move
            .iter()
            .filter(|m| **m >= *at && **m < next)
            .max()
            .map(|m| m.duration_since(*at));
        applied_after.push((*weight, routed, latest));
    }
    let moved: HashSet<usize> = changes.keys().copied().collect();
    let promotion_window = run.primary_prefix.filter(|_| run.promotion.is_some()).map(|prefix| {
        let primary: Vec<&&Seen> = answers.iter().filter(|s| s.pod.starts_with(prefix)).collect();
        let first_new = primary.iter().find(|s| s.version == run.new).map(|s| s.sent);
        let last_old = primary.iter().rev().find(|s| s.version == run.old).map(|s| s.sent);
        match (first_new, last_old) {
            (Some(first), Some(last)) if last > first => {
                let inside: Vec<&&&Seen> = primary.iter().filter(|s| s.sent >= first && s.sent <= last).collect();
                let users: HashSet<usize> = inside.iter().map(|s| s.user).collect();
                let both = users
                    .iter()
                    .filter(|u| {
                        let versions: HashSet<&str> = inside
                            .iter()
                            .filter(|s| s.user == **u)
                            .map(|s| s.version.as_str())
                            .collect();
                        versions.len() > 1
                    })
                    .count();
                (last.duration_since(first), both, users.len())
            }
            _ => (Duration::ZERO, 0, 0),
        }
    });
    let steps: Vec<u8> = run_weights.iter().map(|(_, w)| *w).collect();
    RunReport {
        label: run.label.to_owned(),
        steps,
        verdict: run.verdict.to_owned(),
        took: run.verdict_at.duration_since(run.start),
        answers: answers.len(),
        errors,
        off_plan,
        without_pod,
        moves,
        users_moved: moved.len(),
        bounced,
        applied_after,
        promotion_window,
    }
}

/// The world both tools' tests share: the control plane with workloads, Prometheus, the pods'
/// servers, the rendered example applied, the gateway with the analysis's stats.
struct World {
    _work: tempfile::TempDir,
    config: PathBuf,
    prometheus: Prometheus,
    gateway: Gateway,
    pods: Pods,
    _workloads: cluster::Workloads,
    cluster: Cluster,
}

/// The canary Service's cluster on the gateway (both tools name it `APP-canary`).
fn canary_cluster() -> String {
    format!("outbound|80||my-app-canary.{NAMESPACE}.svc.cluster.local")
}

impl World {
    /// Every change of the app's object of `kind` (`canary`, `rollout`, `virtualservice`),
    /// from before it exists.
    fn watch(&self, kind: &str) -> (cluster::Watch, Events) {
        self.cluster
            .record(&[kind, "-n", NAMESPACE, "--field-selector=metadata.name=my-app"])
            .unwrap()
    }
}

fn prometheus_url() -> String {
    format!("http://{NODE_IP}:{PROMETHEUS_PORT}")
}

/// Renders `spec_file` (the example, made plain HTTP with the module inline) with the
/// analysis pointed at the test's Prometheus and `interval`, starts everything and applies it.
fn world(spec_file: &str, interval: &str) -> Option<World> {
    let revision = revision("asm-1-31");
    if !selected(&revision) {
        eprintln!("asm-1-31 not selected by STICKY_CANARY_REVISIONS: nothing to run");
        return None;
    }
    cluster::prepare(revision).unwrap_or_else(|e| panic!("{e}"));
    cluster::kwok_tool().unwrap_or_else(|e| panic!("{e}"));
    controllers::prepare().unwrap_or_else(|e| panic!("{e}"));
    cluster::enter_network_namespace(0).unwrap_or_else(|e| panic!("{e}"));

    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("my-app.yaml");
    let text = progressive_test_spec(spec_file);
    let text = edit(
        &text,
        "progressive:\n",
        &format!(
            "progressive:\n  analysis:\n    prometheus: {}\n    interval: {interval}\n",
            prometheus_url()
        ),
        spec_file,
    );
    std::fs::write(&spec, text).unwrap();
    let rendered = work.path().join("rendered");
    run_cli(&["render", &spec.to_string_lossy(), "--out", &rendered.to_string_lossy()]);
    let config = write_filter_config(&rendered.join("plugin.yaml"), &work.path().join("filter-config.json"));
    let (_, app) = render::load(&spec).unwrap();
    let tool = app.progressive.as_ref().unwrap().tool;

    let cluster = Cluster::start(revision).unwrap_or_else(|e| panic!("control plane: {e}"));
    let workloads = cluster.start_workloads().unwrap_or_else(|e| panic!("workloads: {e}"));
    let pods = Pods::start(&cluster, NAMESPACE, 40).unwrap_or_else(|e| panic!("pods: {e}"));
    let prometheus = Prometheus::start(
        (NODE_IP, PROMETHEUS_PORT).into(),
        &[Target {
            job: "gateway",
            addr: (GATEWAY_IP, cluster::AGENT_STATUS_PORT).into(),
            path: "/stats/prometheus",
        }],
        "groups: []\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The CRDs of the tool's analysis.yaml before the render is applied.
    match tool {
        render::spec::Tool::Flagger => controllers::install_flagger_crds(&cluster),
        render::spec::Tool::ArgoRollouts => controllers::install_argo_crds(&cluster),
    }
    .unwrap_or_else(|e| panic!("{e}"));
    let applied = cluster.apply_dir(&rendered).unwrap();
    assert!(applied.ok, "kubectl apply -k rendered: {}", applied.output);
    // The gateway's stats as analysis.yaml's note asks: the mesh config of the gateway pods
    // (on AKS, the add-on's shared ConfigMap) keeps the app's two clusters' request stats.
    let mesh = format!(
        "defaultConfig:\n  proxyStatsMatcher:\n    inclusionRegexps:\n    - '{}'\n",
        analysis::stats_regex(&app, tool)
    );
    let gateway = Gateway::start_with_mesh(&cluster, "", &mesh).unwrap_or_else(|e| panic!("gateway: {e}"));
    // Prometheus scrapes the gateway, and the gateway keeps the app's cluster stats (Flagger
    // creates the Services later: until then, the filter's own counters show the scrape works).
    prometheus
        .wait_until(Duration::from_secs(60), "the gateway scraped", || {
            (prometheus.value("up{job=\"gateway\"}").ok().flatten() == Some(1.0)).then_some(())
        })
        .unwrap_or_else(|e| {
            panic!(
                "{e}\ntargets: {:?}",
                prometheus.get("/api/v1/targets").map(|(_, body)| body)
            )
        });
    Some(World {
        _work: work,
        config,
        prometheus,
        gateway,
        pods,
        _workloads: workloads,
        cluster,
    })
}

/// The tool's own resources from the example, with analysis and pauses short enough for a test.
fn tool_resources(world: &World, example: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(example).unwrap();
    for (from, to) in edits {
        text = edit(&text, from, to, example);
    }
    let file = world.cluster.dir().join(Path::new(example).file_name().unwrap());
    std::fs::write(&file, text).unwrap();
    file
}

/// The success ratio the analysis reads for `service` now, straight from Prometheus.
fn success_ratio(prometheus: &Prometheus, service: &str) -> Option<f64> {
    let cluster = format!("cluster_name=\"outbound|80||{service}.{NAMESPACE}.svc.cluster.local\"");
    prometheus
        .value(&format!(
            "sum(rate(envoy_cluster_upstream_rq{{{cluster}, response_code_class=~\"[1-4]xx\"}}[30s])) / sum(rate(envoy_cluster_upstream_rq{{{cluster}, response_code_class=~\"[1-5]xx\"}}[30s]))"
        ))
        .unwrap()
}

/// Waits until Envoy routes 0 % to the canary again, then 4 s more for answers on stable;
/// returns when those 4 s began.
fn settle(envoy: &EnvoyWeights) -> Instant {
    envoy.wait_for(0, Duration::from_secs(30));
    let settled = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    settled
}

/// Stops the crowd and checks the tool's two runs, healthy then broken, against the plan:
/// each printed, none off the plan or bounced, 5xx only in the broken one, and the broken
/// canary's success ratio (`ratio`, from Prometheus at the verdict) near its 0.8.
fn check_runs(
    world: &World,
    crowd: Crowd,
    vs: &Events,
    envoy: &EnvoyWeights,
    runs: [Run<'_>; 2],
    ratio: Option<f64>,
) -> [RunReport; 2] {
    let (seen, keys) = crowd.stop();
    let timeline = weights(vs, "my-app-canary");
    let routed = envoy.timeline();
    let mut plan = Plan {
        config: world.config.clone(),
        keys,
        sides: HashMap::new(),
    };
    let reports = runs.map(|run| check_run(&run, &seen, &timeline, &routed, &mut plan));
    for report in &reports {
        report.print();
    }
    eprintln!(
        "the broken canary's success ratio in Prometheus at the verdict: {ratio:?}; pods: {:?}",
        world.pods.seen()
    );
    for report in &reports {
        report.assert_on_plan();
    }
    let [healthy, broken] = &reports;
    assert_eq!(healthy.errors, 0, "{}: errors", healthy.label);
    assert!(broken.errors > 0, "{}: the broken canary answered no 500", broken.label);
    for report in &reports {
        assert_eq!(report.steps.first(), Some(&10), "{}: {:?}", report.label, report.steps);
        assert_eq!(
            report.steps.last(),
            Some(&0),
            "{} ends at 0: {:?}",
            report.label,
            report.steps
        );
    }
    let ratio = ratio.expect("Prometheus has the broken canary's success ratio");
    assert!((0.7..0.9).contains(&ratio), "the broken canary's success ratio {ratio}");
    reports
}

#[test]
fn flagger_promotes_a_healthy_canary_and_rolls_back_a_broken_one_and_no_user_bounces() {
    let _serial = serial();
    let Some(world) = world("examples/flagger/my-app.yaml", "1m") else {
        return;
    };
    let mut flagger = controllers::start_flagger(&world.cluster, &prometheus_url()).unwrap_or_else(|e| panic!("{e}"));
    let resources = tool_resources(
        &world,
        "examples/flagger/canary.yaml",
        &[
            (
                "    interval: 1m\n    threshold: 5\n",
                "    interval: 10s\n    threshold: 2\n",
            ),
            (
                "        min: 99\n      interval: 1m\n",
                "        min: 99\n      interval: 15s\n",
            ),
            (
                "        max: 500\n      interval: 1m\n",
                "        max: 500\n      interval: 15s\n",
            ),
            ("          value: v1.0.0\n", "          value: v1\n"),
        ],
    );
    let (_canary_watch, canary) = world.watch("canary");
    let (_vs_watch, vs) = world.watch("virtualservice");
    let phase = |c: &Value| c["status"]["phase"].as_str().unwrap_or_default().to_owned();
    let applied = Instant::now();
    world.cluster.apply_ok(&["-f", &resources.to_string_lossy()]).unwrap();
    let initialized = wait_status(
        &canary,
        phase,
        "Initialized",
        applied,
        Duration::from_secs(120),
        &mut flagger,
    );
    eprintln!(
        "Flagger: Canary initialized {:?} after the apply",
        initialized.duration_since(applied)
    );

    let envoy = EnvoyWeights::start(world.gateway.admin_addr(), canary_cluster());
    let crowd = Crowd::start(world.gateway.listener());
    std::thread::sleep(Duration::from_secs(6));
    let set_env = |env: &[&str]| {
        let mut args = vec!["set", "env", "deployment/my-app", "-n", NAMESPACE];
        args.extend_from_slice(env);
        world.cluster.kubectl_ok(&args).unwrap();
    };

    // A healthy canary: Flagger steps 10, 50, promotes (copies v2 into my-app-primary, waits
    // for its rollout, routes everyone to it) and scales the canary down.
    let healthy_start = Instant::now();
    set_env(&["VERSION=v2"]);
    let promoting = wait_status(
        &canary,
        phase,
        "Promoting",
        healthy_start,
        Duration::from_secs(300),
        &mut flagger,
    );
    let succeeded = wait_status(
        &canary,
        phase,
        "Succeeded",
        healthy_start,
        Duration::from_secs(300),
        &mut flagger,
    );
    let healthy_settled = settle(&envoy);

    // A broken canary: 20 % of v3's answers are 500; the analysis fails, Flagger rolls back.
    let broken_start = Instant::now();
    set_env(&["VERSION=v3", "ERROR_RATE=0.2"]);
    let failed = wait_status(
        &canary,
        phase,
        "Failed",
        broken_start,
        Duration::from_secs(300),
        &mut flagger,
    );
    let ratio = success_ratio(&world.prometheus, "my-app-canary");
    let broken_settled = settle(&envoy);
    let runs = [
        Run {
            label: "Flagger, healthy canary",
            start: healthy_start,
            verdict_at: succeeded,
            end: broken_start,
            verdict: "Succeeded",
            old: "v1",
            new: "v2",
            promotion: Some(promoting),
            primary_prefix: Some("my-app-primary-"),
            settled: healthy_settled,
        },
        Run {
            label: "Flagger, broken canary",
            start: broken_start,
            verdict_at: failed,
            end: Instant::now(),
            verdict: "Failed",
            old: "v2",
            new: "v3",
            promotion: None,
            primary_prefix: Some("my-app-primary-"),
            settled: broken_settled,
        },
    ];
    let [healthy, _] = check_runs(&world, crowd, &vs, &envoy, runs, ratio);
    eprintln!(
        "Flagger's phases: {:?}",
        status_timeline(&canary, phase)
            .iter()
            .map(|(_, p)| p.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(healthy.steps, [10, 50, 0], "Flagger's healthy run: {:?}", healthy.steps);
    let log = flagger.log();
    assert!(
        log.contains("success-rate") && log.contains("Rolling back"),
        "Flagger's log does not show the analysis failing on success-rate:\n{}",
        flagger.log_tail(40)
    );
}

#[test]
fn argo_rollouts_promotes_a_healthy_canary_and_aborts_a_broken_one_and_no_user_bounces() {
    let _serial = serial();
    let Some(world) = world("examples/argo-rollouts/my-app.yaml", "10s") else {
        return;
    };
    let mut argo = controllers::start_argo(&world.cluster).unwrap_or_else(|e| panic!("{e}"));
    let resources = tool_resources(
        &world,
        "examples/argo-rollouts/rollout.yaml",
        &[
            ("          value: v1.0.0\n", "          value: v1\n"),
            (
                "      - setWeight: 10\n      - pause: {duration: 10m}\n      - setWeight: 50\n      - pause: {duration: 10m}\n",
                "      - setWeight: 10\n      - pause: {duration: 30s}\n      - setWeight: 50\n      - pause: {duration: 30s}\n",
            ),
        ],
    );
    let (_rollout_watch, rollout) = world.watch("rollout");
    let (_vs_watch, vs) = world.watch("virtualservice");
    let phase = |r: &Value| r["status"]["phase"].as_str().unwrap_or_default().to_owned();
    let stable = |r: &Value| r["status"]["stableRS"].as_str().unwrap_or_default().to_owned();
    let applied = Instant::now();
    world.cluster.apply_ok(&["-f", &resources.to_string_lossy()]).unwrap();
    let healthy_at = wait_status(&rollout, phase, "Healthy", applied, Duration::from_secs(120), &mut argo);
    eprintln!(
        "Argo Rollouts: Rollout healthy {:?} after the apply",
        healthy_at.duration_since(applied)
    );
    let first_stable = status_timeline(&rollout, stable).last().unwrap().1.clone();

    let envoy = EnvoyWeights::start(world.gateway.admin_addr(), canary_cluster());
    let crowd = Crowd::start(world.gateway.listener());
    std::thread::sleep(Duration::from_secs(6));
    let set_env = |env: &str| {
        world
            .cluster
            .kubectl_ok(&[
                "patch",
                "rollout",
                "my-app",
                "-n",
                NAMESPACE,
                "--type=json",
                "-p",
                &format!(r#"[{{"op": "replace", "path": "/spec/template/spec/containers/0/env", "value": {env}}}]"#),
            ])
            .unwrap();
    };

    // A healthy canary: 10 %, pause, 50 %, pause, then the stable Service moves to v2's pods.
    let healthy_start = Instant::now();
    set_env(r#"[{"name": "VERSION", "value": "v2"}]"#);
    let progressing = wait_status(
        &rollout,
        phase,
        "Progressing",
        healthy_start,
        Duration::from_secs(60),
        &mut argo,
    );
    let promoted = {
        let started = Instant::now();
        loop {
            let now = status_timeline(&rollout, stable);
            if let Some((at, _)) = now
                .iter()
                .find(|(at, s)| *at >= progressing && *s != first_stable && !s.is_empty())
            {
                break *at;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "no promotion:\n{}",
                argo.log_tail(60)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let healthy_done = wait_status(
        &rollout,
        phase,
        "Healthy",
        promoted,
        Duration::from_secs(120),
        &mut argo,
    );
    let healthy_settled = settle(&envoy);

    // A broken canary: the background analysis fails, Argo aborts to stable.
    let broken_start = Instant::now();
    set_env(r#"[{"name": "VERSION", "value": "v3"}, {"name": "ERROR_RATE", "value": "0.2"}]"#);
    let degraded = wait_status(
        &rollout,
        phase,
        "Degraded",
        broken_start,
        Duration::from_secs(300),
        &mut argo,
    );
    let ratio = success_ratio(&world.prometheus, "my-app-canary");
    let broken_settled = settle(&envoy);
    let runs = [
        Run {
            label: "Argo Rollouts, healthy canary",
            start: healthy_start,
            verdict_at: healthy_done,
            end: broken_start,
            verdict: "Healthy (promoted)",
            old: "v1",
            new: "v2",
            promotion: Some(promoted),
            primary_prefix: None,
            settled: healthy_settled,
        },
        Run {
            label: "Argo Rollouts, broken canary",
            start: broken_start,
            verdict_at: degraded,
            end: Instant::now(),
            verdict: "Degraded (aborted)",
            old: "v2",
            new: "v3",
            promotion: None,
            primary_prefix: None,
            settled: broken_settled,
        },
    ];
    let [healthy, _] = check_runs(&world, crowd, &vs, &envoy, runs, ratio);
    eprintln!(
        "Argo Rollouts' phases: {:?}",
        status_timeline(&rollout, phase)
            .iter()
            .map(|(_, p)| p.clone())
            .collect::<Vec<_>>()
    );
    assert!(healthy.steps.contains(&50), "Argo's healthy run: {:?}", healthy.steps);
    let analysis_runs = world
        .cluster
        .kubectl_ok(&[
            "get",
            "analysisruns",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])
        .unwrap();
    eprintln!("AnalysisRuns: {analysis_runs}");
    assert!(
        analysis_runs.contains("Failed") && analysis_runs.contains("Successful"),
        "the healthy run's AnalysisRun succeeded and the broken one's failed: {analysis_runs}"
    );
}
