#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! A/B/n: canaries with a declared `max_weight` ramp independently (docs/assignment.md §2).
//! Over every one of the 10,000 buckets: a weight change of one arm moves users only between
//! that arm and stable, for 3 and 5 arms and random sequences of changes; adding an arm last
//! moves only its own users; a route without `max_weight`, and any two-version route, keeps the
//! packed layout of earlier releases bucket for bucket.
#![cfg(not(target_arch = "wasm32"))]

use policy_core::{format_percent, Policy, Route};
use proptest::prelude::*;

/// A route with stable `v1` then canaries `a0, a1, ...` at `weights` (basis points) and the
/// given `max_weight`s (basis points; `None`: not declared).
fn arms(weights: &[u32], maxes: &[Option<u32>]) -> Result<Policy, String> {
    let stable = 10_000u32.checked_sub(weights.iter().sum()).ok_or("over 100")?;
    let mut versions = vec![format!(r#"{{"name": "v1", "weight": {}}}"#, format_percent(stable))];
    for (i, (w, max)) in weights.iter().zip(maxes).enumerate() {
        let max = max.map_or(String::new(), |m| format!(r#", "max_weight": {}"#, format_percent(m)));
        versions.push(format!(r#"{{"name": "a{i}", "weight": {}{max}}}"#, format_percent(*w)));
    }
    let doc = format!(
        r#"{{"routes": [{{"name": "app", "hosts": ["*"], "salt": "s",
            "versions": [{}], "key_chain": [{{"header": "x-user"}}]}}]}}"#,
        versions.join(", ")
    );
    Policy::from_json(doc.as_bytes()).map_err(|e| e.to_string())
}

/// The version name of each bucket, 0..10000.
fn layout(route: &Route) -> Vec<String> {
    (0..10_000u16)
        .map(|b| route.versions()[route.version_for_bucket(b)].name().to_owned())
        .collect()
}

/// The layout earlier releases gave: canaries packed from bucket 0 in listed order.
fn packed(weights: &[u32]) -> Vec<String> {
    (0..10_000u32)
        .map(|b| {
            let mut start = 0;
            for (i, w) in weights.iter().enumerate() {
                if b >= start && b < start + w {
                    return format!("a{i}");
                }
                start += w;
            }
            "v1".to_owned()
        })
        .collect()
}

/// Every bucket that changed version went between `arm` and stable.
fn only_arm_moved(before: &[String], after: &[String], arm: &str) -> Result<usize, String> {
    let mut moved = 0;
    for (b, (x, y)) in before.iter().zip(after).enumerate() {
        if x != y {
            moved += 1;
            let pair = [x.as_str(), y.as_str()];
            if !(pair.contains(&arm) && pair.contains(&"v1")) {
                return Err(format!("bucket {b} moved {x} -> {y}, but only {arm} changed weight"));
            }
        }
    }
    Ok(moved)
}

/// Random weights within the maxes, then a sequence of (arm, new weight) changes that keep the
/// canaries' total at most 100 %.
fn scenario(n: usize) -> impl Strategy<Value = (Vec<u32>, Vec<u32>, Vec<(usize, u32)>)> {
    // Maxes summing to at most 10000: each a share of an even split.
    proptest::collection::vec(1u32..=10_000 / n as u32, n).prop_flat_map(move |maxes| {
        let start: Vec<BoxedStrategy<u32>> = maxes.iter().map(|&m| (0..=m).boxed()).collect();
        let changes = proptest::collection::vec((0..n, 0u32..=10_000), 1..12);
        (Just(maxes), start, changes)
    })
}

fn ramp_moves_only_the_changed_arm(maxes: Vec<u32>, mut weights: Vec<u32>, changes: Vec<(usize, u32)>) {
    let declared: Vec<Option<u32>> = maxes.iter().map(|&m| Some(m)).collect();
    let mut before = layout(&arms(&weights, &declared).unwrap().routes()[0]);
    for (arm, raw) in changes {
        let weight = raw % (maxes[arm] + 1);
        weights[arm] = weight;
        let policy = arms(&weights, &declared).unwrap();
        let after = layout(&policy.routes()[0]);
        only_arm_moved(&before, &after, &format!("a{arm}")).unwrap();
        // Each arm holds exactly its weight in buckets.
        for (i, w) in weights.iter().enumerate() {
            let held = after.iter().filter(|v| **v == format!("a{i}")).count() as u32;
            assert_eq!(held, *w, "arm a{i} at {w} basis points holds {held} buckets");
        }
        before = after;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn three_arms_ramp_independently((maxes, weights, changes) in scenario(3)) {
        ramp_moves_only_the_changed_arm(maxes, weights, changes);
    }

    #[test]
    fn five_arms_ramp_independently((maxes, weights, changes) in scenario(5)) {
        ramp_moves_only_the_changed_arm(maxes, weights, changes);
    }

    /// Adding an arm at the end (its slot after the others) moves only the users it takes, from
    /// stable; removing it again (weight 0, then deleting the last entry) moves only them back.
    #[test]
    fn adding_and_removing_the_last_arm_moves_only_its_users(
        (maxes, weights, _) in scenario(4), new_weight in 0u32..=10_000,
    ) {
        let declared: Vec<Option<u32>> = maxes.iter().map(|&m| Some(m)).collect();
        let before = layout(&arms(&weights, &declared).unwrap().routes()[0]);
        let room = 10_000 - maxes.iter().sum::<u32>();
        let new_weight = new_weight % (room + 1);
        let mut more = weights.clone();
        more.push(new_weight);
        let mut more_declared = declared.clone();
        more_declared.push(None);
        let with = layout(&arms(&more, &more_declared).unwrap().routes()[0]);
        let moved = only_arm_moved(&before, &with, &format!("a{}", weights.len())).unwrap();
        prop_assert_eq!(moved as u32, new_weight);
        *more.last_mut().unwrap() = 0;
        let retired = layout(&arms(&more, &more_declared).unwrap().routes()[0]);
        prop_assert_eq!(&retired, &before);
    }

    /// Without `max_weight` the layout is the packed one of earlier releases, for any number of
    /// canaries; a two-version route is the same with or without a `max_weight`.
    #[test]
    fn without_max_weight_every_bucket_is_where_it_was(
        weights in proptest::collection::vec(0u32..=2_500, 1..5), extra in 0u32..=10_000,
    ) {
        let none = vec![None; weights.len()];
        prop_assert_eq!(layout(&arms(&weights, &none).unwrap().routes()[0]), packed(&weights));
        let w = weights[0];
        let max = w + extra % (10_001 - w);
        let with_max = arms(&[w], &[Some(max)]).unwrap();
        prop_assert_eq!(layout(&with_max.routes()[0]), packed(&[w]));
    }
}

#[test]
fn max_weight_is_checked_with_the_field_named() {
    let err = arms(&[3000, 1000], &[Some(2000), None]).unwrap_err();
    assert!(
        err.contains("routes[0].versions[1].max_weight: 20% is below the weight, 30%"),
        "{err}"
    );
    let err = arms(&[1000, 1000], &[Some(6000), Some(5000)]).unwrap_err();
    assert!(err.contains("routes[0].versions: the canaries' slots"), "{err}");
    assert!(err.contains("take 110%, more than 100"), "{err}");
    let doc = br#"{"routes": [{"name": "app", "hosts": ["*"], "salt": "s",
        "versions": [{"name": "v1", "weight": 100, "max_weight": 50}], "key_chain": [{"header": "x"}]}]}"#;
    let err = Policy::from_json(doc).unwrap_err().to_string();
    assert!(
        err.contains("routes[0].versions[0].max_weight: is for canaries"),
        "{err}"
    );
    let doc = br#"{"routes": [{"name": "app", "hosts": ["*"], "salt": "s",
        "versions": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10, "max_weight": "x"}],
        "key_chain": [{"header": "x"}]}]}"#;
    let err = Policy::from_json(doc).unwrap_err().to_string();
    assert!(
        err.contains("routes[0].versions[1].max_weight: must be a number, not a string"),
        "{err}"
    );
}

#[test]
fn a_gap_in_a_slot_is_stable() {
    // a at 5 % of a 20 % slot, b at 10 %: buckets 500..2000 are stable, b starts at 2000.
    let policy = arms(&[500, 1000], &[Some(2000), None]).unwrap();
    let route = &policy.routes()[0];
    assert_eq!(route.versions()[route.version_for_bucket(499)].name(), "a0");
    assert_eq!(route.versions()[route.version_for_bucket(500)].name(), "v1");
    assert_eq!(route.versions()[route.version_for_bucket(1999)].name(), "v1");
    assert_eq!(route.versions()[route.version_for_bucket(2000)].name(), "a1");
    assert_eq!(route.versions()[route.version_for_bucket(2999)].name(), "a1");
    assert_eq!(route.versions()[route.version_for_bucket(3000)].name(), "v1");
}
