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
//! The host reaches this file through the exports in [`host`]; `Callbacks` below is what they
//! call. No SDK: see `host.rs` for why, and docs/benchmarks.md for what it buys.

// In wasm the module has no `std`: its panic and I/O machinery and wasi-libc's allocator were a
// sixth of the module (docs/benchmarks.md, module size); `heap` is the allocator and the panic
// handler is below. Natively (unit tests) it is an ordinary crate.
#![cfg_attr(target_arch = "wasm32", no_std)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

extern crate alloc;

pub mod clock;
pub mod headers;
pub mod heap;
pub mod host;
pub mod metrics;

use alloc::borrow::Cow;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::hash::{BuildHasherDefault, Hasher};

use hashbrown::HashMap;

use headers::HeaderPairs;
use host::{Headers, Level};
use metrics::{Counters, CONFIG_REJECTIONS};
use policy_core::{Policy, Request};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const GIT: &str = match option_env!("STICKY_CANARY_GIT") {
    Some(hash) => hash,
    None => "unknown",
};

/// How often `proxy_on_tick` runs: the most the host's counters lag the requests, and how
/// stale the day used for the client-id cookie's stamp can be.
pub const TICK_MILLISECONDS: u32 = 1000;

/// Nothing on our paths panics (clippy denies it); should a dependency, say so plainly, then
/// trap: the host fails the VM and its `failure_policy` decides what requests see. The message is
/// fixed: formatting the panic payload would cost wasm bytes for a path that must not run.
#[cfg(all(target_arch = "wasm32", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    host::log(
        Level::Critical,
        "sticky-canary: panic inside the filter (a bug, please report it)",
    );
    core::arch::wasm32::unreachable()
}

/// `memcmp`, which comparing and ordering byte slices compiles to: without `std` nothing links
/// wasi-libc's, and the host does not provide one. Eight bytes at a time while they are equal
/// (host names and header names are compared this way on every request), then byte by byte
/// with volatile reads, so that the loop cannot be turned back into a call to itself.
///
/// # Safety
/// `a` and `b` must each be readable for `n` bytes.
#[cfg(all(target_arch = "wasm32", not(test)))]
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while n - i >= 8 {
        // SAFETY: `i + 8 <= n`, within both ranges; unaligned reads are allowed.
        let (x, y) = unsafe {
            (
                a.add(i).cast::<u64>().read_unaligned(),
                b.add(i).cast::<u64>().read_unaligned(),
            )
        };
        if x != y {
            break;
        }
        i += 8;
    }
    while i < n {
        // SAFETY: `i < n`.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// State of the whole module: one per VM, that is per Envoy worker. wasm32 runs one thread, so
/// a plain static (`with` as `thread_local!` has it); natively (tests) a thread-local.
#[cfg(target_arch = "wasm32")]
pub(crate) struct ModuleState<T>(pub(crate) T);

// SAFETY: wasm32 modules here run on one thread (Envoy gives each worker its own VM).
#[cfg(target_arch = "wasm32")]
unsafe impl<T> Sync for ModuleState<T> {}

#[cfg(target_arch = "wasm32")]
impl<T> ModuleState<T> {
    pub(crate) fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.0)
    }
}

/// Declares module state: a [`ModuleState`] static in wasm, a `thread_local!` natively.
macro_rules! module_state {
    ($vis:vis static $name:ident: $t:ty = $init:expr;) => {
        #[cfg(target_arch = "wasm32")]
        $vis static $name: $crate::ModuleState<$t> = $crate::ModuleState($init);
        #[cfg(not(target_arch = "wasm32"))]
        std::thread_local! { $vis static $name: $t = const { $init }; }
    };
}
pub(crate) use module_state;

/// `proxy_on_vm_start`: the build an operator can find in the gateway's log.
pub fn on_vm_start() -> bool {
    host::log(
        Level::Info,
        &format!("sticky-canary filter {VERSION} (git {GIT}) starting"),
    );
    true
}

/// The validated policy and its counters, shared by every request of this plugin.
struct Active {
    policy: Policy,
    counters: Counters,
}

