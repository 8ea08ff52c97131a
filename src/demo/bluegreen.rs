//! The demo's third act: blue/green with session drain (docs/assignment.md §6) on the same
//! Envoy. A fresh crowd is on blue (v1, 100 %); then the cut-over to green (v2) starts: new
//! users arrive and land on v2 from their first request, active users stay on v1, a group that
//! went away for longer than the idle time moves to v2 when it comes back, the deadline moves
//! everyone else, and a rollback (the cut-over removed) puts everyone back on v1 at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use policy_core::Policy;

use super::config::{filter_config, filter_config_with};
use super::crowd::{lock, Crowd, Traffic};
use super::table::{watch, Plan, HEADER};
use crate::local::{Envoy, UpdateOutcome};

/// How long an existing user must be away before the cut-over moves them.
const IDLE_SECONDS: u64 = 4;
/// How long the returning group stays away: the idle time, plus the filter's one-second clock
/// and margin.
const AWAY: Duration = Duration::from_secs(IDLE_SECONDS + 3);

/// What the act found.
pub(super) struct Outcome {
    pub(super) ok: bool,
    pub(super) summary: String,
    pub(super) failed: u64,
}

fn push(envoy: &mut Envoy, config: &str) -> Result<(), String> {
    match envoy.update_filter_config(config) {
        Ok(UpdateOutcome::Accepted) => Ok(()),
        Ok(UpdateOutcome::Rejected { log }) => Err(format!("Envoy rejected the demo's cut-over config:\n{log}")),
        Err(e) => Err(format!("hot update failed: {e}")),
    }
}

fn cutover_config(start: u64, deadline: u64) -> String {
    filter_config_with(
        0,
        &format!(
            r#", "cutover": {{"to": "v2", "start": {start}, "deadline": {deadline}, "idle_seconds": {IDLE_SECONDS}}}"#
        ),
    )
}

fn set_away(crowd: &mut Crowd, range: &std::ops::Range<usize>, away: bool) {
    for user in crowd.users.get_mut(range.clone()).unwrap_or_default() {
        user.away = away;
    }
}

/// Users in `range` who changed version in this phase.
fn changed(crowd: &Crowd, range: &std::ops::Range<usize>) -> usize {
    crowd
        .users
        .get(range.clone())
        .unwrap_or_default()
        .iter()
        .filter(|u| u.to_canary + u.to_stable > 0)
        .count()
}

/// Users in `range` whose last response came from `version`.
fn on(crowd: &Crowd, range: &std::ops::Range<usize>, version: usize) -> usize {
    crowd
        .users
        .get(range.clone())
        .unwrap_or_default()
        .iter()
        .filter(|u| u.last == Some(version))
        .count()
}

/// Runs the act on `sticky` with `(users, phase length, request rate)`.
pub(super) fn act(
    sticky: &mut Envoy,
    (users, phase, rate_per_second): (usize, Duration, u32),
    color: bool,
) -> Result<Outcome, String> {
    let n = users.max(5);
    // 60 % stay active throughout, 20 % go away and come back, 20 % arrive after the start.
    let active = 0..n * 3 / 5;
    let returning = n * 3 / 5..n * 4 / 5;
    let newcomers = n * 4 / 5..n;
    let crowd = Arc::new(Mutex::new(Crowd::new(n)));
    set_away(&mut lock(&crowd), &newcomers, true);
    println!("\nblue/green with session drain: blue = v1 (100%), green = v2; idle time {IDLE_SECONDS} s");
    println!("{HEADER}");
    let traffic = Traffic::start(sticky.listener(), Arc::clone(&crowd), rate_per_second)?;
    let plain = Policy::from_json(filter_config(0).as_bytes()).map_err(|e| e.to_string())?;
    let phase = phase.max(Duration::from_secs(2));
    let mut rows = Vec::new();
    rows.push(watch(
        &crowd,
        "blue/green: all on blue",
        (Some(0), Plan::Hold),
        phase,
        Some(&plain),
        color,
    ));

    // The cut-over starts and the newcomers arrive; the returning group keeps visiting during
    // this phase (so the filter has seen them since the start), then goes away. (A user last
    // seen before the start counts as active on their first request of the drain: the cookie
    // cannot say how long ago that was within the day, docs/assignment.md §6.)
    // The filter's clock is read once a second: a start a little in the past makes sure the
    // first newcomers already count as new.
    let start = crate::explain::now().unwrap_or(0).saturating_sub(2);
    lock(&crowd).next_phase();
    push(sticky, &cutover_config(start, start + 3600))?;
    set_away(&mut lock(&crowd), &newcomers, false);
    let row = watch(
        &crowd,
        "cut-over to green starts",
        (None, Plan::Hold),
        phase,
        None,
        color,
    );
    let (active_moved_at_start, newcomers_on_green, newcomers_changed) = {
        let mut c = lock(&crowd);
        set_away(&mut c, &returning, true);
        (changed(&c, &active), on(&c, &newcomers, 1), changed(&c, &newcomers))
    };
    let away_since = Instant::now();
    rows.push(row);

    // The returning group comes back after more than the idle time.
    std::thread::sleep(AWAY.saturating_sub(away_since.elapsed()));
    {
        let mut c = lock(&crowd);
        c.next_phase();
        set_away(&mut c, &returning, false);
    }
    let row = watch(
        &crowd,
        &format!("back after {} s away", AWAY.as_secs()),
        (None, Plan::Up),
        phase,
        None,
        color,
    );
    let (active_moved_during_drain, returning_on_green) = {
        let c = lock(&crowd);
        (changed(&c, &active), on(&c, &returning, 1))
    };
    rows.push(row);

    // The deadline: everyone on green.
    lock(&crowd).next_phase();
    push(
        sticky,
        &cutover_config(start, crate::explain::now().unwrap_or(0).max(start + 1)),
    )?;
    let row = watch(&crowd, "deadline: all to green", (None, Plan::Up), phase, None, color);
    let all_on_green = row.on_canary == n;
    rows.push(row);

    // Rollback: the cut-over removed, everyone on blue at once.
    lock(&crowd).next_phase();
    push(sticky, &filter_config(0))?;
    let row = watch(
        &crowd,
        "rollback: cut-over removed",
        (Some(0), Plan::Down),
        phase,
        Some(&plain),
        color,
    );
    let all_on_blue = row.on_canary == 0 && row.mismatches == Some(0);
    rows.push(row);
    traffic.stop();

    let failed: u64 = rows.iter().map(|r| r.tally.failed).sum();
    let bounced: usize = rows.iter().map(|r| r.bounced).sum();
    let ok = failed == 0
        && active_moved_at_start == 0
        && active_moved_during_drain == 0
        && newcomers_on_green == newcomers.len()
        && newcomers_changed == 0
        && returning_on_green == returning.len()
        && all_on_green
        && all_on_blue
        && bounced == 0;
    let summary = format!(
        "blue/green cut-over: {newcomers_on_green} of {} new users on green from their first request; {} of {} active users moved before the deadline; {returning_on_green} of {} users back after {} s away moved to green; {} at the deadline; rollback: {}.",
        newcomers.len(),
        active_moved_at_start + active_moved_during_drain,
        active.len(),
        returning.len(),
        AWAY.as_secs(),
        if all_on_green { "everyone on green" } else { "NOT everyone on green" },
        if all_on_blue { "everyone back on blue at once" } else { "NOT everyone back on blue" },
    );
    Ok(Outcome { ok, summary, failed })
}
