#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! What the Istio chain suites share: the CLI as a user runs it (with a routing-token key made
//! once per test process), one-at-a-time locking, reading rendered plugins back, and the
//! `set-weight` ramp under load.

#![allow(dead_code)] // each test file uses its own subset

/// One `#[test]` per revision and form, each calling `$run(revision, form)`.
#[allow(unused_macros)] // each test file uses its own subset
macro_rules! chain_tests {
    ($run:ident: $($name:ident: $revision:literal, $form:expr;)*) => {$(
        #[test]
        fn $name() {
            $run($revision, $form);
        }
    )*};
}

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use sticky_canary_harness::backend::seen_headers;
use sticky_canary_harness::istio::{IstioProxy, Revision};
use sticky_canary_harness::load::Load;
use sticky_canary_harness::{Client, Request, Response};

pub const CLI: &str = env!("CARGO_BIN_EXE_sticky-canary");

/// The revisions to run (all, unless `STICKY_CANARY_REVISIONS` names some).
pub fn selected(revision: &Revision) -> bool {
    match std::env::var("STICKY_CANARY_REVISIONS") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|r| r.trim() == revision.name),
        _ => true,
    }
}

pub fn revision(name: &str) -> Revision {
    sticky_canary_harness::istio::revision(name)
}

/// A local OCI registry holding the filter, pushed by `sticky-canary push` as a user would:
/// the registry (keep it alive), the module's `oci://` url and the manifest digest push printed.
pub fn registry_with_module(tag: &str) -> (sticky_canary_harness::Registry, String, String) {
    let registry = sticky_canary_harness::Registry::start().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("oci://{}/sticky-canary:{tag}", registry.host());
    let digest = run_cli(&["push", "--insecure", &url]).trim().to_owned();
    assert!(digest.starts_with("sha256:"), "push printed {digest:?}");
    (registry, url, digest)
}

/// The routing header and the routing-token header of the example apps.
pub const ROUTING_HEADER: &str = "x-canary-version";
pub const TOKEN_HEADER: &str = "x-canary-token";
/// The host of the chain suites' shop app.
pub const SHOP_HOST: &str = "shop.example.com";

/// Replaces `from` with `to` in `text`, insisting that it is there.
pub fn edit(text: &str, from: &str, to: &str, what: &str) -> String {
    assert!(text.contains(from), "{what} has no {from:?} to edit");
    text.replace(from, to)
}

/// A Flagger or Argo Rollouts example spec (`examples/flagger/my-app.yaml`) for a test world:
/// plain HTTP (the harness's listener has no TLS certificate) and the module inline (no
/// registry).
pub fn progressive_test_spec(spec: &str) -> String {
    let text = std::fs::read_to_string(spec).unwrap();
    let text = edit(&text, "tls:\n  credential_name: my-app-tls\n", "", spec);
    let text = edit(&text, "form: envoyfilter\n", "form: envoyfilter-inline\n", spec);
    let text = edit(
        &text,
        "  url: oci://myregistry.azurecr.io/sticky-canary:0.1.0\n",
        "",
        spec,
    );
    edit(
        &text,
        "  sha256: \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n",
        "",
        spec,
    )
}

/// A request to the shop, with `session=KEY` when there is a key.
pub fn shop(key: Option<&str>) -> Request {
    let request = Request::get("/").host(SHOP_HOST);
    match key {
        Some(key) => request.header("cookie", format!("session={key}")),
        None => request,
    }
}

/// Sends one request; panics with the error when it fails.
pub fn send(client: &mut Client, request: &Request) -> Response {
    client.send(request).unwrap_or_else(|e| panic!("request failed: {e}"))
}

/// The version that served a reply (the test backends' `x-served-version`).
pub fn served(reply: &Response) -> String {
    reply.header_str("x-served-version")
}

/// Every key on the version `assign` predicted (`mismatches`: key, predicted, served), and the
/// canary's share of `total` keys within 3 points of the 30 % planned.
pub fn assert_keys_on_plan(mismatches: &[(String, String, String)], on_canary: usize, total: usize) {
    assert!(
        mismatches.is_empty(),
        "keys not where assign says: {:?}",
        &mismatches[..mismatches.len().min(10)]
    );
    assert!(
        (total * 27 / 100..=total * 33 / 100).contains(&on_canary),
        "canary share off: {on_canary} of {total}"
    );
}

/// How many routing tokens the app saw, per the backend's echo: routing headers still carrying
/// `VERSION;TOKEN` (the generated routes hand the app the bare name). Rendered apps carry the
/// token in the routing header; a `x-canary-token` header means nothing to their routes.
pub fn tokens_seen(body: &[u8]) -> usize {
    seen_headers(body, ROUTING_HEADER)
        .iter()
        .filter(|value| value.contains(&b';'))
        .count()
}

