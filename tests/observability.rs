#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! The rendered monitoring (`monitoring/`: Prometheus rules, dashboard) against a real
//! Prometheus (Debian's 2.42, with promtool; scripts/setup.sh installs it):
//!
//! - the rules of every PrometheusRule `render` writes (its `spec`) pass `promtool check rules`;
//! - `promtool test rules`: the alerts stay quiet on healthy series and fire, with their labels
//!   and expanded annotations, on a share off its weight, a canary's 5xx, a gateway that
//!   forwards without deciding, and a refused config;
//! - a real Envoy running the filter with the rendered config (no `stats_tags`, as under Istio)
//!   and a real Prometheus scraping it with the rendered rules, through a 10 → 50 → 100 ramp of
//!   20,000 returning users: the recorded share of each step is the plan's within 1 point,
//!   every dashboard query runs, a gateway left on another weight fires
//!   StickyCanaryShareOffWeight, and a refused push fires StickyCanaryConfigRejected.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use sticky_canary::render::{self, monitoring, App, Tokens};
use sticky_canary_harness::load::Load;
use sticky_canary_harness::prometheus::{debian_tool, Prometheus, Target};
use sticky_canary_harness::{
    free_port, temp_dir, Backend, Client, Envoy, EnvoyConfig, FilterSpec, Request, UpdateOutcome,
};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool scripts/setup.sh installs; missing is a failure, not a skip.
fn tool(name: &str) -> PathBuf {
    debian_tool(name).unwrap_or_else(|e| panic!("{e}"))
}

fn load(relative: &str) -> App {
    render::load(&root().join(relative)).unwrap().1
}

/// Every `monitoring/prometheus-rule.yaml` under `dir`.
fn rule_objects(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rule_objects(&path, found);
        } else if path.ends_with("monitoring/prometheus-rule.yaml") {
            found.push(path);
        }
    }
}

/// The Prometheus rules file a PrometheusRule carries: its `spec`, as the docs tell a plain
/// Prometheus user to take it.
fn rules_file_of(prometheus_rule: &str) -> String {
    let object: serde_yaml_ng::Value = serde_yaml_ng::from_str(prometheus_rule).unwrap();
    assert_eq!(object["kind"], "PrometheusRule");
    serde_yaml_ng::to_string(&object["spec"]).unwrap()
}

#[test]
fn every_rendered_rules_file_passes_promtool_check() {
    let promtool = tool("promtool");
    let mut files = Vec::new();
    rule_objects(&root().join("manifests"), &mut files);
    // The progressive specs (no weights of ours, no Istio series by version) are not in manifests/.
    let work = temp_dir("promtool-check").unwrap();
    for spec in ["examples/flagger/my-app.yaml", "examples/argo-rollouts/my-app.yaml"] {
        let rendered = render::render(&load(spec), spec, &Tokens::Example);
        let dir = work.path().join(spec.replace('/', "_"));
        render::write(&dir, &rendered).unwrap();
        files.push(dir.join("monitoring/prometheus-rule.yaml"));
    }
    // The example during a cut-over: its rules record where the cut-over puts requests.
    let during = std::fs::read_to_string(root().join("examples/my-app.yaml")).unwrap()
        + "cutover:\n  to: v2\n  start: \"2026-12-04T09:00:00Z\"\n  deadline: \"2026-12-05T09:00:00Z\"\n  idle: 30m\n";
    let app = App::from_yaml(&during).unwrap_or_else(|e| panic!("{e}"));
    let dir = work.path().join("cutover");
    render::write(&dir, &render::render(&app, "cutover.yaml", &Tokens::Example)).unwrap();
    let cutover_rules = dir.join("monitoring/prometheus-rule.yaml");
    assert!(std::fs::read_to_string(&cutover_rules)
        .unwrap()
        .contains("record: sticky_canary:cutover:rate5m"));
    files.push(cutover_rules);
    // manifests/, gateway-api, shared-gateway (gateway and two apps), the two progressive specs
    // and the cut-over.
    assert!(files.len() >= 8, "rules files found: {files:?}");
    for (i, object) in files.iter().enumerate() {
        let file = work.path().join(format!("rules-{i}.yaml"));
        std::fs::write(&file, rules_file_of(&std::fs::read_to_string(object).unwrap())).unwrap();
        let out = Command::new(&promtool)
            .arg("check")
            .arg("rules")
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "promtool check rules {}:\n{text}",
            object.display()
        );
        assert!(text.contains("SUCCESS"), "{text}");
    }
}

