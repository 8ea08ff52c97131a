#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! Long-lived and multiplexed connections through the newest revision's chain (`render` →
//! istiod's translation → a real Envoy of its line), with real clients and servers from the
//! Python ecosystem (`websockets`, `h2`, `grpcio`; tests/long_lived/requirements.txt, installed
//! into `.venv` by scripts/setup.sh; missing, the tests fail and say what to install):
//!
//! - a WebSocket upgrade without cookies gets the id cookie on its 101 and the version `assign`
//!   predicts for that id; open sockets keep talking to their version while `set-weight` moves
//!   the canary, and a new upgrade with the same cookie lands where `assign` says at the new weight;
//! - one HTTP/2 connection (h2c, prior knowledge) carries 200 concurrent streams of different
//!   users, each routed by its own key, none getting another stream's cookie or version;
//! - gRPC unary and bidi calls keyed by an `x-user-id` metadata header land on `assign`'s version,
//!   and open bidi streams keep theirs while the weight changes.
//!
//! The app's versions are tests/long_lived/backend.py (one process: per version a WebSocket and
//! plain HTTP/1.1 port and a gRPC port, each answer naming its version); the clients are
//! tests/long_lived/client.py, driven line by line from here. Two apps share the gateway, as
//! `render` of a directory puts them: `shop` (WebSocket, HTTP/2) and `rpc` (gRPC).
//!
//! The `rpc` spec says `service_protocol: grpc`: `render` names its Service port `grpc` (and
//! `appProtocol: grpc`), which makes Istio talk HTTP/2 to the pods. (A port named `http` means
//! HTTP/1.1 to Istio, and a gRPC server refuses that: every call failed with `UNAVAILABLE ...
//! protocol error` before the spec could say it.)

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use common::{assign_on, assign_with, run_cli, serial, write_filter_config};
use serde_json::{json, Value};
use sticky_canary_harness::envoy_release;
use sticky_canary_harness::istio::{newest, IstioProxy, Translate};

const SHOP_HOST: &str = "shop.example.com";
const RPC_HOST: &str = "rpc.example.com";
/// The id cookie `new_client_id: {}` issues (its default name).
const ID_COOKIE: &str = "sticky-canary-id";

// ---------------------------------------------------------------------------
// Python: the venv, the backend and the client scripts.

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `.venv/bin/python3` (or `STICKY_CANARY_PYTHON`) with the packages of
/// tests/long_lived/requirements.txt; a failure naming what to install otherwise.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let python = std::env::var_os("STICKY_CANARY_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join(".venv/bin/python3"));
        let install = format!(
            "run scripts/setup.sh (it creates .venv and installs tests/long_lived/requirements.txt), or \
             `{} -m pip install -r tests/long_lived/requirements.txt`",
            python.display()
        );
        assert!(python.is_file(), "{}: no such Python: {install}", python.display());
        let output = Command::new(&python)
            .args(["-c", "import websockets, grpc, h2"])
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}: {install}", python.display()));
        assert!(
            output.status.success(),
            "{} lacks the packages tests/long_lived.rs runs (websockets, grpcio, h2): {}\n{install}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        python
    })
}

