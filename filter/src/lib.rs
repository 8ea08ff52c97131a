//! The sticky-canary proxy-wasm HTTP filter: read headers -> policy-core -> write headers and counters.
//!
//! The config (policy-core JSON) is validated once in `on_configure`; an
//! invalid one is logged field by field and refused, so Envoy keeps the last
//! good one. Per request the filter finds the route, lets policy-core decide,
//! replaces the routing header and the routing token (removing any the client sent), strips the
//! override headers, counts the decision, and sends Set-Cookie to new clients (and, once a
//! day at most, to returning ones whose id cookie is due for a refresh).
//! A request on no route is not touched at all: on a gateway shared by many apps, requests for
//! hosts no route owns belong to others (their VirtualServices decide what a header means).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

pub mod glue;
pub mod host;

use std::rc::Rc;

use glue::{Counters, CONFIG_REJECTIONS};
use host::{Headers, Level};
use policy_core::{Policy, Request};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const GIT: &str = match option_env!("STICKY_CANARY_GIT") {
    Some(hash) => hash,
    None => "unknown",
};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // Nothing on our paths panics (clippy denies it); should a dependency, say so plainly.
    // The message is fixed: formatting the panic payload would cost wasm bytes for a path that must not run.
    std::panic::set_hook(Box::new(|_| {
        host::log(Level::Critical, "sticky-canary: panic inside the filter (a bug, please report it)");
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// The validated policy and its counter ids, shared by every request of this plugin.
struct Active {
    policy: Policy,
    counters: Counters,
}

#[derive(Default)]
struct Root {
    active: Option<Rc<Active>>,
    rejections: Option<u32>,
}

impl Context for Root {}

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
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        host::log(
            Level::Info,
            &format!("sticky-canary filter {VERSION} (git {GIT}) starting"),
        );
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        self.on_tick();
        if host::set_tick_period(glue::TICK_MILLISECONDS).is_err() {
            host::log(
                Level::Error,
                "sticky-canary: no clock tick: client-id cookies are not refreshed",
            );
        }
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
        host::log(
            Level::Info,
            &format!(
                "sticky-canary {VERSION} (git {GIT}): configuration accepted, {} route(s)",
                policy.routes().len()
            ),
        );
        self.active = Some(Rc::new(Active { policy, counters }));
        true
    }

    /// The only tick: caches the day for the client-id cookie's stamp, so requests make no clock call.
    fn on_tick(&mut self) {
        if let Ok(nanoseconds) = host::now_nanoseconds() {
            glue::set_clock(nanoseconds);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            active: self.active.clone(),
            served: None,
            set_cookie: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Reads request data through host calls, lazily.
struct Live;

impl Request for Live {
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
        glue::today()
    }
}

struct Stream {
    active: Option<Rc<Active>>,
    /// (route, version) decided for this request, for the optional response header.
    served: Option<(usize, usize)>,
    set_cookie: Option<String>,
}

impl Context for Stream {}

impl Stream {
    fn route_request(&mut self, active: &Active) {
        let policy = &active.policy;
        let authority = host::header(Headers::Request, ":authority")
            .ok()
            .flatten()
            .unwrap_or_default();
        let path = if policy.needs_path() {
            host::header(Headers::Request, ":path")
                .ok()
                .flatten()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let Some((index, route)) = policy
            .find_route_index(&authority, &path)
            .and_then(|i| policy.routes().get(i).map(|r| (i, r)))
        else {
            // Not ours: another app's host (or path). Its own routes guard it; the generated
            // VirtualServices require the routing token, so a client-sent header alone reaches stable.
            return;
        };
        let decision = route.decide(&mut Live);
        let Some(version) = route.versions().get(decision.version) else {
            return;
        };
        if host::replace_header(Headers::Request, route.routing_header(), version.name().as_bytes()).is_err() {
            host::log(Level::Error, "sticky-canary: could not set the routing header");
        }
        if let Some(token) = route.routing_token() {
            if host::replace_header(Headers::Request, &token.header, token.value.as_bytes()).is_err() {
                host::log(Level::Error, "sticky-canary: could not set the routing token header");
            }
        }
        for name in glue::headers_to_strip(route) {
            let _ = host::remove_header(Headers::Request, name);
        }
        if let Some(id) = active.counters.get(index, decision.version, decision.source) {
            host::increment(id);
        }
        self.served = Some((index, decision.version));
        self.set_cookie = decision.set_cookie;
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(active) = self.active.clone() {
            self.route_request(&active);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(cookie) = self.set_cookie.take() {
            let _ = host::add_header(Headers::Response, "set-cookie", cookie.as_bytes());
        }
        if let (Some(active), Some((route, version))) = (&self.active, self.served) {
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
        Action::Continue
    }
}
