//! Sticky canary assignment: which version serves a request, the same on every gateway replica.
//!
//! Pure: no host calls and no I/O, so the same code runs natively (CLI, tests,
//! benchmarks) and inside the proxy-wasm filter. Config JSON becomes a
//! validated [`Policy`]; per request, [`Policy::find_route`] picks the route and
//! [`Route::decide`] the version. The algorithm is specified in
//! docs/assignment.md, the config in docs/config.md.

// Pure is checked, not promised: policy-core/clippy.toml disallows the std APIs that reach
// the file system, network, processes, environment, threads, clocks and stdio, and clippy runs
// with -D warnings.
#![forbid(unsafe_code)]

mod bucket;
mod client_id;
mod config;
pub mod cookie;
mod decide;
pub mod json;
mod names;
mod percent;

pub use bucket::bucket;
pub use client_id::{day_of, hex_id, identity_id, ClientId, SECONDS_PER_DAY};
pub use config::{
    token_routing_value, ConfigError, ConfigErrors, Cutover, KeySpec, NewClientId, NoKey, Override, OverrideSecret,
    Policy, Route, RoutingToken, SameSite, Version, DEFAULT_ROUTING_HEADER, DEFAULT_TOKEN_HEADER,
    MAX_COOKIE_AGE_SECONDS, TOKEN_SEPARATOR, TOTAL_BASIS_POINTS,
};
pub use decide::{CutoverOutcome, Decision, KeySource, Request};
pub use names::{is_dns_name, is_label, is_token};
pub use percent::{format_percent, parse_percent, PercentError};
pub use policy_sha256::sha256;
