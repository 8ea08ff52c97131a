#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! Flagger and Argo Rollouts stepping the weights, sticky-canary keeping users in place, each
//! piece run from its own project's code:
//!
//! 1. `sticky-canary render` of the examples' spec (`examples/flagger/my-app.yaml`,
//!    `examples/argo-rollouts/my-app.yaml`): Gateway, filter, sticky-weights EnvoyFilter;
//! 2. the tool's own router (Flagger's `IstioRouter.SetRoutes`, Argo Rollouts' Istio
//!    reconciler `SetWeight`, run in-process by `tools/progressive` on the examples' Canary and
//!    Rollout) writes its objects at every step of a run: 0, 10, 50, 100, rollback, then
//!    10, 50 and promotion;
//! 3. istiod's own translation (`tools/istio-xds`) of both, pushed to a real Envoy of each
//!    AKS revision's release line with our filter, beside another app on the same gateway;
//! 4. 10,000 users, one request each per step over 8 connections: every user is served the
//!    version `sticky-canary assign --canary-weight W` predicts, so nobody changes version
//!    against the plan; the canary's share of users is within 1.5 points of the step's
//!    weight; Envoy accepts every step's route table (0 % and 100 % included); the other
//!    app keeps routing; a client-sent position header changes nothing; `istioctl analyze`
//!    finds no error in the rendered objects with the tool's.
//!
//! `STICKY_CANARY_REVISIONS=asm-1-31` limits the run to some revisions (comma-separated).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

mod common;

use common::{assign_with, run_cli, send, serial, write_filter_config, OTHER_APP, OTHER_HOST, ROUTING_HEADER};
use sticky_canary_harness::backend::seen_headers;
use sticky_canary_harness::istio::{self, IstioProxy, Revision, Translate};
use sticky_canary_harness::load::over_connections;
use sticky_canary_harness::{envoy_release, Backend, Client, Request};

const HOST: &str = "my-app.example.com";
const NAMESPACE: &str = "ns-canary-istio";
const POSITION_HEADER: &str = "x-canary-position";
const USERS: usize = 10_000;
const THREADS: usize = 8;
/// The run every tool goes through: a ramp rolled back, then a ramp promoted.
const PLAN: &str = "0,10,50,100,rollback,10,50,promote";

/// One progressive-delivery tool as the examples use it.
struct Tool {
    /// `progressive` subcommand.
    driver: &'static str,
    /// The sticky-canary spec and the tool's own resources.
    spec: &'static str,
    resources: &'static str,
    /// The Services the tool's VirtualService splits between.
    stable_service: &'static str,
    canary_service: &'static str,
}

const FLAGGER: Tool = Tool {
    driver: "flagger",
    spec: "examples/flagger/my-app.yaml",
    resources: "examples/flagger/canary.yaml",
    stable_service: "my-app-primary",
    canary_service: "my-app-canary",
};

const ARGO: Tool = Tool {
    driver: "argo",
    spec: "examples/argo-rollouts/my-app.yaml",
    resources: "examples/argo-rollouts/rollout.yaml",
    stable_service: "my-app-stable",
    canary_service: "my-app-canary",
};

fn cluster(service: &str) -> String {
    format!("outbound|80||{service}.{NAMESPACE}.svc.cluster.local")
}

/// One step as the tool's driver wrote it (`steps.json`).
#[derive(serde::Deserialize)]
struct Step {
    label: String,
    canary_weight: u8,
    file: String,
}

/// The example spec for this test world (common::progressive_test_spec).
fn test_spec(tool: &Tool) -> String {
    common::progressive_test_spec(tool.spec)
}

/// Runs the tool's own router through the plan; returns the steps it wrote into `out`.
fn tool_steps(tool: &Tool, out: &Path) -> Vec<Step> {
    let binary = istio::progressive().unwrap_or_else(|e| panic!("{e}"));
    let output = Command::new(&binary)
        .args([tool.driver, "--in", tool.resources, "--steps", PLAN, "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "progressive {} failed:\n{}",
        tool.driver,
        String::from_utf8_lossy(&output.stderr)
    );
    let steps: Vec<Step> = serde_json::from_str(&std::fs::read_to_string(out.join("steps.json")).unwrap()).unwrap();
    let labels: Vec<&str> = steps.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels.join(","), PLAN);
    steps
}

