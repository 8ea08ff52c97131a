//! What Envoy proves is what the cluster gets: the rendered VirtualServices' header routes
//! become the real Envoy's route table (one virtual host per app), and the filter config carried
//! by the rendered EnvoyFilter (by url, inline, and the shared plugin of many apps) is loaded
//! into that Envoy as it is.
//!
//! The VirtualService → Envoy translation here is written by hand (`virtual_host` below): header
//! matches, `headers.request.set` and `remove`. Istio's own translation is the better judge; until
//! these tests run through it, this one follows what Istio documents for those fields.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use policy_core::Policy;
use serde_yaml_ng::Value as Yaml;
use sticky_canary::harness::backend::seen_headers;
use sticky_canary::harness::{
    Backend, Client, Envoy, EnvoyConfig, FilterSpec, HeaderRoute, Request, RouteTable, VirtualHost, WasmCode,
};
use sticky_canary::render::token::{Purpose, TokenKey, Tokens};
use sticky_canary::render::{self, objects, App, PluginForm};

fn load_example() -> App {
    render::load(Path::new("examples/my-app.yaml")).unwrap().1
}

fn test_tokens() -> Tokens {
    Tokens::Key(TokenKey::parse(&"5a".repeat(32)).unwrap())
}

/// The app's rendered VirtualService as an Envoy virtual host that also catches every other
/// host (standing for another app's VirtualService with the same token requirement), and a
/// backend per version (`my-app-v1`, ...).
fn single_app_routes(app: &App) -> (RouteTable, Vec<Backend>) {
    let mut host = virtual_host(&objects::virtual_service(app, &test_tokens()));
    host.domains.push("*".to_owned());
    let backends = backends_for(std::slice::from_ref(&host));
    (RouteTable::ByHost(vec![host]), backends)
}

/// One Envoy virtual host from a rendered VirtualService; a destination `svc-APP...` subset `v2`
/// becomes cluster `APP-v2` (for a dependent, `SERVICE-v2`).
fn virtual_host(vs: &Yaml) -> VirtualHost {
    let cluster = |subset: &str| {
        let host = vs["spec"]["http"][0]["route"][0]["destination"]["host"]
            .as_str()
            .unwrap();
        let service = host.split('.').next().unwrap();
        format!("{}-{subset}", service.strip_prefix("svc-").unwrap_or(service))
    };
    let (routes, default) = render::virtual_service_routes(vs);
    let default = default.expect("a VirtualService without a default route");
    VirtualHost {
        domains: vs["spec"]["hosts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_owned())
            .collect(),
        matches: routes
            .into_iter()
            .map(|r| HeaderRoute {
                cluster: cluster(&r.subset),
                header: r.header,
                value: r.value,
                also: r.also,
                set: r.set,
                remove: r.remove,
            })
            .collect(),
        default: HeaderRoute {
            cluster: cluster(&default.subset),
            set: default.set,
            remove: default.remove,
            ..HeaderRoute::default()
        },
    }
}

fn objects_of_kind<'a>(rendered: &'a render::Rendered, kind: &str) -> Vec<&'a Yaml> {
    rendered
        .objects()
        .filter(|o| o["kind"].as_str() == Some(kind))
        .collect()
}

/// The rendered EnvoyFilter's Wasm typed_config as JSON, with the module read from `module`
/// (what istio-agent hands Envoy after fetching the url).
fn typed_config_of(envoy_filter: &Yaml, module: &Path) -> serde_json::Value {
    let typed = &envoy_filter["spec"]["configPatches"][0]["patch"]["value"]["typed_config"];
    let mut value = serde_json::to_value(typed).unwrap();
    if value.pointer("/config/vm_config/code/remote").is_some() {
        *value.pointer_mut("/config/vm_config/code").unwrap() =
            serde_json::json!({"local": {"filename": module.to_string_lossy()}});
    }
    value
}

