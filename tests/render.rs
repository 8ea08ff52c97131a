//! `sticky-canary render` and `set-weight`: golden files, published schemas, and the
//! consistency between the filter config, the VirtualService and the DestinationRule.
//!
//! Refresh the golden files after an intended change with
//! `STICKY_CANARY_UPDATE_GOLDEN=1 cargo test --test render golden`.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_yaml_ng::Value as Yaml;
use sticky_canary::render::{self, App, PluginForm};

const EXAMPLE: &str = "examples/my-app.yaml";
const DEPENDENTS_EXAMPLE: &str = "examples/frontend-backend.yaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(relative: &str) -> App {
    render::load(&root().join(relative)).unwrap().1
}

/// A fresh empty directory under the target dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = root()
            .join("target")
            .join("render-tests")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sticky-canary"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap()
}

// ---------------------------------------------------------------------------
// Golden files
// ---------------------------------------------------------------------------

/// The files in `manifests/` (top level) and `manifests/plugin-forms/`, as (relative name, text).
fn golden_expected() -> Vec<(String, String)> {
    let app = load(EXAMPLE);
    let mut files: Vec<(String, String)> = render::render(&app, EXAMPLE)
        .files
        .into_iter()
        .map(|f| (f.name, f.text))
        .collect();
    // The other remote form, for comparison and for clusters that accept WasmPlugin. The inline
    // form is left out: it embeds the filter build, which changes with every filter change.
    let other = match app.plugin.form {
        PluginForm::WasmPlugin => PluginForm::EnvoyFilter,
        _ => PluginForm::WasmPlugin,
    };
    let alternative = render::render_with_form(&app, other, EXAMPLE);
    let plugin = alternative.file("plugin.yaml").unwrap();
    files.push((format!("plugin-forms/{}.yaml", other.as_str()), plugin.text.clone()));
    files.sort();
    files
}

fn golden_on_disk(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for sub in ["", "plugin-forms"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                let name = if sub.is_empty() {
                    entry.file_name().to_string_lossy().into_owned()
                } else {
                    format!("{sub}/{}", entry.file_name().to_string_lossy())
                };
                files.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
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
    let out = TempDir::new("cli-render");
    let dir = out.0.to_string_lossy().into_owned();
    let first = cli(&["render", EXAMPLE, "--out", &dir]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let expected: Vec<(String, String)> = golden_expected()
        .into_iter()
        .filter(|(n, _)| !n.contains('/'))
        .collect();
    assert_eq!(golden_on_disk(&out.0), expected);
    let second = cli(&["render", EXAMPLE, "--out", &dir]);
    assert!(String::from_utf8_lossy(&second.stdout).contains("up to date"));
    // Without --out: one stream for `kubectl apply -f -`.
    let stream = cli(&["render", EXAMPLE]);
    let text = String::from_utf8(stream.stdout).unwrap();
    assert_eq!(text.lines().filter(|l| *l == "---").count(), 10, "{text}");
}

// ---------------------------------------------------------------------------
// Published schemas (npm kubernetes-models and @kubernetes-models/istio)
// ---------------------------------------------------------------------------

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
    let out = TempDir::new("schemas");
    let mut dirs = vec![root().join("manifests"), root().join("manifests/plugin-forms")];
    for (spec, forms) in [
        (
            EXAMPLE,
            &[
                PluginForm::WasmPlugin,
                PluginForm::EnvoyFilter,
                PluginForm::EnvoyFilterInline,
            ][..],
        ),
        (
            DEPENDENTS_EXAMPLE,
            &[PluginForm::EnvoyFilter, PluginForm::WasmPlugin][..],
        ),
    ] {
        let app = load(spec);
        for form in forms {
            let dir = out.0.join(format!("{}-{}", app.name, form.as_str()));
            render::write(&dir, &render::render_with_form(&app, *form, spec)).unwrap();
            dirs.push(dir);
        }
    }
    let output = Command::new("bash")
        .arg(root().join("tools/schema-check/check.sh"))
        .args(&dirs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schema check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" 0 problems"), "{stdout}");
}