fn user_request(key: &str) -> Request {
    Request::get("/").host(HOST).header("cookie", format!("session={key}"))
}

/// One request per key over [`THREADS`] connections, with `extra` headers; key -> (status,
/// version served).
fn serve(
    gateway: SocketAddr,
    keys: &[String],
    extra: &[(&'static str, &'static str)],
) -> HashMap<String, (u16, String)> {
    serve_seen(gateway, keys, extra, "x-served-version")
        .into_iter()
        .map(|(key, (status, version, _))| (key, (status, version)))
        .collect()
}

/// [`serve`], also returning the values of header `seen` as the app received it.
fn serve_seen(
    gateway: SocketAddr,
    keys: &[String],
    extra: &[(&'static str, &'static str)],
    seen: &str,
) -> HashMap<String, (u16, String, Vec<Vec<u8>>)> {
    over_connections(gateway, keys, THREADS, |client, key| {
        let mut request = user_request(key);
        for (name, value) in extra {
            request = request.header(name, *value);
        }
        let reply = send(client, &request);
        let received = seen_headers(&reply.body, seen);
        (
            key.clone(),
            (reply.status, reply.header_str("x-served-version"), received),
        )
    })
    .unwrap()
    .into_iter()
    .collect()
}

/// Sum of Envoy's rejected xDS updates (LDS, CDS, RDS, ECDS).
fn rejected_updates(gateway: &IstioProxy) -> u64 {
    gateway
        .envoy()
        .stats()
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once(": "))
        .filter(|(name, _)| name.ends_with(".update_rejected"))
        .map(|(_, value)| value.trim().parse::<u64>().unwrap_or(0))
        .sum()
}

/// The app's route in the translated route table: it must be weighted clusters read from
/// the position header at every step, with `clusters` destinations.
fn check_route_table(gateway: &IstioProxy, step: &Step) {
    let text = std::fs::read_to_string(gateway.xds_dir().join("rds").join("http.80.json")).unwrap();
    let rds: serde_json::Value = serde_json::from_str(&text).unwrap();
    let hosts = rds["resources"][0]["virtual_hosts"].as_array().unwrap();
    let app = hosts
        .iter()
        .find(|h| h["name"] == format!("{HOST}:80"))
        .unwrap_or_else(|| panic!("step {}: no virtual host {HOST}:80 in {text}", step.label));
    for route in app["routes"].as_array().unwrap() {
        let weighted = &route["route"]["weighted_clusters"];
        assert_eq!(
            weighted["header_name"], POSITION_HEADER,
            "step {}: the app's route does not pick by the position header: {route}",
            step.label
        );
        let clusters = weighted["clusters"].as_array().unwrap();
        let expected = if step.canary_weight == 0 || step.canary_weight == 100 {
            1
        } else {
            2
        };
        assert_eq!(clusters.len(), expected, "step {}: {weighted}", step.label);
    }
    let other = hosts.iter().find(|h| h["name"] == format!("{OTHER_HOST}:80")).unwrap();
    let other_route = &other["routes"][0]["route"];
    assert!(
        other_route["cluster"].is_string() && other_route["weighted_clusters"].is_null(),
        "the other app's route was patched: {other_route}"
    );
}

/// What one step measured.
struct Row {
    label: String,
    weight: u8,
    canary_users: usize,
    moved: usize,
    mismatches: usize,
    seconds: f64,
}

/// The revision of that name, unless `STICKY_CANARY_REVISIONS` leaves it out.
fn selected(name: &str) -> Option<Revision> {
    let revision = istio::revision(name);
    if common::selected(&revision) {
        Some(revision)
    } else {
        eprintln!("{name} not selected by STICKY_CANARY_REVISIONS: nothing to run");
        None
    }
}