impl Drop for Active {
    /// The last stream of a replaced configuration hands its counts over as it goes.
    fn drop(&mut self) {
        flush(&self.counters);
    }
}

/// One plugin configuration (Envoy's root context).
#[derive(Default)]
struct Root {
    active: Option<Rc<Active>>,
    rejections: Option<u32>,
    ticking: bool,
}

impl Root {
    fn reject(&self, reason: &str) -> bool {
        host::log(Level::Error, reason);
        host::log(
            Level::Error,
            "sticky-canary: configuration refused; the previous configuration (if any) stays in force",
        );
        if let Some(id) = self.rejections {
            host::increment(id);
        }
        false
    }

    fn configure(&mut self, plugin_configuration_size: usize) -> bool {
        read_clock();
        if self.rejections.is_none() {
            self.rejections = host::define_counter(CONFIG_REJECTIONS).ok();
        }
        let bytes = match host::plugin_configuration(plugin_configuration_size) {
            Ok(bytes) => bytes,
            Err(e) => {
                return self.reject(&format!(
                    "sticky-canary: cannot read the plugin configuration (status {})",
                    e.0
                ))
            }
        };
        if bytes.is_empty() {
            return self
                .reject("sticky-canary: no configuration given: the plugin needs the JSON policy (docs/config.md)");
        }
        let policy = match Policy::from_json(&bytes) {
            Ok(policy) => policy,
            Err(errors) => {
                for error in &errors.0 {
                    host::log(Level::Error, &format!("sticky-canary: invalid config: {error}"));
                }
                return self.reject(&format!(
                    "sticky-canary: {} error(s) in the configuration",
                    errors.0.len()
                ));
            }
        };
        let counters = match Counters::define(&policy, host::define_counter) {
            Ok(counters) => counters,
            Err(e) => return self.reject(&format!("sticky-canary: cannot define counters (status {})", e.0)),
        };
        if !self.ticking {
            // Without a tick the counts would reach the host only when a configuration is replaced.
            if host::set_tick_period(TICK_MILLISECONDS).is_err() {
                return self.reject("sticky-canary: the host refused a tick period; counters could not be flushed");
            }
            self.ticking = true;
        }
        host::log(
            Level::Info,
            &format!(
                "sticky-canary {VERSION} (git {GIT}): configuration accepted, {} route(s)",
                policy.routes().len()
            ),
        );
        // The previous configuration flushes its counts when its last request is done (Drop).
        self.active = Some(Rc::new(Active { policy, counters }));
        true
    }

    /// `proxy_on_tick`, every [`TICK_MILLISECONDS`]. Tick work of other features goes beside
    /// the flush, each in its own function.
    fn on_tick(&mut self) {
        self.flush_counters();
        read_clock();
    }

    /// Hands this configuration's counts to the host: the most Envoy's counters lag is one tick.
    fn flush_counters(&self) {
        if let Some(active) = &self.active {
            flush(&active.counters);
        }
    }
}

/// Caches today's day number for the client-id cookie's stamp, so requests make no clock call.
fn read_clock() {
    if let Ok(nanoseconds) = host::now_nanoseconds() {
        clock::set_clock(nanoseconds);
    }
}

/// Hands the counts made since the last flush to the host's counters.
fn flush(counters: &Counters) {
    counters.flush(host::increment_by);
}

/// Counts one decision: in module memory (flushed on the tick), or, in the `metric-per-request`
/// build kept for the benchmark's ablation, one host call per request as before.
fn count(active: &Active, route: usize, version: usize, source: policy_core::KeySource) {
    if cfg!(feature = "metric-per-request") {
        if let Some(id) = active.counters.get(route, version, source) {
            host::increment(id);
        }
    } else {
        active.counters.count(route, version, source);
    }
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
#[derive(Default)]
struct Contexts {
    roots: ContextMap<Root>,
    streams: ContextMap<Stream>,
}

module_state! {
    static CONTEXTS: RefCell<Option<Contexts>> = RefCell::new(None);
}

/// Runs `f` on the contexts; does nothing if they are already borrowed (the host never calls
/// back into a callback, but a re-entry must not panic).
fn with_contexts<T: Default>(f: impl FnOnce(&mut Contexts) -> T) -> T {
    CONTEXTS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut contexts) => f(contexts.get_or_insert_with(Contexts::default)),
        Err(_) => T::default(),
    })
}

