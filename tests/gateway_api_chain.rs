#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! Gateway API ingress and traffic mirroring through Istio's own translation (see
//! `sticky_canary_harness::istio` and docs/testing.md).
//!
//! `ingress: gateway-api`: `sticky-canary render` → istiod's Gateway API controller (the
//! Gateway, HTTPRoute and Services go in as Kubernetes objects) for a pod of the gateway Istio
//! deploys for that Gateway → istio-agent → a real Envoy of each revision's line. 5,000 keys
//! land where `sticky-canary assign` says, a spoofed routing header lands on stable, the token
//! never reaches the app, and a `set-weight` ramp under load fails no request.
//!
//! `mirror: {version, percent}`, as a VirtualService `mirror` on the add-on gateway and as an
//! HTTPRoute `RequestMirror`: the mirror version receives the configured share of copies of the
//! other versions' requests, users' answers and versions are unchanged, and copies issue no
//! cookie and add to no counter (the filter runs once per user request; Envoy's router makes
//! the copy after it).
//!
//! `STICKY_CANARY_REVISIONS=asm-1-31` limits the run to some revisions (comma-separated).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

#[macro_use]
mod common;

use common::{
    assert_keys_on_plan, assert_spoofed_headers_stay_on_stable, assign_on, ramp, revision, run_cli, selected, send,
    serial, served, shop, tokens_seen, write_filter_config, ROUTING_HEADER, SHOP_HOST,
};
use sticky_canary_harness::backend::header_value;
use sticky_canary_harness::istio::{IstioProxy, Proxy, Revision, Translate};
use sticky_canary_harness::load::over_connections;
use sticky_canary_harness::{envoy_release, Backend, Client, Registry};

const APP: &str = "shop";
const NAMESPACE: &str = "ns-shop";
const HOST: &str = SHOP_HOST;
const GATEWAY: &str = "gateway-shop";
const ID_COOKIE: &str = "sticky-canary-id";

/// The Service Istio's deployment controller creates for the Gateway (`NAME-istio`, selecting
/// the gateway pods by the Gateway's name). pilot's fake server runs no deployment controller,
/// and istiod applies the Gateway to the pods behind this Service. `targetPort` is explicit: the
/// fake API server applies no defaults.
const GATEWAY_SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: gateway-shop-istio
  namespace: ns-shop
spec:
  selector:
    gateway.networking.k8s.io/gateway-name: gateway-shop
  ports:
  - name: http
    port: 80
    targetPort: 80
";

/// Which gateway serves the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ingress {
    /// The add-on's external gateway (Istio Gateway and VirtualService).
    AddOn,
    /// The app's own Gateway API gateway (Gateway, HTTPRoute).
    GatewayApi,
}

/// How the plugin reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// EnvoyFilter with the module inline (no registry).
    Inline,
    /// WasmPlugin attached to the Gateway by `targetRefs`, module pulled from an OCI registry.
    WasmPluginOci,
    /// TrafficExtension attached by `targetRefs`, module pulled from an OCI registry.
    TrafficExtensionOci,
}

struct World {
    revision: Revision,
    ingress: Ingress,
    form: Form,
    v1: Backend,
    v2: Backend,
    work: tempfile::TempDir,
    /// `plugin:` lines of the spec.
    plugin: String,
    _registry: Option<Registry>,
}

impl World {
    fn new(revision: Revision, ingress: Ingress, form: Form) -> World {
        let work = tempfile::tempdir().unwrap();
        let (plugin, registry) = match form {
            Form::Inline => ("  form: envoyfilter-inline\n".to_owned(), None),
            Form::WasmPluginOci | Form::TrafficExtensionOci => {
                let (registry, url, digest) = common::registry_with_module("gateway-api");
                let form = if form == Form::WasmPluginOci {
                    "wasmplugin"
                } else {
                    "trafficextension"
                };
                (
                    format!("  form: {form}\n  url: {url}\n  sha256: \"{digest}\"\n"),
                    Some(registry),
                )
            }
        };
        std::fs::write(work.path().join("gateway-service.yaml"), GATEWAY_SERVICE).unwrap();
        World {
            revision,
            ingress,
            form,
            v1: Backend::start("v1").unwrap(),
            // Recording: mirrored copies' answers are dropped, so only the backend sees them.
            v2: Backend::start_recording("v2").unwrap(),
            work,
            plugin,
            _registry: registry,
        }
    }

