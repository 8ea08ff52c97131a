//! Per request: which route, and which version serves it.
//!
//! The host is reached only through [`Request`], asked lazily and in key-chain
//! order, so a returning client costs one header read. Nothing here allocates
//! except the Set-Cookie of a new client.
//!
//! ```
//! use policy_core::{Policy, Request, KeySource};
//! struct Req(&'static [u8]);
//! impl Request for Req {
//!     type Header = Vec<u8>;
//!     fn header(&mut self, name: &str) -> Option<Vec<u8>> {
//!         (name == "cookie").then(|| self.0.to_vec())
//!     }
//!     fn client_address(&mut self) -> Option<Vec<u8>> { None }
//!     fn random(&mut self) -> Option<[u8; 16]> { None }
//! }
//! let policy = Policy::from_json(br#"{"routes": [{"name": "shop", "hosts": ["shop.example.com"],
//!   "salt": "s1", "versions": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}],
//!   "key_chain": [{"cookie": "session"}]}]}"#).unwrap();
//! let route = policy.find_route(b"Shop.Example.com:443", b"/cart").unwrap();
//! let decision = route.decide(&mut Req(b"session=abc"));
//! assert_eq!(decision.source, KeySource::Cookie);
//! let bucket = policy_core::bucket(b"s1", b"abc");
//! let expected = if bucket < 5000 { "v2" } else { "v1" };
//! assert_eq!(route.versions()[decision.version].name(), expected);
//! ```

use crate::bucket::{bucket, random_bucket};
use crate::client_id::{day_of, hex_id, identity_id, ClientId, SECONDS_PER_DAY};
use crate::config::{Cutover, KeySpec, NewClientId, NoKey, Policy, Route};
use crate::cookie::{self, trim};

/// Cookie names one scan of the Cookie header looks for (the client-id cookie and the chain's
/// cookies); a route with more falls back to one scan per name.
const COOKIE_NAMES: usize = 4;

/// The cookies a route reads, in the order it asks for them: the client-id cookie first, then
/// the chain's. `None` when there are more than [`COOKIE_NAMES`].
type CookieNames<'r> = Option<([&'r [u8]; COOKIE_NAMES], usize)>;

/// The request's Cookie header, read when first needed, and where in it each cookie a route
/// reads was found, after one scan for all of them.
struct CookieHeader<H> {
    header: Option<Option<H>>,
    /// Byte ranges of the values of `names`, once scanned.
    spans: Option<[Option<(usize, usize)>; COOKIE_NAMES]>,
}

impl<H: AsRef<[u8]>> CookieHeader<H> {
    fn new() -> Self {
        CookieHeader {
            header: None,
            spans: None,
        }
    }

    /// The value of cookie `name`, one of `names`; `read` gets the header the first time.
    fn value(&mut self, names: &CookieNames, name: &str, read: impl FnOnce() -> Option<H>) -> Option<&[u8]> {
        let header = self.header.get_or_insert_with(read).as_ref()?.as_ref();
        let Some((names, count)) = names else {
            return cookie::find(header, name.as_bytes());
        };
        let names = names.get(..*count).unwrap_or_default();
        let spans = self.spans.get_or_insert_with(|| {
            let mut found = [None; COOKIE_NAMES];
            cookie::find_each(header, names, &mut found);
            let start = header.as_ptr() as usize;
            found.map(|value| value.map(|v| (v.as_ptr() as usize - start, v.as_ptr() as usize - start + v.len())))
        });
        let index = names.iter().position(|n| *n == name.as_bytes())?;
        let (start, end) = spans.get(index).copied().flatten()?;
        header.get(start..end)
    }
}

/// What the decision needs from the request. Names are lowercase.
pub trait Request {
    /// A header's value as the host gives it: borrowed from a buffer the request already holds
    /// (the filter's one read of every header) or owned.
    type Header: AsRef<[u8]>;
    /// The value of a request header, or `None` when absent.
    fn header(&mut self, name: &str) -> Option<Self::Header>;
    /// The downstream address (`ip:port`, `[v6]:port` or a bare ip), or `None`.
    fn client_address(&mut self) -> Option<Vec<u8>>;
    /// 16 random bytes (a new client id, or a per-request weighted pick), or `None` when unavailable.
    fn random(&mut self) -> Option<[u8; 16]>;
    /// Today as days since 1970-01-01 (UTC), to stamp and refresh the client-id cookie; `None`
    /// when unknown (cookies are then issued unstamped and never refreshed).
    fn today(&mut self) -> Option<u32> {
        None
    }
    /// Now, in Unix seconds, asked only on a route with a cut-over (docs/assignment.md §6);
    /// `None` when unknown (the cut-over then does not apply).
    fn now(&mut self) -> Option<u64> {
        None
    }
}