fn run(tool: &Tool, revision_name: &str) {
    let Some(revision) = selected(revision_name) else {
        return;
    };
    let _lock = serial();
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("my-app.yaml");
    std::fs::write(&spec, test_spec(tool)).unwrap();
    let rendered = work.path().join("rendered");
    run_cli(&["render", &spec.to_string_lossy(), "--out", &rendered.to_string_lossy()]);
    let config = write_filter_config(&rendered.join("plugin.yaml"), &work.path().join("filter-config.json"));
    let other_app = work.path().join("other-app.yaml");
    std::fs::write(&other_app, OTHER_APP).unwrap();
    let steps_dir = work.path().join("steps");
    let steps = tool_steps(tool, &steps_dir);
    let inputs = |step: &Step| vec![rendered.clone(), steps_dir.join(&step.file), other_app.clone()];
    // istioctl analyze's own analyzers find no error in what the user and the tool apply.
    istio::analyze(revision, &[rendered.clone(), steps_dir.join(&steps[2].file)])
        .unwrap_or_else(|e| panic!("{}: {e}", tool.driver));

    let v1 = Backend::start("v1").unwrap();
    let v2 = Backend::start("v2").unwrap();
    let other = Backend::start("other").unwrap();
    let mut translate = Translate::new(revision, inputs(&steps[0]));
    translate.endpoint(&cluster(tool.stable_service), v1.addr());
    translate.endpoint(&cluster(tool.canary_service), v2.addr());
    translate.endpoint("outbound|80||svc-other.other.svc.cluster.local", other.addr());
    let envoy = envoy_release(revision.envoy).unwrap_or_else(|e| panic!("{e}"));
    let mut gateway = IstioProxy::start(&envoy, translate).unwrap_or_else(|e| panic!("the gateway did not start: {e}"));

    let keys: Vec<String> = (0..USERS).map(|i| format!("user-{i:05}")).collect();
    let mut previous: HashMap<String, String> = HashMap::new();
    let mut stable_version = "v1";
    let mut rows = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let step_started = Instant::now();
        if step.label == "promote" {
            // Promotion: the tool rolled the stable (primary) pods to the canary's version,
            // then routes everyone there.
            stable_version = "v2";
            gateway
                .translate_mut()
                .endpoints
                .insert(cluster(tool.stable_service), vec![v2.addr()]);
        }
        if i > 0 {
            gateway
                .update(inputs(step))
                .unwrap_or_else(|e| panic!("{} step {}: {e}", tool.driver, step.label));
        }
        check_route_table(&gateway, step);

        // The plan: `assign` at the tool's weight says stable or canary for each user.
        let weight = step.canary_weight.to_string();
        let plan = assign_with(&config, HOST, &keys, &["--canary-weight", &weight]);
        let expected = |key: &str| if plan[key] == "canary" { "v2" } else { stable_version };

        let served = serve(gateway.listener(), &keys, &[]);
        let mut mismatches = Vec::new();
        let mut moved = 0;
        let mut canary_users = 0;
        for key in &keys {
            let (status, version) = &served[key];
            assert_eq!(*status, 200, "{} step {}: {key} got {status}", tool.driver, step.label);
            if version != expected(key) {
                mismatches.push(format!("{key}: served {version}, planned {}", expected(key)));
            }
            if plan[key] == "canary" {
                canary_users += 1;
            }
            if let Some(before) = previous.get(key) {
                if before != version {
                    moved += 1;
                    // Which moves the plan allows: up the ramp stable -> canary, at a rollback
                    // canary -> stable, at promotion onto the new version; never back.
                    let allowed = match step.label.as_str() {
                        "rollback" => before == "v2" && version == "v1",
                        _ => before == "v1" && version == "v2",
                    };
                    assert!(
                        allowed,
                        "{} step {}: {key} moved {before} -> {version} against the plan",
                        tool.driver, step.label
                    );
                }
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} step {}: {} of {USERS} users not on their planned version, e.g. {:?}\n{}",
            tool.driver,
            step.label,
            mismatches.len(),
            &mismatches[..mismatches.len().min(5)],
            gateway.envoy().log_tail(30)
        );
        let share = canary_users as f64 * 100.0 / USERS as f64;
        assert!(
            (share - f64::from(step.canary_weight)).abs() <= 1.5,
            "{} step {}: {share:.2}% of users on the canary at weight {}",
            tool.driver,
            step.label,
            step.canary_weight
        );

        if step.label == "10" && i == 1 {
            // A client cannot pick its side: the filter overwrites the position header.
            let stable_keys: Vec<String> = keys
                .iter()
                .filter(|k| plan[*k] == "stable")
                .take(500)
                .cloned()
                .collect();
            // Nor send the routing header on to the app: in position mode nothing routes on it,
            // and the filter removes a client's copy.
            let spoofed = serve_seen(
                gateway.listener(),
                &stable_keys,
                &[(POSITION_HEADER, "99"), (ROUTING_HEADER, "v2")],
                ROUTING_HEADER,
            );
            let on_canary = spoofed.values().filter(|(_, v, _)| v == "v2").count();
            assert_eq!(
                on_canary, 0,
                "{}: a client-sent {POSITION_HEADER}: 99 reached the canary",
                tool.driver
            );
            let leaked = spoofed.values().filter(|(_, _, seen)| !seen.is_empty()).count();
            assert_eq!(
                leaked, 0,
                "{}: a client-sent {ROUTING_HEADER} reached the app in position mode",
                tool.driver
            );
        }
        let mut client = Client::connect(gateway.listener()).unwrap();
        let reply = send(&mut client, &Request::get("/").host(OTHER_HOST));
        assert_eq!(
            (reply.status, reply.header_str("x-served-version").as_str()),
            (200, "other"),
            "{} step {}: the other app on the gateway",
            tool.driver,
            step.label
        );

        previous = served.into_iter().map(|(key, (_, version))| (key, version)).collect();
        rows.push(Row {
            label: step.label.clone(),
            weight: step.canary_weight,
            canary_users,
            moved,
            mismatches: mismatches.len(),
            seconds: step_started.elapsed().as_secs_f64(),
        });
    }
    assert_eq!(
        rejected_updates(&gateway),
        0,
        "Envoy rejected an update:\n{}",
        gateway.envoy().log_tail(40)
    );

    eprintln!(
        "\n{} (its own router) -> istiod's translation -> {} (Envoy {}) with sticky-canary, {USERS} users:",
        tool.driver, revision.name, revision.envoy
    );
    eprintln!("step       weight  on canary  moved  off-plan  seconds");
    for row in &rows {
        eprintln!(
            "{:<10} {:>5}%  {:>8.2}%  {:>5}  {:>8}  {:>7.1}",
            row.label,
            row.weight,
            row.canary_users as f64 * 100.0 / USERS as f64,
            row.moved,
            row.mismatches,
            row.seconds
        );
    }
    eprintln!(
        "rejected xDS updates: 0; total {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

macro_rules! tool_tests {
    ($($name:ident: $tool:expr, $revision:literal;)*) => {
        $(
            #[test]
            fn $name() {
                run(&$tool, $revision);
            }
        )*
    };
}

tool_tests! {
    flagger_keeps_every_user_on_the_planned_version_asm_1_30: FLAGGER, "asm-1-30";
    flagger_keeps_every_user_on_the_planned_version_asm_1_31: FLAGGER, "asm-1-31";
    argo_rollouts_keeps_every_user_on_the_planned_version_asm_1_30: ARGO, "asm-1-30";
    argo_rollouts_keeps_every_user_on_the_planned_version_asm_1_31: ARGO, "asm-1-31";
}

/// The spec's examples render (with the tool's analysis templates, tests/render.rs), and the
/// patch matches only the app's hosts and route.
#[test]
fn the_examples_render_the_gateway_the_filter_and_the_sticky_weights() {
    for (tool, route) in [(&FLAGGER, None), (&ARGO, Some("primary"))] {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out");
        run_cli(&["render", tool.spec, "--out", &out.to_string_lossy()]);
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "00-namespace.yaml",
                "analysis.yaml",
                "gateway.yaml",
                "kustomization.yaml",
                "monitoring",
                "plugin.yaml",
                "sticky-weights.yaml"
            ]
        );
        let text = std::fs::read_to_string(out.join("sticky-weights.yaml")).unwrap();
        let patch: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let config = &patch["spec"]["configPatches"][0];
        assert_eq!(config["applyTo"], "HTTP_ROUTE");
        assert_eq!(
            config["match"]["routeConfiguration"]["vhost"]["name"],
            "my-app.example.com:443"
        );
        let matched = &config["match"]["routeConfiguration"]["vhost"]["route"];
        assert_eq!(matched["action"], "ROUTE");
        assert_eq!(matched["name"].as_str(), route);
        assert_eq!(
            config["patch"]["value"]["route"]["weighted_clusters"]["header_name"],
            POSITION_HEADER
        );
        let plugin = std::fs::read_to_string(out.join("plugin.yaml")).unwrap();
        assert!(plugin.contains(r#""position_header":"x-canary-position""#), "{plugin}");
    }
}

/// `set-weight` refuses an app whose weights a tool sets, and the spec refuses what the tool owns.
#[test]
fn the_tool_owns_the_weights_and_the_workloads() {
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("my-app.yaml");
    std::fs::copy(FLAGGER.spec, &spec).unwrap();
    let output = Command::new(common::CLI)
        .env(sticky_canary::render::token::KEY_FILE_ENV, common::token_key())
        .args(["set-weight", &spec.to_string_lossy(), "canary", "10"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Flagger sets this app's weights"), "{stderr}");

    let text = std::fs::read_to_string(FLAGGER.spec).unwrap()
        + "versions:\n  - {name: v1, image: example/app:1, weight: 100}\n";
    let errors = sticky_canary::render::App::from_yaml(&text).unwrap_err();
    assert!(
        errors
            .0
            .iter()
            .any(|e| e.path == "versions" && e.message.contains("Flagger owns")),
        "{errors}"
    );
    // `assign` needs the tool's weight for such a route, and refuses one for any other route.
    let out = work.path().join("out");
    run_cli(&["render", FLAGGER.spec, "--out", &out.to_string_lossy()]);
    let config = write_filter_config(&out.join("plugin.yaml"), &work.path().join("config.json"));
    let assign = |config: &Path, extra: &[&str]| {
        let output = Command::new(common::CLI)
            .args(["assign", "--config"])
            .arg(config)
            .args(["--keys", "/dev/null"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(assign(&config, &[]).contains("give --canary-weight"));
    assert!(assign(&config, &["--canary-weight", "101"]).contains("give 0 to 100"));
    let plain = Path::new("examples/filter-config.json");
    assert!(assign(plain, &["--canary-weight", "10"]).contains("for routes whose weights a tool sets"));

    let text = std::fs::read_to_string(ARGO.spec)
        .unwrap()
        .replace("  route: primary\n", "");
    let errors = sticky_canary::render::App::from_yaml(&text).unwrap_err();
    assert!(errors.0.iter().any(|e| e.path == "progressive.route"), "{errors}");

    // The tool mirrors with its own settings, and the sticky weights patch an Istio
    // VirtualService: neither `mirror` nor Gateway API ingress goes with `progressive`.
    let text = std::fs::read_to_string(FLAGGER.spec).unwrap() + "mirror: {version: canary, percent: 10}\n";
    let errors = sticky_canary::render::App::from_yaml(&text).unwrap_err();
    assert!(errors.0.iter().any(|e| e.path == "mirror"), "{errors}");
    let text = std::fs::read_to_string(FLAGGER.spec)
        .unwrap()
        .replace("ingress: external", "ingress: gateway-api");
    let errors = sticky_canary::render::App::from_yaml(&text).unwrap_err();
    assert!(errors.0.iter().any(|e| e.path == "ingress"), "{errors}");
}