    fn spec_path(&self) -> PathBuf {
        self.work.path().join("shop.yaml")
    }

    fn rendered(&self) -> PathBuf {
        self.work.path().join("rendered")
    }

    /// Writes the spec (canary weight `v2_percent`, optional `mirror:` block) and renders it.
    fn render(&self, v2_percent: u32, mirror: Option<u32>) -> Vec<PathBuf> {
        let ingress = match self.ingress {
            Ingress::AddOn => "external",
            Ingress::GatewayApi => "gateway-api",
        };
        let mirror = mirror.map_or(String::new(), |p| format!("mirror: {{version: v2, percent: {p}}}\n"));
        let spec = format!(
            "app: {APP}\n\
             namespace: {NAMESPACE}\n\
             revision: {revision}\n\
             hosts: [{HOST}]\n\
             ingress: {ingress}\n\
             versions:\n  \
               - {{name: v1, image: example/shop:1, weight: {v1}}}\n  \
               - {{name: v2, image: example/shop:2, weight: {v2_percent}}}\n\
             {mirror}\
             routing:\n  \
               salt: shop-gateway-api-test\n  \
               key_chain:\n    - cookie: session\n    - new_client_id: {{}}\n\
             plugin:\n{plugin}",
            revision = self.revision.name,
            v1 = 100 - v2_percent,
            plugin = self.plugin,
        );
        std::fs::write(self.spec_path(), spec).unwrap();
        run_cli(&[
            "render",
            &self.spec_path().to_string_lossy(),
            "--out",
            &self.rendered().to_string_lossy(),
        ]);
        self.inputs()
    }

    fn set_weight(&self, v2_percent: u32) -> Vec<PathBuf> {
        common::set_weight(&self.spec_path(), v2_percent, &self.rendered());
        self.inputs()
    }

    fn inputs(&self) -> Vec<PathBuf> {
        let mut inputs = vec![self.rendered()];
        if self.ingress == Ingress::GatewayApi {
            inputs.push(self.work.path().join("gateway-service.yaml"));
        }
        inputs
    }

    fn start(&self, inputs: Vec<PathBuf>) -> IstioProxy {
        let mut translate = Translate::new(self.revision, inputs);
        let service = |name: &str| format!("{name}.{NAMESPACE}.svc.cluster.local");
        match self.ingress {
            Ingress::AddOn => {
                let host = service("svc-shop");
                translate.endpoint(&format!("outbound|80|v1|{host}"), self.v1.addr());
                translate.endpoint(&format!("outbound|80|v2|{host}"), self.v2.addr());
            }
            Ingress::GatewayApi => {
                translate.proxy = Proxy::GatewayApi {
                    namespace: NAMESPACE.to_owned(),
                    gateway: GATEWAY.to_owned(),
                };
                translate.endpoint(&format!("outbound|80||{}", service("svc-shop-v1")), self.v1.addr());
                translate.endpoint(&format!("outbound|80||{}", service("svc-shop-v2")), self.v2.addr());
            }
        }
        let envoy = envoy_release(self.revision.envoy).unwrap_or_else(|e| panic!("{e}"));
        let gateway = IstioProxy::start(&envoy, translate).unwrap_or_else(|e| {
            panic!(
                "{} {:?} {:?}: the gateway did not start: {e}",
                self.revision.name, self.ingress, self.form
            )
        });
        let plugin = format!("sticky-canary-{APP}");
        let outcome = gateway
            .summary()
            .extension_configs
            .iter()
            .find(|e| e.name.contains(&plugin))
            .cloned()
            .unwrap_or_else(|| panic!("our plugin is not on this gateway: {:?}", gateway.summary()));
        let expected = match self.form {
            Form::Inline => "unchanged",
            Form::WasmPluginOci | Form::TrafficExtensionOci => "wasm",
        };
        assert_eq!(outcome.outcome, expected, "istio-agent's conversion: {outcome:?}");
        gateway
    }