/// A Python script of tests/long_lived/ that talks in lines: stdout read line by line, stderr kept
/// in a file for the failure message. Killed on drop.
struct Script {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Script {
    fn start(name: &'static str, args: &[String]) -> Script {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr.log");
        let mut child = Command::new(python())
            .arg(repo().join("tests/long_lived").join(name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Script {
            name,
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            stderr,
            _dir: dir,
        }
    }

    /// The script's end of the story, for a failure message.
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let read = self.stdout.read_line(&mut line).unwrap();
        if read == 0 {
            let status = self.child.try_wait().ok().flatten();
            panic!("{} ended ({status:?}):\n{}", self.name, self.stderr());
        }
        line
    }

    /// Sends one command to client.py and returns its answer; an `{"error": ...}` fails the test.
    fn call(&mut self, command: &Value) -> Value {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let answer: Value = serde_json::from_str(&self.line()).unwrap();
        if let Some(error) = answer.get("error") {
            panic!("{}: {error}\n{}", self.name, self.stderr());
        }
        answer
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// client.py against the gateway.
fn client(gateway: SocketAddr) -> Script {
    Script::start("client.py", &[gateway.ip().to_string(), gateway.port().to_string()])
}

fn array(value: &Value) -> &Vec<Value> {
    value.as_array().unwrap_or_else(|| panic!("not a list: {value}"))
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}"))
}

/// The value of our id cookie in a Set-Cookie line (`ID.DAY`), when it is ours.
fn id_cookie_value(set_cookie: &str) -> Option<String> {
    let value = set_cookie.strip_prefix(&format!("{ID_COOKIE}="))?;
    Some(value.split(';').next().unwrap_or("").trim().to_owned())
}

/// The id of an id cookie value: 32 lowercase hex digits before the day stamp.
fn id_of(value: &str) -> &str {
    let id = value.split('.').next().unwrap_or("");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not a client id: {value:?}"
    );
    id
}

/// The Set-Cookie lines a returning client (a fresh stamp, or a key that is not an id) may get:
/// none, or (when the UTC day turned during the run) a refresh of its own id. Anything else is
/// another client's cookie.
fn assert_no_foreign_cookie(what: &str, set_cookies: &[Value], own_id: Option<&str>) {
    for cookie in set_cookies {
        let value = id_cookie_value(text(cookie));
        assert!(
            own_id.is_some() && value.as_deref().map(id_of) == own_id,
            "{what}: a Set-Cookie it must not get: {cookie}"
        );
    }
}

// ---------------------------------------------------------------------------
// The world: two apps rendered onto one gateway, Istio's translation, a real Envoy.

/// An app spec: v1 and v2 with v2 at `v2_percent`, keyed by `chain` (YAML flow list).
fn spec(app: &str, host: &str, v2_percent: u32, chain: &str, protocol: &str) -> String {
    format!(
        "app: {app}\n\
         namespace: ns-{app}\n\
         service_protocol: {protocol}\n\
         revision: {revision}\n\
         hosts: [{host}]\n\
         versions:\n  \
           - name: v1\n    image: example/{app}:1\n    weight: {v1}\n  \
           - name: v2\n    image: example/{app}:2\n    weight: {v2_percent}\n\
         routing:\n  \
           salt: long-lived-{app}\n  \
           key_chain: {chain}\n\
         plugin:\n  form: envoyfilter-inline\n",
        revision = newest().name,
        v1 = 100 - v2_percent,
    )
}

struct World {
    /// Declared before the backends: Envoy stops first.
    gateway: IstioProxy,
    _apps: Script,
    work: tempfile::TempDir,
}

impl World {
    /// `shop` (WebSocket and HTTP/2: the `x-user-id` header, then a new client id) with its canary
    /// at `shop_v2` %, and `rpc` (gRPC: the `x-user-id` metadata) at `rpc_v2` %, rendered together
    /// for one gateway; the gateway running Istio's translation of them.
    fn new(shop_v2: u32, rpc_v2: u32) -> World {
        let work = tempfile::tempdir().unwrap();
        let specs = work.path().join("specs");
        std::fs::create_dir_all(&specs).unwrap();
        std::fs::write(
            specs.join("shop.yaml"),
            spec(
                "shop",
                SHOP_HOST,
                shop_v2,
                "[{header: x-user-id}, {new_client_id: {}}]",
                "http",
            ),
        )
        .unwrap();
        std::fs::write(
            specs.join("rpc.yaml"),
            spec("rpc", RPC_HOST, rpc_v2, "[{header: x-user-id}]", "grpc"),
        )
        .unwrap();
        let rendered = work.path().join("rendered");
        run_cli(&["render", &specs.to_string_lossy(), "--out", &rendered.to_string_lossy()]);

        let mut apps = Script::start("backend.py", &["v1".to_owned(), "v2".to_owned()]);
        let ports: Value = serde_json::from_str(&apps.line()).unwrap();
        let port = |version: &str, kind: &str| -> SocketAddr {
            let port = ports[version][kind]
                .as_u64()
                .unwrap_or_else(|| panic!("backend.py: {ports}"));
            ([127, 0, 0, 1], u16::try_from(port).unwrap()).into()
        };
        let mut translate = Translate::new(newest(), Vec::new());
        for (app, kind) in [("shop", "http"), ("rpc", "grpc")] {
            let service = format!("svc-{app}.ns-{app}.svc.cluster.local");
            translate.endpoint(&format!("outbound|80||{service}"), port("v1", kind));
            for version in ["v1", "v2"] {
                translate.endpoint(&format!("outbound|80|{version}|{service}"), port(version, kind));
            }
        }
        translate.inputs = inputs(work.path());
        let envoy = envoy_release(newest().envoy).unwrap_or_else(|e| panic!("{e}"));
        let gateway = IstioProxy::start(&envoy, translate)
            .unwrap_or_else(|e| panic!("{}: the gateway did not start: {e}", newest().name));
        World {
            work,
            gateway,
            _apps: apps,
        }
    }

