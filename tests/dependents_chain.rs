#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! Dependent services through Istio's own translation: `sticky-canary render` of
//! examples/my-app.yaml and examples/frontend-backend.yaml together → istiod's translation for
//! the AKS gateway **and for the frontend pod's sidecar** (`istio-xds translate --proxy
//! sidecar`) → istio-agent's conversion → real Envoys.
//!
//! The claim (docs/manifests.md, dependent services; docs/security.md): a client-sent
//! routing header with guessed tokens (gateway token or mesh token) lands on stable for the
//! app and for its dependents, also while the gateway filter is skipped (FAIL_OPEN with an
//! unreachable module: istio-agent installs allow-all RBAC instead). With the filter working,
//! a canary user reaches frontend v2, which receives the routing header and the mesh token
//! and, by copying them onto its call, reaches backend v2 through its own sidecar.
//!
//! Both proxies run through the harness: [`IstioProxy`] with [`Proxy::Gateway`] and with
//! [`Proxy::Sidecar`] for the frontend v1 pod.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;

use common::{assign_on, run_cli, send, serial, served, write_filter_config, ROUTING_HEADER, TOKEN_HEADER};
use sticky_canary::render::spec::MESH_TOKEN_HEADER;
use sticky_canary_harness::backend::seen_headers;
use sticky_canary_harness::istio::{newest, IstioProxy, Proxy, Translate};
use sticky_canary_harness::{envoy_release, Backend, Client, Request, Response};

const NAMESPACE: &str = "istio-test";
const FRONTEND_HOST: &str = "frontend.istio-test.example.com";
const MY_APP_HOST: &str = "my-app.example.com";
/// The dependent's host as the rendered mesh VirtualService names it (`dependent_services[].service`).
const BACKEND_HOST: &str = "backend.istio-test.svc.cluster.local";
/// The frontend's plugin (shared by both apps on the external gateway) as istiod names it.
const PLUGIN: &str = "sticky-canary-external";
/// Unreachable: istio-agent's fetch fails at once and FAIL_OPEN installs allow-all RBAC.
const UNREACHABLE_MODULE: &str = "oci://127.0.0.1:9/x:y";

/// The backend's Service. `render` emits the frontend's objects and the backend's mesh
/// VirtualService and DestinationRule, not the backend's Service (its owner deploys it);
/// without it istiod builds a virtual host for the backend but no `outbound|80|v*|backend`
/// clusters, so every call would fail.
const BACKEND_SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: backend
  namespace: istio-test
spec:
  selector:
    app: backend
  ports:
  - name: http
    port: 80
    targetPort: 8080
";

/// How the gateway gets the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    /// Inline in the EnvoyFilter: no registry, the filter runs.
    Working,
    /// FAIL_OPEN with an unreachable module: the gateway runs allow-all RBAC, no filter.
    Skipped,
}

/// The rendered example specs, their backends and the tokens render put in the manifests.
struct World {
    work: tempfile::TempDir,
    frontend_v1: Backend,
    frontend_v2: Backend,
    my_app_v1: Backend,
    my_app_v2: Backend,
    backend_v1: Backend,
    backend_v2: Backend,
    envoy: PathBuf,
}