/// A client that sends the routing header itself (`v2`), with a guessed token in it every
/// third time (`v2;GUESS`, where the generated routes look for the token) and in a separate
/// `x-canary-token` header every other third (the form of configs with a token header of their
/// own), for 50 keys `assign` puts on stable (`predicted`: key -> version): each request lands
/// on stable, and the app sees the bare stable name.
pub fn assert_spoofed_headers_stay_on_stable(
    client: &mut Client,
    keys: &[String],
    predicted: &HashMap<String, String>,
) {
    let stable_keys: Vec<&String> = keys.iter().filter(|k| predicted[*k] == "v1").take(50).collect();
    for (i, key) in stable_keys.iter().enumerate() {
        let guess = format!("guessed-token-{i:04}-0123456789");
        let request = match i % 3 {
            0 => shop(Some(key)).header(ROUTING_HEADER, format!("v2;{guess}")),
            1 => shop(Some(key))
                .header(ROUTING_HEADER, "v2")
                .header(TOKEN_HEADER, &guess),
            _ => shop(Some(key)).header(ROUTING_HEADER, "v2"),
        };
        let reply = send(client, &request);
        assert_eq!(
            (reply.status, served(&reply)),
            (200, "v1".to_owned()),
            "spoofed header moved key {key}"
        );
        assert_eq!(
            seen_headers(&reply.body, ROUTING_HEADER),
            vec![b"v1".to_vec()],
            "key {key}: the app must see the stable name only"
        );
        assert_eq!(tokens_seen(&reply.body), 0, "token reached the app");
    }
}

/// One test at a time: each runs Envoys under load on a 2-core machine.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A routing-token key for this test process, made once by `sticky-canary token-key`
/// (`render` refuses to run without one).
pub fn token_key() -> &'static Path {
    static KEY: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &KEY.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let output = Command::new(CLI)
            .arg("token-key")
            .arg("--out")
            .arg(&path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        (dir, path)
    })
    .1
}

/// Runs `sticky-canary ARGS` with the test token key; panics with its output when it fails.
pub fn run_cli(args: &[&str]) -> String {
    let output = Command::new(CLI)
        .env(sticky_canary::render::token::KEY_FILE_ENV, token_key())
        .args(args)
        .output()
        .expect("run sticky-canary");
    assert!(
        output.status.success(),
        "sticky-canary {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The shop's spec as the chain suites write it (app `shop` in `ns-shop` on [`SHOP_HOST`]): v1
/// and v2 at `v2_percent` for v2, keyed by the `session` cookie then a new client id, under
/// `salt`; `plugin` is the body of the `plugin:` block, each line indented by two spaces.
pub fn shop_spec(revision: &str, salt: &str, v2_percent: u32, plugin: &str) -> String {
    let versions = format!(
        "  - name: v1\n    image: example/shop:1\n    weight: {v1}\n  \
           - name: v2\n    image: example/shop:2\n    weight: {v2_percent}\n",
        v1 = 100 - v2_percent,
    );
    shop_spec_with_versions(revision, salt, &versions, plugin)
}

/// [`shop_spec`] with its `versions:` list written by the caller (each line indented by two).
pub fn shop_spec_with_versions(revision: &str, salt: &str, versions: &str, plugin: &str) -> String {
    format!(
        "app: shop\n\
         namespace: ns-shop\n\
         revision: {revision}\n\
         hosts: [{SHOP_HOST}]\n\
         versions:\n{versions}\
         routing:\n  \
           salt: {salt}\n  \
           key_chain:\n    - cookie: session\n    - new_client_id: {{}}\n\
         plugin:\n{plugin}",
    )
}

/// `sticky-canary set-weight SPEC v2 PERCENT --out OUT`, as the runbook's ramp step does.
pub fn set_weight(spec: &Path, v2_percent: u32, out: &Path) {
    run_cli(&[
        "set-weight",
        &spec.to_string_lossy(),
        "v2",
        &v2_percent.to_string(),
        "--out",
        &out.to_string_lossy(),
    ]);
}

/// The filter's JSON config inside a rendered plugin object: the Wasm config's
/// `configuration.value` (EnvoyFilter) or `pluginConfig` (WasmPlugin).
pub fn find_filter_config(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(config) = map.get("pluginConfig") {
                return Some(config.to_string());
            }
            if let Some(text) = map
                .get("configuration")
                .and_then(|c| c.get("value"))
                .and_then(|v| v.as_str())
            {
                return Some(text.to_owned());
            }
            map.values().find_map(find_filter_config)
        }
        serde_json::Value::Array(items) => items.iter().find_map(find_filter_config),
        _ => None,
    }
}

