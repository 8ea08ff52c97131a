//! The filter's metrics: counter names, and per-route counter tables counted in the module and
//! flushed to the host on a tick. No host calls here, so all of it is unit tested natively.

use std::cell::Cell;

use policy_core::{CutoverOutcome, KeySource, Policy};

/// Prefix of the assignment counters; docs/config.md gives the `stats_tags` that turn the rest into labels.
pub const ASSIGNMENTS: &str = "sticky_canary_assignments_total";
/// Counter of configurations the filter refused.
pub const CONFIG_REJECTIONS: &str = "sticky_canary_config_rejections_total";
/// Prefix of the cut-over counters (docs/assignment.md §6), defined only for routes with one.
pub const CUTOVER: &str = "sticky_canary_cutover_total";

/// `sticky_canary_cutover_total.route.R.outcome.O`: requests by where a cut-over put them.
pub fn cutover_metric(route: &str, outcome: CutoverOutcome) -> String {
    format!("{CUTOVER}.route.{route}.outcome.{}", outcome.as_str())
}

/// `sticky_canary_assignments_total.route.R.version.V.source.S`: dotted so `stats_tags` can label it.
pub fn assignment_metric(route: &str, version: &str, source: KeySource) -> String {
    format!(
        "{ASSIGNMENTS}.route.{route}.version.{version}.source.{}",
        source.as_str()
    )
}

/// Counter ids for every (route, version, source), looked up by index on the hot path, and the
/// counts not yet handed to the host.
///
/// A request adds one to its slot in module memory ([`Counters::count`]); [`Counters::flush`]
/// (on the filter's tick, and before a configuration is replaced or deleted) adds each
/// non-zero slot to its host counter in one call and zeroes it. So a request costs no host call
/// for its metric, and the host's counters lag the requests by at most one tick; the totals are
/// exact once flushed.
#[derive(Debug, Default)]
pub struct Counters {
    /// Per route: `version * SOURCES + source` -> counter id and its unflushed count.
    ids: Vec<Vec<Option<Slot>>>,
    /// Per route with a cut-over: outcome index -> counter; empty for the other routes.
    cutover: Vec<Vec<Slot>>,
}

#[derive(Debug, Clone)]
struct Slot {
    id: u32,
    pending: Cell<u64>,
}

const SOURCES: usize = KeySource::ALL.len();

impl Counters {
    /// Defines every counter through `define` (a host call in the filter). The first failure is returned.
    pub fn define<E>(policy: &Policy, mut define: impl FnMut(&str) -> Result<u32, E>) -> Result<Counters, E> {
        let mut ids = Vec::with_capacity(policy.routes().len());
        for route in policy.routes() {
            let mut table = vec![None; route.versions().len() * SOURCES];
            let sources = route.key_sources();
            for (v, version) in route.versions().iter().enumerate() {
                for &source in &sources {
                    let id = define(&assignment_metric(route.name(), version.name(), source))?;
                    if let Some(slot) = table.get_mut(v * SOURCES + source.index()) {
                        *slot = Some(Slot {
                            id,
                            pending: Cell::new(0),
                        });
                    }
                }
            }
            ids.push(table);
        }
        let mut cutover = Vec::with_capacity(policy.routes().len());
        for route in policy.routes() {
            let mut table = Vec::new();
            if route.cutover().is_some() {
                for outcome in CutoverOutcome::ALL {
                    table.push(Slot {
                        id: define(&cutover_metric(route.name(), outcome))?,
                        pending: Cell::new(0),
                    });
                }
            }
            cutover.push(table);
        }
        Ok(Counters { ids, cutover })
    }

    /// Counts where a cut-over put one request.
    pub fn count_cutover(&self, route: usize, outcome: CutoverOutcome) {
        if let Some(slot) = self.cutover.get(route).and_then(|t| t.get(outcome.index())) {
            slot.pending.set(slot.pending.get().saturating_add(1));
        }
    }

    fn slot(&self, route: usize, version: usize, source: KeySource) -> Option<&Slot> {
        self.ids
            .get(route)
            .and_then(|table| table.get(version * SOURCES + source.index()))
            .and_then(Option::as_ref)
    }

    /// The counter id for one decision, if defined.
    pub fn get(&self, route: usize, version: usize, source: KeySource) -> Option<u32> {
        self.slot(route, version, source).map(|slot| slot.id)
    }

    /// Counts one decision in module memory; [`Counters::flush`] hands it to the host.
    pub fn count(&self, route: usize, version: usize, source: KeySource) {
        if let Some(slot) = self.slot(route, version, source) {
            slot.pending.set(slot.pending.get().saturating_add(1));
        }
    }

