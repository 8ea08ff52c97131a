//! The sticky-canary proxy-wasm HTTP filter: read headers -> policy-core -> write headers and counters.
//!
//! The config (policy-core JSON) is validated once in `proxy_on_configure`; an
//! invalid one is logged field by field and refused, so Envoy keeps the last
//! good one. Per request the filter reads the request headers in one host call,
//! finds the route, lets policy-core decide, replaces the routing header and the
//! routing token (removing any the client sent), or, on a route whose weights Flagger or
//! Argo Rollouts set, the position header Envoy's weighted clusters read instead; strips the
//! override headers the request carries, counts the decision in module memory (flushed to the host's
//! counters on a one-second tick), and sends Set-Cookie to new clients (and, once a day at
//! most, to returning ones whose id cookie is due for a refresh). A request on no route is not
//! touched at all: on a gateway shared by many apps, requests for hosts no route owns belong to
//! others (their VirtualServices decide what a header means).
//!
//! [`Callbacks`] is that flow, over a [`Host`]: in wasm the proxy-wasm ABI (`host::abi`, whose
//! exports hand over to it), in the unit tests a fake host that records every call. No SDK: see
//! `host/abi.rs` for why, and docs/benchmarks.md for what it buys. Logging goes through the `log`
//! facade ([`logger`]); at debug level each routed request leaves a one-line decision trace.

// The panic lints, `unsafe_code`, `unsafe_op_in_unsafe_fn` and `undocumented_unsafe_blocks` are
// denied for the whole workspace (root Cargo.toml). `unsafe` lives in `host::abi` alone (the ABI
// layer, `#[allow(unsafe_code)]` there), one `SAFETY:` line per block.

pub mod clock;
pub mod headers;
pub mod host;
pub mod logger;
pub mod metrics;
pub mod random;
#[cfg(not(feature = "no-trace"))]
mod trace;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod lifecycle_tests;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use clock::Clock;
use headers::HeaderPairs;
use host::{Headers, Host, HostResult};
use metrics::{Counters, CONFIG_REJECTIONS};
use policy_core::{Policy, Request, Route};
use random::RandomPool;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const GIT: &str = match option_env!("STICKY_CANARY_GIT") {
    Some(hash) => hash,
    None => "unknown",
};

/// How often `proxy_on_tick` runs: the most the host's counters lag the requests, how stale
/// the day used for the client-id cookie's stamp can be, and how long a change of the host's
/// log level takes to reach the filter.
pub const TICK_MILLISECONDS: u32 = 1000;
/// The property the exposure log goes into: Envoy's filter state `wasm.sticky_canary`.
pub const EXPOSURE_PROPERTY: &str = "sticky_canary";

/// The validated policy and its counters, shared by every request of this plugin.
struct Active {
    policy: Policy,
    counters: Counters,
}

/// One plugin configuration (Envoy's root context).
#[derive(Default)]
struct Root {
    active: Option<Rc<Active>>,
    rejections: Option<u32>,
    ticking: bool,
}

/// What a request left for its response.
struct Stream {
    active: Option<Rc<Active>>,
    /// (route, version) decided for this request, for the optional response header.
    served: Option<(usize, usize)>,
    set_cookie: Option<String>,
}

/// Context ids are small sequential integers: a multiplicative hash spreads them for the map,
/// where std's default SipHash would cost more than the lookup is worth.
#[derive(Default)]
struct ContextIdHasher(u64);

impl Hasher for ContextIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type ContextMap<T> = HashMap<u32, T, BuildHasherDefault<ContextIdHasher>>;

/// Every context of this VM: plugin configurations (roots) and the requests in flight.
struct Contexts {
    roots: ContextMap<Root>,
    streams: ContextMap<Stream>,
}

impl Contexts {
    const fn new() -> Contexts {
        Contexts {
            roots: HashMap::with_hasher(BuildHasherDefault::new()),
            streams: HashMap::with_hasher(BuildHasherDefault::new()),
        }
    }
}

/// The filter's callbacks and the state of one VM (one per Envoy worker), over its host.
pub struct Callbacks<H: Host> {
    host: H,
    contexts: RefCell<Contexts>,
    /// The ids of the counters this VM has defined, by name: each name is defined once per VM,
    /// not again with every configuration. Envoy keeps what a VM defines until the VM goes, and
    /// one VM takes many configurations; re-defining every counter on each push grew the
    /// gateway's memory with each push, by the number of counters (measured by tests/soak.rs).
    counter_ids: RefCell<BTreeMap<String, u32>>,
    random: RandomPool,
    clock: Clock,
}

