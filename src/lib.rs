//! The sticky-canary CLI as a library: the embedded filter and the subcommands,
//! so integration tests and the demo reuse the same code.

#![forbid(unsafe_code)]

pub mod assign;
pub mod check;
pub mod explain;
// The demo and its local Envoy, app servers and client: Linux only (the pinned Envoy is a PyPI
// Linux build; the runner uses Unix process groups and util-linux's setpriv).
#[cfg(target_os = "linux")]
pub mod demo;
pub mod files;
#[cfg(target_os = "linux")]
pub mod local;
pub mod oci;
pub mod render;
pub mod revisions;

/// The gateway filter, built by build.rs for wasm32-wasip1 and embedded at compile time.
pub static FILTER_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sticky_canary_filter.wasm"));

/// Size of the filter before `wasm-opt`, for reporting.
pub const FILTER_WASM_RAW_SIZE: &str = env!("STICKY_CANARY_WASM_RAW_SIZE");
/// Whether the embedded filter went through `wasm-opt -Oz`.
pub const FILTER_WASM_OPTIMISED: &str = env!("STICKY_CANARY_WASM_OPTIMISED");
/// The git commit this build came from.
pub const GIT_HASH: &str = env!("STICKY_CANARY_GIT");

/// Lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
