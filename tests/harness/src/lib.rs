//! The test harness: what the system suites (`make test`; `tests/*.rs` behind the
//! `system-tests` feature) need beyond what the CLI's demo runs.
//!
//! - [`istio`]: Istio's own translation and module fetch (`tools/istio-xds`, Go) between the
//!   rendered manifests and a real Envoy, per AKS revision;
//! - [`registry`]: a local OCI registry (Debian's `docker-registry`);
//! - [`load`]: steady request load from several connections;
//! - [`prometheus`]: a real Prometheus scraping the gateways;
//! - [`pods`]: what answers at the pod addresses KWOK hands out, as each pod's version;
//! - [`controllers`]: Flagger and Argo Rollouts as processes, built from the Go module proxy.
//!
//! The Envoy runner, the app backends and the HTTP client are the CLI's own
//! ([`sticky_canary::local`], which the demo uses) and are re-exported here, so a suite imports
//! everything from this crate. This crate is `publish = false` and a dev-dependency only:
//! nothing in it reaches the installed CLI.

pub mod cluster;
pub mod controllers;
pub mod istio;
pub mod load;
pub mod pods;
pub mod prometheus;
pub mod registry;

pub use registry::Registry;
/// The harness's error: the local runner's, which also names missing tools.
pub use sticky_canary::local::LocalError as HarnessError;
pub use sticky_canary::local::*;