fn run_form(form: PluginForm) {
    let mut app = load_example();
    app.plugin.form = form;
    let tokens = test_tokens();
    let dir = std::env::temp_dir().join(format!("sticky-canary-render-envoy-{}-{form:?}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("plugin.wasm");
    std::fs::write(&module, sticky_canary::FILTER_WASM).unwrap();
    let install = objects::single_install(&app, &tokens);
    let typed_config = render::envoy_wasm_typed_config(&install, Some(&module));
    if form == PluginForm::EnvoyFilterInline {
        assert!(
            typed_config
                .pointer("/config/vm_config/code/local/inline_bytes")
                .is_some(),
            "the inline form carries no inline_bytes: {typed_config}"
        );
    }
    let plugin_config = typed_config
        .pointer("/config/configuration/value")
        .and_then(|v| v.as_str())
        .expect("the typed_config carries no filter configuration")
        .to_owned();
    let policy = Policy::from_json(plugin_config.as_bytes()).expect("the rendered pluginConfig is invalid");
    let route = &policy.routes()[0];

    let (routes, backends) = single_app_routes(&app);
    let config = plain(routes, &backends).with_filter(FilterSpec {
        code: WasmCode::TypedConfig(typed_config.to_string()),
        ..FilterSpec::embedded("")
    });
    let envoy = Envoy::start(&config).unwrap();
    let mut client = Client::connect(envoy.listener()).unwrap();
    let host = app.hosts[0].clone();

    let mut served = [0usize; 2];
    for i in 0..300 {
        let key = format!("user-{i}");
        let reply = client
            .send(
                &Request::get("/")
                    .host(&host)
                    .header("cookie", format!("session={key}"))
                    // A spoofed routing header: the filter must replace it.
                    .header(&app.routing_header, "v2"),
            )
            .unwrap();
        let expected = route.versions()[route.assign(key.as_bytes()).1].name();
        assert_eq!(
            reply.header_str("x-served-version"),
            format!("my-app-{expected}"),
            "{form:?}: key {key}"
        );
        served[usize::from(expected != "v1")] += 1;
    }
    assert!(
        served[0] > 0 && served[1] > 0,
        "{form:?}: one version got everything: {served:?}"
    );

    // The filter sets the routing token, replacing whatever the client sent; the route removes it.
    let token = tokens.token(Purpose::Gateway, &app.name, 1);
    assert_eq!(route.routing_token().unwrap().value, token);
    let reply = client
        .send(
            &Request::get("/")
                .host(&host)
                .header(&app.token.header, "forged")
                .header(&app.token.header, "twice"),
        )
        .unwrap();
    assert!(
        seen_headers(&reply.body, &app.token.header).is_empty(),
        "{form:?}: the routing token reached the app"
    );

    // A host the filter has no route for is left alone; the VirtualService's token requirement
    // sends a spoofed header to stable.
    let reply = client
        .send(
            &Request::get("/")
                .host("other.example.org")
                .header(&app.routing_header, "v2"),
        )
        .unwrap();
    assert_eq!(
        reply.header_str("x-served-version"),
        "my-app-v1",
        "{form:?}: unrouted host reached the canary"
    );
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_rendered_envoyfilter_by_url_runs_in_envoy_and_routes_by_the_virtualservice() {
    run_form(PluginForm::EnvoyFilter);
}

#[test]
fn the_rendered_inline_envoyfilter_runs_in_envoy_and_routes_by_the_virtualservice() {
    run_form(PluginForm::EnvoyFilterInline);
}

/// FAIL_OPEN's worst case: the filter is not in the chain at all. The VirtualService's canary
/// route requires the routing token, which clients do not know, so a spoofed routing header
/// still lands on stable.
#[test]
fn a_spoofed_routing_header_lands_on_stable_while_the_filter_is_skipped() {
    let app = load_example();
    let (routes, backends) = single_app_routes(&app);
    let envoy = Envoy::start(&plain(routes, &backends)).unwrap();
    let mut client = Client::connect(envoy.listener()).unwrap();
    let token = test_tokens().token(Purpose::Gateway, &app.name, 1);
    let send = |client: &mut Client, token_value: Option<&str>| {
        let mut request = Request::get("/").host(&app.hosts[0]).header(&app.routing_header, "v2");
        if let Some(value) = token_value {
            request = request.header(&app.token.header, value);
        }
        client
            .send(&request)
            .unwrap()
            .header_str("x-served-version")
            .replace("my-app-", "")
    };
    assert_eq!(
        send(&mut client, None),
        "v1",
        "the routing header alone reached the canary"
    );
    assert_eq!(
        send(&mut client, Some("guessed-token-value")),
        "v1",
        "a wrong token reached the canary"
    );
    // The old derivation from public facts (app name and salt) is no longer the token.
    let old_guess: String =
        sticky_canary::sha256_hex(format!("sticky-canary routing token\0{}\0my-app-2025", app.name).as_bytes())
            .chars()
            .take(32)
            .collect();
    assert_eq!(
        send(&mut client, Some(&old_guess)),
        "v1",
        "the guessable token reached the canary"
    );
    // The route does lead to the canary with the real token: what the filter sets.
    assert_eq!(send(&mut client, Some(&token)), "v2");
}

// ---------------------------------------------------------------------------
// Many apps on one shared plugin
// ---------------------------------------------------------------------------

/// How app `i` of a fleet identifies its users.
#[derive(Clone, Copy)]
enum KeyKind {
    Cookie,
    Header,
}

struct FleetApp {
    name: String,
    host: String,
    key: KeyKind,
    key_name: String,
}

/// App `i`'s spec: its own split (2 or 3 versions), key source, salt, and for some a routing
/// header of its own.
fn fleet_spec(i: usize) -> (String, FleetApp) {
    let name = format!("app-{i:02}");
    let host = format!("app-{i:02}.example.com");
    let (key, key_name, chain) = if i.is_multiple_of(2) {
        (
            KeyKind::Cookie,
            format!("session-{i}"),
            format!("[{{cookie: session-{i}}}]"),
        )
    } else {
        (
            KeyKind::Header,
            format!("x-user-{i}"),
            format!("[{{header: x-user-{i}}}]"),
        )
    };
    let canary = 5 + (i * 37) % 86;
    let versions = if i % 3 == 2 {
        let v3 = (canary / 3).max(1);
        format!(
            "  - {{name: v1, image: nginx, weight: {}}}\n  - {{name: v2, image: nginx, weight: {}}}\n  - {{name: v3, image: nginx, weight: {v3}}}\n",
            100 - canary,
            canary - v3
        )
    } else {
        format!(
            "  - {{name: v1, image: nginx, weight: {}}}\n  - {{name: v2, image: nginx, weight: {canary}}}\n",
            100 - canary
        )
    };
    let routing_header = if i % 4 == 3 {
        format!("  routing_header: x-{name}-version\n")
    } else {
        String::new()
    };
    let spec = format!(
        "app: {name}\nrevision: asm-1-28\nhosts: [{host}]\nversions:\n{versions}routing:\n  salt: {name}-{i}\n{routing_header}  key_chain: {chain}\nplugin:\n  url: oci://myregistry.azurecr.io/sticky-canary:0.1.0\n  sha256: \"{}\"\n",
        "ab".repeat(32)
    );
    (
        spec,
        FleetApp {
            name,
            host,
            key,
            key_name,
        },
    )
}

/// Backends for every (app, version) a set of VirtualServices routes to, named `APP-VERSION`.
fn backends_for(hosts: &[VirtualHost]) -> Vec<Backend> {
    let mut names: Vec<String> = hosts
        .iter()
        .flat_map(|h| h.matches.iter().chain(std::iter::once(&h.default)))
        .map(|r| r.cluster.clone())
        .collect();
    names.sort();
    names.dedup();
    names.iter().map(|n| Backend::start(n).unwrap()).collect()
}

fn clusters(backends: &[Backend]) -> Vec<(String, SocketAddr)> {
    backends.iter().map(|b| (b.version().to_owned(), b.addr())).collect()
}

/// An Envoy with these routes and backends, and no filter yet.
fn plain(routes: RouteTable, backends: &[Backend]) -> EnvoyConfig {
    EnvoyConfig {
        clusters: clusters(backends),
        routes,
        filter: None,
        concurrency: 1,
        log_level: "info".to_owned(),
        max_request_headers_kb: None,
    }
}

/// Renders `n` apps for one shared gateway, loads the shared EnvoyFilter and every app's
/// VirtualService into one Envoy, and checks `keys` keys per app against policy-core (what
/// `sticky-canary assign` prints). Every request also carries a spoofed routing header and a
/// guessed token, which the filter must replace.
fn run_fleet(n: usize, keys: usize) -> BTreeMap<String, (usize, BTreeMap<String, usize>)> {
    let tokens = test_tokens();
    let fleet: Vec<(String, FleetApp)> = (0..n).map(fleet_spec).collect();
    let inputs: Vec<(String, App)> = fleet
        .iter()
        .map(|(spec, app)| (format!("{}.yaml", app.name), App::from_yaml(spec).unwrap()))
        .collect();
    let rendered = render::render_shared(&inputs, None, &tokens).unwrap();
    let plugins = objects_of_kind(&rendered, "EnvoyFilter");
    assert_eq!(plugins.len(), 1, "{n} apps, one plugin");
    let work = tempfile::tempdir().unwrap();
    let module = work.path().join("plugin.wasm");
    std::fs::write(&module, sticky_canary::FILTER_WASM).unwrap();
    let typed_config = typed_config_of(plugins[0], &module);
    let carried = typed_config["config"]["configuration"]["value"].as_str().unwrap();
    let policy = Policy::from_json(carried.as_bytes()).unwrap();
    assert_eq!(policy.routes().len(), n);

    let hosts: Vec<VirtualHost> = objects_of_kind(&rendered, "VirtualService")
        .into_iter()
        .map(virtual_host)
        .collect();
    assert_eq!(hosts.len(), n);
    let backends = backends_for(&hosts);
    let config = plain(RouteTable::ByHost(hosts), &backends)
        .with_concurrency(2)
        .with_filter(FilterSpec {
            code: WasmCode::TypedConfig(typed_config.to_string()),
            ..FilterSpec::embedded("")
        });
    let envoy = Envoy::start(&config).unwrap();

    // Four connections at once, each taking every fourth app.
    let results: Vec<(String, usize, BTreeMap<String, usize>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|worker| {
                let (fleet, policy, envoy) = (&fleet, &policy, &envoy);
                scope.spawn(move || {
                    let mut client = Client::connect(envoy.listener()).unwrap();
                    let mut out = Vec::new();
                    for (_, app) in fleet.iter().skip(worker).step_by(4) {
                        let route = policy.routes().iter().find(|r| r.name() == app.name).unwrap();
                        let mut mismatches = 0;
                        let mut served: BTreeMap<String, usize> = BTreeMap::new();
                        for k in 0..keys {
                            let key = format!("{}-user-{k}", app.name);
                            let mut request = Request::get("/")
                                .host(&app.host)
                                .header(route.routing_header(), "v2")
                                .header("x-canary-token", "guessed-0123456789abcdef");
                            request = match app.key {
                                KeyKind::Cookie => request.header("cookie", format!("{}={key}", app.key_name)),
                                KeyKind::Header => request.header(&app.key_name, &key),
                            };
                            let reply = client.send(&request).unwrap();
                            let expected = route.versions()[route.assign(key.as_bytes()).1].name();
                            let got = reply.header_str("x-served-version");
                            if got != format!("{}-{expected}", app.name) {
                                mismatches += 1;
                            }
                            *served.entry(got).or_default() += 1;
                        }
                        out.push((app.name.clone(), mismatches, served));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    results.into_iter().map(|(name, m, s)| (name, (m, s))).collect()
}

fn check_fleet(n: usize) {
    const KEYS: usize = 5_000;
    let results = run_fleet(n, KEYS);
    assert_eq!(results.len(), n);
    println!("{n} apps on one shared plugin, {KEYS} keys per app:");
    for (app, (mismatches, served)) in &results {
        println!("  {app}: {mismatches} mismatches; served {served:?}");
    }
    for (app, (mismatches, served)) in &results {
        assert_eq!(
            *mismatches, 0,
            "{app}: {mismatches} of {KEYS} keys not on the version policy-core predicts"
        );
        assert_eq!(served.values().sum::<usize>(), KEYS);
        assert!(served.len() >= 2, "{app}: every key on one version: {served:?}");
    }
}

#[test]
fn two_apps_on_one_shared_plugin_match_policy_core_for_every_key() {
    check_fleet(2);
}

#[test]
fn twenty_apps_on_one_shared_plugin_match_policy_core_for_every_key() {
    check_fleet(20);
}

/// While the filter is skipped (FAIL_OPEN, module not fetched), a client sends the routing header
/// with guessed tokens, for the gateway and for the mesh hop: the frontend's stable route serves
/// it and strips both, so what the frontend passes on reaches the backend's stable version; a
/// caller inside the mesh with a guessed mesh token reaches the backend's stable version too.
/// With the filter on, a canary user reaches the frontend and the backend canaries.
#[test]
fn a_spoofed_header_with_guessed_tokens_lands_on_stable_for_the_app_and_its_dependents() {
    let tokens = test_tokens();
    let inputs: Vec<(String, App)> = ["examples/my-app.yaml", "examples/frontend-backend.yaml"]
        .iter()
        .map(|spec| ((*spec).to_owned(), render::load(Path::new(spec)).unwrap().1))
        .collect();
    let frontend = &inputs[1].1;
    let rendered = render::render_shared(&inputs, None, &tokens).unwrap();
    let services = objects_of_kind(&rendered, "VirtualService");
    let (gateway_vs, mesh_vs): (Vec<&Yaml>, Vec<&Yaml>) = services
        .into_iter()
        .partition(|vs| vs["spec"].get("gateways").is_some());
    let gateway_hosts: Vec<VirtualHost> = gateway_vs.into_iter().map(virtual_host).collect();
    let mesh_hosts: Vec<VirtualHost> = mesh_vs
        .into_iter()
        .map(|vs| {
            // A sidecar's outbound route for the backend: any authority reaches it here.
            let mut host = virtual_host(vs);
            host.domains = vec!["*".to_owned()];
            host
        })
        .collect();
    assert_eq!(mesh_hosts.len(), 1);
    let gateway_backends = backends_for(&gateway_hosts);
    let mesh_backends = backends_for(&mesh_hosts);
    let plain = |hosts: Vec<VirtualHost>, backends: &[Backend]| plain(RouteTable::ByHost(hosts), backends);
    let skipped = Envoy::start(&plain(gateway_hosts.clone(), &gateway_backends)).unwrap();
    let mesh = Envoy::start(&plain(mesh_hosts, &mesh_backends)).unwrap();
    let mut gateway = Client::connect(skipped.listener()).unwrap();
    let mut sidecar = Client::connect(mesh.listener()).unwrap();
    let mesh_header = sticky_canary::render::spec::MESH_TOKEN_HEADER;
    let guesses = ["guessed-0123456789abcdef", "EXAMPLE-NOT-SECRET-gateway-frontend-1"];

    // The app and its neighbour on the gateway: a spoofed header with a guessed token is stable.
    for (host, app) in [
        ("frontend.istio-test.example.com", "frontend"),
        ("my-app.example.com", "my-app"),
    ] {
        for guess in guesses {
            let reply = gateway
                .send(
                    &Request::get("/")
                        .host(host)
                        .header("x-canary-version", "v2")
                        .header("x-canary-token", guess)
                        .header(mesh_header, "guessed-mesh-token-0123"),
                )
                .unwrap();
            assert_eq!(
                reply.header_str("x-served-version"),
                format!("{app}-v1"),
                "{host} with {guess}"
            );
            if app == "frontend" {
                // Nothing the client sent that could steer the backend reaches the frontend.
                for header in ["x-canary-version", "x-canary-token", mesh_header] {
                    assert!(
                        seen_headers(&reply.body, header).is_empty(),
                        "{header} reached the frontend"
                    );
                }
            }
        }
    }
    // The dependent: a caller with the routing header and a guessed mesh token lands on stable.
    for guess in [
        "guessed-mesh-token-0123",
        tokens.token(Purpose::Gateway, "frontend", 1).as_str(),
    ] {
        let reply = sidecar
            .send(
                &Request::get("/")
                    .host("backend.istio-test.svc.cluster.local")
                    .header("x-canary-version", "v2")
                    .header(mesh_header, guess),
            )
            .unwrap();
        assert_eq!(
            reply.header_str("x-served-version"),
            "backend-v1",
            "mesh token guess {guess}"
        );
    }
    // The header alone, as the old mesh routes accepted it: stable now.
    let reply = sidecar
        .send(&Request::get("/").host("backend").header("x-canary-version", "v2"))
        .unwrap();
    assert_eq!(reply.header_str("x-served-version"), "backend-v1");

    // With the filter on: a canary user reaches frontend v2, which sees the mesh token (never the
    // gateway token) and passes both headers on to reach backend v2; a stable user stays on v1.
    let work = tempfile::tempdir().unwrap();
    let module = work.path().join("plugin.wasm");
    std::fs::write(&module, sticky_canary::FILTER_WASM).unwrap();
    let plugin = objects_of_kind(&rendered, "EnvoyFilter")[0];
    let typed_config = typed_config_of(plugin, &module);
    let policy = Policy::from_json(
        typed_config["config"]["configuration"]["value"]
            .as_str()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let route = policy.routes().iter().find(|r| r.name() == "frontend").unwrap();
    let with_filter = Envoy::start(&plain(gateway_hosts, &gateway_backends).with_filter(FilterSpec {
        code: WasmCode::TypedConfig(typed_config.to_string()),
        ..FilterSpec::embedded("")
    }))
    .unwrap();
    let mut gateway = Client::connect(with_filter.listener()).unwrap();
    let mut seen = BTreeMap::new();
    for k in 0..200 {
        let user = format!("user-{k}");
        let expected = route.versions()[route.assign(user.as_bytes()).1].name().to_owned();
        let reply = gateway
            .send(
                &Request::get("/")
                    .host("frontend.istio-test.example.com")
                    .header("x-user-id", &user)
                    .header(mesh_header, "guessed-mesh-token-0123"),
            )
            .unwrap();
        assert_eq!(reply.header_str("x-served-version"), format!("frontend-{expected}"));
        assert!(
            seen_headers(&reply.body, "x-canary-token").is_empty(),
            "the gateway token reached the app"
        );
        // The frontend propagates what it received, like trace headers.
        let mut call = Request::get("/").host("backend");
        for header in ["x-canary-version", mesh_header] {
            for value in seen_headers(&reply.body, header) {
                call = call.header(header, value);
            }
        }
        let reply = sidecar.send(&call).unwrap();
        assert_eq!(
            reply.header_str("x-served-version"),
            format!("backend-{expected}"),
            "user {user}"
        );
        *seen.entry(expected).or_insert(0) += 1;
    }
    assert!(seen.len() == 2, "200 users all on one version: {seen:?}");
    assert_eq!(frontend.dependents.len(), 1);
}
