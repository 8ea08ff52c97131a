#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! `sticky-canary render` and `set-weight`: golden files, published schemas, and the
//! consistency between the filter config, the VirtualService and the DestinationRule.
//!
//! Refresh the golden files after an intended change with
//! `STICKY_CANARY_UPDATE_GOLDEN=1 cargo test --test render golden`.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_yaml_ng::Value as Yaml;
use sticky_canary::render::token::{TokenKey, Tokens};
use sticky_canary::render::{self, App, PluginForm};

const EXAMPLE: &str = "examples/my-app.yaml";
const DEPENDENTS_EXAMPLE: &str = "examples/frontend-backend.yaml";
/// An app on its own Gateway API gateway, mirroring to its canary; golden under manifests/gateway-api/.
const GATEWAY_API_EXAMPLE: &str = "examples/gateway-api.yaml";
const GATEWAY_API_GOLDEN: &str = "gateway-api";
/// Where the golden shared-gateway render of both examples lives, under manifests/.
const SHARED_GOLDEN: &str = "shared-gateway";

/// A fixed key for tests that compare two renders (never used for anything deployed).
fn test_tokens() -> Tokens {
    Tokens::Key(TokenKey::parse(&"5a".repeat(32)).unwrap())
}

/// Writes a fresh key file with the CLI's own subcommand and returns its path.
fn key_file(dir: &Path) -> String {
    let path = dir.join("token.key");
    let output = cli(&["token-key", "--out", &path.to_string_lossy()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    path.to_string_lossy().into_owned()
}

fn key_of(path: &str) -> Tokens {
    Tokens::Key(TokenKey::from_file(Path::new(path)).unwrap())
}

fn shared_inputs() -> Vec<(String, App)> {
    [EXAMPLE, DEPENDENTS_EXAMPLE]
        .iter()
        .map(|spec| ((*spec).to_owned(), load(spec)))
        .collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(relative: &str) -> App {
    render::load(&root().join(relative)).unwrap().1
}

/// A fresh empty directory under the target dir, removed when dropped.
/// A scratch directory for one test, removed when dropped.
fn work_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("sticky-canary-{name}-"))
        .tempdir()
        .unwrap()
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sticky-canary"))
        .current_dir(root())
        .env_remove(render::token::KEY_FILE_ENV)
        .args(args)
        .output()
        .unwrap()
}

// ---------------------------------------------------------------------------
// Golden files
// ---------------------------------------------------------------------------

/// The files in `manifests/` (top level), `manifests/plugin-forms/`, the shared-gateway render
/// of both examples in `manifests/shared-gateway/` and the Gateway API example in
/// `manifests/gateway-api/`, as (relative name, text). Rendered with example tokens: a token
/// committed to a repository is public, so none is.
fn golden_expected() -> Vec<(String, String)> {
    let app = load(EXAMPLE);
    let mut files: Vec<(String, String)> = render::render(&app, EXAMPLE, &Tokens::Example)
        .files
        .into_iter()
        .map(|f| (f.name, f.text))
        .collect();
    // The other remote forms, for comparison and for clusters that accept WasmPlugin or
    // TrafficExtension. The inline form is left out: it embeds the filter build, which changes
    // with every filter change.
    for other in [
        PluginForm::EnvoyFilter,
        PluginForm::WasmPlugin,
        PluginForm::TrafficExtension,
    ] {
        if other == app.plugin.form {
            continue;
        }
        let alternative = render::render_with_form(&app, other, EXAMPLE, &Tokens::Example);
        let plugin = alternative.file("plugin.yaml").unwrap();
        files.push((format!("plugin-forms/{}.yaml", other.as_str()), plugin.text.clone()));
    }
    let shared = render::render_shared(&shared_inputs(), None, &Tokens::Example).unwrap();
    files.extend(
        shared
            .files
            .into_iter()
            .map(|f| (format!("{SHARED_GOLDEN}/{}", f.name), f.text)),
    );
    let gateway_api = render::render(&load(GATEWAY_API_EXAMPLE), GATEWAY_API_EXAMPLE, &Tokens::Example);
    files.extend(
        gateway_api
            .files
            .into_iter()
            .map(|f| (format!("{GATEWAY_API_GOLDEN}/{}", f.name), f.text)),
    );
    files.sort();
    files
}

/// Every file under `dir`, recursively, as (relative name, text).
fn golden_on_disk(dir: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, prefix: &str, files: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if path.is_dir() {
                walk(&path, &format!("{name}/"), files);
            } else {
                files.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, "", &mut files);
    files.sort();
    files
}

#[test]
fn golden_manifests_match_the_renderer() {
    let dir = root().join("manifests");
    let expected = golden_expected();
    if std::env::var_os("STICKY_CANARY_UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in &expected {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }
    let actual = golden_on_disk(&dir);
    let names = |files: &[(String, String)]| files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&actual),
        names(&expected),
        "manifests/ holds other files than the renderer produces; refresh with STICKY_CANARY_UPDATE_GOLDEN=1 cargo test --test render golden"
    );
    for ((name, actual), (_, expected)) in actual.iter().zip(&expected) {
        if actual != expected {
            let line = actual
                .lines()
                .zip(expected.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| actual.lines().count().min(expected.lines().count()));
            panic!(
                "manifests/{name} differs from the renderer's output at line {}:\n  on disk:  {:?}\n  rendered: {:?}\nrefresh with STICKY_CANARY_UPDATE_GOLDEN=1 cargo test --test render golden",
                line + 1,
                actual.lines().nth(line),
                expected.lines().nth(line)
            );
        }
    }
}

#[test]
fn golden_example_does_not_depend_on_the_filter_build() {
    // An oci:// url with an explicit digest: the embedded module's hash never enters the golden files.
    let app = load(EXAMPLE);
    assert!(matches!(app.plugin.source, render::ModuleSource::Oci { .. }));
    let hash = sticky_canary::sha256_hex(sticky_canary::FILTER_WASM);
    for (name, text) in golden_expected() {
        assert!(!text.contains(&hash), "{name} holds the embedded module's hash");
    }
}

#[test]
fn cli_render_writes_what_the_library_renders_and_is_idempotent() {
    let work = work_dir("cli-render");
    let key = key_file(work.path());
    let out = work.path().join("out");
    let dir = out.to_string_lossy().into_owned();
    let first = cli(&["render", EXAMPLE, "--out", &dir, "--token-key", &key]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let expected: Vec<(String, String)> = render::render(&load(EXAMPLE), EXAMPLE, &key_of(&key))
        .files
        .into_iter()
        .map(|f| (f.name, f.text))
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(golden_on_disk(&out), expected_sorted);
    let second = cli(&["render", EXAMPLE, "--out", &dir, "--token-key", &key]);
    assert!(String::from_utf8_lossy(&second.stdout).contains("up to date"));
    // The golden files differ from a keyed render only in the tokens (and the comment saying so).
    let golden = golden_expected();
    let keyed = key_of(&key);
    let swaps: Vec<(String, String)> = [render::token::Purpose::Gateway, render::token::Purpose::Mesh]
        .into_iter()
        .map(|p| (keyed.token(p, "my-app", 1), Tokens::Example.token(p, "my-app", 1)))
        .collect();
    for (name, text) in &expected {
        let (_, golden_text) = golden.iter().find(|(n, _)| n == name).unwrap();
        let mut text = text.clone();
        for (real, example) in &swaps {
            // A token that looks like a number is quoted in YAML; the example never is.
            text = text.replace(&format!("'{real}'"), example).replace(real, example);
        }
        let body = |t: &str| {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(body(&text), body(golden_text), "{name}");
    }
    // Without --out: one stream for `kubectl apply -f -`; the key may come from the environment.
    let stream = Command::new(env!("CARGO_BIN_EXE_sticky-canary"))
        .current_dir(root())
        .env(render::token::KEY_FILE_ENV, &key)
        .args(["render", EXAMPLE])
        .output()
        .unwrap();
    let text = String::from_utf8(stream.stdout).unwrap();
    assert_eq!(text.lines().filter(|l| *l == "---").count(), 10, "{text}");
}

// ---------------------------------------------------------------------------
// Published schemas (npm kubernetes-models and @kubernetes-models/istio)
// ---------------------------------------------------------------------------

/// System tier (npm's schema packages, node): built only with `--features system-tests`.
#[cfg(feature = "system-tests")]
#[test]
fn every_object_passes_the_published_kubernetes_and_istio_schemas() {
    for tool in ["node", "npm"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is not installed: the schema check needs node and npm (Debian: apt-get install nodejs npm); it is never skipped"
        );
    }
    let out = work_dir("schemas");
    let mut dirs = vec![
        root().join("manifests"),
        root().join("manifests/plugin-forms"),
        root().join("manifests").join(GATEWAY_API_GOLDEN),
    ];
    for entry in std::fs::read_dir(root().join("manifests").join(SHARED_GOLDEN))
        .unwrap()
        .flatten()
    {
        if entry.path().is_dir() {
            dirs.push(entry.path());
        }
    }
    for (spec, forms) in [
        (
            EXAMPLE,
            &[
                PluginForm::WasmPlugin,
                PluginForm::EnvoyFilter,
                PluginForm::EnvoyFilterInline,
                PluginForm::TrafficExtension,
            ][..],
        ),
        (
            DEPENDENTS_EXAMPLE,
            &[PluginForm::EnvoyFilter, PluginForm::WasmPlugin][..],
        ),
        (
            GATEWAY_API_EXAMPLE,
            &[
                PluginForm::EnvoyFilter,
                PluginForm::WasmPlugin,
                PluginForm::TrafficExtension,
            ][..],
        ),
    ] {
        let app = load(spec);
        for form in forms {
            let dir = out.path().join(format!("{}-{}", app.name, form.as_str()));
            render::write(&dir, &render::render_with_form(&app, *form, spec, &test_tokens())).unwrap();
            dirs.push(dir);
        }
    }
    // npm publishes no TrafficExtension model: those objects go to `istio-xds crd-check`, the
    // CRD of each tested revision's own Istio with the API server's validation (CEL included).
    let output = Command::new("bash")
        .arg(root().join("tools/schema-check/check.sh"))
        .args(["--elsewhere", "extensions.istio.io/v1alpha1/TrafficExtension"])
        .args(&dirs)
        // monitoring/: its PrometheusRule (Prometheus Operator's schema), dashboard ConfigMap and kustomization.
        .args(
            dirs.iter()
                .filter(|d| d.join("monitoring").is_dir())
                .flat_map(|d| ["prometheus-rule.yaml", "kustomization.yaml"].map(|f| d.join("monitoring").join(f))),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schema check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" 0 problems"), "{stdout}");
    let deferred = stdout
        .lines()
        .filter(|l| l.ends_with("checked elsewhere (--elsewhere)"))
        .count();
    assert_eq!(
        deferred, 3,
        "the TrafficExtensions (golden, my-app, gateway-api): {stdout}"
    );
    for revision in sticky_canary_harness::istio::tested_revisions() {
        let report = sticky_canary_harness::istio::crd_check(revision, &dirs).unwrap_or_else(|e| panic!("{e}"));
        let checked = report.lines().filter(|l| l.contains("TrafficExtension")).count();
        assert!(
            checked >= 3,
            "{}: crd-check saw {checked} TrafficExtensions:\n{report}",
            revision.name
        );
        eprintln!("{} crd-check:\n{report}", revision.name);
    }
}

// ---------------------------------------------------------------------------
// Reading the routes back from a rendered VirtualService
// ---------------------------------------------------------------------------