impl<H: Host> Callbacks<H> {
    /// A VM with no context yet (const: in wasm it is a `thread_local!` with no lazy init).
    pub const fn new(host: H) -> Callbacks<H> {
        Callbacks {
            host,
            contexts: RefCell::new(Contexts::new()),
            counter_ids: RefCell::new(BTreeMap::new()),
            random: RandomPool::new(),
            clock: Clock::new(),
        }
    }

    /// Runs `f` on the contexts; does nothing if they are already borrowed (the host never calls
    /// back into a callback, but a re-entry must not panic, nor touch what the running callback
    /// holds).
    fn with_contexts<T: Default>(&self, f: impl FnOnce(&mut Contexts) -> T) -> T {
        match self.contexts.try_borrow_mut() {
            Ok(mut contexts) => f(&mut contexts),
            Err(_) => {
                log::error!("sticky-canary: a callback arrived while another was running; it was ignored");
                T::default()
            }
        }
    }

    /// `proxy_on_vm_start`: the build an operator can find in the gateway's log.
    pub fn vm_start(&self) -> bool {
        logger::follow_host_level(&self.host);
        log::info!("sticky-canary filter {VERSION} (git {GIT}) starting");
        true
    }

    /// `proxy_on_context_create`: a plugin configuration (root 0) or a request on one; the
    /// request keeps the configuration in force now until it ends.
    pub fn context_create(&self, context_id: u32, root_context_id: u32) {
        self.with_contexts(|contexts| {
            if root_context_id == 0 {
                if let Some(old) = contexts.roots.insert(context_id, Root::default()) {
                    self.retire(old.active);
                }
            } else {
                let active = contexts
                    .roots
                    .get(&root_context_id)
                    .and_then(|root| root.active.clone());
                let stream = Stream {
                    active,
                    served: None,
                    set_cookie: None,
                };
                if let Some(old) = contexts.streams.insert(context_id, stream) {
                    self.release(old.active);
                }
            }
        });
    }

    /// `proxy_on_configure`: validates the new configuration; `false` (refused, logged field by
    /// field, counted) keeps the previous one in force.
    pub fn configure(&self, root_context_id: u32, plugin_configuration_size: usize) -> bool {
        self.with_contexts(|contexts| {
            let root = contexts.roots.entry(root_context_id).or_default();
            self.configure_root(root, plugin_configuration_size)
        })
    }

    /// `proxy_on_tick`, every [`TICK_MILLISECONDS`]. Tick work of other features goes beside
    /// these, each in its own function.
    pub fn tick(&self, root_context_id: u32) {
        logger::follow_host_level(&self.host);
        self.with_contexts(|contexts| {
            if let Some(active) = contexts.roots.get(&root_context_id).and_then(|r| r.active.as_ref()) {
                self.flush(&active.counters);
            }
        });
        self.read_clock();
    }

    /// `proxy_on_request_headers`: route, decide, write the routing headers, strip the override.
    pub fn request_headers(&self, context_id: u32) {
        self.with_contexts(|contexts| {
            if let Some(Stream {
                active: Some(active),
                served,
                set_cookie,
            }) = contexts.streams.get_mut(&context_id)
            {
                let outcome = if cfg!(feature = "calls-only") {
                    self.calls_only()
                } else {
                    self.route_request(active)
                };
                if let Some(outcome) = outcome {
                    *served = outcome.served;
                    *set_cookie = outcome.set_cookie;
                }
            }
        });
    }

    /// `proxy_on_response_headers`: the Set-Cookie and the served-version header, if any.
    pub fn response_headers(&self, context_id: u32) {
        self.with_contexts(|contexts| {
            if let Some(stream) = contexts.streams.get_mut(&context_id) {
                self.respond(stream);
            }
        });
    }

    /// `proxy_on_delete`: a request or a root is gone; its configuration's counts are handed over
    /// when it was the last to hold it.
    pub fn delete(&self, context_id: u32) {
        self.with_contexts(|contexts| {
            if let Some(stream) = contexts.streams.remove(&context_id) {
                self.release(stream.active);
            }
            if let Some(root) = contexts.roots.remove(&context_id) {
                self.retire(root.active);
            }
        });
    }