    fn filter_config(&self) -> PathBuf {
        write_filter_config(
            &self.rendered().join("plugin.yaml"),
            &self.work.path().join("filter-config.json"),
        )
    }
}

fn world_for(revision_name: &str, ingress: Ingress, form: Form) -> Option<(MutexGuard<'static, ()>, World)> {
    let revision = revision(revision_name);
    if !selected(&revision) {
        eprintln!("{revision_name} not selected by STICKY_CANARY_REVISIONS: nothing to run");
        return None;
    }
    let lock = serial();
    Some((lock, World::new(revision, ingress, form)))
}

/// What one user request got back.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    version: String,
    /// Routing tokens the app saw.
    tokens: usize,
    /// Set-Cookie headers of the response.
    set_cookies: Vec<String>,
}

/// Sends one request per key (`None`: a first visit without any cookie) over `threads`
/// connections, in order within each connection.
fn serve(gateway: SocketAddr, keys: &[Option<String>], threads: usize) -> Vec<(Option<String>, Reply)> {
    over_connections(gateway, keys, threads, |client, key| {
        let reply = send(client, &shop(key.as_deref()));
        let set_cookies = reply
            .header_all("set-cookie")
            .into_iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let result = Reply {
            status: reply.status,
            version: served(&reply),
            tokens: tokens_seen(&reply.body),
            set_cookies,
        };
        (key.clone(), result)
    })
    .unwrap()
}

// ---------------------------------------------------------------------------
// Gateway API: routing, spoofing, ramp.

fn gateway_api_routing_and_ramp(revision_name: &str, form: Form) {
    let Some((_serial, world)) = world_for(revision_name, Ingress::GatewayApi, form) else {
        return;
    };
    let mut gateway = world.start(world.render(30, None));
    let label = format!(
        "{} gateway-api {form:?} (Envoy {})",
        world.revision.name, world.revision.envoy
    );

    // 5,000 keys, exactly as `sticky-canary assign` predicts; the token never reaches the app.
    let keys: Vec<String> = (0..5_000).map(|i| format!("gateway-api-{i}")).collect();
    let predicted = assign_on(&world.filter_config(), HOST, &keys);
    let started = Instant::now();
    let requests: Vec<Option<String>> = keys.iter().cloned().map(Some).collect();
    let results = serve(gateway.listener(), &requests, 4);
    let elapsed = started.elapsed();
    let mut mismatches = Vec::new();
    let mut on_canary = 0;
    for (key, reply) in &results {
        let key = key.as_deref().unwrap_or_default();
        assert_eq!(reply.status, 200, "key {key}: {reply:?}");
        assert_eq!(reply.tokens, 0, "key {key}: the routing token reached the app");
        on_canary += usize::from(reply.version == "v2");
        if predicted[key] != reply.version {
            mismatches.push((key.to_owned(), predicted[key].clone(), reply.version.clone()));
        }
    }
    eprintln!(
        "{label}: 5000 keys in {elapsed:?}, {on_canary} on v2 (30% planned), {} mismatches",
        mismatches.len()
    );
    assert_keys_on_plan(&mismatches, on_canary, 5000);

    // A client-sent routing header, with or without a guessed token, lands on stable.
    let mut client = Client::connect(gateway.listener()).unwrap();
    assert_spoofed_headers_stay_on_stable(&mut client, &keys, &predicted);

    // The ramp, each step re-rendered, re-translated by Istio and pushed to the running gateway.
    ramp(
        &mut gateway,
        HOST,
        &label,
        |percent| world.set_weight(percent),
        || world.filter_config(),
    );
}