// ---------------------------------------------------------------------------
// Consistency: filter config, VirtualService, DestinationRule
// ---------------------------------------------------------------------------

fn find<'a>(rendered: &'a render::Rendered, kind: &str) -> Vec<&'a Yaml> {
    rendered
        .objects()
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
    let rendered = render::render_with_form(app, form, "spec.yaml");
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
    let (header_routes, default) = render::virtual_service_header_routes(vs);
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
                .find(|r| r.value == *version)
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
    assert_eq!(render::header_routes(app), header_routes);

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
        let (routes, default) = render::virtual_service_header_routes(dep_vs);
        assert_eq!(default.as_deref(), Some(versions[0]));
        for r in routes {
            assert_eq!(r.header, route.routing_header());
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
    let routes = render::header_routes(&app);
    assert_eq!(
        routes
            .iter()
            .map(|r| (r.header.as_str(), r.value.as_str(), r.subset.as_str()))
            .collect::<Vec<_>>(),
        vec![("x-my-app-version", "v2", "v2"), ("x-my-app-version", "v3", "v3")]
    );
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

#[test]
fn an_invalid_spec_reports_every_error_with_its_path() {
    let errors = App::from_yaml(BAD_SPEC).unwrap_err();
    let text = errors.to_string();
    for path in [
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
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(path)),
            "no error for {path}; got:\n{text}"
        );
    }
}