/// One header route of a VirtualService: requests with `header: value` go to `subset`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct HeaderRoute {
    header: String,
    value: String,
    /// Further headers the same match requires (the routing token), as (name, exact value).
    also: Vec<(String, String)>,
    subset: String,
    /// Request headers the route sets (`headers.request.set`), as (name, value).
    set: Vec<(String, String)>,
    /// Request headers the route removes (`headers.request.remove`).
    remove: Vec<String>,
}

/// The no-match route of a VirtualService: its subset and header edits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct DefaultRoute {
    subset: String,
    set: Vec<(String, String)>,
    remove: Vec<String>,
}

/// The header routes of the rendered gateway VirtualService, read back from the object itself.
fn gateway_header_routes(app: &App, tokens: &Tokens) -> Vec<HeaderRoute> {
    virtual_service_routes(&render::objects::virtual_service(app, tokens)).0
}

/// The subset that requests without a routing header reach (the stable version).
fn default_subset(app: &App, tokens: &Tokens) -> Option<String> {
    virtual_service_routes(&render::objects::virtual_service(app, tokens))
        .1
        .map(|d| d.subset)
}

/// Reads `spec.http[].match[].headers.NAME.exact` and the route's subset from a VirtualService,
/// plus the subset of its default (no-match) route.
fn virtual_service_header_routes(vs: &Yaml) -> (Vec<HeaderRoute>, Option<String>) {
    let (routes, default) = virtual_service_routes(vs);
    (routes, default.map(|d| d.subset))
}

fn header_edits(route: &Yaml) -> (Vec<(String, String)>, Vec<String>) {
    let request = route.get("headers").and_then(|h| h.get("request"));
    let set = request
        .and_then(|r| r.get("set"))
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
        .collect();
    let remove = request
        .and_then(|r| r.get("remove"))
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    (set, remove)
}

/// Every header route (one per match) and the default route of a VirtualService, with their
/// header edits.
fn virtual_service_routes(vs: &Yaml) -> (Vec<HeaderRoute>, Option<DefaultRoute>) {
    let mut routes = Vec::new();
    let mut default = None;
    let http = vs.get("spec").and_then(|s| s.get("http")).and_then(Yaml::as_sequence);
    for route in http.into_iter().flatten() {
        let subset = route
            .get("route")
            .and_then(Yaml::as_sequence)
            .and_then(|r| r.first())
            .and_then(|d| d.get("destination"))
            .and_then(|d| d.get("subset"))
            .and_then(Yaml::as_str)
            .unwrap_or("")
            .to_owned();
        let (set, remove) = header_edits(route);
        let matches = route.get("match").and_then(Yaml::as_sequence);
        let mut has_header = false;
        for m in matches.into_iter().flatten() {
            // The first header of a match is the routing header; the others must match too.
            let mut exact = Vec::new();
            if let Some(headers) = m.get("headers").and_then(Yaml::as_mapping) {
                for (name, rule) in headers {
                    if let (Some(name), Some(value)) = (name.as_str(), rule.get("exact").and_then(Yaml::as_str)) {
                        exact.push((name.to_owned(), value.to_owned()));
                    }
                }
            }
            let mut exact = exact.into_iter();
            if let Some((header, value)) = exact.next() {
                has_header = true;
                routes.push(HeaderRoute {
                    header,
                    value,
                    also: exact.collect(),
                    subset: subset.clone(),
                    set: set.clone(),
                    remove: remove.clone(),
                });
            }
        }
        if !has_header && default.is_none() {
            default = Some(DefaultRoute { subset, set, remove });
        }
    }
    (routes, default)
}

/// The `typed_config` of the `envoy.filters.http.wasm` filter an EnvoyFilter form installs
/// (`@type` Wasm, `config.vm_config`, `config.configuration`), as JSON.
///
/// With `local_module`, `vm_config.code` becomes `local.filename` (what istio-agent
/// hands Envoy after fetching the url), so a plain Envoy can load it. The inline form
/// already carries the module and ignores it.
fn envoy_wasm_typed_config(install: &render::Install<'_>, local_module: Option<&Path>) -> serde_json::Value {
    let form = match install.plugin.form {
        PluginForm::EnvoyFilterInline => PluginForm::EnvoyFilterInline,
        _ => PluginForm::EnvoyFilter,
    };
    let mut value =
        serde_json::to_value(render::plugin::wasm_typed_config(install, form)).unwrap_or(serde_json::Value::Null);
    if form == PluginForm::EnvoyFilter {
        if let (Some(path), Some(code)) = (local_module, value.pointer_mut("/config/vm_config/code")) {
            *code = serde_json::json!({"local": {"filename": path.to_string_lossy()}});
        }
    }
    value
}

// ---------------------------------------------------------------------------
// Consistency: filter config, VirtualService, DestinationRule
// ---------------------------------------------------------------------------

/// The token a canary header route requires: what follows `VERSION;` in the routing header.
fn token_of(route: &HeaderRoute) -> String {
    let (_, token) = route
        .value
        .split_once(policy_core::TOKEN_SEPARATOR)
        .unwrap_or_else(|| panic!("no token in the routing header's value {:?}", route.value));
    token.to_owned()
}

/// Every object of a render, in file order.
fn objects(rendered: &render::Rendered) -> impl Iterator<Item = &Yaml> {
    rendered.files.iter().flat_map(|f| f.objects.iter())
}

fn find<'a>(rendered: &'a render::Rendered, kind: &str) -> Vec<&'a Yaml> {
    objects(rendered)
        .filter(|o| o.get("kind").and_then(Yaml::as_str) == Some(kind))
        .collect()
}

/// The filter config as the gateway receives it, read back from the rendered plugin object.
fn carried_filter_config(plugin: &Yaml) -> String {
    match plugin["kind"].as_str().unwrap() {
        "WasmPlugin" => serde_json::to_string(&plugin["spec"]["pluginConfig"]).unwrap(),
        "EnvoyFilter" => {
            let patch = &plugin["spec"]["configPatches"][0];
            assert_eq!(patch["applyTo"].as_str(), Some("EXTENSION_CONFIG"));
            let config = &patch["patch"]["value"]["typed_config"]["config"];
            config["configuration"]["value"].as_str().unwrap().to_owned()
        }
        other => panic!("unexpected plugin kind {other}"),
    }
}

fn check_consistency(app: &App, form: PluginForm) {
    let rendered = render::render_with_form(app, form, "spec.yaml", &test_tokens());
    let plugins: Vec<_> = find(&rendered, "WasmPlugin")
        .into_iter()
        .chain(find(&rendered, "EnvoyFilter"))
        .collect();
    assert_eq!(plugins.len(), 1);
    let config = carried_filter_config(plugins[0]);
    let policy = policy_core::Policy::from_json(config.as_bytes())
        .unwrap_or_else(|e| panic!("the carried filter config fails policy-core validation:\n{e}"));
    let route = &policy.routes()[0];

    let vs = find(&rendered, "VirtualService")[0];
    let (header_routes, default) = virtual_service_header_routes(vs);
    let dr = find(&rendered, "DestinationRule")[0];
    let subsets: Vec<&str> = dr["spec"]["subsets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        dr["spec"]["host"],
        vs["spec"]["http"][0]["route"][0]["destination"]["host"]
    );

    let versions: Vec<&str> = route.versions().iter().map(|v| v.name()).collect();
    for (i, version) in versions.iter().enumerate() {
        assert!(subsets.contains(version), "{version} has no DestinationRule subset");
        // The subset selects the pods the Deployment labels with that version.
        let subset = dr["spec"]["subsets"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|s| s["name"] == **version)
            .unwrap();
        let deployment = find(&rendered, "Deployment")
            .into_iter()
            .find(|d| d["spec"]["template"]["metadata"]["labels"]["version"] == subset["labels"]["version"])
            .unwrap_or_else(|| panic!("no Deployment has the pods of subset {version}"));
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"]["app"].as_str(),
            Some(app.name.as_str())
        );
        if i == 0 {
            assert_eq!(
                default.as_deref(),
                Some(*version),
                "unmarked requests must reach the stable subset"
            );
        } else {
            let r = header_routes
                .iter()
                .find(|r| r.subset == *version)
                .unwrap_or_else(|| panic!("{version} has no VirtualService route"));
            assert_eq!(r.subset, *version);
        }
    }
    for r in &header_routes {
        // One routing header, the filter's, and only its values: never the override header.
        assert_eq!(
            r.header,
            route.routing_header(),
            "VirtualService and filter disagree on the routing header"
        );
        assert!(subsets.contains(&r.subset.as_str()));
        if let Some(rule) = route.override_rule() {
            assert_ne!(
                r.header, rule.header,
                "the VirtualService must never match the raw override header"
            );
        }
    }
    assert_eq!(header_routes.len(), versions.len() - 1);
    assert_eq!(gateway_header_routes(app, &test_tokens()), header_routes);
    // Every canary route matches exactly what the filter writes for its version: the name and
    // the token in the routing header (`v2;TOKEN`), and hands the app the bare name.
    let token = route.routing_token().unwrap();
    assert_eq!(token.header, route.routing_header());
    for r in &header_routes {
        let version = &route.versions()[route.version_index(&r.subset).unwrap()];
        assert_eq!(r.value, version.routing_value());
        assert_eq!(r.value, format!("{};{}", r.subset, token.value));
        assert!(r.also.is_empty(), "{:?}", r.also);
        // First the bare name for the app; with dependent services also the mesh token.
        assert_eq!(r.set[0], (route.routing_header().to_owned(), r.subset.clone()));
        assert!(
            r.set[1..].iter().all(|(name, _)| name == "x-canary-mesh-token"),
            "{:?}",
            r.set
        );
    }

    // Gateway, VirtualService and filter route agree on hosts; the gateway is the add-on's.
    let gateway = find(&rendered, "Gateway")[0];
    assert_eq!(
        gateway["spec"]["selector"]["istio"].as_str(),
        Some(app.ingress_selector())
    );
    assert_eq!(vs["spec"]["gateways"][0], gateway["metadata"]["name"]);
    let hosts: Vec<&str> = vs["spec"]["hosts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(hosts, route.hosts().iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(plugins[0]["metadata"]["namespace"].as_str(), Some("aks-istio-ingress"));

    // Every Deployment has an HPA, and the service selects all versions.
    for deployment in find(&rendered, "Deployment") {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        assert!(
            find(&rendered, "HorizontalPodAutoscaler")
                .iter()
                .any(|h| h["spec"]["scaleTargetRef"]["name"].as_str() == Some(name)),
            "{name} has no HPA"
        );
        assert!(deployment["spec"].get("replicas").is_none(), "the HPA owns replicas");
    }

    // Dependent services route by the same header, with a subset per routed version.
    for dep in &app.dependents {
        let host = format!("{}.{}.svc.cluster.local", dep.service, dep.namespace);
        let dep_vs = find(&rendered, "VirtualService")
            .into_iter()
            .find(|v| v["spec"]["hosts"][0].as_str() == Some(host.as_str()))
            .unwrap();
        assert!(
            dep_vs["spec"].get("gateways").is_none(),
            "a dependent route applies to the mesh"
        );
        let (routes, default) = virtual_service_header_routes(dep_vs);
        assert_eq!(default.as_deref(), Some(versions[0]));
        // The gateway's canary routes set the mesh token the dependent's canary routes require.
        let mesh_set: Vec<(String, String)> = header_routes[0]
            .set
            .iter()
            .filter(|(name, _)| name == "x-canary-mesh-token")
            .cloned()
            .collect();
        assert_eq!(mesh_set.len(), 1, "the gateway sets no mesh token");
        for r in routes {
            assert_eq!(r.header, route.routing_header());
            assert_eq!(
                r.also,
                mesh_set.clone(),
                "a dependent canary route without the mesh token"
            );
            assert_ne!(
                r.also[0].1, token.value,
                "the mesh token must differ from the gateway token"
            );
        }
    }
}