    /// The filter config of the rendered gateway plugin (both apps' routes), for `assign`.
    fn config(&self) -> PathBuf {
        write_filter_config(
            &self.work.path().join("rendered/gateway/plugin-external.yaml"),
            &self.work.path().join("filter-config.json"),
        )
    }

    /// `set-weight` of APP's canary (the other app rendered with it, as the runbook's shared
    /// gateway does), then Istio's translation pushed to the running gateway, while `traffic`
    /// runs again and again on another thread (at least once). Returns how often it ran, how
    /// long the push took and which xDS files it changed.
    fn set_weight_under(
        &mut self,
        app: &str,
        v2_percent: u32,
        mut traffic: impl FnMut() + Send,
    ) -> (usize, Duration, Vec<String>) {
        let specs = self.work.path().join("specs");
        run_cli(&[
            "set-weight",
            &specs.join(format!("{app}.yaml")).to_string_lossy(),
            "v2",
            &v2_percent.to_string(),
            "--out",
            &self.work.path().join("rendered").to_string_lossy(),
            "--with",
            &specs.to_string_lossy(),
        ]);
        let before = xds_files(self.gateway.xds_dir());
        let done = AtomicBool::new(false);
        let started = Instant::now();
        let rounds = std::thread::scope(|scope| {
            let runner = scope.spawn(|| {
                let mut rounds = 0;
                loop {
                    traffic();
                    rounds += 1;
                    if done.load(Ordering::SeqCst) {
                        return rounds;
                    }
                }
            });
            let pushed = self.gateway.update(inputs(self.work.path())).map(|_| ());
            done.store(true, Ordering::SeqCst);
            let rounds = runner.join().unwrap();
            pushed.unwrap_or_else(|e| panic!("set-weight {app} {v2_percent}: {e}"));
            rounds
        });
        let took = started.elapsed();
        let after = xds_files(self.gateway.xds_dir());
        let changed = after
            .iter()
            .filter(|(path, bytes)| before.get(*path) != Some(bytes))
            .map(|(path, _)| path.clone())
            .collect();
        (rounds, took, changed)
    }

    /// A counter or gauge of the gateway's connection managers, summed over them (not admin's).
    fn hcm_stat(&self, suffix: &str) -> u64 {
        let stats = self.gateway.envoy().stats().unwrap();
        stats
            .lines()
            .filter_map(|line| line.split_once(": "))
            .filter(|(name, _)| name.starts_with("http.") && !name.starts_with("http.admin.") && name.ends_with(suffix))
            .map(|(_, value)| value.trim().parse::<u64>().unwrap_or(0))
            .sum()
    }
}

/// What Istio reads: every rendered YAML file; `rpc/service.yaml` names its port `grpc`.
fn inputs(work: &Path) -> Vec<PathBuf> {
    let rendered = work.join("rendered");
    let mut files = Vec::new();
    let mut pending = vec![rendered.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") && !path.ends_with("kustomization.yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let service: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(rendered.join("rpc/service.yaml")).unwrap()).unwrap();
    let port = &service["spec"]["ports"][0];
    assert_eq!(
        (&port["name"], &port["appProtocol"]),
        (&json!("grpc"), &json!("grpc")),
        "{service}"
    );
    files
}

/// The translated xDS files (path relative to the dir -> bytes).
fn xds_files(dir: &Path) -> HashMap<String, Vec<u8>> {
    let mut files = HashMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let name = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                if name != "summary.json" && name != "endpoints.input.json" {
                    files.insert(name, std::fs::read(&path).unwrap());
                }
            }
        }
    }
    files
}

