//! The filter's pure parts: metric names, per-route counter tables (counted in the module,
//! flushed to the host on a tick), which headers never go upstream, and the day the root
//! context's tick last saw. No host calls here, so all of it is unit tested natively.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

use policy_core::{KeySource, KeySpec, Policy, Route};

/// Today (days since 1970, UTC) as last read by the tick; `u32::MAX` until the first read.
/// One per VM, that is per Envoy worker; requests read it without a host call.
static TODAY: AtomicU32 = AtomicU32::new(u32::MAX);

/// Records the host clock's time (nanoseconds since the Unix epoch) as today's day number.
pub fn set_clock(unix_nanoseconds: u64) {
    TODAY.store(policy_core::day_of(unix_nanoseconds / 1_000_000_000), Ordering::Relaxed);
}

/// Today, when the clock has been read.
pub fn today() -> Option<u32> {
    let day = TODAY.load(Ordering::Relaxed);
    (day != u32::MAX).then_some(day)
}

/// Prefix of the assignment counters; docs/config.md gives the `stats_tags` that turn the rest into labels.
pub const ASSIGNMENTS: &str = "sticky_canary_assignments_total";
/// Counter of configurations the filter refused.
pub const CONFIG_REJECTIONS: &str = "sticky_canary_config_rejections_total";

/// `sticky_canary_assignments_total.route.R.version.V.source.S`: dotted so `stats_tags` can label it.
pub fn assignment_metric(route: &str, version: &str, source: KeySource) -> String {
    format!(
        "{ASSIGNMENTS}.route.{route}.version.{version}.source.{}",
        source.as_str()
    )
}

/// The key sources a route can report, so only counters that can move are defined.
pub fn possible_sources(route: &Route) -> Vec<KeySource> {
    let mut sources = Vec::new();
    let mut add = |s: KeySource| {
        if !sources.contains(&s) {
            sources.push(s);
        }
    };
    if route.override_rule().is_some() {
        add(KeySource::Override);
    }
    for spec in route.key_chain() {
        match spec {
            KeySpec::Cookie(_) => add(KeySource::Cookie),
            KeySpec::Header(_) => add(KeySource::Header),
            KeySpec::IdentityHeader(_) => add(KeySource::Identity),
            KeySpec::NewClientId(_) => {
                add(KeySource::Cookie);
                add(KeySource::NewId);
            }
            KeySpec::ClientAddress => add(KeySource::Address),
        }
    }
    add(KeySource::None);
    sources
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
            let sources = possible_sources(route);
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
        Ok(Counters { ids })
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
        for slot in self.ids.iter().flatten().flatten() {
            let pending = slot.pending.replace(0);
            if pending > 0 {
                add(slot.id, pending);
                calls += 1;
            }
        }
        calls
    }
}

/// A position (0 to 99) in decimal, without allocating: "7", "42".
pub fn two_digits(position: u8, buf: &mut [u8; 2]) -> &[u8] {
    let position = position.min(99);
    *buf = [b'0' + position / 10, b'0' + position % 10];
    if position < 10 {
        buf.get(1..).unwrap_or_default()
    } else {
        buf
    }
}

/// The route's override and secret headers: removed from every request on the route before it
/// goes upstream, whether the client sent them and whether or not they were honoured (policy-core
/// reads the secret only for an allowed override). Removing an absent header is a no-op.
pub fn headers_to_strip(route: &Route) -> impl Iterator<Item = &str> {
    let rule = route.override_rule();
    let override_header = rule.map(|r| r.header.as_str());
    let secret_header = rule.and_then(|r| r.secret.as_ref()).map(|s| s.header.as_str());
    override_header.into_iter().chain(secret_header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_core::Request;
    use std::collections::HashMap;

    struct Fake {
        headers: HashMap<&'static str, &'static [u8]>,
        reads: Vec<String>,
    }

    impl Request for Fake {
        fn header(&mut self, name: &str) -> Option<Vec<u8>> {
            self.reads.push(name.to_owned());
            self.headers.get(name).map(|v| v.to_vec())
        }
        fn client_address(&mut self) -> Option<Vec<u8>> {
            Some(b"10.1.2.3:4567".to_vec())
        }
        fn random(&mut self) -> Option<[u8; 16]> {
            Some([7; 16])
        }
    }

    fn policy() -> Policy {
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
    fn the_clock_gives_days_since_1970() {
        set_clock(1_763_856_000 * 1_000_000_000 + 5);
        assert_eq!(today(), Some(20415));
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

    #[test]
    fn returning_client_costs_one_header_read_besides_the_override() {
        let policy = policy();
        let route = &policy.routes()[0];
        let mut fake = Fake {
            headers: HashMap::from([("cookie", &b"session=abc"[..])]),
            reads: Vec::new(),
        };
        let decision = route.decide(&mut fake);
        assert_eq!(decision.source, KeySource::Cookie);
        assert_eq!(fake.reads, ["x-canary-force", "cookie"]);
    }

    #[test]
    fn override_headers_are_always_stripped_even_when_refused() {
        let policy = policy();
        let route = &policy.routes()[0];
        let mut fake = Fake {
            headers: HashMap::from([
                ("x-canary-force", &b"v2"[..]),
                ("x-canary-secret", &b"wrong-secret-000"[..]),
                ("cookie", &b"sc=feedface"[..]),
            ]),
            reads: Vec::new(),
        };
        let decision = route.decide(&mut fake);
        assert_eq!(decision.source, KeySource::Cookie);
        // Refused (wrong secret), and stripped all the same.
        assert_eq!(
            headers_to_strip(route).collect::<Vec<_>>(),
            ["x-canary-force", "x-canary-secret"]
        );
    }

    #[test]
    fn new_client_gets_a_cookie_that_decides_the_same_way_next_time() {
        let policy = policy();
        let route = &policy.routes()[0];
        let mut fake = Fake {
            headers: HashMap::new(),
            reads: Vec::new(),
        };
        let first = route.decide(&mut fake);
        assert_eq!(first.source, KeySource::NewId);
        let cookie = first.set_cookie.clone().unwrap();
        assert!(cookie.starts_with(
            "sc=07070707070707070707070707070707; Path=/; Max-Age=2592000; HttpOnly; Secure; SameSite=Lax"
        ));
        let pair: &'static str = Box::leak(cookie.split(';').next().unwrap().to_owned().into_boxed_str());
        let mut fake = Fake {
            headers: HashMap::from([("cookie", pair.as_bytes())]),
            reads: Vec::new(),
        };
        let second = route.decide(&mut fake);
        assert_eq!(second.source, KeySource::Cookie);
        assert_eq!(second.version, first.version);
    }

    #[test]
    fn positions_are_written_in_decimal() {
        let mut buf = [0u8; 2];
        assert_eq!(two_digits(0, &mut buf), b"0");
        assert_eq!(two_digits(7, &mut buf), b"7");
        assert_eq!(two_digits(42, &mut buf), b"42");
        assert_eq!(two_digits(99, &mut buf), b"99");
        assert_eq!(two_digits(200, &mut buf), b"99");
    }
}