impl World {
    fn new() -> World {
        World {
            work: tempfile::tempdir().unwrap(),
            frontend_v1: Backend::start("frontend-v1").unwrap(),
            frontend_v2: Backend::start("frontend-v2").unwrap(),
            my_app_v1: Backend::start("my-app-v1").unwrap(),
            my_app_v2: Backend::start("my-app-v2").unwrap(),
            backend_v1: Backend::start("backend-v1").unwrap(),
            backend_v2: Backend::start("backend-v2").unwrap(),
            envoy: envoy_release(newest().envoy).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn rendered(&self) -> PathBuf {
        self.work.path().join("rendered")
    }

    /// Renders both examples together for one plugin on the external gateway. The copies
    /// differ from the examples only where a test without a cluster needs it: my-app serves
    /// plain HTTP on 80 (its TLS server needs an SDS secret, which a standalone Envoy has
    /// not; with TLS its port 80 only redirects), and the module url is unreachable when the
    /// filter is to be skipped.
    fn render(&self, filter: Filter) -> Vec<PathBuf> {
        let specs = self.work.path().join("specs");
        std::fs::create_dir_all(&specs).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths = Vec::new();
        for name in ["my-app.yaml", "frontend-backend.yaml"] {
            let mut text = std::fs::read_to_string(repo.join("examples").join(name)).unwrap();
            if name == "my-app.yaml" {
                let tls = "tls:\n  credential_name: my-app-tls\n";
                assert!(text.contains(tls), "examples/my-app.yaml has no {tls:?} to drop");
                text = text.replace(tls, "");
            }
            let url = "  url: oci://myregistry.azurecr.io/sticky-canary:0.1.0\n";
            assert!(text.contains(url), "examples/{name} has no {url:?}");
            assert!(
                text.contains("fail_strategy: FAIL_OPEN"),
                "examples/{name} is not FAIL_OPEN"
            );
            text = text.replace(url, &format!("  url: {UNREACHABLE_MODULE}\n"));
            let path = specs.join(name);
            std::fs::write(&path, text).unwrap();
            paths.push(path.to_string_lossy().into_owned());
        }
        let out = self.rendered();
        let out = out.to_string_lossy();
        let mut args = vec!["render", paths[0].as_str(), paths[1].as_str(), "--out", &out];
        if filter == Filter::Working {
            args.extend(["--plugin-form", "envoyfilter-inline"]);
        }
        run_cli(&args);
        let service = self.work.path().join("backend-service.yaml");
        std::fs::write(&service, BACKEND_SERVICE).unwrap();
        vec![self.rendered(), service]
    }

    /// The AKS gateway, as tests/istio_chain.rs runs it.
    fn gateway(&self, inputs: Vec<PathBuf>) -> IstioProxy {
        let mut translate = Translate::new(newest(), inputs);
        for (service, v1, v2) in [
            (
                "svc-frontend.istio-test.svc.cluster.local",
                &self.frontend_v1,
                &self.frontend_v2,
            ),
            (
                "svc-my-app.ns-canary-istio.svc.cluster.local",
                &self.my_app_v1,
                &self.my_app_v2,
            ),
        ] {
            translate.endpoint(&format!("outbound|80||{service}"), v1.addr());
            translate.endpoint(&format!("outbound|80|v1|{service}"), v1.addr());
            translate.endpoint(&format!("outbound|80|v2|{service}"), v2.addr());
        }
        IstioProxy::start(&self.envoy, translate).unwrap_or_else(|e| panic!("the gateway did not start: {e}"))
    }

    /// The frontend v1 pod's sidecar.
    fn sidecar(&self, inputs: &[PathBuf]) -> IstioProxy {
        let mut endpoints = BTreeMap::new();
        for (subset, backend) in [
            ("", &self.backend_v1),
            ("v1", &self.backend_v1),
            ("v2", &self.backend_v2),
        ] {
            endpoints.insert(format!("outbound|80|{subset}|{BACKEND_HOST}"), vec![backend.addr()]);
        }
        let mut translate = Translate::new(newest(), inputs.to_vec());
        translate.proxy = Proxy::Sidecar {
            namespace: NAMESPACE.to_owned(),
            labels: vec![("app".into(), "frontend".into()), ("version".into(), "v1".into())],
        };
        translate.endpoints = endpoints;
        let sidecar = IstioProxy::start(&self.envoy, translate)
            .unwrap_or_else(|e| panic!("the frontend's sidecar did not start: {e}"));
        let summary = sidecar.summary();
        eprintln!(
            "sidecar translation: listeners {:?} routes {:?} clusters {:?}",
            summary.listeners, summary.routes, summary.clusters
        );
        assert_eq!(summary.listeners, ["0.0.0.0_80"], "{summary:?}");
        assert_eq!(summary.routes, ["80"], "{summary:?}");
        sidecar
    }

    /// A value of the rendered manifests: `spec.http[0].match[0].headers[header].exact` of the
    /// VirtualService `name` in `file` (the canary route's token).
    /// The gateway token of VirtualService `name` in `file`: what follows `v2;` in the routing
    /// header its first route matches (the token travels in the routing header).
    fn gateway_token(&self, file: &str, name: &str) -> String {
        let combined = self.token(file, name, ROUTING_HEADER);
        let (version, token) = combined
            .split_once(';')
            .unwrap_or_else(|| panic!("{name}: no token in {ROUTING_HEADER}: {combined}"));
        assert_eq!(version, "v2", "{name}: first route");
        token.to_owned()
    }

    fn token(&self, file: &str, name: &str, header: &str) -> String {
        let text = std::fs::read_to_string(self.rendered().join(file)).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: serde_json::Value = serde::Deserialize::deserialize(document).unwrap();
            if value["kind"] == "VirtualService" && value["metadata"]["name"] == name {
                let token = &value["spec"]["http"][0]["match"][0]["headers"][header]["exact"];
                return token
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: no {header} on its first route"))
                    .to_owned();
            }
        }
        panic!("no VirtualService {name} in {file}");
    }

    /// The shared plugin's filter config (`configuration.value` of the inline EnvoyFilter),
    /// written to a file for `sticky-canary assign`.
    fn filter_config(&self) -> PathBuf {
        write_filter_config(
            &self.rendered().join("gateway").join("plugin-external.yaml"),
            &self.work.path().join("filter-config.json"),
        )
    }
}

/// `sticky-canary assign` for the frontend's route: the first of `user-0`..`user-199` on `version`.
fn key_on(config: &Path, version: &str) -> String {
    let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let assigned = assign_on(config, FRONTEND_HOST, &keys);
    keys.into_iter()
        .find(|key| assigned[key] == version)
        .unwrap_or_else(|| panic!("no key of 200 on {version}: {assigned:?}"))
}

/// What the frontend received of `header`, as text.
fn seen(reply: &Response, header: &str) -> Vec<String> {
    seen_headers(&reply.body, header)
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The frontend's call to the backend: the routing header and the mesh token copied from its
/// incoming request (docs/manifests.md: the frontend must propagate both, like trace headers).
fn propagated_call(frontend_reply: &Response) -> Request {
    let mut call = Request::get("/").host(BACKEND_HOST);
    for header in [ROUTING_HEADER, MESH_TOKEN_HEADER] {
        for value in seen(frontend_reply, header) {
            call = call.header(header, value);
        }
    }
    call
}

/// While the gateway filter is skipped (allow-all RBAC), a client's routing header with
/// guessed tokens, or even the real mesh token, lands on stable and none of it reaches the
/// frontend; the frontend's sidecar sends what the frontend got, and the client's own headers,
/// to the stable backend.
#[test]
fn with_the_filter_skipped_spoofed_headers_land_on_stable_for_the_app_and_its_dependent() {
    let _serial = serial();
    let world = World::new();
    let inputs = world.render(Filter::Skipped);
    let gateway = world.gateway(inputs.clone());
    let outcome = gateway.summary().outcome(PLUGIN).cloned();
    eprintln!("istio-agent's conversion of {PLUGIN}: {outcome:?}");
    assert_eq!(
        outcome.map(|o| o.outcome),
        Some("rbac-allow".to_owned()),
        "the unreachable module must leave the gateway without the filter"
    );
    let sidecar = world.sidecar(&inputs);
    let mesh_token = world.token("frontend/dependents.yaml", "vs-backend", MESH_TOKEN_HEADER);
    let gateway_token = world.gateway_token("frontend/istio.yaml", "vs-frontend");
    let mut client = Client::connect(gateway.listener()).unwrap();
    let mut mesh = Client::connect(sidecar.listener()).unwrap();
    let guesses = [
        (
            "guessed gateway token",
            "guessed-0123456789abcdef",
            "guessed-mesh-token-0123",
        ),
        ("mesh token as gateway token", mesh_token.as_str(), mesh_token.as_str()),
        (
            "gateway token of another app",
            "EXAMPLE-NOT-SECRET-gateway-frontend-1",
            mesh_token.as_str(),
        ),
    ];
    let mut requests = 0;
    for (host, app) in [(FRONTEND_HOST, "frontend"), (MY_APP_HOST, "my-app")] {
        for (what, token, mesh_guess) in guesses {
            // The guess where the generated routes look for it: in the routing header.
            let spoofed = Request::get("/")
                .host(host)
                .header(ROUTING_HEADER, format!("v2;{token}"))
                .header(MESH_TOKEN_HEADER, mesh_guess);
            let reply = send(&mut client, &spoofed);
            requests += 1;
            assert_eq!(reply.status, 200, "{host}, {what}: {}", reply.body_text());
            assert_eq!(served(&reply), format!("{app}-v1"), "{host}, {what}");
            if app != "frontend" {
                continue;
            }
            for header in [ROUTING_HEADER, TOKEN_HEADER, MESH_TOKEN_HEADER] {
                assert!(seen(&reply, header).is_empty(), "{what}: {header} reached the frontend");
            }
            // What the frontend propagates (nothing) reaches the stable backend.
            let call = propagated_call(&reply);
            assert_eq!(served(&send(&mut mesh, &call)), "backend-v1", "{what}: propagated");
            if mesh_guess != mesh_token {
                // A guessed mesh token sent straight to the sidecar (a frontend forwarding
                // everything, or a caller inside the mesh): stable as well.
                let forwarded = Request::get("/")
                    .host(BACKEND_HOST)
                    .header(ROUTING_HEADER, "v2")
                    .header(MESH_TOKEN_HEADER, mesh_guess);
                assert_eq!(served(&send(&mut mesh, &forwarded)), "backend-v1", "{what}: forwarded");
            }
        }
    }
    // The real gateway token without the filter is the documented limit (security.md): it does
    // reach the canary, and the gateway then sets the real mesh token. Asserted so a change in
    // Istio's handling shows up here.
    let reply = send(
        &mut client,
        &Request::get("/")
            .host(FRONTEND_HOST)
            .header(ROUTING_HEADER, format!("v2;{gateway_token}")),
    );
    assert_eq!(
        served(&reply),
        "frontend-v2",
        "the real gateway token while the filter is skipped"
    );
    assert_eq!(seen(&reply, MESH_TOKEN_HEADER), vec![mesh_token.clone()]);
    assert_eq!(
        seen(&reply, ROUTING_HEADER),
        vec!["v2".to_owned()],
        "the gateway token reached the frontend"
    );
    eprintln!(
        "filter skipped: {requests} spoofed requests on {FRONTEND_HOST} and {MY_APP_HOST} all on stable; \
         frontend {} requests, my-app {}, backend v1 {} / v2 {}",
        world.frontend_v1.requests() + world.frontend_v2.requests(),
        world.my_app_v1.requests() + world.my_app_v2.requests(),
        world.backend_v1.requests(),
        world.backend_v2.requests()
    );
    assert_eq!(world.my_app_v2.requests(), 0);
    assert_eq!(world.backend_v2.requests(), 0);
}

/// With the filter working, a canary user reaches frontend v2, which receives the routing
/// header and the real mesh token (never the gateway token) and, copying both, reaches backend
/// v2 through its sidecar; a stable user's frontend receives neither and reaches backend v1.
#[test]
fn a_canary_user_reaches_the_canary_backend_through_the_frontend_sidecar() {
    let _serial = serial();
    let world = World::new();
    let inputs = world.render(Filter::Working);
    let gateway = world.gateway(inputs.clone());
    let outcome = gateway.summary().outcome(PLUGIN).cloned();
    assert_eq!(
        outcome.map(|o| o.outcome),
        Some("unchanged".to_owned()),
        "inline module"
    );
    let sidecar = world.sidecar(&inputs);
    let mesh_token = world.token("frontend/dependents.yaml", "vs-backend", MESH_TOKEN_HEADER);
    let config = world.filter_config();
    let canary_user = key_on(&config, "v2");
    let stable_user = key_on(&config, "v1");
    eprintln!("canary user {canary_user}, stable user {stable_user}");
    let mut client = Client::connect(gateway.listener()).unwrap();
    let mut mesh = Client::connect(sidecar.listener()).unwrap();

    let frontend = |client: &mut Client, user: &str| {
        send(
            client,
            &Request::get("/")
                .host(FRONTEND_HOST)
                .header("x-user-id", user)
                .header(MESH_TOKEN_HEADER, "guessed-mesh-token-0123"),
        )
    };
    let reply = frontend(&mut client, &canary_user);
    assert_eq!(served(&reply), "frontend-v2", "{}", reply.body_text());
    assert_eq!(seen(&reply, ROUTING_HEADER), vec!["v2".to_owned()]);
    assert_eq!(
        seen(&reply, MESH_TOKEN_HEADER),
        vec![mesh_token.clone()],
        "the canary route sets the real mesh token, replacing the client's"
    );
    assert!(
        seen(&reply, TOKEN_HEADER).is_empty(),
        "the gateway token reached the frontend"
    );
    let backend = send(&mut mesh, &propagated_call(&reply));
    assert_eq!(served(&backend), "backend-v2", "{}", backend.body_text());
    assert_eq!(seen(&backend, MESH_TOKEN_HEADER), vec![mesh_token.clone()]);

    let reply = frontend(&mut client, &stable_user);
    assert_eq!(served(&reply), "frontend-v1");
    for header in [ROUTING_HEADER, TOKEN_HEADER, MESH_TOKEN_HEADER] {
        assert!(
            seen(&reply, header).is_empty(),
            "stable user: {header} reached the frontend"
        );
    }
    assert_eq!(served(&send(&mut mesh, &propagated_call(&reply))), "backend-v1");

    // The sidecar alone: only the routing header with the real mesh token reaches backend v2.
    let gateway_token = world.gateway_token("frontend/istio.yaml", "vs-frontend");
    let call = |version: Option<&str>, token: Option<&str>| {
        let mut request = Request::get("/").host(BACKEND_HOST);
        if let Some(version) = version {
            request = request.header(ROUTING_HEADER, version);
        }
        if let Some(token) = token {
            request = request.header(MESH_TOKEN_HEADER, token);
        }
        request
    };
    let cases = [
        (
            "header and mesh token",
            call(Some("v2"), Some(&mesh_token)),
            "backend-v2",
        ),
        (
            "short host name",
            call(Some("v2"), Some(&mesh_token)).host("backend"),
            "backend-v2",
        ),
        (
            "guessed mesh token",
            call(Some("v2"), Some("guessed-mesh-token-0123")),
            "backend-v1",
        ),
        (
            "gateway token as mesh token",
            call(Some("v2"), Some(&gateway_token)),
            "backend-v1",
        ),
        ("no mesh token", call(Some("v2"), None), "backend-v1"),
        ("mesh token without header", call(None, Some(&mesh_token)), "backend-v1"),
        (
            "mesh token, stable header",
            call(Some("v1"), Some(&mesh_token)),
            "backend-v1",
        ),
    ];
    for (what, request, expected) in &cases {
        let reply = send(&mut mesh, request);
        assert_eq!(reply.status, 200, "{what}: {}", reply.body_text());
        assert_eq!(served(&reply), *expected, "{what}");
    }
    eprintln!(
        "filter working: {} sidecar cases as expected; backend v1 {} / v2 {} requests",
        cases.len(),
        world.backend_v1.requests(),
        world.backend_v2.requests()
    );
}