chain_tests! {
    gateway_api_routing_and_ramp:
    gateway_api_asm_1_30_envoyfilter_inline: "asm-1-30", Form::Inline;
    gateway_api_asm_1_31_envoyfilter_inline: "asm-1-31", Form::Inline;
    gateway_api_asm_1_31_wasmplugin_target_refs: "asm-1-31", Form::WasmPluginOci;
    gateway_api_asm_1_31_trafficextension_target_refs: "asm-1-31", Form::TrafficExtensionOci;
}

// ---------------------------------------------------------------------------
// Mirroring.

/// Waits until `count()` has not changed for half a second (mirrored copies and the filter's
/// counter flush arrive after the user's answer), at most 10 s.
fn settled(count: impl Fn() -> u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = count();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = count();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_millis(1_500) {
            break;
        }
    }
    last
}

/// The filter's assignment counters for the app's route: version -> requests assigned.
fn assignments(gateway: &IstioProxy) -> HashMap<String, u64> {
    let stats = gateway.envoy().stats().unwrap_or_else(|e| panic!("{e}"));
    let prefix = format!("wasmcustom.sticky_canary_assignments_total.route.{APP}.version.");
    let mut out = HashMap::new();
    for line in stats.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((name, value)) = rest.split_once(": ") else {
            continue;
        };
        let version = name.split('.').next().unwrap_or_default().to_owned();
        *out.entry(version).or_insert(0) += value.trim().parse::<u64>().unwrap_or(0);
    }
    out
}