/// The callbacks the exports in [`host`] hand over to.
pub struct Callbacks;

impl Callbacks {
    pub fn context_create(context_id: u32, root_context_id: u32) {
        with_contexts(|contexts| {
            if root_context_id == 0 {
                contexts.roots.insert(context_id, Root::default());
            } else {
                let active = contexts
                    .roots
                    .get(&root_context_id)
                    .and_then(|root| root.active.clone());
                contexts.streams.insert(
                    context_id,
                    Stream {
                        active,
                        served: None,
                        set_cookie: None,
                    },
                );
            }
        });
    }

    pub fn configure(root_context_id: u32, plugin_configuration_size: usize) -> bool {
        with_contexts(|contexts| {
            contexts
                .roots
                .entry(root_context_id)
                .or_default()
                .configure(plugin_configuration_size)
        })
    }

    pub fn tick(root_context_id: u32) {
        with_contexts(|contexts| {
            if let Some(root) = contexts.roots.get_mut(&root_context_id) {
                root.on_tick();
            }
        });
    }

    pub fn request_headers(context_id: u32) {
        with_contexts(|contexts| {
            if let Some(Stream {
                active: Some(active),
                served,
                set_cookie,
            }) = contexts.streams.get_mut(&context_id)
            {
                let outcome = if cfg!(feature = "calls-only") {
                    calls_only()
                } else {
                    route_request(active)
                };
                if let Some(outcome) = outcome {
                    *served = outcome.served;
                    *set_cookie = outcome.set_cookie;
                }
            }
        });
    }

    pub fn response_headers(context_id: u32) {
        with_contexts(|contexts| {
            if let Some(stream) = contexts.streams.get_mut(&context_id) {
                respond(stream);
            }
        });
    }

    pub fn delete(context_id: u32) {
        // Dropping a root's last reference to its configuration flushes its counts (Active's Drop).
        let _gone = with_contexts(|contexts| {
            let stream = contexts.streams.remove(&context_id).and_then(|s| s.active);
            let root = contexts.roots.remove(&context_id).and_then(|r| r.active);
            (stream, root)
        });
    }
}

/// Reads request data through one host call per question: the fallback when the one-call read
/// fails, and the whole path in the `single-reads` build kept for the benchmark's ablation.
struct Live;

impl Request for Live {
    type Header = Vec<u8>;
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        host::header(Headers::Request, name).ok().flatten()
    }

    fn client_address(&mut self) -> Option<Vec<u8>> {
        host::property(&["source", "address"]).ok().flatten()
    }

    fn random(&mut self) -> Option<[u8; 16]> {
        host::random16()
    }

    fn today(&mut self) -> Option<u32> {
        clock::today()
    }
}

/// The request headers as one read returned them.
struct Read<'a>(HeaderPairs<'a>);

impl<'a> Request for Read<'a> {
    type Header = &'a [u8];
    fn header(&mut self, name: &str) -> Option<&'a [u8]> {
        self.0.get(name)
    }

    fn client_address(&mut self) -> Option<Vec<u8>> {
        Live.client_address()
    }

    fn random(&mut self) -> Option<[u8; 16]> {
        host::random16()
    }

    fn today(&mut self) -> Option<u32> {
        clock::today()
    }
}

/// The request's headers, read in one call, or `None` to fall back to reading them one by one.
enum Source<'a> {
    Pairs(HeaderPairs<'a>),
    OneByOne,
}

