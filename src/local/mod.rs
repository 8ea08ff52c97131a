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

use std::fmt;
use std::path::Path;

pub use backend::Backend;
pub use bootstrap::{EnvoyConfig, FailurePolicy, FilterSpec, HeaderRoute, RouteTable, WasmCode, STATS_TAGS};
pub use client::{Client, CookieJar, Request, Response, SetCookie};
pub use envoy::{Envoy, UpdateOutcome};
pub use envoy_binary::{envoy_release, find_envoy, find_or_install_envoy, PINNED_ENVOY};

/// What went wrong while setting up or talking to Envoy and the backends.
#[derive(Debug)]
pub enum LocalError {
    /// No Envoy binary, and installing one failed: says how to install it by hand.
    EnvoyMissing(String),
    /// Envoy exited or never became ready; carries the end of its log.
    EnvoyStart { reason: String, log_tail: String },
    /// A file or socket operation failed; `what` says which.
    Io { what: String, source: std::io::Error },
    /// A peer (Envoy or a backend) sent something that is not valid HTTP/1.1.
    Protocol(String),
    /// Waited too long for something (readiness, a config update, a response).
    Timeout(String),
    /// A helper program (the Istio tool, the registry) is missing or failed; says which and why.
    Tool(String),
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalError::EnvoyMissing(how) => write!(f, "Envoy not found: {how}"),
            LocalError::EnvoyStart { reason, log_tail } => {
                write!(
                    f,
                    "Envoy did not start: {reason}\n--- Envoy log (last lines) ---\n{log_tail}"
                )
            }
            LocalError::Io { what, source } => write!(f, "{what}: {source}"),
            LocalError::Protocol(message) => write!(f, "HTTP protocol error: {message}"),
            LocalError::Timeout(message) => write!(f, "timed out: {message}"),
            LocalError::Tool(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for LocalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LocalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Wraps an I/O error with what was being done.
pub fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalError {
    let what = what.into();
    move |source| LocalError::Io { what, source }
}

/// A loopback port that was free a moment ago (bound to port 0, then released).
///
/// Envoy binds its own sockets, so its ports are picked this way; a collision
/// in the short gap is possible but shows up as a clear start error.
pub fn free_port() -> Result<u16, LocalError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_error("bind 127.0.0.1:0"))?;
    let port = listener.local_addr().map_err(io_error("read a bound port"))?.port();
    Ok(port)
}

/// Two distinct free loopback ports (a listener and an admin port for one Envoy).
pub fn two_free_ports() -> Result<(u16, u16), LocalError> {
    let first = free_port()?;
    let mut second = free_port()?;
    while second == first {
        second = free_port()?;
    }
    Ok((first, second))
}

pub use tempfile::TempDir;

/// A new directory `$TMPDIR/sticky-canary-<purpose>-XXXXXX`, removed with its contents when the
/// [`TempDir`] is dropped (`TempDir::keep` keeps it, for looking at a failed run).
pub fn temp_dir(purpose: &str) -> Result<TempDir, LocalError> {
    tempfile::Builder::new()
        .prefix(&format!("sticky-canary-{purpose}-"))
        .tempdir()
        .map_err(io_error(format!("create a temp dir for {purpose}")))
}

/// [`crate::files::write_atomically`], with the harness's error.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), LocalError> {
    crate::files::write_atomically(path, contents).map_err(io_error(format!("write {}", path.display())))
}