/// Mirror 20% of v1's requests to v2 (the canary, at 20%): 5,000 requests of users on v1,
/// 1,000 of users on v2 and 500 first visits.
fn mirroring(ingress: Ingress) {
    const MIRROR_PERCENT: u32 = 20;
    let Some((_serial, world)) = world_for("asm-1-31", ingress, Form::Inline) else {
        return;
    };
    let gateway = world.start(world.render(20, Some(MIRROR_PERCENT)));
    let label = format!("mirror {ingress:?} (Envoy {})", world.revision.envoy);

    let candidates: Vec<String> = (0..9_000).map(|i| format!("mirror-{i}")).collect();
    let predicted = assign_on(&world.filter_config(), HOST, &candidates);
    let on = |version: &str, n: usize| -> Vec<String> {
        candidates
            .iter()
            .filter(|k| predicted[*k] == version)
            .take(n)
            .cloned()
            .collect()
    };
    let (stable_users, canary_users) = (on("v1", 5_000), on("v2", 1_000));
    assert_eq!((stable_users.len(), canary_users.len()), (5_000, 1_000));
    // Interleaved: one canary user and one first visit among stable users.
    let mut requests: Vec<Option<String>> = Vec::new();
    for (i, key) in stable_users.iter().enumerate() {
        requests.push(Some(key.clone()));
        if i % 5 == 0 {
            requests.push(canary_users.get(i / 5).cloned());
        }
        if i % 10 == 0 {
            requests.push(None);
        }
    }
    let first_visits = requests.iter().filter(|k| k.is_none()).count();
    let before = (world.v1.requests(), world.v2.requests());
    let results = serve(gateway.listener(), &requests, 4);

    // Users: answers from their own version, a cookie only on a first visit and only one.
    let mut served = HashMap::<&str, u64>::new();
    for (key, reply) in &results {
        assert_eq!(reply.status, 200, "{key:?}: {reply:?}");
        assert_eq!(reply.tokens, 0, "{key:?}: the routing token reached the app");
        *served
            .entry(if reply.version == "v2" { "v2" } else { "v1" })
            .or_insert(0) += 1;
        match key {
            Some(key) => {
                assert_eq!(reply.version, predicted[key], "key {key} answered by another version");
                assert!(reply.set_cookies.is_empty(), "key {key}: {:?}", reply.set_cookies);
            }
            None => {
                assert_eq!(reply.set_cookies.len(), 1, "a first visit: {:?}", reply.set_cookies);
                assert!(reply.set_cookies[0].starts_with(&format!("{ID_COOKIE}=")));
            }
        }
    }
    let user_requests = results.len() as u64;

    // The mirror version receives the configured share of copies of stable's requests. A copy
    // is told apart by the routing header the filter set on the user's request: v2's own users
    // come with `v2`, copies of v1's requests with `v1`. (Istio turns off Envoy's `-shadow` host
    // suffix, DISABLE_SHADOW_HOST_SUFFIX, so a copy has the user's host.)
    settled(|| world.v2.requests());
    let v1_answered = world.v1.requests() - before.0;
    let v2_received: Vec<_> = world.v2.received().into_iter().skip(before.1 as usize).collect();
    let (copies, own): (Vec<_>, Vec<_>) = v2_received
        .iter()
        .partition(|h| header_value(h, ROUTING_HEADER) != Some(&b"v2"[..]));
    let copies_n = copies.len() as u64;
    assert_eq!(
        v1_answered, served["v1"],
        "v1 answered other requests than its users' (copies to stable?)"
    );
    assert_eq!(
        own.len() as u64,
        served["v2"],
        "v2's users were not served exactly once each"
    );
    let share = copies_n as f64 / served["v1"] as f64;
    eprintln!(
        "{label}: {user_requests} user requests ({} on v1, {} on v2, {first_visits} first visits), \
         {copies_n} copies to v2 = {:.2}% of v1's requests (configured {MIRROR_PERCENT}%)",
        served["v1"],
        served["v2"],
        share * 100.0
    );
    // Envoy draws each copy at random: the count is binomial over v1's requests. Allow 5
    // standard deviations (about 2.7 points here); a fixed 2 points was only 3.7 σ.
    let p = f64::from(MIRROR_PERCENT) / 100.0;
    let tolerance = 5.0 * 100.0 * (p * (1.0 - p) / served["v1"] as f64).sqrt();
    assert!(
        (share * 100.0 - f64::from(MIRROR_PERCENT)).abs() <= tolerance,
        "mirrored share {:.2}% is not within {tolerance:.2} points (5 σ) of {MIRROR_PERCENT}%",
        share * 100.0
    );
    // Copies are stable users' requests as the filter left them: routing header v1, no token,
    // the user's host and session.
    for headers in &copies {
        // The bare stable name: the stable route replaced the filter's `v1;TOKEN` before the copy.
        assert_eq!(header_value(headers, ROUTING_HEADER), Some(&b"v1"[..]), "{headers:?}");
        assert_eq!(header_value(headers, "host"), Some(HOST.as_bytes()), "{headers:?}");
        if let Some(cookie) = header_value(headers, "cookie") {
            let key = String::from_utf8_lossy(cookie)
                .trim_start_matches("session=")
                .to_owned();
            assert_eq!(
                predicted.get(&key).map(String::as_str),
                Some("v1"),
                "a copy of {key}'s request"
            );
        }
    }

    // The filter counted each user request once: copies are made after it ran.
    let counted = settled(|| assignments(&gateway).values().sum());
    let by_version = assignments(&gateway);
    eprintln!("{label}: assignments counted {by_version:?}");
    assert_eq!(counted, user_requests, "assignments counted != user requests");
    assert_eq!(by_version.get("v2").copied().unwrap_or(0), served["v2"]);
}

#[test]
fn mirroring_on_the_add_on_gateway_virtual_service() {
    mirroring(Ingress::AddOn);
}

#[test]
fn mirroring_on_a_gateway_api_http_route() {
    mirroring(Ingress::GatewayApi);
}