/// The filter config the rendered plugin file carries, written to `out` for `sticky-canary assign`.
pub fn write_filter_config(plugin_file: &Path, out: &Path) -> PathBuf {
    let text = std::fs::read_to_string(plugin_file).unwrap();
    let mut found = None;
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: serde_json::Value = serde::Deserialize::deserialize(document).unwrap();
        found = found.or_else(|| find_filter_config(&value));
    }
    let config = found.unwrap_or_else(|| panic!("{} carries no filter config", plugin_file.display()));
    std::fs::write(out, config).unwrap();
    out.to_path_buf()
}

/// `sticky-canary assign` for the route of `host`, many keys at once: key -> version.
pub fn assign_on(config: &Path, host: &str, keys: &[String]) -> HashMap<String, String> {
    assign_with(config, host, keys, &[])
}

/// [`assign_on`] with more arguments (`--canary-weight 10`).
pub fn assign_with(config: &Path, host: &str, keys: &[String], extra: &[&str]) -> HashMap<String, String> {
    let mut child = Command::new(CLI)
        .args(["assign", "--host", host, "--config"])
        .arg(config)
        .args(["--keys", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sticky-canary assign");
    let mut stdin = child.stdin.take().unwrap();
    let input = keys.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "assign failed");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (fields[0].to_owned(), fields[fields.len() - 1].to_owned())
        })
        .collect()
}

#[derive(Debug)]
struct Observation {
    user: usize,
    started: Instant,
    /// Ramp step in force when the request was sent; `TRANSITION` while one was being applied.
    step: usize,
    version: String,
}
const TRANSITION: usize = usize::MAX;

/// A gateway a ramp pushes each step to: the in-process chain's [`IstioProxy`] (Istio's
/// translation written to the files Envoy watches) or the cluster suite's gateway (`kubectl
/// apply`, istiod's push, istio-agent). `push` returns once the gateway serves the new inputs.
pub trait RampGateway {
    fn listener(&self) -> std::net::SocketAddr;
    fn push(&mut self, inputs: Vec<PathBuf>) -> Result<(), String>;
}

impl RampGateway for IstioProxy {
    fn listener(&self) -> std::net::SocketAddr {
        IstioProxy::listener(self)
    }

    fn push(&mut self, inputs: Vec<PathBuf>) -> Result<(), String> {
        self.update(inputs).map(|_| ()).map_err(|e| e.to_string())
    }
}

