//! `monitoring/`: what a platform team watches while a canary runs, rendered from the same spec
//! as the routes, so the rules know the app's versions, weights, key sources and Service.
//!
//! ```text
//! monitoring/prometheus-rule.yaml the rule groups as a PrometheusRule (Prometheus Operator);
//!                                 its `spec` is a Prometheus rules file as it is
//! monitoring/dashboard.yaml       the Grafana dashboard in a ConfigMap for Grafana's sidecar
//!                                 (`grafana_dashboard: "1"`)
//! monitoring/kustomization.yaml   both
//! ```
//!
//! Only Kubernetes objects, so whatever walks the output directory (`istioctl analyze`, which
//! reads every .yaml and .json below a directory, `kubectl apply -R`, schema checkers) reads
//! them as such.
//!
//! `monitoring/` is not in the app's kustomization: the PrometheusRule kind exists only where a
//! Prometheus Operator runs, and an `apply -k` of the app must not fail without one.
//!
//! Under Istio the filter's counters reach Prometheus with their labels folded into the name
//! (Istio's bootstrap has no `stats_tags` for them):
//! `sticky_canary_assignments_total_route_my_app_version_v2_source_cookie`. The recording rules
//! read each (version, source) counter by its exact name and give it back its labels, so
//! everything after them, the alerts and the dashboard, works on `{route, version, source}`.

use serde_yaml_ng::{Mapping, Value as Yaml};

use super::metadata::metadata;
use super::output::{file, File, GENERATED_MARKER, MONITORING_DIR};
use super::spec::{weight_yaml, App, Ingress};

/// How a Prometheus name reads once Envoy exported it: every character but a letter, a digit
/// or `_` becomes `_`.
fn folded(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

/// A PromQL string literal.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// The names the rules record, for one window (`5m` gives `sticky_canary:requests:rate5m`).
pub struct Series {
    pub assignments: String,
    pub requests: String,
    pub keyed_requests: String,
    pub keyed_share: String,
    pub new_id_share: String,
    pub weight: String,
    pub istio_requests: String,
    pub istio_errors: String,
    pub istio_p99: String,
    pub cutover: String,
}

impl Series {
    pub fn new(window: &str) -> Series {
        Series {
            assignments: format!("sticky_canary:assignments:rate{window}"),
            requests: format!("sticky_canary:requests:rate{window}"),
            keyed_requests: format!("sticky_canary:keyed_requests:rate{window}"),
            keyed_share: format!("sticky_canary:keyed_share:percent{window}"),
            new_id_share: format!("sticky_canary:new_id_share:percent{window}"),
            weight: "sticky_canary:weight:percent".to_owned(),
            istio_requests: format!("sticky_canary:istio_requests:rate{window}"),
            istio_errors: format!("sticky_canary:istio_errors:percent{window}"),
            istio_p99: format!("sticky_canary:istio_latency_p99:ms{window}"),
            cutover: format!("sticky_canary:cutover:rate{window}"),
        }
    }
}

/// The counter Prometheus sees for one (version, source) of the app's route.
pub fn assignment_counter(app: &App, version: &str, source: &str) -> String {
    folded(&format!(
        "sticky_canary_assignments_total.route.{}.version.{version}.source.{source}",
        app.name
    ))
}

/// The counter Prometheus sees for one outcome of the app's cut-over.
pub fn cutover_counter(app: &App, outcome: &str) -> String {
    folded(&format!(
        "sticky_canary_cutover_total.route.{}.outcome.{outcome}",
        app.name
    ))
}

/// The filter's rejection counter (one per gateway, whatever the apps).
pub const REJECTIONS: &str = "sticky_canary_config_rejections_total";

/// The key sources the app's route reports, as the filter defines its counters (policy-core's
/// [`policy_core::Route::key_sources`]); the token's value changes nothing here.
fn key_sources(app: &App) -> Vec<&'static str> {
    let json = serde_json::to_string(&app.filter_config(&super::token::Tokens::Example)).unwrap_or_default();
    match policy_core::Policy::from_json(json.as_bytes()) {
        Ok(policy) => policy
            .routes()
            .first()
            .map(|r| r.key_sources().into_iter().map(|s| s.as_str()).collect())
            .unwrap_or_default(),
        // A checked app's route is valid: `check` ran policy-core on it.
        Err(_) => Vec::new(),
    }
}