#[test]
fn policy_core_errors_come_back_with_spec_paths() {
    let text = std::fs::read_to_string(root().join(EXAMPLE))
        .unwrap()
        .replace("    weight: 10\n", "    weight: 10.005\n")
        .replace("    allow: [v2]\n", "    allow: [v9]\n")
        .replace("    - cookie: session ", "    - cookie: \"bad cookie\" ")
        .replace("  - my-app.example.com\n", "  - my-app.example.com:443\n");
    let text = App::from_yaml(&text).unwrap_err().to_string();
    for path in [
        "versions[1].weight: ",
        "routing.override.allow[0]: ",
        "routing.key_chain[0].cookie: ",
        "hosts[0]: ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(path)),
            "no error for {path}; got:\n{text}"
        );
    }
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
        .replace("revision: asm-1-28", "revision: asm-1-26")
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
fn cli_render_of_an_invalid_spec_writes_nothing() {
    let out = TempDir::new("invalid");
    let spec = out.0.join("bad.yaml");
    std::fs::write(&spec, BAD_SPEC).unwrap();
    let target = out.0.join("out");
    let output = cli(&["render", &spec.to_string_lossy(), "--out", &target.to_string_lossy()]);
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

#[test]
fn set_weight_rewrites_the_spec_and_only_the_plugin() {
    let work = TempDir::new("set-weight");
    let spec = work.0.join("my-app.yaml");
    let original = std::fs::read_to_string(root().join(EXAMPLE)).unwrap();
    std::fs::write(&spec, &original).unwrap();
    let out = work.0.join("manifests");
    let (spec_s, out_s) = (spec.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    assert!(cli(&["render", &spec_s, "--out", &out_s]).status.success());

    let ramp = cli(&["set-weight", &spec_s, "v2", "50", "--out", &out_s]);
    assert!(ramp.status.success(), "{}", String::from_utf8_lossy(&ramp.stderr));
    let stdout = String::from_utf8_lossy(&ramp.stdout);
    let written: Vec<&str> = stdout.lines().filter(|l| l.starts_with("wrote ")).collect();
    assert_eq!(written.len(), 1, "{stdout}");
    assert!(written[0].ends_with("plugin.yaml"), "{stdout}");
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
    let refused = cli(&["set-weight", &spec_s, "v2", "150", "--out", &out_s]);
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

#[test]
fn set_weight_keeps_the_last_good_spec_when_the_result_is_invalid() {
    let work = TempDir::new("set-weight-invalid");
    let spec = work.0.join("app.yaml");
    // A spec that is already invalid is never rewritten: set-weight checks before it edits.
    let text = std::fs::read_to_string(root().join(EXAMPLE))
        .unwrap()
        .replace("revision: asm-1-28", "revision: asm-1");
    std::fs::write(&spec, &text).unwrap();
    let output = cli(&["set-weight", &spec.to_string_lossy(), "v2", "20"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("revision: "));
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), text);
    let leftovers: Vec<_> = std::fs::read_dir(&work.0)
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
    let work = TempDir::new("dropped");
    let app = load(EXAMPLE);
    render::write(&work.0, &render::render(&app, EXAMPLE)).unwrap();
    std::fs::write(work.0.join("notes.yaml"), "# mine, not generated\n").unwrap();
    let text = std::fs::read_to_string(root().join(EXAMPLE)).unwrap();
    let start = text.find("  - name: v2\n").unwrap();
    let end = text.find("\n# The seed's application").unwrap();
    let one_version = format!("{}{}", &text[..start], &text[end..])
        .replace("    weight: 90\n", "    weight: 100\n")
        .replace("    allow: [v2]\n", "    allow: [v1]\n");
    let app = App::from_yaml(&one_version).unwrap();
    let report = render::write(&work.0, &render::render(&app, EXAMPLE)).unwrap();
    assert_eq!(report.removed, vec!["app-v2.yaml".to_owned()]);
    assert!(
        work.0.join("notes.yaml").exists(),
        "files we did not generate are never removed"
    );
}

// ---------------------------------------------------------------------------
// The plugin forms and what a real-Envoy harness consumes
// ---------------------------------------------------------------------------

#[test]
fn inline_form_carries_the_embedded_module_under_the_object_size_limit() {
    let app = load(EXAMPLE);
    let rendered = render::render_with_form(&app, PluginForm::EnvoyFilterInline, EXAMPLE);
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
    let remote = render::envoy_wasm_typed_config(&app, None);
    assert_eq!(remote["@type"], render::objects::WASM_TYPE_URL);
    assert_eq!(
        remote["config"]["vm_config"]["code"]["remote"]["http_uri"]["uri"],
        "oci://myregistry.azurecr.io/sticky-canary:0.1.0"
    );
    let local = render::envoy_wasm_typed_config(&app, Some(Path::new("/tmp/filter.wasm")));
    assert_eq!(
        local["config"]["vm_config"]["code"],
        serde_json::json!({"local": {"filename": "/tmp/filter.wasm"}})
    );
    let config = local["config"]["configuration"]["value"].as_str().unwrap();
    assert!(policy_core::Policy::from_json(config.as_bytes()).is_ok());
    assert_eq!(local["config"]["failure_policy"], "FAIL_OPEN");
    // Identical to what the rendered EnvoyFilter carries, apart from the code source.
    let rendered = render::render_with_form(&app, PluginForm::EnvoyFilter, EXAMPLE);
    let carried = serde_json::to_value(
        &find(&rendered, "EnvoyFilter")[0]["spec"]["configPatches"][0]["patch"]["value"]["typed_config"],
    )
    .unwrap();
    assert_eq!(carried, remote);
    assert_eq!(render::default_subset(&app).as_deref(), Some("v1"));
}

#[test]
fn strings_that_yaml_1_1_would_turn_into_booleans_stay_strings() {
    let text = std::fs::read_to_string(root().join(EXAMPLE)).unwrap().replace(
        "      VERSION: v1.0.0\n",
        "      VERSION: v1.0.0\n      FEATURE: \"on\"\n      LEVEL: \"0777\"\n",
    );
    let app = App::from_yaml(&text).unwrap();
    let rendered = render::render(&app, EXAMPLE);
    let deployment = &rendered.file("app-v1.yaml").unwrap().text;
    assert!(deployment.contains("value: 'on'\n"), "{deployment}");
    assert!(deployment.contains("value: '0777'\n"), "{deployment}");
}