/// `assign` of id cookie values (`ID.DAY`) on the shop's route.
fn assign_ids(config: &Path, values: &[String]) -> HashMap<String, String> {
    assign_with(config, SHOP_HOST, values, &["--kind", "id-cookie"])
}

/// Today as the filter stamps its id cookie: days since 1970-01-01 UTC.
fn today() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 86_400
}

// ---------------------------------------------------------------------------

/// A reply of backend.py on one long-lived connection: its version and its connection (or
/// stream) number, which stay the same for the connection's life; the echo is what was sent.
fn check_reply(what: &str, reply: &Value, version: &str, number_field: &str, number: &Value) {
    assert_eq!(
        reply["version"], version,
        "{what}: answered by the other version: {reply}"
    );
    assert_eq!(
        reply[number_field], *number,
        "{what}: a different upstream connection: {reply}"
    );
    assert_eq!(
        reply["echo"], reply["sent"],
        "{what}: the answer is not to its message: {reply}"
    );
}

#[test]
fn websocket_upgrades_get_the_id_cookie_and_open_sockets_keep_their_version_across_a_weight_change() {
    const USERS: usize = 30;
    let _serial = serial();
    let started = Instant::now();
    let mut world = World::new(20, 50);
    let mut client = client(world.gateway.listener());

    // 30 browsers' first contact is a WebSocket upgrade, without any cookie.
    let conns: Vec<Value> = (0..USERS)
        .map(|u| json!({"id": format!("ws-{u}"), "host": SHOP_HOST, "path": format!("/ws/{u}"), "headers": {}}))
        .collect();
    let opened = client.call(&json!({"op": "ws_open", "conns": conns}));
    let mut values = Vec::new();
    for (u, open) in array(&opened).iter().enumerate() {
        assert_eq!(open["status"], 101, "user {u}: {open}");
        let cookies = array(&open["set_cookie"]);
        assert_eq!(cookies.len(), 1, "user {u}: one Set-Cookie on the 101: {open}");
        let value =
            id_cookie_value(text(&cookies[0])).unwrap_or_else(|| panic!("user {u}: not the id cookie: {}", cookies[0]));
        assert!(
            value.starts_with(&format!("{}.", id_of(&value))),
            "user {u}: no day stamp: {value}"
        );
        values.push(value);
    }
    let distinct: HashSet<&str> = values.iter().map(|v| id_of(v)).collect();
    assert_eq!(
        distinct.len(),
        USERS,
        "the id cookies are not all different: {values:?}"
    );
    assert_eq!(
        world.hcm_stat(".downstream_cx_upgrades_active"),
        USERS as u64,
        "Envoy holds the upgraded connections"
    );

    // Each upgrade went to the version `assign` gives its new id, which the app hears named bare.
    let at_20 = assign_ids(&world.config(), &values);
    let mut sockets: Vec<(String, String, Value)> = Vec::new(); // (conn id, version, upstream conn)
    for (u, open) in array(&opened).iter().enumerate() {
        let reply = &open["reply"];
        let version = &at_20[&values[u]];
        check_reply(&format!("user {u}"), reply, version, "conn", &reply["conn"]);
        assert_eq!(reply["routing"], *version, "user {u}: the routing header the app saw");
        sockets.push((format!("ws-{u}"), version.clone(), reply["conn"].clone()));
    }
    let ids: Vec<&str> = sockets.iter().map(|(id, _, _)| id.as_str()).collect();
    let check_open_sockets = |client: &mut Script, when: &str| {
        let replies = client.call(&json!({"op": "ws_send", "ids": ids}));
        for ((id, version, conn), reply) in sockets.iter().zip(array(&replies)) {
            check_reply(&format!("{id} {when}"), reply, version, "conn", conn);
        }
    };
    check_open_sockets(&mut client, "before the change");

    // The canary goes 20 → 80 % while every socket keeps talking.
    let (rounds, took, changed) =
        world.set_weight_under("shop", 80, || check_open_sockets(&mut client, "during the push"));
    check_open_sockets(&mut client, "after the push");

    // A new upgrade with the same cookie lands where `assign` says at 80 %.
    let at_80 = assign_ids(&world.config(), &values);
    let movers: Vec<usize> = (0..USERS)
        .filter(|u| at_20[&values[*u]] != at_80[&values[*u]])
        .collect();
    assert!(
        !movers.is_empty(),
        "20 → 80 % moved none of {USERS} users: nothing here tells an open socket from a new one"
    );
    let again: Vec<Value> = (0..USERS)
        .map(|u| {
            json!({"id": format!("ws-again-{u}"), "host": SHOP_HOST, "path": format!("/ws/{u}"),
                   "headers": {"Cookie": format!("{ID_COOKIE}={}", values[u])}})
        })
        .collect();
    let reopened = client.call(&json!({"op": "ws_open", "conns": again}));
    for (u, open) in array(&reopened).iter().enumerate() {
        assert_eq!(open["status"], 101, "user {u} again: {open}");
        assert_no_foreign_cookie(
            &format!("user {u} again"),
            array(&open["set_cookie"]),
            Some(id_of(&values[u])),
        );
        let reply = &open["reply"];
        let version = &at_80[&values[u]];
        check_reply(&format!("user {u} again"), reply, version, "conn", &reply["conn"]);
        assert_eq!(
            reply["cookie"],
            format!("{ID_COOKIE}={}", values[u]),
            "user {u} again: the app saw another cookie"
        );
    }
    // The movers' first sockets still talk to the old version, beside their new ones.
    check_open_sockets(&mut client, "after the new upgrades");
    let again_ids: Vec<String> = (0..USERS).map(|u| format!("ws-again-{u}")).collect();
    let replies = client.call(&json!({"op": "ws_send", "ids": again_ids}));
    for (u, (open, reply)) in array(&reopened).iter().zip(array(&replies)).enumerate() {
        check_reply(
            &format!("user {u}'s new socket"),
            reply,
            &at_80[&values[u]],
            "conn",
            &open["reply"]["conn"],
        );
    }
    let mut all_ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    all_ids.extend(again_ids);
    let codes = client.call(&json!({"op": "ws_close", "ids": all_ids}));
    assert!(array(&codes).iter().all(|c| c == 1000), "clean closes: {codes}");

    let on_v2 = |m: &HashMap<String, String>| m.values().filter(|v| *v == "v2").count();
    eprintln!(
        "{} (Envoy {}): {USERS} WebSocket users, {} then {} on v2 at 20 and 80 %; {} moved, and each kept its open \
         socket on v1 beside a new one on v2; {} messages per socket while set-weight was pushed ({took:?}, changed {changed:?}); {:?} in all",
        newest().name,
        newest().envoy,
        on_v2(&at_20),
        on_v2(&at_80),
        movers.len(),
        rounds,
        started.elapsed()
    );
}