fn rule(record: &str, expr: String, labels: Vec<(&str, &str)>) -> Yaml {
    let mut m = Mapping::new();
    m.insert("record".into(), record.into());
    m.insert("expr".into(), expr.into());
    if !labels.is_empty() {
        let mut l = Mapping::new();
        for (k, v) in labels {
            l.insert(k.into(), v.into());
        }
        m.insert("labels".into(), Yaml::Mapping(l));
    }
    Yaml::Mapping(m)
}

struct Alert<'a> {
    name: &'a str,
    expr: String,
    for_duration: Option<&'a str>,
    severity: &'a str,
    summary: String,
    description: String,
}

fn alert(a: Alert<'_>, app: Option<&App>) -> Yaml {
    let mut m = Mapping::new();
    m.insert("alert".into(), a.name.into());
    m.insert("expr".into(), a.expr.into());
    if let Some(d) = a.for_duration {
        m.insert("for".into(), d.into());
    }
    let mut labels = Mapping::new();
    labels.insert("severity".into(), a.severity.into());
    if let Some(app) = app {
        labels.insert("app".into(), app.name.as_str().into());
        labels.insert("app_namespace".into(), app.namespace.as_str().into());
    }
    m.insert("labels".into(), Yaml::Mapping(labels));
    m.insert(
        "annotations".into(),
        map! {
            "summary" => a.summary,
            "description" => a.description,
            "runbook" => format!("docs/observability.md#{}", a.name.to_ascii_lowercase()),
        },
    );
    Yaml::Mapping(m)
}

/// The istio_requests_total selector for the app's Service, as its own sidecars report it.
fn istio_selector(app: &App) -> String {
    format!(
        "reporter=\"destination\", destination_service_namespace={}, destination_service_name={}",
        quoted(&app.namespace),
        quoted(&app.service_name())
    )
}

/// `expr` with `destination_version` copied to `version`, summed by `by`.
fn by_version(by: &str, expr: &str) -> String {
    format!("sum by ({by}) (label_replace({expr}, \"version\", \"$1\", \"destination_version\", \"(.*)\"))")
}

/// The gateway workload that sends the app its requests, as Istio's `source_workload` names it.
fn gateway_workload(app: &App) -> String {
    match app.ingress {
        // The add-on's gateway Deployments carry the revision: aks-istio-ingressgateway-external-asm-1-31.
        Ingress::External | Ingress::Internal => format!("{}.*", app.ingress_selector()),
        Ingress::GatewayApi => format!("{}-istio", app.gateway_name()),
    }
}