    /// The id of counter `name`: defined through the host the first time this VM needs it.
    fn counter(&self, name: &str) -> HostResult<u32> {
        if let Some(&id) = self
            .counter_ids
            .try_borrow()
            .ok()
            .as_ref()
            .and_then(|ids| ids.get(name))
        {
            return Ok(id);
        }
        let id = self.host.define_counter(name)?;
        if let Ok(mut ids) = self.counter_ids.try_borrow_mut() {
            ids.insert(name.to_owned(), id);
        }
        Ok(id)
    }

    fn configure_root(&self, root: &mut Root, plugin_configuration_size: usize) -> bool {
        logger::follow_host_level(&self.host);
        self.read_clock();
        if root.rejections.is_none() {
            root.rejections = self.counter(CONFIG_REJECTIONS).ok();
        }
        let bytes = match self.host.plugin_configuration(plugin_configuration_size) {
            Ok(bytes) => bytes,
            Err(e) => {
                return self.reject(
                    root,
                    &format!("sticky-canary: cannot read the plugin configuration (status {})", e.0),
                )
            }
        };
        if bytes.is_empty() {
            return self.reject(
                root,
                "sticky-canary: no configuration given: the plugin needs the JSON policy (docs/config.md)",
            );
        }
        let policy = match Policy::from_json(&bytes) {
            Ok(policy) => policy,
            Err(errors) => {
                for error in &errors.0 {
                    log::error!("sticky-canary: invalid config: {error}");
                }
                return self.reject(
                    root,
                    &format!("sticky-canary: {} error(s) in the configuration", errors.0.len()),
                );
            }
        };
        let counters = match Counters::define(&policy, |name| self.counter(name)) {
            Ok(counters) => counters,
            Err(e) => return self.reject(root, &format!("sticky-canary: cannot define counters (status {})", e.0)),
        };
        if !root.ticking {
            // Without a tick the counts would reach the host only when a configuration is replaced.
            if self.host.set_tick_period(TICK_MILLISECONDS).is_err() {
                return self.reject(
                    root,
                    "sticky-canary: the host refused a tick period; counters could not be flushed",
                );
            }
            root.ticking = true;
        }
        log::info!(
            "sticky-canary {VERSION} (git {GIT}): configuration accepted, {} route(s)",
            policy.routes().len()
        );
        let previous = root.active.replace(Rc::new(Active { policy, counters }));
        self.retire(previous);
        true
    }

    fn reject(&self, root: &Root, reason: &str) -> bool {
        log::error!("{reason}");
        log::error!("sticky-canary: configuration refused; the previous configuration (if any) stays in force");
        if let Some(id) = root.rejections {
            self.host.increment_counter(id, 1);
        }
        false
    }

    /// A configuration its root no longer serves (replaced, or the root deleted): its counts
    /// go to the host now, since the tick flushes only the current one; requests still in
    /// flight on it hand over theirs as the last one ends ([`Callbacks::release`]).
    fn retire(&self, active: Option<Rc<Active>>) {
        if let Some(active) = &active {
            self.flush(&active.counters);
        }
        self.release(active);
    }

    /// Drops one reference to a configuration; the last one hands its counts over.
    fn release(&self, active: Option<Rc<Active>>) {
        if let Some(last) = active.and_then(Rc::into_inner) {
            self.flush(&last.counters);
        }
    }

    /// Caches today's day number for the client-id cookie's stamp, so requests make no clock call.
    fn read_clock(&self) {
        if let Ok(nanoseconds) = self.host.now_nanoseconds() {
            self.clock.set(nanoseconds);
        }
    }

    /// Hands the counts made since the last flush to the host's counters.
    fn flush(&self, counters: &Counters) {
        counters.flush(|id, count| self.host.increment_counter(id, count));
    }

    /// Counts one decision: in module memory (flushed on the tick), or, in the
    /// `metric-per-request` build kept for the benchmark's ablation, one host call per request.
    fn count(&self, active: &Active, route: usize, version: usize, source: policy_core::KeySource) {
        if cfg!(feature = "metric-per-request") {
            if let Some(id) = active.counters.get(route, version, source) {
                self.host.increment_counter(id, 1);
            }
        } else {
            active.counters.count(route, version, source);
        }
    }

