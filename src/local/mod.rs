//! What `sticky-canary demo` and `install-envoy` run on this machine: a real Envoy (installed
//! into the per-user cache on first use), the app's versions as small HTTP servers, and an
//! HTTP/1.1 client with a cookie jar, all on loopback. The test harness
//! (`tests/harness`, not shipped) builds on these and adds Istio's own code, a registry and load.
//!
//! ```no_run
//! use sticky_canary::local::{Backend, Client, Envoy, EnvoyConfig, Request};
//!
//! # fn main() -> Result<(), sticky_canary::local::LocalError> {
//! let v1 = Backend::start("v1")?;
//! let v2 = Backend::start("v2")?;
//! let config = EnvoyConfig::by_header("x-canary-version", &[&v1, &v2]);
//! let envoy = Envoy::start(&config)?;
//! let mut client = Client::connect(envoy.listener())?;
//! let reply = client.send(&Request::get("/").header("x-canary-version", "v2"))?;
//! assert_eq!(reply.header("x-served-version"), Some(&b"v2"[..]));
//! # Ok(()) }
//! ```
//!
//! Everything binds loopback port 0 (the kernel picks a free port), and every
//! process, thread and temporary directory is stopped or removed on `Drop`,
//! also when a test fails half-way.

pub mod backend;
pub mod bootstrap;
pub mod client;
pub mod envoy;
pub mod envoy_binary;
mod error;
mod scratch;

pub use backend::Backend;
pub use bootstrap::{EnvoyConfig, FailurePolicy, FilterSpec, HeaderRoute, RouteTable, WasmCode, STATS_TAGS};
pub use client::{Client, CookieJar, Request, Response, SetCookie};
pub use envoy::{stat_value, Envoy, UpdateOutcome};
pub use envoy_binary::{envoy_release, find_envoy, find_or_install_envoy, PINNED_ENVOY};
pub use error::{io_error, LocalError};
pub use scratch::{free_port, temp_dir, two_free_ports, TempDir};