/// The app's recording rules and alerts: one rule group.
pub fn app_group(app: &App) -> Yaml {
    let m = &app.monitoring;
    let w = &m.window;
    let s = Series::new(w);
    let route = app.name.as_str();
    let on_route = format!("route={}", quoted(route));
    let sources = key_sources(app);
    let mut rules = Vec::new();
    for version in &app.versions {
        for source in &sources {
            rules.push(rule(
                &s.assignments,
                format!("sum(rate({}[{w}]))", assignment_counter(app, &version.name, source)),
                vec![("route", route), ("version", &version.name), ("source", source)],
            ));
        }
    }
    rules.push(rule(
        &s.requests,
        format!("sum by (route, version) ({}{{{on_route}}})", s.assignments),
        vec![],
    ));
    // While a cut-over is in the spec: requests by where it put them. A drain is over for the
    // users who matter when `kept` falls to 0.
    if app.cutover.is_some() {
        for outcome in policy_core::CutoverOutcome::ALL.map(policy_core::CutoverOutcome::as_str) {
            rules.push(rule(
                &s.cutover,
                format!("sum(rate({}[{w}]))", cutover_counter(app, outcome)),
                vec![("route", route), ("outcome", outcome)],
            ));
        }
    }
    // Under Flagger or Argo Rollouts the filter counts every keyed user under the first version
    // (Envoy picks the destination from the position): there is no share to record.
    let progressive = app.progressive.is_some();
    if !progressive {
        rules.push(rule(
            &s.keyed_requests,
            format!(
                "sum by (route, version) ({}{{{on_route}, source!~\"override|none\"}})",
                s.assignments
            ),
            vec![],
        ));
        rules.push(rule(
            &s.keyed_share,
            format!(
                "100 * {k}{{{on_route}}} / on (route) group_left sum by (route) ({k}{{{on_route}}})",
                k = s.keyed_requests
            ),
            vec![],
        ));
        if sources.contains(&"new_id") {
            rules.push(rule(
                &s.new_id_share,
                format!(
                    "100 * sum by (route, version) ({a}{{{on_route}, source=\"new_id\"}}) / on (route) group_left sum by (route) ({a}{{{on_route}, source=\"new_id\"}})",
                    a = s.assignments
                ),
                vec![],
            ));
        }
        for version in &app.versions {
            let weight = serde_json::to_string(&weight_yaml(version.weight)).unwrap_or_default();
            rules.push(rule(
                &s.weight,
                format!("vector({weight})"),
                vec![("route", route), ("version", &version.name)],
            ));
        }
        let selector = istio_selector(app);
        let all = format!("rate(istio_requests_total{{{selector}}}[{w}])");
        let errors = format!("rate(istio_requests_total{{{selector}, response_code=~\"5..\"}}[{w}])");
        rules.push(rule(
            &s.istio_requests,
            by_version("version", &all),
            vec![("route", route)],
        ));
        rules.push(rule(
            &s.istio_errors,
            format!(
                "100 * ({e} or 0 * {a}) / {a}",
                e = by_version("version", &errors),
                a = by_version("version", &all)
            ),
            vec![("route", route)],
        ));
        rules.push(rule(
            &s.istio_p99,
            format!(
                "histogram_quantile(0.99, {})",
                by_version(
                    "version, le",
                    &format!("rate(istio_request_duration_milliseconds_bucket{{{selector}}}[{w}])")
                )
            ),
            vec![("route", route)],
        ));
    }
    let min_rate = serde_json::to_string(&m.min_rate).unwrap_or_default();
    let for_duration = Some(m.for_duration.as_str());
    if !progressive {
        rules.push(alert(
            Alert {
                name: "StickyCanaryNotDeciding",
                expr: format!(
                    "sum(rate(istio_requests_total{{{selector}, source_workload=~{gw}}}[{w}])) > {min_rate} unless on () sum({r}{{{on_route}}}) > 0",
                    selector = istio_selector(app),
                    gw = quoted(&gateway_workload(app)),
                    r = s.requests,
                ),
                for_duration,
                severity: "critical",
                summary: format!("{route}: the gateway forwards requests but the sticky-canary filter decides none"),
                description: format!(
                    "Requests reach {svc} from the gateway, but the filter's route {route:?} counts no decision: the plugin is \
                     not running there (istio-agent could not fetch the module and put its fallback in, or the EnvoyFilter \
                     does not select this gateway), so users are not kept on one version.",
                    svc = app.service_name()
                ),
            },
            Some(app),
        ));
        let stable = app.stable().name.as_str();
        // A cut-over puts users where the weights do not (new users on its version), so the
        // share is off the weights by design until it is finished or rolled back.
        if app.cutover.is_none() {
            rules.push(alert(
            Alert {
                name: "StickyCanaryShareOffWeight",
                expr: format!(
                    "abs({share}{{{on_route}}} - on (route, version) {weight}{{{on_route}}}) > {tol} and on (route) sum by (route) ({k}{{{on_route}}}) > {min_rate}",
                    share = s.keyed_share,
                    weight = s.weight,
                    k = s.keyed_requests,
                    tol = serde_json::to_string(&m.share_tolerance).unwrap_or_default(),
                ),
                for_duration,
                severity: "warning",
                summary: format!(
                    "{route}: {{{{ $labels.version }}}} serves {{{{ $value | printf \"%.1f\" }}}} points off its weight"
                ),
                description: "The share of keyed requests a version serves strays from the weight in the spec. \
                    The split is by users, so a few heavy users move the request share; a steady gap means gateway pods \
                    run different configs (a rejected push: see StickyCanaryConfigRejected) or the spec was changed \
                    without a render."
                    .to_owned(),
            },
            Some(app),
        ));
        }
        rules.push(alert(
            Alert {
                name: "StickyCanaryVersionErrors",
                expr: format!(
                    "{e}{{{on_route}, version!={st}}} - on (route) group_left {e}{{{on_route}, version={st}}} > {margin} and on (route, version) {r}{{{on_route}}} > {min_rate}",
                    e = s.istio_errors,
                    r = s.istio_requests,
                    st = quoted(stable),
                    margin = serde_json::to_string(&m.error_margin).unwrap_or_default(),
                ),
                for_duration,
                severity: "warning",
                summary: format!(
                    "{route}: {{{{ $labels.version }}}} answers 5xx {{{{ $value | printf \"%.1f\" }}}} points more often than {stable}"
                ),
                description: format!(
                    "Roll back: `sticky-canary set-weight SPEC {{{{ $labels.version }}}} 0`, render and apply; every user of \
                     {{{{ $labels.version }}}} is on {stable} with their next request, and back on the same version when you ramp again."
                ),
            },
            Some(app),
        ));
    }
    map! {"name" => format!("sticky-canary-{route}"), "rules" => rules}
}