#[test]
fn filter_config_routes_and_subsets_agree_in_every_form() {
    for spec in [EXAMPLE, DEPENDENTS_EXAMPLE] {
        let app = load(spec);
        for form in [
            PluginForm::WasmPlugin,
            PluginForm::EnvoyFilter,
            PluginForm::EnvoyFilterInline,
        ] {
            check_consistency(&app, form);
        }
    }
}

/// `routing.token.header` naming another header keeps the two-header form of earlier releases:
/// the filter sets the token beside the routing header, the canary route requires both and
/// removes the token, every route removes it, and nothing rewrites the routing header.
#[test]
fn a_token_header_of_its_own_keeps_the_two_header_form() {
    let text = std::fs::read_to_string(root().join(EXAMPLE)).unwrap().replace(
        "  salt: my-app-2025\n",
        "  salt: my-app-2025\n  token: {header: X-Canary-Token}\n",
    );
    let app = App::from_yaml(&text).unwrap();
    let tokens = test_tokens();
    let config = serde_json::to_string(&app.filter_config(&tokens)).unwrap();
    let policy = policy_core::Policy::from_json(config.as_bytes()).unwrap();
    let route = &policy.routes()[0];
    let token = route.separate_routing_token().expect("a separate token header");
    assert_eq!(token.header, "x-canary-token");
    assert!(route.versions().iter().all(|v| v.routing_value() == v.name()));
    let vs = render::objects::virtual_service(&app, &tokens);
    let (routes, default) = virtual_service_routes(&vs);
    assert_eq!(routes.len(), 1);
    assert_eq!(
        (routes[0].header.as_str(), routes[0].value.as_str()),
        ("x-canary-version", "v2")
    );
    assert_eq!(routes[0].also, vec![("x-canary-token".to_owned(), token.value.clone())]);
    assert!(routes[0].set.is_empty(), "{:?}", routes[0].set);
    assert_eq!(routes[0].remove, vec!["x-canary-token".to_owned()]);
    let default = default.unwrap();
    assert_eq!(
        (default.subset.as_str(), default.remove.as_slice()),
        ("v1", &["x-canary-token".to_owned()][..])
    );
    assert!(default.set.is_empty());
}

#[test]
fn three_versions_and_a_custom_routing_header() {
    let text = std::fs::read_to_string(root().join(EXAMPLE))
        .unwrap()
        .replace("    weight: 90\n", "    weight: 85\n")
        .replace(
            "  salt: my-app-2025\n",
            "  salt: my-app-2025\n  routing_header: X-My-App-Version\n",
        )
        .replace(
            "      VERSION: v2.0.0\n",
            "      VERSION: v2.0.0\n  - name: v3\n    image: containersol/k8s-deployment-strategies\n    weight: 5\n",
        );
    let app = App::from_yaml(&text).unwrap();
    assert_eq!(app.routing_header, "x-my-app-version");
    check_consistency(&app, PluginForm::EnvoyFilter);
    let routes = gateway_header_routes(&app, &test_tokens());
    assert_eq!(
        routes
            .iter()
            .map(|r| (r.header.as_str(), r.value.split(';').next().unwrap(), r.subset.as_str()))
            .collect::<Vec<_>>(),
        vec![("x-my-app-version", "v2", "v2"), ("x-my-app-version", "v3", "v3")]
    );
    // The token travels in the custom routing header too, and each route hands the app the name.
    assert!(routes
        .iter()
        .all(|r| r.value.len() > 3 && r.set == vec![("x-my-app-version".to_owned(), r.subset.clone())]));
}

// ---------------------------------------------------------------------------
// Invalid specs
// ---------------------------------------------------------------------------

const BAD_SPEC: &str = r#"
app: My_App
namespace: aks-istio-ingress
revision: "1.28"
hosts: ["app.example.com:443"]
ingress: public
tls: {credential_name: my-tls, mode: PASSTHROUGH}
versions:
  - {name: v1, image: "", weight: 80}
  - {name: V2, image: nginx, weight: 10.005}
  - {name: v3, image: nginx, weight: 15, port: 70000, autoscaling: {min_replicas: 5, max_replicas: 2, cpu_utilization: 0}}
resources: {cpu: lots}
routing:
  key_chain: [{cookie: "bad cookie"}]
  override: {allow: [v9], secret_header: x-secret, secret: short}
plugin:
  form: envoyfilter
  url: oci://registry.example/filter:1
  phase: AUTHZ
  fail_strategy: FAIL_RELOAD
dependent_services:
  - {service: backend, versions: [v2]}
"#;

/// Asserts that `spec` is refused with an error at each field path (`"versions[1].weight: "`).
fn assert_refused_at(spec: &str, paths: &[&str]) {
    let text = App::from_yaml(spec).unwrap_err().to_string();
    for path in paths {
        assert!(
            text.lines().any(|l| l.starts_with(path)),
            "no error for {path}; got:\n{text}"
        );
    }
}

#[test]
fn an_invalid_spec_reports_every_error_with_its_path() {
    assert_refused_at(
        BAD_SPEC,
        &[
            "app: ",
            "namespace: ",
            "revision: ",
            "ingress: ",
            "tls.mode: ",
            "versions[0].image: ",
            "versions[2].port: ",
            "versions[2].autoscaling.max_replicas: ",
            "versions[2].autoscaling.cpu_utilization: ",
            "resources.cpu: ",
            "routing.salt: ",
            "plugin.sha256: ",
            "plugin.phase: ",
            "dependent_services[0].versions: ",
        ],
    );
}

#[test]
fn monitoring_settings_are_checked_and_shape_the_rules() {
    let example = std::fs::read_to_string(root().join(EXAMPLE)).unwrap();
    let bad = format!(
        "{example}monitoring:\n  window: 5 minutes\n  for: 1h5\n  share_tolerance: 0\n  error_margin: 200\n  min_rate: -1\n  rule_labels: {{\"-release\": x, team: \"two words\"}}\n"
    );
    assert_refused_at(
        &bad,
        &[
            "monitoring.window: ",
            "monitoring.for: ",
            "monitoring.share_tolerance: ",
            "monitoring.error_margin: ",
            "monitoring.min_rate: ",
            "monitoring.rule_labels.-release: ",
            "monitoring.rule_labels.team: ",
        ],
    );
    let good = format!(
        "{example}monitoring:\n  window: 2m\n  for: 90s\n  share_tolerance: 2.5\n  rule_labels: {{release: kube-prometheus-stack}}\n"
    );
    let app = App::from_yaml(&good).unwrap();
    assert!(
        app.warnings
            .iter()
            .any(|w| w.starts_with("monitoring.for: 90s is shorter than monitoring.window (2m)")),
        "{:?}",
        app.warnings
    );
    let rendered = render::render(&app, EXAMPLE, &test_tokens());
    let rules = &rendered.file("monitoring/prometheus-rule.yaml").unwrap().text;
    assert!(rules.contains("sticky_canary:keyed_share:percent2m"), "{rules}");
    assert!(rules.contains("[2m]"));
    assert!(!rules.contains("[5m]"));
    assert!(rules.contains(") > 2.5 and on (route)"), "{rules}");
    let rule = &rendered.file("monitoring/prometheus-rule.yaml").unwrap().text;
    assert!(rule.contains("    release: kube-prometheus-stack\n"), "{rule}");
    // Not in the app's kustomization, nor in the stream for `kubectl apply -f -`.
    let kustomization = &rendered.file("kustomization.yaml").unwrap().text;
    assert!(!kustomization.contains("monitoring"), "{kustomization}");
    assert!(!rendered.stream().contains("PrometheusRule"));
}

#[test]
fn policy_core_errors_come_back_with_spec_paths() {
    let text = std::fs::read_to_string(root().join(EXAMPLE))
        .unwrap()
        .replace("    weight: 10\n", "    weight: 10.005\n")
        .replace("    allow: [v2]\n", "    allow: [v9]\n")
        .replace("    - cookie: session ", "    - cookie: \"bad cookie\" ")
        .replace("  - my-app.example.com\n", "  - my-app.example.com:443\n");
    assert_refused_at(
        &text,
        &[
            "versions[1].weight: ",
            "routing.override.allow[0]: ",
            "routing.key_chain[0].cookie: ",
            "hosts[0]: ",
        ],
    );
}

#[test]
fn unknown_fields_are_refused() {
    let text = std::fs::read_to_string(root().join(EXAMPLE))
        .unwrap()
        .replace("ingress: external\n", "ingress: external\ncolour: blue\n");
    let text = App::from_yaml(&text).unwrap_err().to_string();
    assert!(text.contains("unknown field `colour`"), "{text}");
}

