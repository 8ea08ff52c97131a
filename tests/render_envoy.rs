//! What Envoy proves is what the cluster gets: the rendered VirtualService's header routes
//! become the real Envoy's route table, and the filter config carried by the rendered
//! EnvoyFilter (both the by-url and the inline form) is loaded into that Envoy as it is.

use std::path::Path;

use policy_core::Policy;
use sticky_canary::harness::backend::seen_headers;
use sticky_canary::harness::{
    Backend, Client, Envoy, EnvoyConfig, FilterSpec, HeaderRoute, Request, RouteTable, WasmCode,
};
use sticky_canary::render::{self, App, PluginForm};

fn load_example() -> App {
    render::load(Path::new("examples/my-app.yaml")).unwrap().1
}

/// The Envoy route table the VirtualService describes: header routes, then the default subset.
fn route_table(app: &App) -> RouteTable {
    let matches: Vec<HeaderRoute> = render::header_routes(app)
        .into_iter()
        .map(|r| HeaderRoute {
            header: r.header,
            value: r.value,
            also: r.also,
            cluster: r.subset,
        })
        .collect();
    assert!(!matches.is_empty(), "the VirtualService has no header route");
    RouteTable::ByHeader {
        matches,
        default_cluster: render::default_subset(app).expect("the VirtualService has no default route"),
    }
}

fn run_form(form: PluginForm) {
    let mut app = load_example();
    app.plugin.form = form;
    let dir = std::env::temp_dir().join(format!("sticky-canary-render-envoy-{}-{form:?}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("plugin.wasm");
    std::fs::write(&module, sticky_canary::FILTER_WASM).unwrap();
    let typed_config = render::envoy_wasm_typed_config(&app, Some(&module));
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

    let backends: Vec<Backend> = app.versions.iter().map(|v| Backend::start(&v.name).unwrap()).collect();
    let refs: Vec<&Backend> = backends.iter().collect();
    let mut config = EnvoyConfig::by_header(&app.routing_header, &refs);
    config.routes = route_table(&app);
    let config = config.with_filter(FilterSpec {
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
        assert_eq!(reply.header_str("x-served-version"), expected, "{form:?}: key {key}");
        served[usize::from(expected != "v1")] += 1;
    }
    assert!(
        served[0] > 0 && served[1] > 0,
        "{form:?}: one version got everything: {served:?}"
    );

    // The filter sets the routing token, replacing whatever the client sent.
    let (token_header, token) = app.routing_token.clone();
    let reply = client
        .send(
            &Request::get("/")
                .host(&host)
                .header(&token_header, "forged")
                .header(&token_header, "twice"),
        )
        .unwrap();
    assert_eq!(
        seen_headers(&reply.body, &token_header),
        vec![token.into_bytes()],
        "{form:?}"
    );

    // A host the filter has no route for: the spoofed header is removed, so the VirtualService's
    // default route serves it from stable.
    let reply = client
        .send(
            &Request::get("/")
                .host("other.example.org")
                .header(&app.routing_header, "v2"),
        )
        .unwrap();
    assert_eq!(
        reply.header_str("x-served-version"),
        "v1",
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
    let backends: Vec<Backend> = app.versions.iter().map(|v| Backend::start(&v.name).unwrap()).collect();
    let refs: Vec<&Backend> = backends.iter().collect();
    let mut config = EnvoyConfig::by_header(&app.routing_header, &refs);
    config.routes = route_table(&app);
    let envoy = Envoy::start(&config).unwrap();
    let mut client = Client::connect(envoy.listener()).unwrap();
    let (token_header, token) = app.routing_token.clone();
    let send = |client: &mut Client, token_value: Option<&str>| {
        let mut request = Request::get("/").host(&app.hosts[0]).header(&app.routing_header, "v2");
        if let Some(value) = token_value {
            request = request.header(&token_header, value);
        }
        client.send(&request).unwrap().header_str("x-served-version")
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
    // The route does lead to the canary with the real token: what the filter sets.
    assert_eq!(send(&mut client, Some(&token)), "v2");
}