/// The gateway-wide rule group: a config the filter refused (the gateway keeps the last good one).
pub fn gateway_group(window: &str) -> Yaml {
    let rules = vec![alert(
        Alert {
            name: "StickyCanaryConfigRejected",
            expr: format!("sum without (instance) (increase({REJECTIONS}[{window}])) > 0"),
            for_duration: None,
            severity: "warning",
            summary: "A gateway's sticky-canary filter refused a configuration".to_owned(),
            description: "The gateway keeps serving the previous configuration, so the last ramp or rollback did not \
                take effect there. The reason is in the gateway's log (`kubectl logs -n aks-istio-ingress POD | grep \
                sticky-canary`); fix the spec, render and apply again."
                .to_owned(),
        },
        None,
    )];
    map! {"name" => "sticky-canary-gateway", "rules" => rules}
}

/// The monitoring files of one app under `dir` (`` or `my-app/`), with the gateway group when
/// `with_gateway_group` (an app alone on its gateway).
pub fn files(app: &App, source: &str, dir: &str, with_gateway_group: bool) -> Vec<File> {
    let mut groups = vec![app_group(app)];
    if with_gateway_group {
        groups.push(gateway_group(&app.monitoring.window));
    }
    let name = format!("sticky-canary-{}", app.name);
    let dashboard = (format!("{name}-dashboard"), dashboard_text(app, source));
    rule_files(
        &format!("{dir}{MONITORING_DIR}/"),
        source,
        (&name, &app.namespace),
        Some(&app.name),
        &app.monitoring.rule_labels,
        groups,
        Some(dashboard),
    )
}

/// The gateway-wide files of a shared render (`gateway/monitoring/`): the rejection alert once
/// for every app, with the window and rule labels of `first` (the first app by name).
pub fn gateway_files(first: &App, source: &str, dir: &str) -> Vec<File> {
    rule_files(
        &format!("{dir}{MONITORING_DIR}/"),
        source,
        ("sticky-canary-gateway", super::spec::INGRESS_NAMESPACE),
        None,
        &first.monitoring.rule_labels,
        vec![gateway_group(&first.monitoring.window)],
        None,
    )
}