/// The annotations of `alert` in the app's group with `version` and `value` put in, as
/// Prometheus expands them.
fn annotations(app: &App, alert: &str, version: &str, value: &str) -> Value {
    let group = monitoring::app_group(app);
    let group = serde_json::to_value(&group).unwrap();
    let rule = group["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == alert)
        .unwrap_or_else(|| panic!("no alert {alert}"));
    let mut out = serde_json::Map::new();
    for (key, template) in rule["annotations"].as_object().unwrap() {
        let text = template
            .as_str()
            .unwrap()
            .replace("{{ $labels.version }}", version)
            .replace("{{ $value | printf \"%.1f\" }}", value);
        assert!(
            !text.contains("{{"),
            "{alert}.{key}: a template the test does not expand: {text}"
        );
        out.insert(key.clone(), text.into());
    }
    Value::Object(out)
}

/// A counter series rising by `per_minute` for 40 minutes.
fn series(name: &str, labels: &str, per_minute: u32) -> Value {
    json!({"series": format!("{name}{{{labels}}}"), "values": format!("0+{per_minute}x40")})
}

#[test]
fn alerts_stay_quiet_on_healthy_series_and_fire_on_broken_ones() {
    let promtool = tool("promtool");
    let app = load("examples/my-app.yaml");
    assert_eq!((app.stable().weight, app.versions[1].weight), (90.0, 10.0));
    let rendered = render::render(&app, "examples/my-app.yaml", &Tokens::Example);
    let work = temp_dir("promtool-test").unwrap();
    std::fs::write(
        work.path().join("rules.yaml"),
        rules_file_of(&rendered.file("monitoring/prometheus-rule.yaml").unwrap().text),
    )
    .unwrap();
    let counter = |version: &str, source: &str| monitoring::assignment_counter(&app, version, source);
    let gw = r#"instance="10.0.0.7:15020", pod="aks-istio-ingressgateway-external-asm-1-31-7d9f""#;
    let istio = |version: &str, code: u32, per_minute: u32| {
        series(
            "istio_requests_total",
            &format!(
                r#"reporter="destination", destination_service_namespace="ns-canary-istio", destination_service_name="svc-my-app", destination_version="{version}", response_code="{code}", source_workload="aks-istio-ingressgateway-external-asm-1-31""#
            ),
            per_minute,
        )
    };
    let app_labels = json!({"severity": "warning", "app": "my-app", "app_namespace": "ns-canary-istio"});
    let with = |extra: Value| {
        let mut labels = app_labels.clone();
        labels
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        labels
    };
    let quiet = |name: &str| json!({"eval_time": "30m", "alertname": name, "exp_alerts": []});
    let names = [
        "StickyCanaryShareOffWeight",
        "StickyCanaryVersionErrors",
        "StickyCanaryNotDeciding",
        "StickyCanaryConfigRejected",
    ];
    let healthy = json!({
        "interval": "1m",
        "input_series": [
            // 90/10 of keyed requests (cookie and new ids), with overrides and keyless requests beside them.
            series(&counter("v1", "cookie"), gw, 540),
            series(&counter("v2", "cookie"), gw, 60),
            series(&counter("v1", "new_id"), gw, 54),
            series(&counter("v2", "new_id"), gw, 6),
            series(&counter("v2", "override"), gw, 300),
            series(&counter("v1", "none"), gw, 120),
            istio("v1", 200, 714),
            istio("v2", 200, 366),
            series("sticky_canary_config_rejections_total", gw, 0),
        ],
        "alert_rule_test": names.iter().map(|n| quiet(n)).collect::<Vec<_>>(),
        // Rounded: promtool 2.42 compares samples exactly.
        "promql_expr_test": [
            {"expr": "round(sticky_canary:keyed_share:percent5m, 0.001)", "eval_time": "30m", "exp_samples": [
                {"labels": r#"{route="my-app", version="v1"}"#, "value": 90},
                {"labels": r#"{route="my-app", version="v2"}"#, "value": 10},
            ]},
            {"expr": "round(sticky_canary:new_id_share:percent5m, 0.001)", "eval_time": "30m", "exp_samples": [
                {"labels": r#"{route="my-app", version="v1"}"#, "value": 90},
                {"labels": r#"{route="my-app", version="v2"}"#, "value": 10},
            ]},
            // Every request the filter decided, per version: 714 and 366 a minute.
            {"expr": "round(60 * sticky_canary:requests:rate5m)", "eval_time": "30m", "exp_samples": [
                {"labels": r#"{route="my-app", version="v1"}"#, "value": 714},
                {"labels": r#"{route="my-app", version="v2"}"#, "value": 366},
            ]},
            {"expr": "round(sticky_canary:istio_errors:percent5m, 0.001)", "eval_time": "30m", "exp_samples": [
                {"labels": r#"{route="my-app", version="v1"}"#, "value": 0},
                {"labels": r#"{route="my-app", version="v2"}"#, "value": 0},
            ]},
        ],
    });
    let broken = json!({
        "interval": "1m",
        "input_series": [
            // 70/30 where the plan says 90/10; v2 answers 503 to one request in six; a push refused at 20m.
            series(&counter("v1", "cookie"), gw, 420),
            series(&counter("v2", "cookie"), gw, 180),
            istio("v1", 200, 600),
            istio("v2", 200, 150),
            istio("v2", 503, 30),
            {"series": format!("sticky_canary_config_rejections_total{{{gw}}}"), "values": "0x20 1x20"},
        ],
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": "StickyCanaryShareOffWeight", "exp_alerts": [
                {"exp_labels": with(json!({"route": "my-app", "version": "v1"})),
                 "exp_annotations": annotations(&app, "StickyCanaryShareOffWeight", "v1", "20.0")},
                {"exp_labels": with(json!({"route": "my-app", "version": "v2"})),
                 "exp_annotations": annotations(&app, "StickyCanaryShareOffWeight", "v2", "20.0")},
            ]},
            {"eval_time": "30m", "alertname": "StickyCanaryVersionErrors", "exp_alerts": [
                {"exp_labels": with(json!({"route": "my-app", "version": "v2"})),
                 "exp_annotations": annotations(&app, "StickyCanaryVersionErrors", "v2", "16.7")},
            ]},
            // Only for the window after the refusal: the last good config is running.
            {"eval_time": "23m", "alertname": "StickyCanaryConfigRejected", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "pod": "aks-istio-ingressgateway-external-asm-1-31-7d9f"},
                 "exp_annotations": {
                     "summary": "A gateway's sticky-canary filter refused a configuration",
                     "description": monitoring::gateway_group("5m")["rules"][0]["annotations"]["description"].as_str().unwrap(),
                     "runbook": "docs/observability.md#stickycanaryconfigrejected"}},
            ]},
            quiet("StickyCanaryNotDeciding"),
        ],
    });
    let not_deciding = json!({
        "interval": "1m",
        "input_series": [
            // The gateway forwards 10 requests a second and the filter counts nothing (its fallback is in).
            istio("v1", 200, 600),
        ],
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": "StickyCanaryNotDeciding", "exp_alerts": [
                {"exp_labels": {"severity": "critical", "app": "my-app", "app_namespace": "ns-canary-istio"},
                 "exp_annotations": annotations(&app, "StickyCanaryNotDeciding", "", "")},
            ]},
            quiet("StickyCanaryShareOffWeight"),
        ],
    });
    let tests = json!({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [healthy, broken, not_deciding],
    });
    let test_file = work.path().join("tests.yaml");
    std::fs::write(&test_file, serde_json::to_string_pretty(&tests).unwrap()).unwrap();
    let out = Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&test_file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool test rules:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

const USERS: u64 = 20_000;
/// The recording window of this test's spec: short, so a ramp step settles in seconds.
const WINDOW: &str = "15s";

/// The shop's spec at `v2_weight`, with a short window and `for`.
fn spec(v2_weight: u32) -> String {
    format!(
        "app: shop\nnamespace: shop\nrevision: asm-1-31\nhosts: [shop.example.com]\n\
         versions:\n- {{name: v1, image: shop:1, weight: {}}}\n- {{name: v2, image: shop:2, weight: {v2_weight}}}\n\
         routing:\n  salt: observability-1\n  key_chain:\n  - cookie: session\n  - new_client_id: {{}}\n\
         plugin:\n  url: oci://registry.example.com/sticky-canary:0.1.0\n  sha256: \"{}\"\n\
         monitoring:\n  window: {WINDOW}\n  for: 15s\n  min_rate: 1\n",
        100 - v2_weight,
        "ab".repeat(32)
    )
}

/// The checked app, its filter config (JSON) and its rendered rules.
fn rendered(work: &Path, v2_weight: u32) -> (App, String, String) {
    let path = work.join("shop.yaml");
    std::fs::write(&path, spec(v2_weight)).unwrap();
    let app = render::load(&path).unwrap().1;
    let config = serde_json::to_string(&app.filter_config(&Tokens::Example)).unwrap();
    let rules = rules_file_of(
        &render::render(&app, "shop.yaml", &Tokens::Example)
            .file("monitoring/prometheus-rule.yaml")
            .unwrap()
            .text,
    );
    (app, config, rules)
}

/// policy-core's exact share of v2 among the population at this config, in percent.
fn exact_v2_share(config: &str) -> f64 {
    let policy = policy_core::Policy::from_json(config.as_bytes()).unwrap();
    let route = policy.find_route(b"shop.example.com", b"/").unwrap();
    let on_v2 = (0..USERS)
        .filter(|u| route.assign(format!("user-{u}").as_bytes()).1 == 1)
        .count();
    100.0 * on_v2 as f64 / USERS as f64
}

#[test]
fn a_real_prometheus_records_the_plan_through_a_ramp_and_alerts() {
    let _serial = serial();
    let work = temp_dir("observability").unwrap();
    let v1 = Backend::start("v1").unwrap();
    let v2 = Backend::start("v2").unwrap();
    let (app, config, rules) = rendered(work.path(), 10);
    let envoy_config = EnvoyConfig::by_header(&app.routing_header, &[&v1, &v2])
        .with_filter(FilterSpec::embedded(config.clone()))
        .without_stats_tags();
    let mut envoy = Envoy::start(&envoy_config).unwrap();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port().unwrap()).parse().unwrap();
    let gateway = Target {
        job: "gateway",
        addr: envoy.admin(),
        path: "/stats/prometheus",
    };
    let prometheus = Prometheus::start(listen, &[gateway], &rules).unwrap();
    let s = monitoring::Series::new(WINDOW);

    // Returning users in turn, each with its session cookie: every window sees every user about as often.
    let job: Arc<sticky_canary_harness::load::Job> = Arc::new(|sequence: u64, client: &mut Client| {
        let request = Request::get("/")
            .host("shop.example.com")
            .header("cookie", format!("session=user-{}", sequence % USERS));
        let reply = client.send(&request).map_err(|e| e.to_string())?;
        (reply.status == 200)
            .then_some(())
            .ok_or_else(|| format!("status {}", reply.status))
    });
    let load = Load::start(envoy.listener(), 4, 1500, job).unwrap();

    let share = |version: &str| {
        prometheus
            .value(&format!("{}{{route=\"shop\", version=\"{version}\"}}", s.keyed_share))
            .unwrap()
    };
    let mut measured = Vec::new();
    let mut config = config;
    for (step, v2_weight) in [10u32, 50, 100].into_iter().enumerate() {
        if step > 0 {
            let (_, next_config, next_rules) = rendered(work.path(), v2_weight);
            let outcome = envoy.update_filter_config(&next_config).unwrap();
            assert_eq!(outcome, UpdateOutcome::Accepted, "the {v2_weight}% config");
            prometheus.reload_rules(&next_rules).unwrap();
            config = next_config;
        }
        // A whole window of this step's traffic, then a few evaluations.
        std::thread::sleep(Duration::from_secs(15 + 5));
        let recorded = prometheus
            .wait_until(Duration::from_secs(20), "the share of v2", || share("v2"))
            .unwrap();
        let exact = exact_v2_share(&config);
        let weight = prometheus
            .value(&format!("{}{{route=\"shop\", version=\"v2\"}}", s.weight))
            .unwrap();
        eprintln!("step {v2_weight}%: recorded v2 share {recorded:.2}%, the population's exact share {exact:.2}%");
        assert_eq!(weight, Some(f64::from(v2_weight)), "the recorded weight of v2");
        assert!(
            (recorded - f64::from(v2_weight)).abs() <= 1.0,
            "step {v2_weight}%: Prometheus recorded a v2 share of {recorded:.2}%"
        );
        assert!(
            (recorded - exact).abs() <= 1.0,
            "step {v2_weight}%: recorded {recorded:.2}%, policy-core gives the population {exact:.2}%"
        );
        let v1 = share("v1").unwrap_or(0.0);
        assert!(
            (v1 + recorded - 100.0).abs() < 0.01,
            "shares add up to {}",
            v1 + recorded
        );
        let firing = prometheus.query("ALERTS{alertstate=\"firing\"}").unwrap();
        assert!(
            firing.is_empty(),
            "step {v2_weight}%: alerts firing on plan: {firing:?}"
        );
        measured.push((v2_weight, recorded, exact));
    }

    // Every dashboard query runs, and those over the filter's series have data.
    for (title, query) in monitoring::dashboard_queries(&app) {
        let result = prometheus.query(&query).unwrap();
        if !query.contains("istio_") && !query.contains("rejections") {
            assert!(
                !result.is_empty(),
                "dashboard panel {title:?}: {query} returned nothing"
            );
        }
    }

    // The gateway on 50% while the spec (and so the rules) says 100%: a config out of step.
    let (_, fifty, _) = rendered(work.path(), 50);
    assert_eq!(envoy.update_filter_config(&fifty).unwrap(), UpdateOutcome::Accepted);
    let off = prometheus
        .wait_until(Duration::from_secs(60), "StickyCanaryShareOffWeight firing", || {
            let alerts = prometheus
                .query("ALERTS{alertname=\"StickyCanaryShareOffWeight\", alertstate=\"firing\"}")
                .unwrap();
            (alerts.len() == 2).then_some(alerts)
        })
        .unwrap();
    assert!(
        off.iter()
            .all(|a| a["metric"]["route"] == "shop" && a["metric"]["app"] == "shop"),
        "{off:?}"
    );

    // A config the filter refuses: Envoy keeps the last good one, and the alert says so.
    let refused = fifty.replacen("\"weight\":50", "\"weight\":150", 1);
    assert_ne!(refused, fifty);
    assert!(matches!(
        envoy.update_filter_config(&refused).unwrap(),
        UpdateOutcome::Rejected { .. }
    ));
    prometheus
        .wait_until(Duration::from_secs(30), "StickyCanaryConfigRejected firing", || {
            (!prometheus
                .query("ALERTS{alertname=\"StickyCanaryConfigRejected\", alertstate=\"firing\"}")
                .unwrap()
                .is_empty())
            .then_some(())
        })
        .unwrap();
    let report = load.stop();
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    eprintln!(
        "{} requests at {:.0}/s; steps (weight, recorded, exact): {measured:?}",
        report.sent,
        report.rate()
    );
}

#[test]
fn kustomize_builds_the_rule_and_the_dashboard_config_map() {
    let kubectl = tool("kubectl");
    for dir in ["manifests/monitoring", "manifests/shared-gateway/my-app/monitoring"] {
        let out = Command::new(&kubectl)
            .arg("kustomize")
            .arg(root().join(dir))
            .output()
            .unwrap();
        assert!(out.status.success(), "{dir}: {}", String::from_utf8_lossy(&out.stderr));
        let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_slice(&out.stdout)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(kinds, ["ConfigMap", "PrometheusRule"], "{dir}");
        let map = &docs[0];
        assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
        let dashboard: Value = serde_json::from_str(map["data"]["dashboard.json"].as_str().unwrap()).unwrap();
        assert!(dashboard["panels"].as_array().unwrap().len() >= 6, "{dir}");
    }
}