    /// Hands every unflushed count to `add` (counter id, count) and zeroes it. Returns how many
    /// calls it made.
    pub fn flush(&self, mut add: impl FnMut(u32, u64)) -> usize {
        let mut calls = 0;
        let cutover = self.cutover.iter().flatten();
        for slot in self.ids.iter().flatten().flatten().chain(cutover) {
            let pending = slot.pending.replace(0);
            if pending > 0 {
                add(slot.id, pending);
                calls += 1;
            }
        }
        calls
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Two versions, a cookie then a new client id, and an override with a secret.
    pub(crate) fn policy() -> Policy {
        Policy::from_json(
            br#"{"routes": [{"name": "shop", "hosts": ["*"], "salt": "s",
              "versions": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}],
              "key_chain": [{"cookie": "session"}, {"new_client_id": {"cookie": "sc"}}],
              "override": {"header": "x-canary-force", "allow": ["v2"],
                           "secret_header": "x-canary-secret", "secret": "0123456789abcdef"}}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn metric_names_carry_route_version_and_source() {
        assert_eq!(
            assignment_metric("shop", "v2", KeySource::NewId),
            "sticky_canary_assignments_total.route.shop.version.v2.source.new_id"
        );
    }

    #[test]
    fn counters_cover_exactly_the_possible_sources() {
        let policy = policy();
        let mut names = Vec::new();
        let counters = Counters::define(&policy, |name| {
            names.push(name.to_owned());
            Ok::<u32, ()>(names.len() as u32)
        })
        .unwrap();
        // 2 versions x (override, cookie, new_id, none)
        assert_eq!(names.len(), 8);
        assert!(counters.get(0, 1, KeySource::Override).is_some());
        assert!(counters.get(0, 0, KeySource::Header).is_none());
        assert!(counters.get(1, 0, KeySource::Cookie).is_none());
        let id = counters.get(0, 1, KeySource::NewId).unwrap();
        assert_eq!(
            names[id as usize - 1],
            "sticky_canary_assignments_total.route.shop.version.v2.source.new_id"
        );
    }

    #[test]
    fn a_route_with_a_cutover_counts_its_outcomes() {
        let policy = Policy::from_json(
            br#"{"routes": [{"name": "shop", "hosts": ["*"], "salt": "s",
              "versions": [{"name": "blue", "weight": 100}, {"name": "green", "weight": 0}],
              "key_chain": [{"new_client_id": {}}],
              "cutover": {"to": "green", "start": 1, "deadline": 2, "idle_seconds": 60}},
              {"name": "other", "hosts": ["o"], "salt": "s", "versions": [{"name": "v1", "weight": 100}],
              "key_chain": [{"new_client_id": {}}]}]}"#,
        )
        .unwrap();
        let mut names = Vec::new();
        let counters = Counters::define(&policy, |name| {
            names.push(name.to_owned());
            Ok::<u32, ()>(names.len() as u32)
        })
        .unwrap();
        let cutover: Vec<_> = names.iter().filter(|n| n.starts_with(CUTOVER)).collect();
        assert_eq!(
            cutover,
            ["new", "kept", "moved", "done"]
                .map(|o| format!("sticky_canary_cutover_total.route.shop.outcome.{o}"))
                .iter()
                .collect::<Vec<_>>()
        );
        counters.count_cutover(0, CutoverOutcome::Kept);
        counters.count_cutover(0, CutoverOutcome::Kept);
        counters.count_cutover(1, CutoverOutcome::Kept); // no cut-over on route 1: ignored
        let mut flushed = Vec::new();
        counters.flush(|id, n| flushed.push((names[id as usize - 1].clone(), n)));
        assert_eq!(
            flushed,
            [("sticky_canary_cutover_total.route.shop.outcome.kept".to_owned(), 2)]
        );
    }

    #[test]
    fn counts_reach_the_host_exactly_once_each_on_flush() {
        let policy = policy();
        let mut next = 0;
        let counters = Counters::define(&policy, |_| {
            next += 1;
            Ok::<u32, ()>(next)
        })
        .unwrap();
        let mut host: HashMap<u32, u64> = HashMap::new();
        for i in 0..1000u64 {
            counters.count(
                0,
                (i % 2) as usize,
                if i % 3 == 0 {
                    KeySource::NewId
                } else {
                    KeySource::Cookie
                },
            );
            // Undefined slots (no header source here, no route 1) are ignored, not miscounted.
            counters.count(0, 0, KeySource::Header);
            counters.count(1, 0, KeySource::Cookie);
            if i % 250 == 249 {
                counters.flush(|id, n| *host.entry(id).or_insert(0) += n);
            }
        }
        assert_eq!(host.values().sum::<u64>(), 1000);
        let id = counters.get(0, 1, KeySource::Cookie).unwrap();
        let expected = (0..1000u64).filter(|i| i % 2 == 1 && i % 3 != 0).count() as u64;
        assert_eq!(host[&id], expected);
        // Nothing is left to flush, and a flush with nothing pending makes no call.
        assert_eq!(counters.flush(|_, _| panic!("flushed twice")), 0);
    }
}
