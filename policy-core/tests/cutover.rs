#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! Blue/green with session drain (docs/assignment.md §6): new users on the new version at once,
//! users who had an assignment kept until idle or the deadline, rollback by removing the
//! cut-over. A simulated crowd with random visit gaps checks that nobody moves early.
#![cfg(not(target_arch = "wasm32"))]

use policy_core::{ClientId, CutoverOutcome, KeySource, Policy, Request};
use proptest::prelude::*;

const START: u64 = 1_764_820_000; // 2025-12-04T03:46:40Z
const DEADLINE: u64 = START + 7_200;
const IDLE: u64 = 600;
const DAY: u64 = 86_400;

fn route(cutover: bool) -> Policy {
    let cutover = if cutover {
        format!(r#", "cutover": {{"to": "green", "start": {START}, "deadline": {DEADLINE}, "idle_seconds": {IDLE}}}"#)
    } else {
        String::new()
    };
    let doc = format!(
        r#"{{"routes": [{{"name": "shop", "hosts": ["*"], "salt": "shop",
            "versions": [{{"name": "blue", "weight": 100}}, {{"name": "green", "weight": 0}}],
            "key_chain": [{{"header": "x-user"}}, {{"new_client_id": {{}}}}]{cutover}}}]}}"#
    );
    Policy::from_json(doc.as_bytes()).unwrap()
}

struct Visit {
    cookie: Option<String>,
    user_header: Option<String>,
    now: u64,
    random: u8,
}

impl Request for Visit {
    type Header = Vec<u8>;
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        match name {
            "cookie" => self
                .cookie
                .as_ref()
                .map(|c| format!("sticky-canary-id={c}").into_bytes()),
            "x-user" => self.user_header.as_ref().map(|h| h.clone().into_bytes()),
            _ => None,
        }
    }
    fn client_address(&mut self) -> Option<Vec<u8>> {
        None
    }
    fn random(&mut self) -> Option<[u8; 16]> {
        Some([self.random; 16])
    }
    fn today(&mut self) -> Option<u32> {
        Some((self.now / DAY) as u32)
    }
    fn now(&mut self) -> Option<u64> {
        Some(self.now)
    }
}

/// The cookie value a Set-Cookie carries.
fn value_of(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("sticky-canary-id=")
        .unwrap()
        .to_owned()
}

/// One request: (version name, outcome, the cookie value the client holds afterwards).
fn visit(policy: &Policy, cookie: Option<&str>, now: u64) -> (String, Option<CutoverOutcome>, Option<String>) {
    let route = &policy.routes()[0];
    let decision = route.decide(&mut Visit {
        cookie: cookie.map(str::to_owned),
        user_header: None,
        now,
        random: 7,
    });
    let held = decision
        .set_cookie
        .as_deref()
        .map(value_of)
        .or(cookie.map(str::to_owned));
    (
        route.versions()[decision.version].name().to_owned(),
        decision.cutover,
        held,
    )
}

const ID: &str = "0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5";

#[test]
fn before_the_start_nothing_changes() {
    let policy = route(true);
    let (version, outcome, held) = visit(&policy, None, START - 1);
    assert_eq!((version.as_str(), outcome), ("blue", None));
    let held = held.unwrap();
    assert_eq!(
        ClientId::parse(held.as_bytes()).issued,
        None,
        "no times before the start: {held}"
    );
}

#[test]
fn a_new_user_goes_to_the_new_version_at_once_and_stays() {
    let policy = route(true);
    let (version, outcome, held) = visit(&policy, None, START + 5);
    assert_eq!((version.as_str(), outcome), ("green", Some(CutoverOutcome::New)));
    let held = held.unwrap();
    let parsed = ClientId::parse(held.as_bytes());
    assert_eq!((parsed.issued, parsed.seen), (Some(START + 5), Some(START + 5)));
    // Back after any gap, even longer than the idle time: still new, no Set-Cookie on the same day.
    let route = &policy.routes()[0];
    let again = route.decide(&mut Visit {
        cookie: Some(held.clone()),
        user_header: None,
        now: START + 5 + IDLE * 3,
        random: 1,
    });
    assert_eq!(route.versions()[again.version].name(), "green");
    assert_eq!(again.cutover, Some(CutoverOutcome::New));
    assert_eq!(again.source, KeySource::Cookie);
    assert!(again.set_cookie.is_none(), "{:?}", again.set_cookie);
}