    fn live(&self) -> Live<'_, H> {
        Live {
            host: &self.host,
            random: &self.random,
            today: self.clock.today(),
            now: self.clock.now(),
        }
    }

    fn route_request(&self, active: &Active) -> Option<Outcome> {
        let host = &self.host;
        let policy = &active.policy;
        let bytes = if cfg!(feature = "single-reads") {
            Vec::new()
        } else {
            host.header_pairs(Headers::Request).unwrap_or_default()
        };
        let source = match HeaderPairs::parse(&bytes) {
            Some(pairs) if !bytes.is_empty() => Source::Pairs(pairs),
            _ => Source::OneByOne,
        };
        let authority = source.value(":authority", self.live());
        let path = if policy.needs_path() {
            source.value(":path", self.live())
        } else {
            Cow::Borrowed(&[][..])
        };
        let Some((index, route)) = policy
            .find_route_index(&authority, &path)
            .and_then(|i| policy.routes().get(i).map(|r| (i, r)))
        else {
            // Not ours: another app's host (or path). Its own routes guard it; the generated
            // VirtualServices require the routing token, so a client-sent header alone reaches stable.
            return None;
        };
        let decision = source.decide(route, self.live());
        let version = route.versions().get(decision.version)?;
        let position = route.position_header().map(|header| {
            // Flagger or Argo Rollouts own the weights: Envoy's weighted clusters pick the version
            // from the position (docs/assignment.md §5); which one it is, only Envoy knows.
            let position = route.position(&decision);
            let mut digits = [0u8; 2];
            let text = headers::two_digits(position, &mut digits);
            if host.replace_header(Headers::Request, header, text).is_err() {
                log::error!("sticky-canary: could not set the position header");
            }
            // Nothing routes on the routing header here, but a client's copy must not reach the app
            // (or steer a service that does route on it).
            if source.may_contain(route.routing_header()) {
                let _ = host.remove_header(Headers::Request, route.routing_header());
            }
            position
        });
        if position.is_none() {
            // The version's name, or `NAME;TOKEN` when the routing token travels in this header.
            let value = version.routing_value().as_bytes();
            if host
                .replace_header(Headers::Request, route.routing_header(), value)
                .is_err()
            {
                log::error!("sticky-canary: could not set the routing header");
            }
            if let Some(token) = route.separate_routing_token() {
                if host
                    .replace_header(Headers::Request, &token.header, token.value.as_bytes())
                    .is_err()
                {
                    log::error!("sticky-canary: could not set the routing token header");
                }
            }
        }
        for name in headers::headers_to_strip(route) {
            if source.may_contain(name) {
                let _ = host.remove_header(Headers::Request, name);
            }
        }
        self.count(active, index, decision.version, decision.source);
        if let Some(outcome) = decision.cutover {
            active.counters.count_cutover(index, outcome);
        }
        if policy.exposure_log() {
            self.expose(route, version.name(), &decision, position);
        }
        #[cfg(not(feature = "no-trace"))]
        log::debug!(
            "{}",
            trace::Decided {
                route,
                decision: &decision,
                position,
                override_asked: route
                    .override_rule()
                    .and_then(|rule| source.carries(&rule.header))
                    .unwrap_or(false),
            }
        );
        Some(Outcome {
            served: position.is_none().then_some((index, decision.version)),
            set_cookie: decision.set_cookie,
        })
    }

    /// The exposure log: `route=R version=V source=S bucket=B` (`position=P` instead of the version
    /// when a tool owns the weights; ` cutover=new|kept|moved|done` added while a cut-over is in
    /// force) in the request's filter state `wasm.sticky_canary`, for the access log. No
    /// credential: no key, cookie or header value.
    fn expose(&self, route: &Route, version: &str, decision: &policy_core::Decision, position: Option<u8>) {
        let mut value = String::with_capacity(80);
        value.push_str("route=");
        value.push_str(route.name());
        match position {
            Some(p) => {
                value.push_str(" position=");
                let mut digits = [0u8; 2];
                value.push_str(std::str::from_utf8(headers::two_digits(p, &mut digits)).unwrap_or("?"));
            }
            None => {
                value.push_str(" version=");
                value.push_str(version);
            }
        }
        value.push_str(" source=");
        value.push_str(decision.source.as_str());
        value.push_str(" bucket=");
        match decision.bucket {
            Some(b) => value.push_str(&b.to_string()),
            None => value.push_str("none"),
        }
        if let Some(outcome) = decision.cutover {
            value.push_str(" cutover=");
            value.push_str(outcome.as_str());
        }
        if self.host.set_property(&[EXPOSURE_PROPERTY], value.as_bytes()).is_err() {
            log::warn!("sticky-canary: the host refused the exposure log property");
        }
    }

    /// The `calls-only` build, the benchmark's floor: the host calls a request of the shipped build
    /// makes (one read of the request headers, one write of the routing header, and for a request
    /// without a Cookie header a Set-Cookie on the response), none of the work between them.
    fn calls_only(&self) -> Option<Outcome> {
        let bytes = self.host.header_pairs(Headers::Request).unwrap_or_default();
        let new_client = !HeaderPairs::parse(&bytes).is_some_and(|pairs| pairs.contains("cookie"));
        let _ = self.host.replace_header(Headers::Request, "x-canary-version", b"v1");
        Some(Outcome {
            served: None,
            set_cookie: new_client.then(|| {
                String::from(
                    "sticky-canary-id=00000000000000000000000000000000; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax",
                )
            }),
        })
    }

    fn respond(&self, stream: &mut Stream) {
        if let Some(cookie) = stream.set_cookie.take() {
            let _ = self.host.add_header(Headers::Response, "set-cookie", cookie.as_bytes());
        }
        if let (Some(active), Some((route, version))) = (&stream.active, stream.served) {
            if let Some(name) = active.policy.response_header() {
                let served = active
                    .policy
                    .routes()
                    .get(route)
                    .and_then(|r| r.versions().get(version))
                    .map(|v| v.name());
                if let Some(served) = served {
                    let _ = self.host.replace_header(Headers::Response, name, served.as_bytes());
                }
            }
        }
    }
}

