#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! Property tests of the invariants users rely on (native only: proptest needs an OS RNG).
#![cfg(not(target_arch = "wasm32"))]

use policy_core::Policy;
use proptest::prelude::*;

fn two_versions(canary_basis_points: u32, salt: &str) -> Policy {
    let canary = policy_core::format_percent(canary_basis_points);
    let stable = policy_core::format_percent(10_000 - canary_basis_points);
    let doc = format!(
        r#"{{"routes": [{{"name": "app", "hosts": ["*"], "salt": {salt:?},
            "versions": [{{"name": "v1", "weight": {stable}}}, {{"name": "v2", "weight": {canary}}}],
            "key_chain": [{{"header": "x-user"}}]}}]}}"#
    );
    Policy::from_json(doc.as_bytes()).unwrap()
}

/// The `app` route of [`two_versions`] (host `*`), its members in the order `members` gives.
fn route_text(salt: &str, canary_basis_points: u32, members: &[usize], separator: &str) -> String {
    route_text_named("app", "*", salt, canary_basis_points, members, separator)
}

fn route_text_named(
    name: &str,
    host: &str,
    salt: &str,
    canary_basis_points: u32,
    members: &[usize],
    separator: &str,
) -> String {
    let canary = policy_core::format_percent(canary_basis_points);
    let stable = policy_core::format_percent(10_000 - canary_basis_points);
    let all = [
        format!(r#""name": "{name}""#),
        format!(r#""hosts": ["{host}"]"#),
        format!(r#""salt": {salt:?}"#),
        format!(r#""versions": [{{"name": "v1", "weight": {stable}}}, {{"name": "v2", "weight": {canary}}}]"#),
        r#""key_chain": [{"header": "x-user"}]"#.to_owned(),
    ];
    let chosen: Vec<&str> = members.iter().map(|&i| all[i].as_str()).collect();
    format!("{{{}}}", chosen.join(separator))
}

fn three_versions(w2: u32, w3: u32) -> Policy {
    let doc = format!(
        r#"{{"routes": [{{"name": "app", "hosts": ["*"], "salt": "s",
            "versions": [{{"name": "v1", "weight": {}}}, {{"name": "v2", "weight": {}}}, {{"name": "v3", "weight": {}}}],
            "key_chain": [{{"header": "x-user"}}]}}]}}"#,
        policy_core::format_percent(10_000 - w2 - w3),
        policy_core::format_percent(w2),
        policy_core::format_percent(w3),
    );
    Policy::from_json(doc.as_bytes()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A user's version depends on the route's salt, weights and the key, nothing else: not on
    /// the other routes of the config (how many, in which order), the order of the route's
    /// members, the white space, or what was asked before. Each policy is built from its own
    /// text, so a route's index in the hash, state kept between calls or a map's per-process
    /// order would each show up here.
    #[test]
    fn a_users_version_is_the_same_in_any_config_holding_the_route(
        keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..40),
        canary in 0u32..=10_000,
        salt in "[a-z0-9-]{0,20}",
        members in Just(vec![0usize, 1, 2, 3, 4]).prop_shuffle(),
        before in proptest::collection::vec((0u32..=10_000, "[a-z0-9]{0,8}"), 0..4),
        after in proptest::collection::vec((0u32..=10_000, "[a-z0-9]{0,8}"), 0..4),
        separator in prop::sample::select(vec![", ", ",\n    ", " ,\t"]),
    ) {
        let alone = two_versions(canary, &salt);
        let alone = &alone.routes()[0];
        let app = route_text(&salt, canary, &members, separator);
        let others = |list: &[(u32, String)], first: usize| -> Vec<String> {
            list.iter().enumerate().map(|(i, (weight, salt))| {
                route_text_named(&format!("other-{}", first + i), &format!("other-{}.example.com", first + i), salt, *weight, &[0, 1, 2, 3, 4], ", ")
            }).collect()
        };
        let routes = [others(&before, 0), vec![app], others(&after, before.len())].concat();
        let doc = format!("{{\"routes\": [{}]}}", routes.join(separator));
        let policy = Policy::from_json(doc.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        let route = policy.find_route(b"app.example.com", b"/").unwrap();
        prop_assert_eq!(route.name(), "app");
        // Asked in the opposite order from the single-route policy's.
        let here: Vec<(u16, usize)> = keys.iter().rev().map(|key| route.assign(key)).collect();
        let there: Vec<(u16, usize)> = keys.iter().map(|key| alone.assign(key)).collect();
        prop_assert_eq!(here.into_iter().rev().collect::<Vec<_>>(), there);
    }

    #[test]
    fn raising_the_canary_never_moves_a_canary_user_back(
        keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 1..200),
        low in 0u32..=10_000, raise in 0u32..=10_000,
    ) {
        let high = (low + raise).min(10_000);
        let before = two_versions(low, "ramp");
        let after = two_versions(high, "ramp");
        for key in &keys {
            if before.routes()[0].assign(key).1 == 1 {
                prop_assert_eq!(after.routes()[0].assign(key).1, 1, "key {:?} left the canary at {} -> {}", key, low, high);
            }
        }
    }

    #[test]
    fn raising_the_last_of_several_canaries_only_takes_from_stable(
        keys in proptest::collection::vec("[a-z0-9]{1,16}", 1..200),
        w2 in 0u32..=5_000, w3 in 0u32..=5_000, raise in 0u32..=5_000,
    ) {
        let before = three_versions(w2, w3);
        let after = three_versions(w2, (w3 + raise).min(10_000 - w2));
        for key in &keys {
            let (_, was) = before.routes()[0].assign(key.as_bytes());
            let (_, now) = after.routes()[0].assign(key.as_bytes());
            if was != 0 {
                prop_assert_eq!(was, now);
            }
        }
    }

    #[test]
    fn any_bytes_as_config_never_panic(doc in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Policy::from_json(&doc);
    }
}

proptest! {
    // Each case hashes 10,000 keys: fewer cases keep the debug-build run short.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn the_share_follows_the_weight(canary in 0u32..=10_000, seed in any::<u64>()) {
        let policy = two_versions(canary, "split");
        let route = &policy.routes()[0];
        let on_canary = (0..10_000u64)
            .filter(|i| route.assign(format!("{seed:x}-{i}").as_bytes()).1 == 1)
            .count();
        let share = on_canary as f64 / 100.0;
        let target = f64::from(canary) / 100.0;
        // The keys are random, so the count is binomial: allow 5 standard deviations (a false
        // alarm about once in 1.7 million cases). A fixed 1.5 points was 3.5 σ at 25% and did
        // fail on a clean run.
        let p = target / 100.0;
        let tolerance = 5.0 * 100.0 * (p * (1.0 - p) / 10_000.0).sqrt();
        prop_assert!(
            (share - target).abs() <= tolerance,
            "{}% vs target {}% (tolerance {:.2} points)", share, target, tolerance
        );
    }

}