impl<'a> Source<'a> {
    fn value(&self, name: &str) -> Cow<'a, [u8]> {
        match self {
            Source::Pairs(pairs) => Cow::Borrowed(pairs.get(name).unwrap_or_default()),
            Source::OneByOne => Cow::Owned(Live.header(name).unwrap_or_default()),
        }
    }

    /// Whether the request may carry `name`: known from one read; assumed without it.
    fn may_contain(&self, name: &str) -> bool {
        match self {
            Source::Pairs(pairs) => pairs.contains(name),
            Source::OneByOne => true,
        }
    }

    fn decide(&self, route: &policy_core::Route) -> policy_core::Decision {
        match self {
            Source::Pairs(pairs) => route.decide(&mut Read(*pairs)),
            Source::OneByOne => route.decide(&mut Live),
        }
    }
}

struct Outcome {
    /// (route, version), unless a tool's weighted clusters pick the version.
    served: Option<(usize, usize)>,
    set_cookie: Option<String>,
}

fn route_request(active: &Active) -> Option<Outcome> {
    let policy = &active.policy;
    let bytes = if cfg!(feature = "single-reads") {
        Vec::new()
    } else {
        host::header_pairs(Headers::Request).unwrap_or_default()
    };
    let source = match HeaderPairs::parse(&bytes) {
        Some(pairs) if !bytes.is_empty() => Source::Pairs(pairs),
        _ => Source::OneByOne,
    };
    let authority = source.value(":authority");
    let path = if policy.needs_path() {
        source.value(":path")
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
    let decision = source.decide(route);
    let version = route.versions().get(decision.version)?;
    let served = if let Some(header) = route.position_header() {
        // Flagger or Argo Rollouts own the weights: Envoy's weighted clusters pick the version
        // from the position (docs/assignment.md §5); which one it is, only Envoy knows.
        let position = route.position(&decision);
        let mut digits = [0u8; 2];
        let text = headers::two_digits(position, &mut digits);
        if host::replace_header(Headers::Request, header, text).is_err() {
            host::log(Level::Error, "sticky-canary: could not set the position header");
        }
        // Nothing routes on the routing header here, but a client's copy must not reach the app
        // (or steer a service that does route on it).
        if source.may_contain(route.routing_header()) {
            let _ = host::remove_header(Headers::Request, route.routing_header());
        }
        None
    } else {
        // The version's name, or `NAME;TOKEN` when the routing token travels in this header.
        if host::replace_header(
            Headers::Request,
            route.routing_header(),
            version.routing_value().as_bytes(),
        )
        .is_err()
        {
            host::log(Level::Error, "sticky-canary: could not set the routing header");
        }
        if let Some(token) = route.separate_routing_token() {
            if host::replace_header(Headers::Request, &token.header, token.value.as_bytes()).is_err() {
                host::log(Level::Error, "sticky-canary: could not set the routing token header");
            }
        }
        Some((index, decision.version))
    };
    for name in headers::headers_to_strip(route) {
        if source.may_contain(name) {
            let _ = host::remove_header(Headers::Request, name);
        }
    }
    count(active, index, decision.version, decision.source);
    Some(Outcome {
        served,
        set_cookie: decision.set_cookie,
    })
}

/// The `calls-only` build, the benchmark's floor: the host calls a request of the shipped build
/// makes (one read of the request headers, one write of the routing header, and for a request
/// without a Cookie header a Set-Cookie on the response), none of the work between them.
fn calls_only() -> Option<Outcome> {
    let bytes = host::header_pairs(Headers::Request).unwrap_or_default();
    let new_client = !HeaderPairs::parse(&bytes).is_some_and(|pairs| pairs.contains("cookie"));
    let _ = host::replace_header(Headers::Request, "x-canary-version", b"v1");
    Some(Outcome {
        served: None,
        set_cookie: new_client.then(|| {
            String::from(
                "sticky-canary-id=00000000000000000000000000000000; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax",
            )
        }),
    })
}

fn respond(stream: &mut Stream) {
    if let Some(cookie) = stream.set_cookie.take() {
        let _ = host::add_header(Headers::Response, "set-cookie", cookie.as_bytes());
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
                let _ = host::replace_header(Headers::Response, name, served.as_bytes());
            }
        }
    }
}
