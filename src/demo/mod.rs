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
//! 3. Blue/green with session drain (`bluegreen`): new users on green at once, users mid-session
//!    kept on blue until idle or the deadline, a rollback that moves everyone back.
//!
//! Exits 0 only when every check held. Envoy dies with this process (it sets
//! PR_SET_PDEATHSIG), and the app servers are threads of it, so Ctrl-C leaves
//! nothing behind.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use policy_core::Policy;

mod bluegreen;
mod config;
mod crowd;
mod table;

pub use config::filter_config;

use config::ROUTING_HEADER;
use crowd::{id_of, lock, Crowd, Traffic, ID_COOKIE};
use table::{watch, Plan, Session, HEADER};

use crate::local::{find_or_install_envoy, Backend, Envoy, EnvoyConfig, FilterSpec, UpdateOutcome};

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

    // Act 3: blue/green with session drain, a fresh crowd.
    let blue_green = bluegreen::act(
        &mut sticky,
        (options.users, options.phase, options.rate_per_second),
        color,
    )?;
    all_ok &= blue_green.ok;

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
    say(&format!("[{}] {}", mark(blue_green.ok), blue_green.summary));
    let failed = failed + blue_green.failed;
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
