//! Flagger and Argo Rollouts as the processes a cluster runs, each built from the Go module
//! proxy as its own release builds it, and run against the cluster suite's API server with
//! the CRDs of the same release:
//!
//! - Flagger: `github.com/fluxcd/flagger/cmd/flagger` in `tools/flagger`, a module of its own
//!   whose build list is Flagger's (its Kubernetes client is older than the other tools' and
//!   does not build with theirs); CRDs from the module's `artifacts/flagger/crd.yaml`.
//! - Argo Rollouts: `github.com/argoproj/argo-rollouts/cmd/rollouts-controller` in
//!   `tools/progressive`, whose build list is Argo Rollouts' own (the same Kubernetes minor);
//!   CRDs from the module's `manifests/crds`.
//!
//! Both watch every namespace, with the admin's kubeconfig, without leader election, on ports
//! nothing else in the test's network namespace uses.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sticky_canary::local::LocalError;

use crate::cluster::{go_module_dir, http_get, supervised, wait_for, Cluster, Process, NODE_IP};

pub const FLAGGER_MODULE: &str = "github.com/fluxcd/flagger";
pub const ARGO_MODULE: &str = "github.com/argoproj/argo-rollouts";
/// Flagger's HTTP port (metrics, /healthz): 8080 by default, a pod's port here.
const FLAGGER_PORT: u16 = 10080;
const ARGO_HEALTHZ_PORT: u16 = 10081;
const ARGO_METRICS_PORT: u16 = 10082;

/// The Flagger controller binary (`tools/flagger`), built once per process.
pub fn flagger_tool() -> Result<PathBuf, LocalError> {
    crate::istio::build_tool_package("flagger", "github.com/fluxcd/flagger/cmd/flagger")
}

/// The Argo Rollouts controller binary (`tools/progressive`), built once per process.
pub fn argo_tool() -> Result<PathBuf, LocalError> {
    crate::istio::build_tool_package(
        "progressive",
        "github.com/argoproj/argo-rollouts/cmd/rollouts-controller",
    )
}

/// Builds both controllers and finds their modules (for the CRDs): needs the machine's
/// network, so call it before [`crate::cluster::enter_network_namespace`].
pub fn prepare() -> Result<(), LocalError> {
    flagger_tool()?;
    argo_tool()?;
    go_module_dir("flagger", "go.mod", FLAGGER_MODULE)?;
    go_module_dir("progressive", "go.mod", ARGO_MODULE)?;
    Ok(())
}

/// A controller process, stopped when dropped.
pub struct Controller {
    pub process: Process,
}

impl Controller {
    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    pub fn running(&mut self) -> bool {
        self.process.running()
    }
}

/// Installs Flagger's CRDs (Canary, MetricTemplate, AlertProvider) from its module.
pub fn install_flagger_crds(cluster: &Cluster) -> Result<(), LocalError> {
    let module = go_module_dir("flagger", "go.mod", FLAGGER_MODULE)?;
    let crds = module.join("artifacts/flagger/crd.yaml");
    cluster.apply_ok(&["-f", &crds.to_string_lossy()])?;
    cluster.kubectl_ok(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"])?;
    Ok(())
}

/// Installs Argo Rollouts' CRDs (Rollout, AnalysisTemplate, AnalysisRun, Experiment,
/// ClusterAnalysisTemplate) from its module's `manifests/crds`.
pub fn install_argo_crds(cluster: &Cluster) -> Result<(), LocalError> {
    let module = go_module_dir("progressive", "go.mod", ARGO_MODULE)?;
    cluster.apply_ok(&["-k", &module.join("manifests/crds").to_string_lossy()])?;
    cluster.kubectl_ok(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"])?;
    Ok(())
}

/// Starts Flagger with the Istio provider (its CRDs installed: [`install_flagger_crds`]);
/// `prometheus` is its default metrics server. Waits for its /healthz.
pub fn start_flagger(cluster: &Cluster, prometheus: &str) -> Result<Controller, LocalError> {
    let mut command = supervised(&flagger_tool()?);
    command
        .arg(format!("-kubeconfig={}", cluster.kubeconfig().display()))
        .arg("-mesh-provider=istio")
        .arg(format!("-metrics-server={prometheus}"))
        .arg(format!("-port={FLAGGER_PORT}"))
        .arg("-log-level=info")
        .arg("-zap-encoding=console")
        // How often Flagger lists the Canaries; each Canary's analysis runs on its own
        // interval (at least 10 s, Flagger's minimum).
        .arg("-control-loop-interval=2s");
    start_until_healthy(cluster, "flagger", command, FLAGGER_PORT)
}

/// Starts the Argo Rollouts controller (its CRDs installed: [`install_argo_crds`]), Istio
/// traffic routing on `networking.istio.io/v1`. Waits for its /healthz.
pub fn start_argo(cluster: &Cluster) -> Result<Controller, LocalError> {
    let mut command = supervised(&argo_tool()?);
    command
        .arg(format!("--kubeconfig={}", cluster.kubeconfig().display()))
        .arg("--leader-elect=false")
        .arg(format!("--healthzPort={ARGO_HEALTHZ_PORT}"))
        .arg(format!("--metricsPort={ARGO_METRICS_PORT}"))
        .arg("--istio-api-version=v1")
        .arg("--loglevel=info")
        .arg("--logformat=text")
        .env("POD_NAMESPACE", "argo-rollouts");
    start_until_healthy(cluster, "argo-rollouts", command, ARGO_HEALTHZ_PORT)
}

/// Starts a controller (its output in `NAME.log` of the cluster's directory) and waits up to
/// 60 s for its `/healthz` on `port`: both listen on every address, NODE_IP among them.
fn start_until_healthy(cluster: &Cluster, name: &str, command: Command, port: u16) -> Result<Controller, LocalError> {
    let mut process = Process::spawn(name, command, cluster.dir().join(format!("{name}.log")))?;
    let health = (NODE_IP, port).into();
    wait_for(
        &format!("{name} /healthz"),
        &mut process,
        Duration::from_secs(60),
        || http_get(health, "/healthz").is_some_and(|(s, _)| s == 200),
    )?;
    Ok(Controller { process })
}