#[test]
fn a_user_keyed_by_a_header_without_the_cookie_counts_as_new() {
    let policy = route(true);
    let route = &policy.routes()[0];
    let decision = route.decide(&mut Visit {
        cookie: None,
        user_header: Some("api-client-1".into()),
        now: START + 1,
        random: 1,
    });
    assert_eq!(route.versions()[decision.version].name(), "green");
    assert_eq!(decision.source, KeySource::Header);
    assert_eq!(decision.cutover, Some(CutoverOutcome::New));
}

#[test]
fn an_existing_user_is_kept_while_active_and_moves_after_being_idle() {
    let policy = route(true);
    // Issued before this release (no stamp), and stamped ones: all existing.
    for before in [
        ID.to_owned(),
        format!("{ID}.{}", START / DAY),
        format!("{ID}.{}.0.{}", START / DAY, START - 10),
    ] {
        let (version, outcome, held) = visit(&policy, Some(&before), START + 1);
        assert_eq!(
            (version.as_str(), outcome),
            ("blue", Some(CutoverOutcome::Kept)),
            "{before}"
        );
        let held = held.unwrap();
        let parsed = ClientId::parse(held.as_bytes());
        assert_eq!(parsed.key, ID.as_bytes(), "the id never changes: {held}");
        assert_eq!(parsed.seen, Some(START + 1), "{held}");
        // Active every IDLE - 1 seconds: kept until shortly before the deadline.
        let mut held = held;
        let mut now = START + 1;
        while now + IDLE - 1 + IDLE < DEADLINE {
            now += IDLE - 1;
            let (version, outcome, next) = visit(&policy, Some(&held), now);
            assert_eq!(
                (version.as_str(), outcome),
                ("blue", Some(CutoverOutcome::Kept)),
                "at {now}"
            );
            held = next.unwrap();
        }
        // Away for exactly IDLE: moved, and new from then on.
        let (version, outcome, moved) = visit(&policy, Some(&held), now + IDLE);
        assert_eq!((version.as_str(), outcome), ("green", Some(CutoverOutcome::Moved)));
        let moved = moved.unwrap();
        assert_eq!(ClientId::parse(moved.as_bytes()).issued, Some(now + IDLE));
        let (version, outcome, _) = visit(&policy, Some(&moved), now + IDLE + 1);
        assert_eq!((version.as_str(), outcome), ("green", Some(CutoverOutcome::New)));
    }
}

#[test]
fn a_stale_day_stamp_proves_the_user_was_away() {
    let policy = route(true);
    // Stamped two days before: no request yesterday (it would have refreshed the stamp), so the
    // user has been away at least since the start of yesterday.
    let old = format!("{ID}.{}", START / DAY - 2);
    let (version, outcome, _) = visit(&policy, Some(&old), START + 1);
    assert_eq!((version.as_str(), outcome), ("green", Some(CutoverOutcome::Moved)));
}

#[test]
fn at_the_deadline_everyone_is_on_the_new_version() {
    let policy = route(true);
    let kept = format!("{ID}.{}.0.{}", DEADLINE / DAY, DEADLINE - 1);
    let (version, outcome, _) = visit(&policy, Some(&kept), DEADLINE);
    assert_eq!((version.as_str(), outcome), ("green", Some(CutoverOutcome::Done)));
    let (version, outcome, _) = visit(&policy, None, DEADLINE + 1);
    assert_eq!((version.as_str(), outcome), ("green", Some(CutoverOutcome::Done)));
}