/// Where a cut-over put the request (docs/assignment.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CutoverOutcome {
    /// A user the route did not know before the cut-over (or who moved already): on the new version.
    New,
    /// A user who had an assignment and has not been idle long enough: kept where the weights put them.
    Kept,
    /// A kept user back after `idle_seconds` or more: moved to the new version on this request.
    Moved,
    /// The deadline has passed: everyone is on the new version.
    Done,
}

impl CutoverOutcome {
    pub const ALL: [CutoverOutcome; 4] = [
        CutoverOutcome::New,
        CutoverOutcome::Kept,
        CutoverOutcome::Moved,
        CutoverOutcome::Done,
    ];

    /// The label used in metrics, the exposure log and `sticky-canary explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            CutoverOutcome::New => "new",
            CutoverOutcome::Kept => "kept",
            CutoverOutcome::Moved => "moved",
            CutoverOutcome::Done => "done",
        }
    }

    /// Position in [`CutoverOutcome::ALL`], for per-outcome counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A cut-over that applies to this request.
#[derive(Debug, Clone, Copy)]
enum Phase<'r> {
    /// Between start and deadline, at `now`.
    Draining { cutover: &'r Cutover, now: u64 },
    /// At or after the deadline.
    Over { cutover: &'r Cutover },
}

/// How long a returning user has certainly been away, from their cookie: since the `seen` time
/// a cut-over wrote, else since the end of the last day on which a request would not have
/// refreshed the day stamp (no request since means none on the days after `stamp +
/// refresh_after_days − 1`), else 0 (unknown: treated as active).
fn idle_for(id: &ClientId, now: u64, refresh_after_days: u32) -> u64 {
    if let Some(seen) = id.seen {
        return now.saturating_sub(seen);
    }
    match id.stamp {
        Some(day) => {
            let first_refreshing_day = u64::from(day).saturating_add(u64::from(refresh_after_days));
            now.saturating_sub(first_refreshing_day.saturating_mul(SECONDS_PER_DAY))
        }
        None => 0,
    }
}

/// Which source gave the key that decided the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeySource {
    Cookie,
    Header,
    Identity,
    NewId,
    Override,
    Address,
    None,
}

impl KeySource {
    pub const ALL: [KeySource; 7] = [
        KeySource::Cookie,
        KeySource::Header,
        KeySource::Identity,
        KeySource::NewId,
        KeySource::Override,
        KeySource::Address,
        KeySource::None,
    ];

    /// The label used in metrics and by `sticky-canary assign`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Cookie => "cookie",
            KeySource::Header => "header",
            KeySource::Identity => "identity",
            KeySource::NewId => "new_id",
            KeySource::Override => "override",
            KeySource::Address => "address",
            KeySource::None => "none",
        }
    }

    /// Position in [`KeySource::ALL`], for per-source counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Index into the route's versions.
    pub version: usize,
    pub source: KeySource,
    /// The key's bucket, when a key decided (not for override, nor a stable fallback).
    pub bucket: Option<u16>,
    /// A Set-Cookie header value to send on the response: a new client id, a refresh of an
    /// ageing one, the id derived from a trusted identity, or a cut-over's times.
    pub set_cookie: Option<String>,
    /// Where a cut-over put the request, when the route has one in force.
    pub cutover: Option<CutoverOutcome>,
}

