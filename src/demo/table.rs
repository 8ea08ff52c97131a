//! The demo's table: one row per phase, redrawn while the crowd runs, and the checks of each
//! phase against its plan.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use policy_core::{format_percent, Policy};

use super::crowd::{lock, off_plan, Crowd, Tally};

/// One row of the table.
pub(super) struct Row {
    pub(super) phase: String,
    pub(super) target: Option<u32>,
    pub(super) tally: Tally,
    pub(super) users: usize,
    pub(super) on_canary: usize,
    /// Users who changed version the way the plan moves them (towards the canary on a ramp, to stable on a rollback).
    pub(super) moved: usize,
    /// Users who changed version against the plan (any change, with plain weights).
    pub(super) bounced: usize,
    pub(super) mismatches: Option<usize>,
}

/// What the users do with their login during a phase.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Session {
    Keep,
    /// Log in (a `session` cookie appears), and get the session id rotated halfway through.
    LogIn,
    /// Log out: the session cookie goes.
    LogOut,
}

/// Which way a phase is meant to move users.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
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
    pub(super) fn share(&self) -> f64 {
        let total = self.tally.requests[0] + self.tally.requests[1];
        if total == 0 {
            0.0
        } else {
            100.0 * self.tally.requests[1] as f64 / total as f64
        }
    }

    pub(super) fn render(&self, color: bool) -> String {
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

pub(super) const HEADER: &str =
    "phase                         target  v2 share  users on v2   moved  bounced*  new ids   failed  off-plan";

/// Lets the crowd run for `duration`, redrawing the row on a terminal; then
/// checks every user against the policy's prediction.
pub(super) fn watch(
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