#[test]
fn a_rollback_puts_everyone_back_at_once() {
    let with = route(true);
    let without = route(false);
    let (_, _, new_user) = visit(&with, None, START + 1);
    let new_user = new_user.unwrap();
    let moved_user = format!("{ID}.{}.{}.{}", START / DAY, START + 50, START + 50);
    for cookie in [new_user.as_str(), moved_user.as_str(), ID] {
        let (version, outcome, _) = visit(&without, Some(cookie), START + 100);
        assert_eq!((version.as_str(), outcome), ("blue", None), "{cookie}");
    }
}

#[test]
fn the_cutover_is_checked_with_its_fields_named() {
    let doc = format!(
        r#"{{"routes": [{{"name": "shop", "hosts": ["*"], "salt": "shop",
            "versions": [{{"name": "blue", "weight": 100}}, {{"name": "green", "weight": 0}}],
            "key_chain": [{{"header": "x-user"}}],
            "cutover": {{"to": "purple", "start": {START}, "deadline": {START}, "idle_seconds": 0, "colour": 1}}}}]}}"#
    );
    let err = Policy::from_json(doc.as_bytes()).unwrap_err().to_string();
    for expected in [
        "routes[0].cutover.to: \"purple\" is not one of this route's versions",
        "routes[0].cutover.deadline: 1764820000 is not after start (1764820000)",
        "routes[0].cutover.idle_seconds: must be at least 1",
        "routes[0].cutover: needs new_client_id in key_chain",
        "routes[0].cutover.colour: unknown field",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Users with cookies from before the start visit at random gaps: each stays on blue until
    /// the first gap of at least IDLE (or the deadline), then is on green for good; nobody
    /// moves back, nobody moves early. New users are on green from their first request.
    #[test]
    fn nobody_moves_before_their_idle_time_or_the_deadline(
        gaps in proptest::collection::vec(proptest::collection::vec(1u64..(IDLE * 2), 1..40), 1..30),
        first in 0u64..IDLE,
    ) {
        let policy = route(true);
        for (u, user_gaps) in gaps.iter().enumerate() {
            let mut cookie = format!("{:032x}.{}", u + 1, START / DAY);
            let mut now = START + first;
            let mut moved = false;
            let mut last = None;
            for (i, gap) in std::iter::once(&0).chain(user_gaps).enumerate() {
                now += gap;
                let (version, outcome, held) = visit(&policy, Some(&cookie), now);
                let should_move = now >= DEADLINE || (i > 0 && *gap >= IDLE) || moved;
                prop_assert_eq!(
                    version.as_str(),
                    if should_move { "green" } else { "blue" },
                    "user {} visit {} at +{} gap {} outcome {:?} last {:?}", u, i, now - START, gap, outcome, last
                );
                moved |= version == "green";
                cookie = held.unwrap();
                last = outcome;
            }
        }
    }
}

/// The vector table of docs/assignment.md §6.
#[test]
fn every_cutover_vector_matches() {
    let doc = include_str!("../../docs/assignment.md");
    let section = doc.split("## 6.").nth(1).unwrap();
    let rows: Vec<Vec<String>> = section
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|r| r.len() == 5 && r[1].parse::<u64>().is_ok())
        .collect();
    assert!(rows.len() >= 8, "found {} cut-over vectors", rows.len());
    let policy = route(true);
    for row in rows {
        let cookie = (row[0] != "(none)").then(|| row[0].replace("ID", ID));
        let now: u64 = row[1].parse().unwrap();
        let route = &policy.routes()[0];
        let decision = route.decide(&mut Visit {
            cookie,
            user_header: None,
            now,
            random: 7,
        });
        assert_eq!(route.versions()[decision.version].name(), row[2], "{row:?}");
        assert_eq!(decision.cutover.map_or("—", |o| o.as_str()), row[3], "{row:?}");
        let set = decision.set_cookie.as_deref().map(value_of);
        assert_eq!(set.as_deref().unwrap_or("(none)"), row[4].replace("ID", ID), "{row:?}");
    }
}