/// A `set-weight` ramp 0 → 10 → 50 → 100 → 0 under load (250 users keyed by a `session` cookie
/// on `host`, 250 req/s): each step re-rendered by `set_weight(percent)` (which returns the
/// inputs to translate), pushed to the running gateway, and predicted by `sticky-canary assign`
/// on `filter_config()`. Asserts 0 failed requests, the token never reaching the app, every
/// request outside an update window on the predicted version, no user back to stable on the way
/// up, everyone on the canary at 100% and nobody after the rollback. `label` names the run.
pub fn ramp(
    gateway: &mut dyn RampGateway,
    host: &str,
    label: &str,
    set_weight: impl Fn(u32) -> Vec<PathBuf>,
    filter_config: impl Fn() -> PathBuf,
) -> RampOutcome {
    const USERS: usize = 250;
    const RATE: u32 = 250;
    const STEP: Duration = Duration::from_secs(2);
    let steps = [0u32, 10, 50, 100, 0];
    let users: Vec<String> = (0..USERS).map(|u| format!("ramp-user-{u}")).collect();
    gateway
        .push(set_weight(steps[0]))
        .unwrap_or_else(|e| panic!("ramp to {}%: {e}", steps[0]));
    let mut expected = vec![assign_on(&filter_config(), host, &users)];

    let step = Arc::new(AtomicUsize::new(0));
    let log: Arc<Mutex<Vec<Observation>>> = Arc::new(Mutex::new(Vec::new()));
    let (job_step, job_log, job_users) = (Arc::clone(&step), Arc::clone(&log), users.clone());
    let job_host = host.to_owned();
    let job = Arc::new(move |sequence: u64, client: &mut Client| -> Result<(), String> {
        let user = (sequence as usize) % USERS;
        let step = job_step.load(Ordering::SeqCst);
        let started = Instant::now();
        let reply = client
            .send(
                &Request::get("/")
                    .host(&job_host)
                    .header("cookie", format!("session={}", job_users[user])),
            )
            .map_err(|e| format!("user {user}: {e}"))?;
        if reply.status != 200 {
            return Err(format!("user {user}: status {} {}", reply.status, reply.body_text()));
        }
        if tokens_seen(&reply.body) != 0 {
            return Err(format!("user {user}: the routing token reached the app"));
        }
        let version = reply.header_str("x-served-version");
        job_log.lock().map_err(|_| "poisoned")?.push(Observation {
            user,
            started,
            step,
            version,
        });
        Ok(())
    });
    let load = Load::start(gateway.listener(), 8, RATE, job).unwrap();
    std::thread::sleep(STEP);
    let mut applied = Vec::new();
    for (index, percent) in steps.iter().enumerate().skip(1) {
        step.store(TRANSITION, Ordering::SeqCst);
        let pushed = Instant::now();
        gateway
            .push(set_weight(*percent))
            .unwrap_or_else(|e| panic!("ramp to {percent}%: {e}"));
        applied.push(pushed.elapsed());
        expected.push(assign_on(&filter_config(), host, &users));
        step.store(index, Ordering::SeqCst);
        std::thread::sleep(STEP);
    }
    let report = load.stop();
    let log = log.lock().unwrap();
    eprintln!(
        "{label}: ramp {steps:?}: {} requests at {:.0} req/s, {} failed; render+translate+apply per step {applied:?}",
        report.sent,
        report.rate(),
        report.failed
    );
    if let Err(problem) = report.check(200.0) {
        panic!("during the ramp: {problem}");
    }

    // Outside the update windows, every request got exactly the predicted version.
    let wrong: Vec<&Observation> = log
        .iter()
        .filter(|o| o.step != TRANSITION && expected[o.step][&users[o.user]] != o.version)
        .take(10)
        .collect();
    assert!(wrong.is_empty(), "versions differing from assign: {wrong:?}");
    // On the way up, nobody who reached the canary went back; after the rollback, nobody is on it.
    let rollback = steps.len() - 1;
    let mut by_user: Vec<Vec<&Observation>> = vec![Vec::new(); USERS];
    for o in log.iter() {
        by_user[o.user].push(o);
    }
    let mut went_back = Vec::new();
    for (user, seen) in by_user.iter_mut().enumerate() {
        seen.sort_by_key(|o| o.started);
        let ramp_up: Vec<&str> = seen
            .iter()
            .take_while(|o| o.step != rollback)
            .filter(|o| o.step != TRANSITION || o.version == "v2")
            .map(|o| o.version.as_str())
            .collect();
        if let Some(first) = ramp_up.iter().position(|v| *v == "v2") {
            if ramp_up[first..].iter().any(|v| *v != "v2") {
                went_back.push((user, ramp_up));
            }
        }
    }
    assert!(
        went_back.is_empty(),
        "users sent back during the ramp: {:?}",
        &went_back[..went_back.len().min(5)]
    );
    let at_full = log.iter().filter(|o| o.step == 3 && o.version != "v2").count();
    assert_eq!(at_full, 0, "requests on stable at 100%");
    let after_rollback = log.iter().filter(|o| o.step == rollback && o.version != "v1").count();
    assert_eq!(after_rollback, 0, "requests on the canary after the rollback");
    let mut served: HashMap<String, u64> = HashMap::new();
    for o in log.iter() {
        *served.entry(o.version.clone()).or_default() += 1;
    }
    RampOutcome {
        sent: report.sent,
        served,
    }
}

/// What a [`ramp`] sent: requests answered 200, and how many each version served.
#[derive(Debug, Clone)]
pub struct RampOutcome {
    pub sent: u64,
    pub served: HashMap<String, u64>,
}

/// The other app's host.
pub const OTHER_HOST: &str = "other.example.com";

/// A second app on the same gateway (its own Gateway, VirtualService and Service), not
/// using sticky-canary: what a shared add-on gateway carries beside our app. One destination,
/// so Istio gives its route a single `cluster` (where a stray weighted-clusters merge would
/// break it).
pub const OTHER_APP: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: other
---
apiVersion: v1
kind: Service
metadata:
  name: svc-other
  namespace: other
spec:
  selector:
    app: other
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gateway-other
  namespace: other
spec:
  selector:
    istio: aks-istio-ingressgateway-external
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - other.example.com
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs-other
  namespace: other
spec:
  hosts:
  - other.example.com
  gateways:
  - gateway-other
  http:
  - route:
    - destination:
        host: svc-other.other.svc.cluster.local
        port:
          number: 80
";

/// `istio-xds serve-file`: the module over https with a self-signed certificate.
pub struct FileServer {
    child: std::process::Child,
    pub url: String,
}

impl FileServer {
    pub fn start(file: &Path) -> FileServer {
        let tool = sticky_canary_harness::istio::istio_xds(sticky_canary_harness::istio::newest())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut child = Command::new(tool)
            .args(["serve-file", "--tls", "--file"])
            .arg(file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start istio-xds serve-file");
        let stdout = child.stdout.take().expect("serve-file stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("serve-file prints its url");
        let url = line.trim().to_owned();
        assert!(url.starts_with("https://"), "serve-file printed {url:?}");
        FileServer { child, url }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