#[test]
fn one_http2_connection_carries_200_streams_each_routed_by_its_own_key() {
    const STREAMS: usize = 200;
    let _serial = serial();
    let started = Instant::now();
    let world = World::new(50, 50);
    let mut client = client(world.gateway.listener());

    // Half the streams are returning browsers (an id cookie stamped today, and a cookie of the
    // app's), a quarter API clients (the x-user-id header), a quarter new clients (nothing).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Returning,
        Header,
        New,
    }
    /// Kind, path, key (the id cookie value or the header value), request headers.
    type Stream = (Kind, String, String, Vec<(String, String)>);
    let day = today();
    let streams: Vec<Stream> = (0..STREAMS)
        .map(|i| {
            let path = format!("/h2/{i}");
            match i % 4 {
                0 | 1 => {
                    let id = &sticky_canary::sha256_hex(format!("returning-{i}").as_bytes())[..32];
                    let value = format!("{id}.{day}");
                    let cookie = format!("{ID_COOKIE}={value}; theme=t{i}");
                    (Kind::Returning, path, value, vec![("cookie".to_owned(), cookie)])
                }
                2 => {
                    let user = format!("h2-user-{i}");
                    (Kind::Header, path, user.clone(), vec![("x-user-id".to_owned(), user)])
                }
                _ => (Kind::New, path, String::new(), Vec::new()),
            }
        })
        .collect();
    let request: Vec<Value> = streams
        .iter()
        .map(|(_, path, _, headers)| json!({"path": path, "headers": headers}))
        .collect();
    let (connections, requests) = (
        world.hcm_stat(".downstream_cx_http2_total"),
        world.hcm_stat(".downstream_rq_http2_total"),
    );
    let answer = client.call(&json!({"op": "h2", "host": SHOP_HOST, "streams": request}));
    assert_eq!(
        world.hcm_stat(".downstream_cx_http2_total") - connections,
        1,
        "Envoy saw another number of HTTP/2 connections"
    );
    assert_eq!(
        world.hcm_stat(".downstream_rq_http2_total") - requests,
        STREAMS as u64,
        "HTTP/2 requests"
    );
    let limit = answer["max_concurrent_streams"].as_u64().unwrap();
    let peak = answer["peak_open"].as_u64().unwrap();
    assert_eq!(
        peak,
        limit.min(STREAMS as u64),
        "streams in flight at once (the gateway allows {limit})"
    );

    // What each stream got back.
    struct Got {
        status: u64,
        served: String,
        set_cookies: Vec<Value>,
        body: Value,
    }
    let got: Vec<Got> = array(&answer["streams"])
        .iter()
        .map(|stream| {
            let headers = array(&stream["headers"]);
            let header =
                |name: &str| -> Vec<Value> { headers.iter().filter(|h| h[0] == name).map(|h| h[1].clone()).collect() };
            Got {
                status: stream["status"].as_u64().unwrap(),
                served: header("x-served-version")
                    .first()
                    .map(|v| text(v).to_owned())
                    .unwrap_or_default(),
                set_cookies: header("set-cookie"),
                body: serde_json::from_str(text(&stream["body"])).unwrap_or(Value::Null),
            }
        })
        .collect();
    assert_eq!(got.len(), STREAMS);

    // The key each stream was routed by, and the version `assign` gives it.
    let mut new_ids = Vec::new();
    for (i, ((kind, _, _, _), got)) in streams.iter().zip(&got).enumerate() {
        assert_eq!(got.status, 200, "stream {i}: {}", got.body);
        if *kind == Kind::New {
            assert_eq!(
                got.set_cookies.len(),
                1,
                "stream {i}, a new client: one Set-Cookie: {:?}",
                got.set_cookies
            );
            let value = id_cookie_value(text(&got.set_cookies[0]))
                .unwrap_or_else(|| panic!("stream {i}: not the id cookie: {:?}", got.set_cookies));
            new_ids.push(value);
        }
    }
    let keys_of = |wanted: Kind| -> Vec<String> {
        streams
            .iter()
            .filter(|(kind, ..)| *kind == wanted)
            .map(|(_, _, key, _)| key.clone())
            .collect()
    };
    let (cookie_values, header_keys) = (keys_of(Kind::Returning), keys_of(Kind::Header));
    let config = world.config();
    let mut ids = cookie_values.clone();
    ids.extend(new_ids.iter().cloned());
    let by_id = assign_ids(&config, &ids);
    let by_header = assign_on(&config, SHOP_HOST, &header_keys);
    let fresh: HashSet<&str> = new_ids.iter().map(|v| id_of(v)).collect();
    assert_eq!(
        fresh.len(),
        new_ids.len(),
        "two new clients got the same id: {new_ids:?}"
    );
    let returning: HashSet<&str> = cookie_values.iter().map(|v| id_of(v)).collect();
    assert!(
        fresh.is_disjoint(&returning),
        "a new client got a returning client's id"
    );

    let mut new_at = 0;
    let mut on_v2 = 0;
    for (i, ((kind, path, key, headers), got)) in streams.iter().zip(&got).enumerate() {
        let what = format!("stream {i} ({kind:?})");
        let expected = match kind {
            Kind::Returning => {
                assert_no_foreign_cookie(&what, &got.set_cookies, Some(id_of(key)));
                assert_eq!(got.body["cookie"], headers[0].1, "{what}: the app saw another cookie");
                &by_id[key]
            }
            Kind::Header => {
                assert_no_foreign_cookie(&what, &got.set_cookies, None);
                assert_eq!(got.body["user"], *key, "{what}: the app saw another user");
                &by_header[key]
            }
            Kind::New => {
                let value = &new_ids[new_at];
                new_at += 1;
                assert!(got.body["user"].is_null(), "{what}: the app saw a user: {}", got.body);
                &by_id[value]
            }
        };
        assert_eq!(
            got.body["path"], *path,
            "{what}: the answer to another stream: {}",
            got.body
        );
        assert_eq!(
            (got.served.as_str(), &got.body["version"], &got.body["routing"]),
            (expected.as_str(), &json!(expected), &json!(expected)),
            "{what}: not the version `assign` gives its key (served, body, routing header the app saw)"
        );
        if expected == "v2" {
            on_v2 += 1;
        }
    }
    assert!(
        (STREAMS * 35 / 100..=STREAMS * 65 / 100).contains(&on_v2),
        "{on_v2} of {STREAMS} streams on v2 at 50 %"
    );
    eprintln!(
        "{} (Envoy {}): one HTTP/2 connection, {STREAMS} streams ({} in flight at once, the gateway allows {limit}): \
         {} returning id cookies, {} x-user-id headers, {} new clients with distinct ids; {on_v2} on v2 at 50 %, \
         every stream on its key's version; {:?} in all",
        newest().name,
        newest().envoy,
        peak,
        cookie_values.len(),
        header_keys.len(),
        new_ids.len(),
        started.elapsed()
    );
}