#[test]
fn oci_needs_a_digest_and_fail_reload_needs_asm_1_27() {
    let base = std::fs::read_to_string(root().join(EXAMPLE)).unwrap();
    let no_digest = base.replace(
        "  sha256: \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n",
        "",
    );
    let text = App::from_yaml(&no_digest).unwrap_err().to_string();
    assert!(text.contains("plugin.sha256: is required for an oci:// url"), "{text}");
    let by_digest = no_digest.replace(
        "sticky-canary:0.1.0",
        "sticky-canary@sha256:abababababababababababababababababababababababababababababababab",
    );
    match App::from_yaml(&by_digest).unwrap().plugin.source {
        render::ModuleSource::Oci { digest, .. } => assert_eq!(digest, "ab".repeat(32)),
        other => panic!("{other:?}"),
    }
    let old = base
        .replace("revision: asm-1-31", "revision: asm-1-26")
        .replace("fail_strategy: FAIL_OPEN", "fail_strategy: FAIL_RELOAD");
    assert!(App::from_yaml(&old)
        .unwrap_err()
        .to_string()
        .contains("FAIL_RELOAD exists from Istio 1.27"));
    let https = base
        .replace(
            "oci://myregistry.azurecr.io/sticky-canary:0.1.0",
            "https://example.com/f.wasm",
        )
        .replace(
            "  sha256: \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n",
            "",
        );
    match App::from_yaml(&https).unwrap().plugin.source {
        render::ModuleSource::Url { sha256, .. } => {
            assert_eq!(sha256, sticky_canary::sha256_hex(sticky_canary::FILTER_WASM));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn trafficextension_carries_the_wasmplugins_settings_under_wasm() {
    let app = load(EXAMPLE);
    let rendered = |form| {
        let out = render::render_with_form(&app, form, EXAMPLE, &test_tokens());
        let text = out.file("plugin.yaml").unwrap().text.clone();
        serde_yaml_ng::from_str::<serde_json::Value>(&text).unwrap()
    };
    let wasm_plugin = rendered(PluginForm::WasmPlugin);
    let extension = rendered(PluginForm::TrafficExtension);
    assert_eq!(extension["kind"], "TrafficExtension");
    assert_eq!(extension["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(extension["metadata"], wasm_plugin["metadata"]);
    assert_eq!(extension["spec"]["selector"], wasm_plugin["spec"]["selector"]);
    assert_eq!(extension["spec"]["phase"], wasm_plugin["spec"]["phase"]);
    for field in ["url", "sha256", "failStrategy", "type", "pluginConfig"] {
        assert_eq!(
            extension["spec"]["wasm"][field], wasm_plugin["spec"][field],
            "spec.wasm.{field}"
        );
        assert!(
            extension["spec"].get(field).is_none(),
            "{field} belongs under spec.wasm"
        );
    }
    // WasmPlugin's UNSPECIFIED_PHASE is TrafficExtension's UNSPECIFIED.
    let text = std::fs::read_to_string(root().join(EXAMPLE)).unwrap().replace(
        "form: envoyfilter",
        "form: trafficextension\n  phase: UNSPECIFIED_PHASE",
    );
    let unspecified = App::from_yaml(&text).unwrap();
    let out = render::render(&unspecified, EXAMPLE, &test_tokens());
    let value: serde_json::Value = serde_yaml_ng::from_str(&out.file("plugin.yaml").unwrap().text).unwrap();
    assert_eq!(value["spec"]["phase"], "UNSPECIFIED");
    // The Gateway API example attaches it by targetRefs, as WasmPlugin.
    let gateway_app = load(GATEWAY_API_EXAMPLE);
    let out = render::render_with_form(
        &gateway_app,
        PluginForm::TrafficExtension,
        GATEWAY_API_EXAMPLE,
        &test_tokens(),
    );
    let value: serde_json::Value = serde_yaml_ng::from_str(&out.file("plugin.yaml").unwrap().text).unwrap();
    assert_eq!(value["spec"]["targetRefs"][0]["kind"], "Gateway");
    assert!(value["spec"].get("selector").is_none());
}

#[test]
fn a_shared_gateway_gets_one_trafficextension_with_every_apps_route() {
    let shared = render::render_shared(&shared_inputs(), Some(PluginForm::TrafficExtension), &test_tokens()).unwrap();
    let plugin = shared.file("gateway/plugin-external.yaml").unwrap();
    let value: serde_json::Value = serde_yaml_ng::from_str(&plugin.text).unwrap();
    assert_eq!(value["kind"], "TrafficExtension");
    assert_eq!(
        value["spec"]["selector"]["matchLabels"]["istio"],
        "aks-istio-ingressgateway-external"
    );
    let routes: Vec<&str> = value["spec"]["wasm"]["pluginConfig"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(routes.len(), shared_inputs().len(), "{routes:?}");
}

/// The runbook's last upgrade step re-renders with the new revision: only the revision label of
/// the namespaces changes, never the plugin or the routes, so nobody moves.
#[test]
fn moving_a_spec_to_the_next_revision_changes_only_the_namespace_label() {
    let base = std::fs::read_to_string(root().join(EXAMPLE)).unwrap();
    let render_at = |revision: &str| {
        let app = App::from_yaml(&base.replace("revision: asm-1-31", &format!("revision: {revision}"))).unwrap();
        render::render(&app, EXAMPLE, &test_tokens()).files
    };
    let (old, new) = (render_at("asm-1-30"), render_at("asm-1-31"));
    assert_eq!(old.len(), new.len());
    let mut changed = Vec::new();
    for (a, b) in old.iter().zip(&new) {
        assert_eq!(a.name, b.name);
        if a.text != b.text {
            changed.push(a.name.clone());
            assert_eq!(
                a.text.replace("istio.io/rev: asm-1-30", "istio.io/rev: asm-1-31"),
                b.text,
                "{}: more than the revision label differs",
                a.name
            );
        }
    }
    assert_eq!(changed, vec!["00-namespace.yaml".to_owned()]);
}

#[test]
fn trafficextension_needs_a_revision_whose_istio_has_it() {
    let base = std::fs::read_to_string(root().join(EXAMPLE)).unwrap();
    let old = base
        .replace("revision: asm-1-31", "revision: asm-1-29")
        .replace("form: envoyfilter", "form: trafficextension");
    let text = App::from_yaml(&old).unwrap_err().to_string();
    assert!(
        text.contains("plugin.form: trafficextension needs revision asm-1-30 or later"),
        "{text}"
    );
    assert!(App::from_yaml(&old.replace("revision: asm-1-29", "revision: asm-1-30")).is_ok());
    // The command-line override is refused the same way, and nothing is written.
    let dir = work_dir("te-override");
    let spec = dir.path().join("old.yaml");
    std::fs::write(&spec, base.replace("revision: asm-1-31", "revision: asm-1-29")).unwrap();
    let out = dir.path().join("out");
    let key = key_file(dir.path());
    let output = cli(&[
        "render",
        &spec.to_string_lossy(),
        "--plugin-form",
        "trafficextension",
        "--out",
        &out.to_string_lossy(),
        "--token-key",
        &key,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("--plugin-form trafficextension: revision asm-1-29"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn render_warns_about_revisions_near_or_past_their_end_of_life() {
    let base = std::fs::read_to_string(root().join(EXAMPLE)).unwrap();
    let dir = work_dir("eol");
    let key = key_file(dir.path());
    let warnings = |revision: &str, today: &str| {
        let spec = dir.path().join(format!("{revision}.yaml"));
        std::fs::write(
            &spec,
            base.replace("revision: asm-1-31", &format!("revision: {revision}")),
        )
        .unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_sticky-canary"))
            .env("STICKY_CANARY_TODAY", today)
            .args(["render", &spec.to_string_lossy(), "--token-key", &key])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .filter(|l| l.contains("revision "))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let past = warnings("asm-1-28", "2026-12-02");
    assert_eq!(past.len(), 1, "{past:?}");
    assert!(
        past[0].contains("asm-1-28 reached its end of life about August 2026"),
        "{past:?}"
    );
    assert!(
        past[0].contains("az aks mesh upgrade start --revision asm-1-31"),
        "{past:?}"
    );
    let near = warnings("asm-1-30", "2026-12-02");
    assert!(
        near[0].contains("asm-1-30 reaches its end of life about December 2026"),
        "{near:?}"
    );
    assert!(
        warnings("asm-1-30", "2026-10-15").is_empty(),
        "two months ahead: no warning"
    );
    assert!(warnings("asm-1-30", "2027-01-01")[0].contains("reached its end of life"));
    assert!(warnings("asm-1-31", "2026-12-02").is_empty());
    assert!(warnings("asm-1-33", "2026-12-02")[0].contains("newer than the revisions sticky-canary is tested on"));
}

#[test]
fn cli_render_of_an_invalid_spec_writes_nothing() {
    let out = work_dir("invalid");
    let spec = out.path().join("bad.yaml");
    std::fs::write(&spec, BAD_SPEC).unwrap();
    let target = out.path().join("out");
    let key = key_file(out.path());
    let output = cli(&[
        "render",
        &spec.to_string_lossy(),
        "--out",
        &target.to_string_lossy(),
        "--token-key",
        &key,
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.lines().count() >= 15, "{stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with(&*spec.to_string_lossy())),
        "{stderr}"
    );
    assert!(!target.exists(), "an invalid spec must write nothing");
}

// ---------------------------------------------------------------------------
// set-weight
// ---------------------------------------------------------------------------

/// The files a CLI run reports as written (`wrote DIR/NAME`), as `/NAME` under `dir`, sorted.
fn written_under<'a>(stdout: &'a str, dir: &str) -> Vec<&'a str> {
    let mut names: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("wrote "))
        .map(|l| l.trim_start_matches(dir))
        .collect();
    names.sort();
    names
}

/// The example spec copied into a work dir of its own and rendered into `manifests` there.
struct Example {
    work: tempfile::TempDir,
    spec: PathBuf,
    spec_s: String,
    out: PathBuf,
    out_s: String,
    key: String,
    original: String,
}

fn rendered_example(name: &str) -> Example {
    let work = work_dir(name);
    let spec = work.path().join("my-app.yaml");
    let original = std::fs::read_to_string(root().join(EXAMPLE)).unwrap();
    std::fs::write(&spec, &original).unwrap();
    let out = work.path().join("manifests");
    let key = key_file(work.path());
    let (spec_s, out_s) = (spec.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    assert!(cli(&["render", &spec_s, "--out", &out_s, "--token-key", &key])
        .status
        .success());
    Example {
        work,
        spec,
        spec_s,
        out,
        out_s,
        key,
        original,
    }
}

#[test]
fn set_weight_rewrites_the_spec_and_only_the_plugin() {
    let Example {
        work: _work,
        spec,
        spec_s,
        out,
        out_s,
        key,
        original,
    } = rendered_example("set-weight");

    let ramp = cli(&["set-weight", &spec_s, "v2", "50", "--out", &out_s, "--token-key", &key]);
    assert!(ramp.status.success(), "{}", String::from_utf8_lossy(&ramp.stderr));
    let stdout = String::from_utf8_lossy(&ramp.stdout);
    // The plugin (the filter's weights) and the rules (the weights the share is held to); the
    // routing objects, which hold no weights, are unchanged.
    assert_eq!(
        written_under(&stdout, &out_s),
        ["/monitoring/prometheus-rule.yaml", "/plugin.yaml"],
        "{stdout}"
    );
    let after = std::fs::read_to_string(&spec).unwrap();
    // Only the two weights changed; every comment and line is kept.
    let expected = original
        .replace("    weight: 90\n", "    weight: 50\n")
        .replace("    weight: 10\n", "    weight: 50\n");
    assert_eq!(after, expected);
    let plugin = std::fs::read_to_string(out.join("plugin.yaml")).unwrap();
    assert!(
        plugin.contains(r#"{"name":"v1","weight":50},{"name":"v2","weight":50}"#),
        "{plugin}"
    );

    // An impossible weight: refused, the spec is left as it was, nothing is rendered.
    let refused = cli(&["set-weight", &spec_s, "v2", "150", "--out", &out_s, "--token-key", &key]);
    assert!(!refused.status.success());
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), expected);
    assert!(cli(&["set-weight", &spec_s, "v1", "20"])
        .stderr
        .starts_with(b"set-weight: \"v1\" is the stable version"));
    assert!(!cli(&["set-weight", &spec_s, "v2", "12.345"]).status.success());
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), expected);

    // Promote: 100% to v2, then rollback to 0.
    assert!(cli(&["set-weight", &spec_s, "v2", "100"]).status.success());
    assert!(std::fs::read_to_string(&spec).unwrap().contains("    weight: 0\n"));
    assert!(cli(&["set-weight", &spec_s, "v2", "0"]).status.success());
    assert_eq!(
        std::fs::read_to_string(&spec).unwrap(),
        original
            .replace("    weight: 90\n", "    weight: 100\n")
            .replace("    weight: 10\n", "    weight: 0\n")
    );
}

/// The filter config inside a rendered plugin.yaml (the one route of a one-app render).
fn plugin_route(plugin: &str) -> serde_json::Value {
    let start = plugin.find(r#"{"routes":"#).expect("the filter config in plugin.yaml");
    let mut stream = serde_json::Deserializer::from_str(&plugin[start..]).into_iter::<serde_json::Value>();
    stream.next().unwrap().unwrap()["routes"][0].clone()
}

#[test]
fn cutover_starts_rolls_back_and_finishes_in_the_spec_and_the_plugin() {
    let Example {
        work: _work,
        spec,
        spec_s,
        out,
        out_s,
        key,
        original,
    } = rendered_example("cutover");

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let started = cli(&[
        "cutover",
        &spec_s,
        "--to",
        "v2",
        "--idle",
        "15m",
        "--deadline",
        "2h",
        "--out",
        &out_s,
        "--token-key",
        &key,
    ]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let stdout = String::from_utf8_lossy(&started.stdout);
    assert!(stdout.contains("cut-over to v2 from "), "{stdout}");
    // The plugin and the rules change (the VirtualService routes by header): the rules record
    // where the cut-over puts requests, and hold no share-off-weight alert while it runs.
    assert_eq!(
        written_under(&stdout, &out_s),
        ["/monitoring/prometheus-rule.yaml", "/plugin.yaml"],
        "{stdout}"
    );
    let rules = std::fs::read_to_string(out.join("monitoring/prometheus-rule.yaml")).unwrap();
    assert!(
        rules.contains("sum(rate(sticky_canary_cutover_total_route_my_app_outcome_kept[5m]))"),
        "{rules}"
    );
    assert!(!rules.contains("StickyCanaryShareOffWeight"), "{rules}");
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.starts_with(&original), "the spec's own lines are kept:\n{text}");
    assert!(text.contains("cutover:\n  to: v2\n"), "{text}");
    let route = plugin_route(&std::fs::read_to_string(out.join("plugin.yaml")).unwrap());
    let cutover = &route["cutover"];
    assert_eq!(cutover["to"], "v2");
    assert_eq!(cutover["idle_seconds"], 900);
    let start = cutover["start"].as_u64().unwrap();
    assert!(start >= before && start <= before + 60, "{cutover}");
    assert_eq!(cutover["deadline"].as_u64().unwrap(), start + 7200);

    // Refused: an unknown version, a bad duration; the spec stays as it was.
    let refused = cli(&["cutover", &spec_s, "--to", "v9"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--to \"v9\" is not one of the spec's versions (v1, v2)"));
    assert!(!cli(&["cutover", &spec_s, "--to", "v2", "--idle", "soon"])
        .status
        .success());
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), text);

    // Rollback: the block goes, the spec is the original again, the plugin has no cut-over.
    let rolled = cli(&["cutover", &spec_s, "--rollback", "--out", &out_s, "--token-key", &key]);
    assert!(rolled.status.success(), "{}", String::from_utf8_lossy(&rolled.stderr));
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), original);
    assert!(plugin_route(&std::fs::read_to_string(out.join("plugin.yaml")).unwrap())
        .get("cutover")
        .is_none());
    let rules = std::fs::read_to_string(out.join("monitoring/prometheus-rule.yaml")).unwrap();
    assert!(
        rules.contains("StickyCanaryShareOffWeight") && !rules.contains("sticky_canary:cutover"),
        "{rules}"
    );
    assert!(
        !cli(&["cutover", &spec_s, "--rollback"]).status.success(),
        "nothing to roll back"
    );

    // Finish: v2 becomes the weights, the block goes.
    assert!(cli(&["cutover", &spec_s, "--to", "v2"]).status.success());
    let finished = cli(&["cutover", &spec_s, "--finish"]);
    assert!(
        finished.status.success(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&spec).unwrap(),
        original
            .replace("    weight: 90\n", "    weight: 0\n")
            .replace("    weight: 10\n", "    weight: 100\n")
    );
}

#[test]
fn a_spec_with_max_weight_and_a_cutover_is_checked_with_its_fields_named() {
    let work = work_dir("max-weight");
    let spec = work.path().join("my-app.yaml");
    let original = std::fs::read_to_string(root().join(EXAMPLE)).unwrap();
    let bad = original.replacen("    weight: 10\n", "    weight: 10\n    max_weight: 5\n", 1)
        + "cutover:\n  to: v3\n  start: \"yesterday\"\n  deadline: \"2026-12-04T10:00:00Z\"\n  idle: 0s\n";
    std::fs::write(&spec, &bad).unwrap();
    let output = cli(&["render", &spec.to_string_lossy()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "cutover.start: \"yesterday\" is not an RFC 3339 time",
        "cutover.idle: \"0s\" is not a duration of at least 1s",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in:\n{stderr}");
    }
    let bad = original.replacen("    weight: 10\n", "    weight: 10\n    max_weight: 5\n", 1);
    std::fs::write(&spec, &bad).unwrap();
    let stderr = String::from_utf8_lossy(&cli(&["render", &spec.to_string_lossy()]).stderr).into_owned();
    assert!(
        stderr.contains("versions[1].max_weight: 5% is below the weight, 10%"),
        "{stderr}"
    );
    let good = original.replacen("    weight: 10\n", "    weight: 10\n    max_weight: 30\n", 1);
    std::fs::write(&spec, &good).unwrap();
    let output = cli(&["render", &spec.to_string_lossy(), "--token-key", &key_file(work.path())]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains(r#"{"name":"v2","weight":10,"max_weight":30}"#));
}

#[test]
fn service_protocol_names_the_service_port_for_istio() {
    let work = work_dir("service-protocol");
    let spec = work.path().join("my-app.yaml");
    let original = std::fs::read_to_string(root().join(EXAMPLE)).unwrap();
    let with =
        |protocol: &str| original.replacen("versions:\n", &format!("service_protocol: {protocol}\nversions:\n"), 1);
    std::fs::write(&spec, with("grpc")).unwrap();
    let out = work.path().join("out");
    let rendered = cli(&[
        "render",
        &spec.to_string_lossy(),
        "--out",
        &out.to_string_lossy(),
        "--token-key",
        &key_file(work.path()),
    ]);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let service = std::fs::read_to_string(out.join("service.yaml")).unwrap();
    assert!(
        service.contains("name: grpc") && service.contains("appProtocol: grpc"),
        "{service}"
    );
    std::fs::write(&spec, with("tcp")).unwrap();
    let refused = cli(&["render", &spec.to_string_lossy()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("service_protocol: \"tcp\" is not one of \"http\", \"http2\", \"grpc\""),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn set_weight_keeps_the_last_good_spec_when_the_result_is_invalid() {
    let work = work_dir("set-weight-invalid");
    let spec = work.path().join("app.yaml");
    // A spec that is already invalid is never rewritten: set-weight checks before it edits.
    let text = std::fs::read_to_string(root().join(EXAMPLE))
        .unwrap()
        .replace("revision: asm-1-31", "revision: asm-1");
    std::fs::write(&spec, &text).unwrap();
    let output = cli(&["set-weight", &spec.to_string_lossy(), "v2", "20"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("revision: "));
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), text);
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary file may be left behind: {leftovers:?}"
    );
}

#[test]
fn a_dropped_version_removes_its_generated_file() {
    let work = work_dir("dropped");
    let app = load(EXAMPLE);
    render::write(work.path(), &render::render(&app, EXAMPLE, &test_tokens())).unwrap();
    std::fs::write(work.path().join("notes.yaml"), "# mine, not generated\n").unwrap();
    std::fs::write(work.path().join("monitoring/mine.json"), "{\"title\": \"mine\"}\n").unwrap();
    let text = std::fs::read_to_string(root().join(EXAMPLE)).unwrap();
    let start = text.find("  - name: v2\n").unwrap();
    let end = text.find("\n# The tutorial's application").unwrap();
    let one_version = format!("{}{}", &text[..start], &text[end..])
        .replace("    weight: 90\n", "    weight: 100\n")
        .replace("    allow: [v2]\n", "    allow: [v1]\n");
    let app = App::from_yaml(&one_version).unwrap();
    let report = render::write(work.path(), &render::render(&app, EXAMPLE, &test_tokens())).unwrap();
    assert_eq!(report.removed, vec!["app-v2.yaml".to_owned()]);
    assert!(
        work.path().join("notes.yaml").exists(),
        "files we did not generate are never removed"
    );
    assert!(
        work.path().join("monitoring/mine.json").exists(),
        "nor JSON we did not generate"
    );
    assert!(work.path().join("monitoring/dashboard.yaml").exists());
}

// ---------------------------------------------------------------------------
// The plugin forms and what a real-Envoy harness consumes
// ---------------------------------------------------------------------------

#[test]
fn inline_form_carries_the_embedded_module_under_the_object_size_limit() {
    let app = load(EXAMPLE);
    let rendered = render::render_with_form(&app, PluginForm::EnvoyFilterInline, EXAMPLE, &test_tokens());
    let plugin = find(&rendered, "EnvoyFilter")[0];
    let code = &plugin["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"];
    let inline = code["local"]["inline_bytes"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(inline).unwrap();
    assert_eq!(bytes, sticky_canary::FILTER_WASM);
    let size = rendered.file("plugin.yaml").unwrap().text.len();
    assert!(size < render::KUBERNETES_OBJECT_LIMIT, "{size} bytes");
    assert!(rendered
        .notes
        .iter()
        .any(|n| n.contains("inline") && n.contains(&format!("module {} bytes", bytes.len()))));
    println!(
        "inline EnvoyFilter: {size} bytes for a {} byte module (limit {})",
        bytes.len(),
        render::KUBERNETES_OBJECT_LIMIT
    );
}

#[test]
fn typed_config_for_a_real_envoy() {
    let app = load(EXAMPLE);
    let install = render::plugin::single_install(&app, &test_tokens());
    let remote = envoy_wasm_typed_config(&install, None);
    assert_eq!(remote["@type"], render::plugin::WASM_TYPE_URL);
    assert_eq!(
        remote["config"]["vm_config"]["code"]["remote"]["http_uri"]["uri"],
        "oci://myregistry.azurecr.io/sticky-canary:0.1.0"
    );
    let local = envoy_wasm_typed_config(&install, Some(Path::new("/tmp/filter.wasm")));
    assert_eq!(
        local["config"]["vm_config"]["code"],
        serde_json::json!({"local": {"filename": "/tmp/filter.wasm"}})
    );
    let config = local["config"]["configuration"]["value"].as_str().unwrap();
    assert!(policy_core::Policy::from_json(config.as_bytes()).is_ok());
    assert_eq!(local["config"]["failure_policy"], "FAIL_OPEN");
    // Identical to what the rendered EnvoyFilter carries, apart from the code source.
    let rendered = render::render_with_form(&app, PluginForm::EnvoyFilter, EXAMPLE, &test_tokens());
    let carried = serde_json::to_value(
        &find(&rendered, "EnvoyFilter")[0]["spec"]["configPatches"][0]["patch"]["value"]["typed_config"],
    )
    .unwrap();
    assert_eq!(carried, remote);
    assert_eq!(default_subset(&app, &test_tokens()).as_deref(), Some("v1"));
}

#[test]
fn strings_that_yaml_1_1_would_turn_into_booleans_stay_strings() {
    let text = std::fs::read_to_string(root().join(EXAMPLE)).unwrap().replace(
        "      VERSION: v1.0.0\n",
        "      VERSION: v1.0.0\n      FEATURE: \"on\"\n      LEVEL: \"0777\"\n",
    );
    let app = App::from_yaml(&text).unwrap();
    let rendered = render::render(&app, EXAMPLE, &test_tokens());
    let deployment = &rendered.file("app-v1.yaml").unwrap().text;
    assert!(deployment.contains("value: 'on'\n"), "{deployment}");
    assert!(deployment.contains("value: '0777'\n"), "{deployment}");
}

// ---------------------------------------------------------------------------
// Routing tokens: from a key outside the spec, stable, rotatable
// ---------------------------------------------------------------------------

#[test]
fn render_without_a_token_key_refuses_and_says_how_to_make_one() {
    let work = work_dir("no-key");
    let target = work.path().join("out");
    let output = cli(&["render", EXAMPLE, "--out", &target.to_string_lossy()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sticky-canary token-key --out"), "{stderr}");
    assert!(stderr.contains("STICKY_CANARY_TOKEN_KEY_FILE"), "{stderr}");
    assert!(!target.exists(), "a refused render must write nothing");
    // A key that is too short is refused too, naming the file.
    let short = work.path().join("short.key");
    std::fs::write(&short, "abcdef\n").unwrap();
    let output = cli(&["render", EXAMPLE, "--token-key", &short.to_string_lossy()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("short.key") && stderr.contains("too short"), "{stderr}");
}

#[test]
fn token_key_files_are_private_and_never_overwritten() {
    let work = work_dir("token-key");
    let key = key_file(work.path());
    let text = std::fs::read_to_string(&key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key file is readable by others");
    }
    let again = cli(&["token-key", "--out", &key]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
    // Two keys, two sets of tokens.
    let other = work.path().join("other.key");
    assert!(cli(&["token-key", "--out", &other.to_string_lossy()]).status.success());
    assert_ne!(std::fs::read_to_string(&other).unwrap(), text);
}

/// The token is an HMAC under a key that is not in the spec: the old derivation from public facts
/// (app name and salt) no longer gives it, the same key gives byte-identical output, another key
/// other tokens, and `routing.token.value` in a spec is refused.
#[test]
fn tokens_come_from_the_key_not_from_the_spec() {
    let app = load(EXAMPLE);
    let old_guess: String =
        sticky_canary::sha256_hex(format!("sticky-canary routing token\0{}\0my-app-2025", app.name).as_bytes())
            .chars()
            .take(32)
            .collect();
    let a = render::render(&app, EXAMPLE, &test_tokens());
    let b = render::render(&app, EXAMPLE, &test_tokens());
    let other = render::render(&app, EXAMPLE, &Tokens::Key(TokenKey::parse(&"c3".repeat(32)).unwrap()));
    let text = |r: &render::Rendered| r.files.iter().map(|f| f.text.clone()).collect::<Vec<_>>();
    assert_eq!(
        text(&a),
        text(&b),
        "the same key and spec must give byte-identical output"
    );
    assert_ne!(text(&a), text(&other), "another key must give other tokens");
    let token =
        Tokens::Key(TokenKey::parse(&"5a".repeat(32)).unwrap()).token(render::token::Purpose::Gateway, "my-app", 1);
    let istio = &a.file("istio.yaml").unwrap().text;
    assert!(istio.contains(&token), "{istio}");
    assert!(!istio.contains(&old_guess));
    assert!(!a.file("plugin.yaml").unwrap().text.contains(&old_guess));
    // The committed golden files carry no real token at all.
    for (name, text) in golden_expected() {
        if text.contains("x-canary-token") && name.ends_with("istio.yaml") {
            assert!(text.contains("EXAMPLE-NOT-SECRET-gateway-"), "{name}");
        }
    }
    let with_value = std::fs::read_to_string(root().join(EXAMPLE)).unwrap().replace(
        "  salt: my-app-2025\n",
        "  salt: my-app-2025\n  token: {value: 0123456789abcdef0123}\n",
    );
    let errors = App::from_yaml(&with_value).unwrap_err().to_string();
    assert!(
        errors.contains("routing.token.value: is no longer accepted"),
        "{errors}"
    );
}

/// Rotation without bouncing anyone: step 1 accepts the new generation beside the old one, step 2
/// sends the new one, step 3 drops the old one. At every step the filter's token is accepted.
#[test]
fn token_rotation_accepts_old_and_new_during_the_switch() {
    let base = std::fs::read_to_string(root().join(EXAMPLE)).unwrap();
    let step = |token: &str| {
        App::from_yaml(&base.replace(
            "  salt: my-app-2025\n",
            &format!("  salt: my-app-2025\n  token: {token}\n"),
        ))
        .unwrap()
    };
    let tokens = test_tokens();
    let gateway = |g: u32| tokens.token(render::token::Purpose::Gateway, "my-app", g);
    for (spec, sent, accepted) in [
        ("{generation: 1}", 1, vec![1]),
        ("{generation: 1, also_accept: [2]}", 1, vec![1, 2]),
        ("{generation: 2, also_accept: [1]}", 2, vec![2, 1]),
        ("{generation: 2}", 2, vec![2]),
    ] {
        let app = step(spec);
        let config = app.filter_config(&tokens);
        let config = serde_json::to_string(&config).unwrap();
        let policy = policy_core::Policy::from_json(config.as_bytes()).unwrap();
        assert_eq!(
            policy.routes()[0].routing_token().unwrap().value,
            gateway(sent),
            "{spec}"
        );
        let routes = gateway_header_routes(&app, &tokens);
        let values: Vec<String> = routes.iter().map(token_of).collect();
        assert_eq!(
            values,
            accepted.iter().map(|g| gateway(*g)).collect::<Vec<_>>(),
            "{spec}"
        );
        assert!(routes.iter().all(|r| r.subset == "v2"));
    }
    for bad in [
        "{generation: 0}",
        "{generation: 2, also_accept: [2]}",
        "{also_accept: [3, 3]}",
    ] {
        let text = base.replace(
            "  salt: my-app-2025\n",
            &format!("  salt: my-app-2025\n  token: {bad}\n"),
        );
        assert!(App::from_yaml(&text).is_err(), "{bad} was accepted");
    }
}

// ---------------------------------------------------------------------------
// Warnings and defaults
// ---------------------------------------------------------------------------

#[test]
fn placeholders_and_shared_gateway_fail_strategies_are_warned_about() {
    let work = work_dir("warnings");
    let key = key_file(work.path());
    let output = cli(&["render", EXAMPLE, "--token-key", &key]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: examples/my-app.yaml: plugin.sha256:") && stderr.contains("placeholder"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: examples/my-app.yaml: routing.override.secret:"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("fail_strategy"),
        "FAIL_OPEN needs no warning: {stderr}"
    );
    for strategy in ["FAIL_CLOSE", "FAIL_RELOAD"] {
        let spec = work.path().join(format!("{strategy}.yaml"));
        let text = std::fs::read_to_string(root().join(EXAMPLE))
            .unwrap()
            .replace("fail_strategy: FAIL_OPEN", &format!("fail_strategy: {strategy}"));
        std::fs::write(&spec, text).unwrap();
        let output = cli(&["render", &spec.to_string_lossy(), "--token-key", &key]);
        assert!(output.status.success(), "a warning is not an error");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("plugin.fail_strategy {strategy}")))
            .unwrap_or_else(|| panic!("no fail-strategy warning for {strategy}: {stderr}"));
        for words in [
            "deny-all RBAC",
            "every host on that gateway answers 403",
            "the other apps' too",
        ] {
            assert!(line.contains(words), "{strategy}: {line}");
        }
    }
}

#[test]
fn the_default_plugin_form_is_the_envoyfilter_the_aks_add_on_accepts() {
    let text = std::fs::read_to_string(root().join(EXAMPLE))
        .unwrap()
        .replace("  form: envoyfilter\n", "");
    let app = App::from_yaml(&text).unwrap();
    assert_eq!(app.plugin.form, PluginForm::EnvoyFilter);
    let rendered = render::render(&app, EXAMPLE, &test_tokens());
    assert_eq!(find(&rendered, "EnvoyFilter").len(), 1);
    assert!(find(&rendered, "WasmPlugin").is_empty());
}

// ---------------------------------------------------------------------------
// Many apps on one shared gateway
// ---------------------------------------------------------------------------

/// A spec for app `name` on `host`, with the example's plugin settings.
fn spec_for(name: &str, host: &str, canary: u32) -> String {
    format!(
        "app: {name}\nrevision: asm-1-31\nhosts: [{host}]\nversions:\n  - {{name: v1, image: nginx, weight: {}}}\n  - {{name: v2, image: nginx, weight: {canary}}}\nrouting:\n  salt: {name}-salt\n  key_chain: [{{cookie: session}}]\nplugin:\n  url: oci://myregistry.azurecr.io/sticky-canary:0.1.0\n  sha256: \"{}\"\n",
        100 - canary,
        "ab".repeat(32)
    )
}

#[test]
fn shared_gateway_render_has_one_plugin_with_every_apps_route() {
    let rendered = render::render_shared(&shared_inputs(), None, &test_tokens()).unwrap();
    let plugins = find(&rendered, "EnvoyFilter");
    assert_eq!(plugins.len(), 1, "one plugin per gateway, not per app");
    assert_eq!(plugins[0]["metadata"]["name"].as_str(), Some("sticky-canary-external"));
    let config = carried_filter_config(plugins[0]);
    let policy = policy_core::Policy::from_json(config.as_bytes()).unwrap();
    let names: Vec<&str> = policy.routes().iter().map(|r| r.name()).collect();
    assert_eq!(names, vec!["frontend", "my-app"]);
    // Each app's objects in its own directory, each with its own kustomization; one Namespace each.
    for app in ["my-app", "frontend"] {
        for name in ["istio.yaml", "service.yaml", "kustomization.yaml", "00-namespace.yaml"] {
            assert!(rendered.file(&format!("{app}/{name}")).is_some(), "{app}/{name}");
        }
        assert!(rendered.file(&format!("{app}/plugin.yaml")).is_none());
    }
    assert!(rendered.file("frontend/dependents.yaml").is_some());
    let top = &rendered.file("kustomization.yaml").unwrap().objects[0]["resources"];
    assert_eq!(
        top.as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["gateway", "frontend", "my-app"]
    );
    // Each app's VirtualService requires that app's own token, the one its route in the shared config sends.
    for route in policy.routes() {
        let vs = find(&rendered, "VirtualService")
            .into_iter()
            .find(|v| v["metadata"]["name"].as_str() == Some(&format!("vs-{}", route.name())))
            .unwrap();
        let (routes, _) = virtual_service_header_routes(vs);
        let canary = &route.versions()[route.version_index(&routes[0].subset).unwrap()];
        assert_eq!(routes[0].value, canary.routing_value());
        assert!(routes[0].value.ends_with(&route.routing_token().unwrap().value));
    }
    let tokens: Vec<&str> = policy
        .routes()
        .iter()
        .map(|r| r.routing_token().unwrap().value.as_str())
        .collect();
    assert_ne!(tokens[0], tokens[1], "apps share a token");
}

#[test]
fn conflicting_specs_are_refused_naming_both() {
    let work = work_dir("conflicts");
    let write = |name: &str, text: &str| {
        let path = work.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let a = write("a.yaml", &spec_for("app-a", "shop.example.com", 10));
    let b = write("b.yaml", &spec_for("app-b", "SHOP.example.com", 10));
    let key = key_file(work.path());
    let out = work.path().join("out");
    let output = cli(&["render", &a, &b, "--out", &out.to_string_lossy(), "--token-key", &key]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("b.yaml: host \"SHOP.example.com\" is claimed by app \"app-b\" here and by app \"app-a\" in"),
        "{stderr}"
    );
    assert!(stderr.contains("a.yaml"), "{stderr}");
    assert!(!out.exists(), "a refused render writes nothing");

    let c = write(
        "c.yaml",
        &spec_for("app-c", "c.example.com", 10).replace("  sha256:", "  fail_strategy: FAIL_CLOSE\n  sha256:"),
    );
    let d = write("d.yaml", &spec_for("app-c", "d.example.com", 10));
    let output = cli(&["render", &a, &c, &d, "--token-key", &key]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("c.yaml: plugin.fail_strategy differs from"), "{stderr}");
    assert!(stderr.contains("d.yaml: app \"app-c\" is also the app of"), "{stderr}");
}

#[test]
fn set_weight_on_one_app_changes_only_its_route_in_the_shared_plugin() {
    let work = work_dir("shared-set-weight");
    let apps = work.path().join("apps");
    std::fs::create_dir_all(&apps).unwrap();
    for i in 0..3 {
        std::fs::write(
            apps.join(format!("app-{i}.yaml")),
            spec_for(&format!("app-{i}"), &format!("app-{i}.example.com"), 10),
        )
        .unwrap();
    }
    let key = key_file(work.path());
    let out = work.path().join("manifests");
    let (apps_s, out_s) = (apps.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let first = cli(&["render", &apps_s, "--out", &out_s, "--token-key", &key]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let before = std::fs::read_to_string(out.join("gateway/plugin-external.yaml")).unwrap();
    let spec = apps.join("app-1.yaml").to_string_lossy().into_owned();

    // Without the others: refused, since it would drop their routes; nothing changes.
    let alone = cli(&["set-weight", &spec, "v2", "50", "--out", &out_s, "--token-key", &key]);
    assert!(!alone.status.success());
    assert!(String::from_utf8_lossy(&alone.stderr).contains("drop the other apps' routes"));
    assert!(std::fs::read_to_string(&spec).unwrap().contains("weight: 10}"));

    let ramp = cli(&[
        "set-weight",
        &spec,
        "v2",
        "50",
        "--with",
        &apps_s,
        "--out",
        &out_s,
        "--token-key",
        &key,
    ]);
    assert!(ramp.status.success(), "{}", String::from_utf8_lossy(&ramp.stderr));
    let stdout = String::from_utf8_lossy(&ramp.stdout);
    assert_eq!(
        written_under(&stdout, &out_s),
        [
            "/app-1/monitoring/prometheus-rule.yaml",
            "/gateway/plugin-external.yaml"
        ],
        "{stdout}"
    );
    let after = std::fs::read_to_string(out.join("gateway/plugin-external.yaml")).unwrap();
    let routes = |text: &str| {
        let plugin: Yaml = serde_yaml_ng::from_str(text).unwrap();
        let config: serde_json::Value = serde_json::from_str(&carried_filter_config(&plugin)).unwrap();
        config["routes"].as_array().unwrap().clone()
    };
    let (old, new) = (routes(&before), routes(&after));
    assert_eq!(old.len(), 3);
    for i in [0, 2] {
        assert_eq!(old[i], new[i], "app-{i}'s route changed");
    }
    assert_eq!(
        new[1]["versions"],
        serde_json::json!([{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}])
    );
    assert_eq!(old[1]["routing_token"], new[1]["routing_token"]);

    // A single-spec render into the shared directory is refused as well.
    let single = cli(&["render", &spec, "--out", &out_s, "--token-key", &key]);
    assert!(!single.status.success());
    assert_eq!(
        std::fs::read_to_string(out.join("gateway/plugin-external.yaml")).unwrap(),
        after
    );

    // Removing an app's spec removes its generated directory on the next render.
    std::fs::remove_file(apps.join("app-2.yaml")).unwrap();
    let again = cli(&["render", &apps_s, "--out", &out_s, "--token-key", &key]);
    assert!(again.status.success());
    assert!(!out.join("app-2").exists());
    assert_eq!(
        routes(&std::fs::read_to_string(out.join("gateway/plugin-external.yaml")).unwrap()).len(),
        2
    );
}

/// Replacing the key without moving anyone: the VirtualServices accept tokens under both keys
/// while the filter switches from the old key's to the new key's.
#[test]
fn key_replacement_accepts_both_keys_during_the_switch() {
    let work = work_dir("key-replacement");
    let old = key_file(work.path());
    let new = work.path().join("new.key").to_string_lossy().into_owned();
    assert!(cli(&["token-key", "--out", &new]).status.success());
    let (old_tokens, new_tokens) = (key_of(&old), key_of(&new));
    let gateway = |tokens: &Tokens| tokens.token(render::token::Purpose::Gateway, "frontend", 1);
    let mesh = |tokens: &Tokens| tokens.token(render::token::Purpose::Mesh, "frontend", 1);
    for (current, also, sent, other) in [
        (&old, Some(&new), &old_tokens, Some(&new_tokens)),
        (&new, Some(&old), &new_tokens, Some(&old_tokens)),
        (&new, None, &new_tokens, None),
    ] {
        let mut args = vec!["render", DEPENDENTS_EXAMPLE, "--token-key", current.as_str()];
        if let Some(also) = also {
            args.extend(["--also-accept-key", also.as_str()]);
        }
        let output = cli(&args);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stream = String::from_utf8(output.stdout).unwrap();
        let objects: Vec<Yaml> = serde_yaml_ng::Deserializer::from_str(&stream)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let vs = objects.iter().find(|o| o["metadata"]["name"] == "vs-frontend").unwrap();
        let (routes, _) = virtual_service_header_routes(vs);
        let accepted: Vec<String> = routes.iter().map(token_of).collect();
        let expected: Vec<String> = std::iter::once(sent).chain(other).map(gateway).collect();
        assert_eq!(accepted, expected);
        // The filter sends the current key's token; the gateway sets the current key's mesh token.
        let plugin = objects.iter().find(|o| o["kind"] == "EnvoyFilter").unwrap();
        assert!(carried_filter_config(plugin).contains(&gateway(sent)));
        assert_eq!(
            routes[0].set,
            vec![
                ("x-canary-version".to_owned(), "v2".to_owned()),
                ("x-canary-mesh-token".to_owned(), mesh(sent))
            ]
        );
        // The backend accepts the mesh tokens under every key in play.
        let backend = objects.iter().find(|o| o["metadata"]["name"] == "vs-backend").unwrap();
        let (backend_routes, _) = virtual_service_header_routes(backend);
        assert_eq!(backend_routes.len(), expected.len());
        assert_eq!(backend_routes[0].also[0].1, mesh(sent));
    }
}

// ---------------------------------------------------------------------------
// Gateway API ingress and traffic mirroring
// ---------------------------------------------------------------------------

#[test]
fn gateway_api_render_has_its_own_gateway_route_services_and_plugin() {
    let app = load(GATEWAY_API_EXAMPLE);
    let tokens = test_tokens();
    let rendered = render::render(&app, GATEWAY_API_EXAMPLE, &tokens);
    // No add-on objects: no Istio Gateway, VirtualService or DestinationRule.
    for kind in ["VirtualService", "DestinationRule"] {
        assert!(find(&rendered, kind).is_empty(), "{kind} rendered for gateway-api");
    }
    let gateway = objects(&rendered).find(|o| o["kind"] == "Gateway").expect("a Gateway");
    assert_eq!(gateway["apiVersion"].as_str(), Some("gateway.networking.k8s.io/v1"));
    assert_eq!(gateway["spec"]["gatewayClassName"].as_str(), Some("istio"));
    assert_eq!(gateway["metadata"]["namespace"].as_str(), Some("ns-storefront"));
    let listeners = gateway["spec"]["listeners"].as_sequence().unwrap();
    assert_eq!(listeners[0]["port"].as_u64(), Some(443));
    assert_eq!(
        listeners[0]["tls"]["certificateRefs"][0]["name"].as_str(),
        Some("storefront-tls")
    );
    assert_eq!(listeners[1]["port"].as_u64(), Some(80));

    // The HTTPRoute agrees with the filter config: one rule per canary on the routing header
    // and the filter's token (which it removes), then stable; every backend is a version Service.
    let routes = find(&rendered, "HTTPRoute");
    assert_eq!(routes.len(), 2, "the app's route and the https redirect");
    let route = routes[0];
    assert_eq!(route["spec"]["parentRefs"][0]["sectionName"].as_str(), Some("https"));
    let config =
        policy_core::Policy::from_json(carried_filter_config(find(&rendered, "EnvoyFilter")[0]).as_bytes()).unwrap();
    let filter_route = &config.routes()[0];
    let token = filter_route.routing_token().unwrap();
    let rules = route["spec"]["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), app.versions.len());
    let services: Vec<String> = find(&rendered, "Service")
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    for (rule, version) in rules.iter().zip(app.versions.iter().skip(1)) {
        let headers = rule["matches"][0]["headers"].as_sequence().unwrap();
        // One header carries the version and the token, exactly as the filter writes it.
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers[0]["name"].as_str(), Some(filter_route.routing_header()));
        assert_eq!(token.header, filter_route.routing_header());
        let expected = format!("{};{}", version.name, token.value);
        assert_eq!(headers[0]["value"].as_str(), Some(expected.as_str()));
        let canary = &filter_route.versions()[filter_route.version_index(&version.name).unwrap()];
        assert_eq!(canary.routing_value(), expected);
        assert_eq!(
            rule["backendRefs"][0]["name"].as_str(),
            Some(format!("svc-storefront-{}", version.name).as_str())
        );
    }
    let stable = rules.last().unwrap();
    assert!(stable["matches"][0].get("headers").is_none());
    assert_eq!(stable["backendRefs"][0]["name"].as_str(), Some("svc-storefront-v1"));
    for rule in rules {
        let backend = rule["backendRefs"][0]["name"].as_str().unwrap();
        assert!(services.iter().any(|s| s == backend), "no Service {backend}");
        // Every rule replaces the filter's `VERSION;TOKEN` with the bare version name.
        let version = backend.strip_prefix("svc-storefront-").unwrap();
        let set = &rule["filters"][0]["requestHeaderModifier"]["set"];
        assert_eq!(set.as_sequence().map(Vec::len), Some(1), "{rule:?}");
        assert_eq!(
            set[0]["name"].as_str(),
            Some(token.header.as_str()),
            "a rule keeps the token: {rule:?}"
        );
        assert_eq!(set[0]["value"].as_str(), Some(version), "{rule:?}");
    }
    // Mirroring: stable's rule copies 25% to v2; v2's own rule does not mirror to itself.
    let mirror = stable["filters"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|f| f["type"] == "RequestMirror");
    let mirror = mirror.expect("stable mirrors");
    assert_eq!(
        mirror["requestMirror"]["backendRef"]["name"].as_str(),
        Some("svc-storefront-v2")
    );
    assert_eq!(mirror["requestMirror"]["percent"].as_u64(), Some(25));
    assert!(!rules[0]["filters"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|f| f["type"] == "RequestMirror"));
    // A partial mirror on an HTTPRoute needs the v1.3 CRDs: said at render time.
    assert!(
        rendered
            .notes
            .iter()
            .any(|n| n.contains("mirror.percent") && n.contains("v1.3")),
        "{:?}",
        rendered.notes
    );

    // The plugin: in the app's namespace, selecting the pods Istio deploys for that Gateway.
    let plugin = find(&rendered, "EnvoyFilter")[0];
    assert_eq!(plugin["metadata"]["namespace"].as_str(), Some("ns-storefront"));
    assert_eq!(
        plugin["spec"]["workloadSelector"]["labels"]["gateway.networking.k8s.io/gateway-name"].as_str(),
        Some("gateway-storefront")
    );
    let wasm = render::render_with_form(&app, PluginForm::WasmPlugin, GATEWAY_API_EXAMPLE, &tokens);
    let wasm_plugin = find(&wasm, "WasmPlugin")[0];
    assert_eq!(wasm_plugin["metadata"]["namespace"].as_str(), Some("ns-storefront"));
    assert!(wasm_plugin["spec"].get("selector").is_none());
    assert_eq!(wasm_plugin["spec"]["targetRefs"][0]["kind"].as_str(), Some("Gateway"));
    assert_eq!(
        wasm_plugin["spec"]["targetRefs"][0]["name"].as_str(),
        Some("gateway-storefront")
    );
}

#[test]
fn mirroring_on_the_add_on_gateway_copies_from_every_route_but_the_mirror_versions() {
    let spec = std::fs::read_to_string(root().join(EXAMPLE)).unwrap() + "mirror: {version: v2, percent: 12.5}\n";
    let app = App::from_yaml(&spec).unwrap();
    let rendered = render::render(&app, EXAMPLE, &test_tokens());
    let vs = find(&rendered, "VirtualService")[0];
    let http = vs["spec"]["http"].as_sequence().unwrap();
    let mut mirrored = 0;
    for route in http {
        let subset = route["route"][0]["destination"]["subset"].as_str().unwrap();
        if subset == "v2" {
            assert!(route.get("mirror").is_none(), "v2's route mirrors to itself");
        } else {
            mirrored += 1;
            assert_eq!(route["mirror"]["subset"].as_str(), Some("v2"));
            assert_eq!(
                route["mirror"]["host"].as_str(),
                Some("svc-my-app.ns-canary-istio.svc.cluster.local")
            );
            assert_eq!(route["mirrorPercentage"]["value"].as_f64(), Some(12.5));
        }
    }
    assert_eq!(mirrored, 1);
    // A fraction of a percent on an HTTPRoute is a fraction of 10,000.
    let spec = std::fs::read_to_string(root().join(GATEWAY_API_EXAMPLE))
        .unwrap()
        .replace("  percent: 25\n", "  percent: 12.5\n");
    let rendered = render::render(&App::from_yaml(&spec).unwrap(), GATEWAY_API_EXAMPLE, &test_tokens());
    let text = rendered.stream();
    assert!(
        text.contains("fraction:\n          numerator: 1250\n          denominator: 10000"),
        "{text}"
    );
}

#[test]
fn gateway_api_and_mirror_mistakes_are_refused_with_their_paths() {
    let base = std::fs::read_to_string(root().join(GATEWAY_API_EXAMPLE)).unwrap();
    let cases = [
        (base.replace("revision: asm-1-31", "revision: asm-1-25"), "ingress: "),
        (base.replace("ingress: gateway-api", "ingress: gateway"), "ingress: "),
        (
            base.replace(
                "  credential_name: storefront-tls\n",
                "  credential_name: storefront-tls\n  mode: MUTUAL\n",
            ),
            "tls.mode: ",
        ),
        (
            base.replace("  version: v2\n  percent", "  version: v1\n  percent"),
            "mirror.version: ",
        ),
        (
            base.replace("  version: v2\n  percent", "  version: v9\n  percent"),
            "mirror.version: ",
        ),
        (base.replace("  percent: 25\n", "  percent: 0\n"), "mirror.percent: "),
        (
            base.replace("  percent: 25\n", "  percent: 100.5\n"),
            "mirror.percent: ",
        ),
        (
            base.replace("  percent: 25\n", "  percent: 2.125\n"),
            "mirror.percent: ",
        ),
    ];
    for (spec, path) in cases {
        assert_refused_at(&spec, &[path]);
    }
}

#[test]
fn a_gateway_api_app_beside_add_on_apps_keeps_its_own_plugin() {
    let mut inputs = shared_inputs();
    inputs.push((GATEWAY_API_EXAMPLE.to_owned(), load(GATEWAY_API_EXAMPLE)));
    let rendered = render::render_shared(&inputs, None, &test_tokens()).unwrap();
    let plugins = find(&rendered, "EnvoyFilter");
    assert_eq!(
        plugins.len(),
        2,
        "the add-on gateway's shared plugin and the Gateway API app's own"
    );
    let shared = plugins
        .iter()
        .find(|p| p["metadata"]["name"] == "sticky-canary-external")
        .unwrap();
    let shared_routes = carried_filter_config(shared);
    assert!(
        !shared_routes.contains("storefront"),
        "the add-on plugin carries the Gateway API app"
    );
    let own = rendered.file("storefront/plugin.yaml").expect("storefront/plugin.yaml");
    assert!(own
        .text
        .contains("gateway.networking.k8s.io/gateway-name: gateway-storefront"));
    assert!(rendered.file("storefront/gateway-api.yaml").is_some());
    assert!(rendered.file("storefront/istio.yaml").is_none());
    assert!(
        rendered
            .notes
            .iter()
            .any(|n| n.contains("own plugin") && n.contains("storefront")),
        "{:?}",
        rendered.notes
    );
}

/// `routing.exposure_log: true` reaches the filter config (off, it is not written at all), a
/// non-boolean is refused with its spec path, and apps sharing a gateway must agree on it.
#[test]
fn the_exposure_log_setting_reaches_the_filter_config_and_apps_on_one_gateway_agree() {
    let base = std::fs::read_to_string(root().join(EXAMPLE)).unwrap();
    let tokens = test_tokens();
    let off = App::from_yaml(&base).unwrap();
    let config = serde_json::to_string(&off.filter_config(&tokens)).unwrap();
    assert!(!config.contains("exposure_log"), "{config}");
    let on_text = base.replace("  salt: my-app-2025\n", "  salt: my-app-2025\n  exposure_log: true\n");
    assert_ne!(on_text, base);
    let on = App::from_yaml(&on_text).unwrap();
    let config = serde_json::to_string(&on.filter_config(&tokens)).unwrap();
    assert!(
        policy_core::Policy::from_json(config.as_bytes())
            .unwrap()
            .exposure_log(),
        "{config}"
    );
    // The access log that prints it: a file of its own, in the kustomization; none when off.
    let rendered = render::render(&on, EXAMPLE, &tokens);
    let log = rendered.file("exposure-log.yaml").unwrap();
    assert!(
        log.text.contains("FILTER_STATE(wasm.sticky_canary:PLAIN)"),
        "{}",
        log.text
    );
    assert!(log.text.contains("operation: MERGE"));
    assert!(rendered
        .file("kustomization.yaml")
        .unwrap()
        .text
        .contains("- exposure-log.yaml\n"));
    assert!(render::render(&off, EXAMPLE, &tokens)
        .file("exposure-log.yaml")
        .is_none());
    let shared = render::render_shared(&[("a.yaml".to_owned(), on.clone())], None, &tokens).unwrap();
    assert!(shared.file("gateway/exposure-log-external.yaml").is_some());
    assert!(shared
        .file("gateway/kustomization.yaml")
        .unwrap()
        .text
        .contains("- exposure-log-external.yaml\n"));
    let bad = App::from_yaml(&base.replace(
        "  salt: my-app-2025\n",
        "  salt: my-app-2025\n  exposure_log: yes please\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(bad.contains("exposure_log"), "{bad}");
    // Two apps on one gateway, one with the log on: refused, naming the field.
    let other = std::fs::read_to_string(root().join(DEPENDENTS_EXAMPLE)).unwrap();
    let inputs = [
        ("a.yaml".to_owned(), on),
        ("b.yaml".to_owned(), App::from_yaml(&other).unwrap()),
    ];
    let refs: Vec<&(String, App)> = inputs.iter().collect();
    let error = match render::shared::gateway_installs(&refs, &tokens) {
        Ok(_) => panic!("apps disagreeing on exposure_log were rendered together"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("routing.exposure_log differs"), "{error}");
}

/// The analysis templates of a progressive app's `analysis.yaml`: Flagger's MetricTemplates
/// and Argo Rollouts' AnalysisTemplate read the canary Service's gateway cluster, at the
/// spec's Prometheus, with its thresholds; bad settings are refused by name.
#[test]
fn progressive_apps_get_their_tools_analysis_templates() {
    let analysis_of = |spec: &str, extra: &str| -> Vec<Yaml> {
        let text = std::fs::read_to_string(root().join(spec))
            .unwrap()
            .replace("progressive:\n", &format!("progressive:\n{extra}"));
        let app = App::from_yaml(&text).unwrap();
        let rendered = render::render(&app, spec, &test_tokens());
        let file = rendered.file("analysis.yaml").unwrap();
        assert!(
            rendered
                .file("kustomization.yaml")
                .unwrap()
                .text
                .contains("- analysis.yaml"),
            "analysis.yaml is not in the kustomization"
        );
        assert!(file.text.contains("proxyStatsMatcher"), "{}", file.text);
        file.text
            .split("\n---\n")
            .map(|doc| serde_yaml_ng::from_str(doc).unwrap())
            .collect()
    };
    let flagger = analysis_of("examples/flagger/my-app.yaml", "");
    assert_eq!(flagger.len(), 2);
    assert_eq!(flagger[0]["kind"], "MetricTemplate");
    assert_eq!(flagger[0]["metadata"]["name"], "my-app-success-rate");
    assert_eq!(flagger[1]["metadata"]["name"], "my-app-latency");
    assert_eq!(
        flagger[0]["spec"]["provider"]["address"],
        "http://prometheus.monitoring:9090"
    );
    let query = flagger[0]["spec"]["query"].as_str().unwrap();
    assert!(
        query.contains(r#"cluster_name=~"outbound.[0-9]+..{{ target }}-canary.{{ namespace }}.svc.cluster.local""#)
            && query.contains("[{{ interval }}]")
            && query.contains(r#"response_code_class=~"[1-4]xx""#)
            && query.contains(r#"response_code_class=~"[1-5]xx""#),
        "{query}"
    );
    assert!(flagger[1]["spec"]["query"]
        .as_str()
        .unwrap()
        .contains("histogram_quantile(0.99"));

    let argo = analysis_of(
        "examples/argo-rollouts/my-app.yaml",
        "  analysis:\n    prometheus: http://prom.example:9090/\n    interval: 30s\n    failure_limit: 3\n    min_success_rate: 99.5\n    max_latency_ms: 250\n",
    );
    assert_eq!(argo.len(), 1);
    let spec = &argo[0]["spec"];
    assert_eq!(argo[0]["kind"], "AnalysisTemplate");
    assert_eq!(argo[0]["metadata"]["name"], "my-app-analysis");
    assert_eq!(spec["args"][0]["value"], "my-app-canary");
    assert_eq!(spec["args"][1]["value"], "ns-canary-istio");
    assert_eq!(spec["metrics"][0]["successCondition"], "result[0] >= 0.995");
    assert_eq!(spec["metrics"][1]["successCondition"], "result[0] <= 250");
    assert_eq!(spec["metrics"][0]["interval"], "30s");
    assert_eq!(spec["metrics"][0]["failureLimit"], 3);
    let query = spec["metrics"][0]["provider"]["prometheus"]["query"].as_str().unwrap();
    assert!(
        query.contains("{{args.canary-service}}") && query.contains("[30s]"),
        "{query}"
    );
    assert_eq!(
        spec["metrics"][0]["provider"]["prometheus"]["address"],
        "http://prom.example:9090/"
    );

    // The stats the gateway must keep: the app's two Services' request stats, and no other.
    let app = load("examples/argo-rollouts/my-app.yaml");
    let regex = render::analysis::stats_regex(&app, render::spec::Tool::ArgoRollouts);
    assert_eq!(
        regex,
        r"cluster\.outbound\|[0-9]+\|\|(my-app-stable|my-app-canary)\.ns-canary-istio\.svc\.cluster\.local;\.upstream_rq_.*"
    );

    let base = std::fs::read_to_string(root().join("examples/flagger/my-app.yaml")).unwrap();
    for (extra, message) in [
        (
            "  analysis:\n    prometheus: prometheus:9090\n",
            "progressive.analysis.prometheus: \"prometheus:9090\" is not an http:// or https:// URL",
        ),
        (
            "  analysis:\n    interval: 500ms\n",
            "progressive.analysis.interval: \"500ms\" is not a Prometheus duration of at least 1s",
        ),
        (
            "  analysis:\n    min_success_rate: 120\n",
            "progressive.analysis.min_success_rate: 120 is not a percentage",
        ),
        (
            "  analysis:\n    max_latency_ms: 0\n",
            "progressive.analysis.max_latency_ms: 0 is not a latency",
        ),
        ("  analysis:\n    thresholds: 1\n", "unknown field `thresholds`"),
    ] {
        let text = base.replace("progressive:\n", &format!("progressive:\n{extra}"));
        let error = App::from_yaml(&text).unwrap_err().to_string();
        assert!(error.contains(message), "{extra}: {error}");
    }
}