/// Lowercases an authority into `buf` and drops its port; `None` when too long to be a host.
fn host_of<'b>(authority: &[u8], buf: &'b mut [u8; 256]) -> Option<&'b [u8]> {
    let host = if authority.first() == Some(&b'[') {
        // IPv6 literal: keep the brackets, drop the port after them.
        let end = authority
            .iter()
            .position(|&b| b == b']')
            .map_or(authority.len(), |i| i + 1);
        authority.get(..end).unwrap_or(authority)
    } else {
        let end = authority.iter().position(|&b| b == b':').unwrap_or(authority.len());
        authority.get(..end).unwrap_or(authority)
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    let out = buf.get_mut(..host.len())?;
    for (o, b) in out.iter_mut().zip(host) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

fn path_matches(route: &Route, path: &[u8]) -> bool {
    match &route.path_prefix {
        None => true,
        Some(prefix) => {
            let end = path.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(path.len());
            path.get(..end).unwrap_or(path).starts_with(prefix.as_bytes())
        }
    }
}

impl Policy {
    /// The route for a request: exact host first, then the longest `*.suffix`,
    /// then `*`; within a host the longest matching path prefix. Host matching
    /// ignores case, a port and a trailing dot. Pass an empty path when
    /// [`Policy::needs_path`] is false.
    pub fn find_route(&self, authority: &[u8], path: &[u8]) -> Option<&Route> {
        self.find_route_index(authority, path).and_then(|i| self.routes.get(i))
    }

    /// Like [`Policy::find_route`], giving the route's index in [`Policy::routes`].
    pub fn find_route_index(&self, authority: &[u8], path: &[u8]) -> Option<usize> {
        let mut buf = [0u8; 256];
        let first = |list: &[usize]| {
            list.iter()
                .copied()
                .find(|&i| self.routes.get(i).is_some_and(|route| path_matches(route, path)))
        };
        if let Some(host) = host_of(authority, &mut buf) {
            if let Some(index) = self.exact_hosts.get(host).and_then(first) {
                return Some(index);
            }
            // Each '.' starts a suffix, longest first: a.b.example.com -> .b.example.com, .example.com, .com
            for (i, _) in host.iter().enumerate().filter(|(_, &b)| b == b'.') {
                let suffix = host.get(i..).unwrap_or_default();
                if let Some(index) = self.wildcard_hosts.get(suffix).and_then(first) {
                    return Some(index);
                }
            }
        }
        first(&self.any_host)
    }
}

/// Drops the port from `ip:port` or `[v6]:port`; a bare address is kept whole.
fn address_without_port(address: &[u8]) -> &[u8] {
    if let Some(rest) = address.strip_prefix(b"[") {
        let end = rest.iter().position(|&b| b == b']').unwrap_or(rest.len());
        return rest.get(..end).unwrap_or(rest);
    }
    let colons = address.iter().filter(|&&b| b == b':').count();
    if colons == 1 {
        let end = address.iter().position(|&b| b == b':').unwrap_or(address.len());
        address.get(..end).unwrap_or(address)
    } else {
        address
    }
}

/// Compares without an early exit, so response timing does not reveal the secret.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

impl Route {
    /// The version serving a key's bucket: canaries take `[0, w2)`, `[w2, w2+w3)`, ...; stable the rest.
    pub fn version_for_bucket(&self, bucket: u16) -> usize {
        if bucket >= self.canary_end {
            return 0;
        }
        self.versions
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, v)| bucket >= v.start && bucket < v.end)
            .map_or(0, |(i, _)| i)
    }

    /// The user's position for Envoy's weighted clusters, written to the position header when a
    /// progressive-delivery tool owns the weights: `99 - bucket / 100`, so that with the stable
    /// destination listed first Envoy sends the user to the canary exactly when
    /// `bucket < 100 × canary weight`, the rule of [`Route::version_for_bucket`] at those weights
    /// (docs/assignment.md §5). An override gives 99 for a canary (it is served whenever the
    /// tool gives the canary any weight) and 0 for stable; no key gives 0 (stable).
    pub fn position(&self, decision: &Decision) -> u8 {
        if decision.source == KeySource::Override {
            return if decision.version == 0 { 0 } else { 99 };
        }
        match decision.bucket {
            Some(b) => 99 - (b / 100).min(99) as u8,
            None => 0,
        }
    }

    /// The version (0 stable, 1 canary) Envoy's weighted clusters give a keyed user when a tool
    /// gives the canary `canary_percent` (stable listed first, total 100): the canary exactly
    /// when `bucket < 100 × canary_percent`, which is what [`Route::position`] makes Envoy do.
    pub fn version_at_tool_weight(&self, bucket: u16, canary_percent: u8) -> usize {
        usize::from(u32::from(bucket) < 100 * u32::from(canary_percent.min(100)))
    }

    /// The version for a key, as the filter would decide it when that key is found.
    pub fn assign(&self, key: &[u8]) -> (u16, usize) {
        let b = bucket(&self.salt, key);
        (b, self.version_for_bucket(b))
    }

    /// The cookies [`Route::decide`] may read, in order: the client-id cookie, then the chain's.
    fn cookie_names(&self) -> CookieNames<'_> {
        let mut names: [&[u8]; COOKIE_NAMES] = [&[]; COOKIE_NAMES];
        let mut count = 0;
        let chain = self.key_chain.iter().filter_map(|spec| match spec {
            KeySpec::Cookie(name) => Some(name.as_bytes()),
            _ => None,
        });
        for name in self.client_id().map(|c| c.cookie.as_bytes()).into_iter().chain(chain) {
            *names.get_mut(count)? = name;
            count += 1;
        }
        Some((names, count))
    }

    fn keyed(&self, source: KeySource, key: &[u8]) -> Decision {
        let (b, version) = self.assign(key);
        Decision {
            version,
            source,
            bucket: Some(b),
            set_cookie: None,
            cutover: None,
        }
    }

    /// The cut-over in force for this request, if any: asks the clock only when there is one.
    fn phase(&self, request: &mut impl Request) -> Option<Phase<'_>> {
        let cutover = self.cutover.as_ref()?;
        let now = request.now()?;
        if now < cutover.start {
            None
        } else if now < cutover.deadline {
            Some(Phase::Draining { cutover, now })
        } else {
            Some(Phase::Over { cutover })
        }
    }

    /// A returning user's id cookie during a cut-over's drain (docs/assignment.md §6): new
    /// (assignment begun at or after the start) on the new version; away for `idle_seconds` or
    /// more: moved now, the cookie's assignment restarting now; otherwise kept on the weights'
    /// version, the cookie carrying now as the last time seen.
    fn drain(
        &self,
        mut decision: Decision,
        id: &ClientId,
        settings: &NewClientId,
        today: Option<u32>,
        cutover: &Cutover,
        now: u64,
    ) -> Decision {
        let Some(text) = id.issued_id() else {
            // Not a value the filter issued: nothing to track it by, so it counts as new.
            decision.version = cutover.to;
            decision.cutover = Some(CutoverOutcome::New);
            return decision;
        };
        let today = today.or(Some(day_of(now)));
        if let Some(issued) = id.issued.filter(|&issued| issued >= cutover.start) {
            decision.version = cutover.to;
            decision.cutover = Some(CutoverOutcome::New);
            if today.is_some_and(|t| id.needs_refresh(t, settings.refresh_after_days)) {
                let times = (issued, id.seen.unwrap_or(issued));
                decision.set_cookie = Some(settings.set_cookie_with_times(text, today, Some(times)));
            }
            return decision;
        }
        if idle_for(id, now, settings.refresh_after_days) >= cutover.idle_seconds {
            decision.version = cutover.to;
            decision.cutover = Some(CutoverOutcome::Moved);
            decision.set_cookie = Some(settings.set_cookie_with_times(text, today, Some((now, now))));
        } else {
            decision.cutover = Some(CutoverOutcome::Kept);
            let times = (id.issued.unwrap_or(0), now);
            decision.set_cookie = Some(settings.set_cookie_with_times(text, today, Some(times)));
        }
        decision
    }

    /// The honoured override version, if the request asks for an allowed one and proves the secret.
    fn override_version(&self, request: &mut impl Request) -> Option<usize> {
        let rule = self.override_.as_ref()?;
        let asked = request.header(&rule.header)?;
        let asked = trim(asked.as_ref());
        let version = rule
            .allow
            .iter()
            .copied()
            .find(|&i| self.versions.get(i).is_some_and(|v| v.name.as_bytes() == asked))?;
        if let Some(secret) = &rule.secret {
            let given = request.header(&secret.header)?;
            if !same_secret(trim(given.as_ref()), &secret.value) {
                return None;
            }
        }
        Some(version)
    }

    /// Decides the version for one request: override, then the client-id cookie when the chain has
    /// one and the client sent it, then the key chain in order, then the no-key rule.
    pub fn decide(&self, request: &mut impl Request) -> Decision {
        if let Some(version) = self.override_version(request) {
            return Decision {
                version,
                source: KeySource::Override,
                bucket: None,
                set_cookie: None,
                cutover: None,
            };
        }
        let phase = self.phase(request);
        let mut decision = self.decide_key(request, phase);
        if decision.cutover.is_none() {
            match phase {
                Some(Phase::Draining { cutover, .. }) => {
                    decision.version = cutover.to;
                    decision.cutover = Some(CutoverOutcome::New);
                }
                Some(Phase::Over { cutover }) => {
                    decision.version = cutover.to;
                    decision.cutover = Some(CutoverOutcome::Done);
                }
                None => {}
            }
        }
        decision
    }

    /// The decision by key and weights, with a cut-over's drain of returning id cookies and the
    /// times on the cookies it issues; [`Route::decide`] puts everyone else on the new version.
    fn decide_key(&self, request: &mut impl Request, phase: Option<Phase<'_>>) -> Decision {
        // A cookie issued while a cut-over drains starts its assignment now (a new user).
        let (drain_now, new_times) = match phase {
            Some(Phase::Draining { now, .. }) => (Some(now), Some((now, now))),
            _ => (None, None),
        };
        let client_id = self.client_id();
        let names = self.cookie_names();
        // The Cookie header, read when first needed and scanned once for every cookie named.
        let mut cookies = CookieHeader::new();
        // The client-id cookie, once a client has it, decides ahead of every other source, so
        // logging in, logging out or a rotated session never moves anyone (docs/assignment.md §3).
        if let Some(settings) = client_id {
            if let Some(value) = cookies.value(&names, &settings.cookie, || request.header("cookie")) {
                let id = ClientId::parse(value);
                let mut decision = self.keyed(KeySource::Cookie, id.key);
                if let Some(Phase::Draining { cutover, now }) = phase {
                    let today = request.today();
                    return self.drain(decision, &id, settings, today, cutover, now);
                }
                if let (Some(today), Some(text)) = (request.today(), id.issued_id()) {
                    if id.needs_refresh(today, settings.refresh_after_days) {
                        decision.set_cookie = Some(settings.set_cookie(text, Some(today)));
                    }
                }
                return decision;
            }
        }
        for spec in &self.key_chain {
            match spec {
                KeySpec::Cookie(name) => {
                    if let Some(value) = cookies.value(&names, name, || request.header("cookie")) {
                        return self.keyed(KeySource::Cookie, value);
                    }
                }
                KeySpec::Header(name) => {
                    if let Some(value) = request.header(name) {
                        let value = trim(value.as_ref());
                        if !value.is_empty() {
                            return self.keyed(KeySource::Header, value);
                        }
                    }
                }
                KeySpec::IdentityHeader(name) => {
                    if let Some(value) = request.header(name) {
                        let value = trim(value.as_ref());
                        if !value.is_empty() {
                            let id = identity_id(&self.salt, value);
                            let mut decision = self.keyed(KeySource::Identity, id.as_bytes());
                            if let Some(settings) = client_id {
                                let today = request.today().or(drain_now.map(day_of));
                                decision.set_cookie = Some(settings.set_cookie_with_times(&id, today, new_times));
                            }
                            return decision;
                        }
                    }
                }
                KeySpec::NewClientId(settings) => {
                    // The cookie itself was looked for above.
                    if let Some(random) = request.random() {
                        let id = hex_id(random);
                        let mut decision = self.keyed(KeySource::NewId, id.as_bytes());
                        let today = request.today().or(drain_now.map(day_of));
                        decision.set_cookie = Some(settings.set_cookie_with_times(&id, today, new_times));
                        return decision;
                    }
                }
                KeySpec::ClientAddress => {
                    if let Some(address) = request.client_address() {
                        let address = address_without_port(&address);
                        if !address.is_empty() {
                            return self.keyed(KeySource::Address, address);
                        }
                    }
                }
            }
        }
        match self.no_key {
            NoKey::Weighted => match request.random() {
                Some(random) => {
                    let b = random_bucket(random);
                    Decision {
                        version: self.version_for_bucket(b),
                        source: KeySource::None,
                        bucket: Some(b),
                        set_cookie: None,
                        cutover: None,
                    }
                }
                None => self.stable(),
            },
            NoKey::Stable => self.stable(),
        }
    }

    fn stable(&self) -> Decision {
        Decision {
            version: 0,
            source: KeySource::None,
            bucket: None,
            set_cookie: None,
            cutover: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_normalisation() {
        let mut buf = [0u8; 256];
        assert_eq!(host_of(b"Example.COM:8080", &mut buf), Some(&b"example.com"[..]));
        assert_eq!(host_of(b"example.com.", &mut buf), Some(&b"example.com"[..]));
        assert_eq!(host_of(b"[::1]:80", &mut buf), Some(&b"[::1]"[..]));
        assert_eq!(host_of(&[b'a'; 300], &mut buf), None);
    }

    #[test]
    fn address_ports_are_dropped() {
        assert_eq!(address_without_port(b"10.0.0.1:5555"), b"10.0.0.1");
        assert_eq!(address_without_port(b"[2001:db8::1]:443"), b"2001:db8::1");
        assert_eq!(address_without_port(b"2001:db8::1"), b"2001:db8::1");
        assert_eq!(address_without_port(b"10.0.0.1"), b"10.0.0.1");
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
    }
}