fn rule_files(
    dir: &str,
    source: &str,
    (name, namespace): (&str, &str),
    app: Option<&str>,
    rule_labels: &std::collections::BTreeMap<String, String>,
    groups: Vec<Yaml>,
    dashboard: Option<(String, String)>,
) -> Vec<File> {
    let mut labels = Mapping::new();
    if let Some(app) = app {
        labels.insert("app".into(), app.into());
    }
    for (k, v) in rule_labels {
        labels.insert(k.as_str().into(), v.as_str().into());
    }
    let rule_object = map! {
        "apiVersion" => "monitoring.coreos.com/v1",
        "kind" => "PrometheusRule",
        "metadata" => metadata(name, namespace, (!labels.is_empty()).then_some(Yaml::Mapping(labels))),
        "spec" => map! {"groups" => groups},
    };
    let mut files = vec![file(
        &format!("{dir}prometheus-rule.yaml"),
        source,
        "For a Prometheus Operator (kube-prometheus-stack): `kubectl apply -k` this directory. Its labels\n\
         must match the operator's ruleSelector (monitoring.rule_labels in the spec). Its `spec` is a Prometheus\n\
         rules file as it is (`groups:`), for a plain Prometheus or promtool (docs/observability.md).",
        vec![rule_object],
    )];
    let mut resources = vec![Yaml::from("prometheus-rule.yaml")];
    if let Some((map_name, json)) = dashboard {
        let mut map_labels = Mapping::new();
        map_labels.insert("grafana_dashboard".into(), "1".into());
        if let Some(app) = app {
            map_labels.insert("app".into(), app.into());
        }
        let config_map = map! {
            "apiVersion" => "v1",
            "kind" => "ConfigMap",
            "metadata" => metadata(&map_name, namespace, Some(Yaml::Mapping(map_labels))),
            "data" => map! {"dashboard.json" => json},
        };
        files.push(file(
            &format!("{dir}dashboard.yaml"),
            source,
            "The Grafana dashboard (its JSON model in data.dashboard.json). Grafana's sidecar (kube-prometheus-stack)\n\
             loads ConfigMaps labelled grafana_dashboard: \"1\"; elsewhere, import that JSON.",
            vec![config_map],
        ));
        resources.push("dashboard.yaml".into());
    }
    let kustomization = map! {
        "apiVersion" => "kustomize.config.k8s.io/v1beta1",
        "kind" => "Kustomization",
        "resources" => resources,
    };
    files.push(file(
        &format!("{dir}kustomization.yaml"),
        source,
        "",
        vec![kustomization],
    ));
    files
}

fn panel(id: u32, title: &str, unit: &str, grid: (u32, u32, u32, u32), targets: Vec<(String, &str)>) -> Yaml {
    let (x, y, w, h) = grid;
    let targets: Vec<Yaml> = targets
        .into_iter()
        .zip('A'..)
        .map(|((expr, legend), ref_id)| {
            map! {
                "datasource" => map! {"type" => "prometheus", "uid" => "${datasource}"},
                "expr" => expr,
                "legendFormat" => legend,
                "refId" => ref_id.to_string(),
            }
        })
        .collect();
    map! {
        "id" => id,
        "type" => "timeseries",
        "title" => title,
        "datasource" => map! {"type" => "prometheus", "uid" => "${datasource}"},
        "gridPos" => map! {"x" => x, "y" => y, "w" => w, "h" => h},
        "fieldConfig" => map! {"defaults" => map! {"unit" => unit}, "overrides" => Vec::<Yaml>::new()},
        "targets" => targets,
    }
}