#[test]
fn grpc_unary_and_bidi_calls_follow_their_metadata_key_and_open_streams_keep_their_version() {
    const CALLS: usize = 300;
    const STREAMS: usize = 30;
    let _serial = serial();
    let started = Instant::now();
    let mut world = World::new(50, 20);
    let mut client = client(world.gateway.listener());

    // Istio made the rpc clusters HTTP/2 (the Service's `grpc` port) and left the shop's HTTP/1.1.
    let cds = String::from_utf8(std::fs::read(world.gateway.xds_dir().join("cds.json")).unwrap()).unwrap();
    let cds: Value = serde_json::from_str(&cds).unwrap();
    let cluster = |name: &str| -> String {
        array(&cds["resources"])
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no cluster {name} in the translation"))
            .to_string()
    };
    assert!(cluster("outbound|80|v2|svc-rpc.ns-rpc.svc.cluster.local").contains("http2_protocol_options"));
    assert!(!cluster("outbound|80|v2|svc-shop.ns-shop.svc.cluster.local").contains("http2_protocol_options"));

    // Unary calls, all in flight at once on one channel, each user's key in its metadata.
    let users: Vec<String> = (0..CALLS).map(|i| format!("rpc-user-{i}")).collect();
    let calls: Vec<Value> = users
        .iter()
        .enumerate()
        .map(|(i, user)| json!({"user": user, "payload": format!("who-{i}")}))
        .collect();
    let answers = client.call(&json!({"op": "grpc_who", "authority": RPC_HOST, "calls": calls}));
    let at_20 = assign_on(&world.config(), RPC_HOST, &users);
    let mut unary_on_v2 = 0;
    for (i, (user, answer)) in users.iter().zip(array(&answers)).enumerate() {
        let reply = &answer["reply"];
        let version = &at_20[user];
        assert_eq!(
            (&reply["version"], &reply["routing"]),
            (&json!(version), &json!(version)),
            "call {i} ({user}): not the version `assign` gives it: {reply}"
        );
        assert_eq!(
            (&reply["user"], &reply["echo"]),
            (&json!(user), &json!(format!("who-{i}"))),
            "call {i}: another call's answer"
        );
        assert!(
            array(&answer["set_cookie"]).is_empty(),
            "call {i}: a Set-Cookie: {answer}"
        );
        if version == "v2" {
            unary_on_v2 += 1;
        }
    }
    assert!(
        (CALLS * 10 / 100..=CALLS * 30 / 100).contains(&unary_on_v2),
        "{unary_on_v2} of {CALLS} calls on v2 at 20 %"
    );

    // Bidi streams, opened at 20 %, then the canary goes to 80 % while they keep talking.
    let chat_users: Vec<String> = (0..STREAMS).map(|i| format!("chat-user-{i}")).collect();
    let at_20 = assign_on(&world.config(), RPC_HOST, &chat_users);
    let opening: Vec<Value> = chat_users
        .iter()
        .enumerate()
        .map(|(i, user)| json!({"id": format!("chat-{i}"), "user": user}))
        .collect();
    let first = client.call(&json!({"op": "chat_open", "authority": RPC_HOST, "streams": opening}));
    let mut open: Vec<(String, String, Value)> = Vec::new(); // (stream id, version, upstream stream)
    for (i, reply) in array(&first).iter().enumerate() {
        let version = &at_20[&chat_users[i]];
        check_reply(&format!("chat {i}"), reply, version, "stream", &reply["stream"]);
        open.push((format!("chat-{i}"), version.clone(), reply["stream"].clone()));
    }
    let ids: Vec<&str> = open.iter().map(|(id, _, _)| id.as_str()).collect();
    let check_streams = |client: &mut Script, when: &str| {
        let replies = client.call(&json!({"op": "chat_send", "ids": ids}));
        for ((id, version, stream), reply) in open.iter().zip(array(&replies)) {
            check_reply(&format!("{id} {when}"), reply, version, "stream", stream);
        }
    };
    let (rounds, took, changed) = world.set_weight_under("rpc", 80, || check_streams(&mut client, "during the push"));
    check_streams(&mut client, "after the push");

    // New calls for the same users land where `assign` says at 80 %; the open streams stay.
    let at_80 = assign_on(&world.config(), RPC_HOST, &chat_users);
    let movers = chat_users.iter().filter(|u| at_20[*u] != at_80[*u]).count();
    assert!(movers > 0, "20 → 80 % moved none of {STREAMS} users: nothing to tell");
    let calls: Vec<Value> = chat_users
        .iter()
        .map(|user| json!({"user": user, "payload": "after"}))
        .collect();
    let answers = client.call(&json!({"op": "grpc_who", "authority": RPC_HOST, "calls": calls}));
    for (user, answer) in chat_users.iter().zip(array(&answers)) {
        assert_eq!(
            answer["reply"]["version"], at_80[user],
            "{user}: a new call after the change: {answer}"
        );
    }
    check_streams(&mut client, "beside the new calls");
    let closed = client.call(&json!({"op": "chat_close", "ids": ids}));
    for close in array(&closed) {
        assert_eq!(
            (&close["code"], array(&close["extra"]).len()),
            (&json!("OK"), 0),
            "{close}"
        );
    }
    let on_v2 = |m: &HashMap<String, String>| m.values().filter(|v| *v == "v2").count();
    eprintln!(
        "{} (Envoy {}): {CALLS} unary gRPC calls on one channel, {unary_on_v2} on v2 at 20 %, each on its key's version; \
         {STREAMS} bidi streams, {} then {} of their users on v2 at 20 and 80 %: {movers} moved for new calls while \
         their open streams stayed; {rounds} messages per stream while set-weight was pushed ({took:?}, changed \
         {changed:?}); {:?} in all",
        newest().name,
        newest().envoy,
        on_v2(&at_20),
        on_v2(&at_80),
        started.elapsed()
    );
}