/// Request data as policy-core asks for it, one host call per header: the fallback when the
/// one-call read fails, and the whole path in the `single-reads` build kept for the
/// benchmark's ablation.
struct Live<'a, H> {
    host: &'a H,
    random: &'a RandomPool,
    today: Option<u32>,
    now: Option<u64>,
}

impl<H: Host> Request for Live<'_, H> {
    type Header = Vec<u8>;
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.host.header(Headers::Request, name).ok().flatten()
    }

    fn client_address(&mut self) -> Option<Vec<u8>> {
        self.host.property(&["source", "address"]).ok().flatten()
    }

    fn random(&mut self) -> Option<[u8; 16]> {
        self.random.random16(self.host)
    }

    fn today(&mut self) -> Option<u32> {
        self.today
    }

    fn now(&mut self) -> Option<u64> {
        self.now
    }
}

/// The request headers as one read returned them; the rest as [`Live`] asks for it.
struct Read<'a, H> {
    pairs: HeaderPairs<'a>,
    live: Live<'a, H>,
}

impl<'a, H: Host> Request for Read<'a, H> {
    type Header = &'a [u8];
    fn header(&mut self, name: &str) -> Option<&'a [u8]> {
        self.pairs.get(name)
    }

    fn client_address(&mut self) -> Option<Vec<u8>> {
        self.live.client_address()
    }

    fn random(&mut self) -> Option<[u8; 16]> {
        self.live.random()
    }

    fn today(&mut self) -> Option<u32> {
        self.live.today()
    }

    fn now(&mut self) -> Option<u64> {
        self.live.now()
    }
}

/// The request's headers, read in one call, or `OneByOne` to fall back to reading them one by one.
enum Source<'a> {
    Pairs(HeaderPairs<'a>),
    OneByOne,
}

impl<'a> Source<'a> {
    fn value<H: Host>(&self, name: &str, mut live: Live<'_, H>) -> Cow<'a, [u8]> {
        match self {
            Source::Pairs(pairs) => Cow::Borrowed(pairs.get(name).unwrap_or_default()),
            Source::OneByOne => Cow::Owned(live.header(name).unwrap_or_default()),
        }
    }

    /// Whether the request may carry `name`: known from one read; assumed without it.
    fn may_contain(&self, name: &str) -> bool {
        self.carries(name).unwrap_or(true)
    }

    /// Whether the request carries `name`, when known without a host call.
    fn carries(&self, name: &str) -> Option<bool> {
        match self {
            Source::Pairs(pairs) => Some(pairs.contains(name)),
            Source::OneByOne => None,
        }
    }

    fn decide<H: Host>(&self, route: &policy_core::Route, mut live: Live<'_, H>) -> policy_core::Decision {
        match self {
            Source::Pairs(pairs) => route.decide(&mut Read { pairs: *pairs, live }),
            Source::OneByOne => route.decide(&mut live),
        }
    }
}

struct Outcome {
    /// (route, version), unless a tool's weighted clusters pick the version.
    served: Option<(usize, usize)>,
    set_cookie: Option<String>,
}