/// Every query of the dashboard, with its panel's title (tests run them on a real Prometheus).
pub fn dashboard_queries(app: &App) -> Vec<(String, String)> {
    dashboard_panels(app)
        .iter()
        .flat_map(|p| {
            let title = p.get("title").and_then(Yaml::as_str).unwrap_or_default().to_owned();
            p.get("targets")
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|t| t.get("expr").and_then(Yaml::as_str))
                .map(move |e| (title.clone(), e.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn dashboard_panels(app: &App) -> Vec<Yaml> {
    let s = Series::new(&app.monitoring.window);
    let on_route = format!("route={}", quoted(&app.name));
    let sources = key_sources(app);
    let mut panels = Vec::new();
    let mut id = 0;
    let mut next = |title: &str, unit: &str, targets: Vec<(String, &str)>, panels: &mut Vec<Yaml>| {
        id += 1;
        let i = panels.len() as u32;
        panels.push(panel(id, title, unit, ((i % 2) * 12, (i / 2) * 8, 12, 8), targets));
    };
    let progressive = app.progressive.is_some();
    if progressive {
        // The counters put every keyed user under the first version: only totals mean something.
        next(
            "Requests decided (req/s)",
            "reqps",
            vec![(format!("sum({}{{{on_route}}})", s.requests), "decided")],
            &mut panels,
        );
        if sources.contains(&"new_id") {
            next(
                "New users per minute (new ids)",
                "short",
                vec![(
                    format!("60 * sum({}{{{on_route}, source=\"new_id\"}})", s.assignments),
                    "new ids",
                )],
                &mut panels,
            );
        }
    } else {
        next(
            "Keyed share against weight (%)",
            "percent",
            vec![
                (
                    format!("{}{{{on_route}}}", s.keyed_share),
                    "{{version}} share of keyed requests",
                ),
                (format!("{}{{{on_route}}}", s.weight), "{{version}} weight"),
            ],
            &mut panels,
        );
        next(
            "Requests per version (req/s)",
            "reqps",
            vec![(format!("{}{{{on_route}}}", s.requests), "{{version}}")],
            &mut panels,
        );
    }
    if !progressive && sources.contains(&"new_id") {
        next(
            "New users per minute, by version (new ids)",
            "short",
            vec![(
                format!(
                    "60 * sum by (version) ({}{{{on_route}, source=\"new_id\"}})",
                    s.assignments
                ),
                "{{version}}",
            )],
            &mut panels,
        );
        next(
            "New users' share (%)",
            "percent",
            vec![(format!("{}{{{on_route}}}", s.new_id_share), "{{version}}")],
            &mut panels,
        );
    }
    next(
        "Decisions by key source (req/s)",
        "reqps",
        vec![(
            format!("sum by (source) ({}{{{on_route}}})", s.assignments),
            "{{source}}",
        )],
        &mut panels,
    );
    next(
        "Filter config rejections (the whole gateway)",
        "short",
        vec![(
            format!("sum(increase({REJECTIONS}[{}]))", app.monitoring.window),
            "rejected",
        )],
        &mut panels,
    );
    if !progressive {
        next(
            "5xx per version (%)",
            "percent",
            vec![(format!("{}{{{on_route}}}", s.istio_errors), "{{version}}")],
            &mut panels,
        );
        next(
            "p99 latency per version (ms)",
            "ms",
            vec![(format!("{}{{{on_route}}}", s.istio_p99), "{{version}}")],
            &mut panels,
        );
    }
    panels
}

/// A Grafana dashboard id: at most 40 characters.
fn dashboard_uid(app: &str) -> String {
    let uid = format!("sticky-canary-{app}");
    if uid.len() <= 40 {
        uid
    } else {
        let hash = policy_core::sha256(&[app.as_bytes()]);
        let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("sticky-canary-{hex}")
    }
}

fn dashboard_text(app: &App, source: &str) -> String {
    let dashboard = map! {
        "description" => format!(
            "{} {source}`: edit the spec and render again. Series recorded by monitoring/prometheus-rule.yaml.",
            GENERATED_MARKER.trim_start_matches("# ")
        ),
        "title" => format!("sticky-canary: {}", app.name),
        "uid" => dashboard_uid(&app.name),
        "tags" => vec![Yaml::from("sticky-canary")],
        "editable" => true,
        "schemaVersion" => 39,
        "time" => map! {"from" => "now-6h", "to" => "now"},
        "refresh" => "30s",
        "templating" => map! {"list" => vec![map! {
            "name" => "datasource",
            "label" => "Prometheus",
            "type" => "datasource",
            "query" => "prometheus",
        }]},
        "panels" => dashboard_panels(app),
    };
    serde_json::to_string(&dashboard).unwrap_or_default()
}
