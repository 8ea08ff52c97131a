//! `analysis.yaml` of an app whose weights Flagger or Argo Rollouts set: the tool's analysis
//! templates, on the metrics the ingress gateway's own Envoy keeps per destination Service
//! (docs/progressive-delivery.md#analysis-on-the-gateways-metrics).
//!
//! Istio's `istio_requests_total` comes from a filter only istio-proxy has (and only where a
//! sidecar or the gateway runs it); every Envoy, upstream or istio-proxy, counts each
//! upstream cluster's responses (`upstream_rq_2xx`, `upstream_rq_5xx`, ...) and their time
//! (`upstream_rq_time`). Istio names a Service's cluster `outbound|PORT||SERVICE.NS.svc.cluster.local`
//! and extracts it as the `cluster_name` label, so the canary's cluster *is* the canary's
//! requests, as the gateway saw them. Istio's bootstrap keeps only some stats; the
//! `proxyStatsMatcher` [`stats_regex`] gives must include these.

use serde_yaml_ng::Value as Yaml;

use super::metadata::metadata;
use super::spec::{App, Progressive, Tool};

/// The Services whose gateway clusters the analysis reads: (stable, canary). Flagger names
/// them after the target (`APP-primary`, `APP-canary`); for Argo Rollouts they are the
/// Rollout's `stableService` and `canaryService`, by default `APP-stable` and `APP-canary`
/// (the template's arguments).
pub fn services(app: &App, tool: Tool) -> (String, String) {
    match tool {
        Tool::Flagger => (format!("{}-primary", app.name), format!("{}-canary", app.name)),
        Tool::ArgoRollouts => (format!("{}-stable", app.name), format!("{}-canary", app.name)),
    }
}

/// The regular expression the gateway's `proxyStatsMatcher.inclusionRegexps` needs, in
/// Envoy's stat name form (`cluster.outbound|80||my-app-canary.ns.svc.cluster.local;.upstream_rq_5xx`:
/// Istio ends the cluster's stat name with `;`): the app's two Services' request counters and
/// times, on any port, and nothing else.
pub fn stats_regex(app: &App, tool: Tool) -> String {
    let (stable, canary) = services(app, tool);
    format!(
        "cluster\\.outbound\\|[0-9]+\\|\\|({}|{})\\.{}\\.svc\\.cluster\\.local;\\.upstream_rq_.*",
        regex_escape(&stable),
        regex_escape(&canary),
        regex_escape(&app.namespace)
    )
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = !(c.is_ascii_alphanumeric() || c == '_' || c == '-');
            special.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

/// A PromQL `cluster_name` matcher for a Service's gateway cluster,
/// `outbound|PORT||SERVICE.NS.svc.cluster.local` on any port, `service` and `namespace` as
/// written (they may be template variables: `{{ target }}-canary`, `{{args.canary-service}}`).
/// Each `|` is matched by `.`, which keeps the query free of escapes in YAML.
fn cluster_matcher(service: &str, namespace: &str) -> String {
    format!("cluster_name=~\"outbound.[0-9]+..{service}.{namespace}.svc.cluster.local\"")
}

/// The share of a cluster's responses that are not 5xx, from 0 to 1. Istio's tags put each
/// response in two series of `envoy_cluster_upstream_rq`, one by `response_code` and one by
/// `response_code_class`: only the class series are counted, so nothing twice.
fn success_ratio(cluster: &str, window: &str) -> String {
    format!(
        "sum(rate(envoy_cluster_upstream_rq{{{cluster}, response_code_class=~\"[1-4]xx\"}}[{window}]))\n\
         /\n\
         sum(rate(envoy_cluster_upstream_rq{{{cluster}, response_code_class=~\"[1-5]xx\"}}[{window}]))\n"
    )
}

/// The 99th percentile of a cluster's upstream request time, in milliseconds.
fn latency_p99(cluster: &str, window: &str) -> String {
    format!(
        "histogram_quantile(0.99, sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{{{cluster}}}[{window}])))\n"
    )
}

/// The tool's analysis templates for the app.
pub fn objects(app: &App, progressive: &Progressive) -> Vec<Yaml> {
    let address = progressive.analysis.prometheus.as_str();
    match progressive.tool {
        Tool::Flagger => {
            // Flagger fills in the Canary's target and namespace and the metric's interval.
            let cluster = cluster_matcher("{{ target }}-canary", "{{ namespace }}");
            let template = |name: String, query: String| {
                map! {
                    "apiVersion" => "flagger.app/v1beta1",
                    "kind" => "MetricTemplate",
                    "metadata" => metadata(&name, &app.namespace, None),
                    "spec" => map! {
                        "provider" => map! {"type" => "prometheus", "address" => address},
                        "query" => query,
                    },
                }
            };
            vec![
                template(
                    format!("{}-success-rate", app.name),
                    format!("100 * (\n{})\n", success_ratio(&cluster, "{{ interval }}")),
                ),
                template(format!("{}-latency", app.name), latency_p99(&cluster, "{{ interval }}")),
            ]
        }
        Tool::ArgoRollouts => {
            let (_, canary) = services(app, Tool::ArgoRollouts);
            let cluster = cluster_matcher("{{args.canary-service}}", "{{args.namespace}}");
            let interval = progressive.analysis.interval.as_str();
            let metric = |name: &str, condition: &str, query: String| {
                map! {
                    "name" => name,
                    "interval" => interval,
                    "failureLimit" => progressive.analysis.failure_limit,
                    "successCondition" => condition,
                    "provider" => map! {"prometheus" => map! {"address" => address, "query" => query}},
                }
            };
            vec![map! {
                "apiVersion" => "argoproj.io/v1alpha1",
                "kind" => "AnalysisTemplate",
                "metadata" => metadata(&format!("{}-analysis", app.name), &app.namespace, None),
                "spec" => map! {
                    "args" => vec![
                        map! {"name" => "canary-service", "value" => canary.as_str()},
                        map! {"name" => "namespace", "value" => app.namespace.as_str()},
                    ],
                    "metrics" => vec![
                        metric(
                            "success-rate",
                            &format!("result[0] >= {}", ratio_text(progressive.analysis.min_success)),
                            success_ratio(&cluster, interval),
                        ),
                        metric(
                            "latency-p99",
                            &format!("result[0] <= {}", progressive.analysis.max_latency_ms),
                            latency_p99(&cluster, interval),
                        ),
                    ],
                },
            }]
        }
    }
}

/// A percentage as the ratio Argo compares with (`99.9` → `0.999`), without the float noise
/// of a division (`0.9990000000000001`).
fn ratio_text(percent: f64) -> String {
    let text = format!("{:.8}", percent / 100.0);
    let text = text.trim_end_matches('0');
    text.strip_suffix('.').unwrap_or(text).to_owned()
}

/// The file's comment: what the templates read and what the gateway must keep for them.
pub fn note(app: &App, progressive: &Progressive) -> String {
    let tool = progressive.tool.title();
    let (stable, canary) = services(app, progressive.tool);
    let usage = match progressive.tool {
        Tool::Flagger => format!(
            "In the Canary's analysis.metrics: {{name: success-rate, templateRef: {{name: {app}-success-rate}}, thresholdRange: {{min: {min}}}, interval: 1m}}\n\
             and {{name: latency, templateRef: {{name: {app}-latency}}, thresholdRange: {{max: {max}}}, interval: 1m}}.",
            app = app.name,
            min = progressive.analysis.min_success,
            max = progressive.analysis.max_latency_ms,
        ),
        Tool::ArgoRollouts => format!(
            "In the Rollout's strategy.canary.analysis: templates: [{{templateName: {}-analysis}}] (args canary-service and\n\
             namespace default to {canary} and {}).",
            app.name, app.namespace
        ),
    };
    format!(
        "Analysis for {tool} on the gateway's own Envoy metrics: the responses and times of {canary}'s cluster\n\
         (envoy_cluster_upstream_rq by response_code_class, envoy_cluster_upstream_rq_time), as the users behind the gateway got them.\n\
         {usage}\n\
         The gateway keeps these stats only if its proxy config includes them (AKS: the add-on's\n\
         istio-shared-configmap-{revision} in aks-istio-system, mesh: defaultConfig.proxyStatsMatcher.inclusionRegexps):\n\
           {regex}\n\
         ({stable} and {canary}, every port; docs/progressive-delivery.md).",
        revision = app.revision,
        regex = stats_regex(app, progressive.tool),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_become_plain_ratios() {
        assert_eq!(ratio_text(99.9), "0.999");
        assert_eq!(ratio_text(99.0), "0.99");
        assert_eq!(ratio_text(100.0), "1");
        assert_eq!(ratio_text(12.5), "0.125");
    }

    #[test]
    fn escapes_what_a_regex_would_read() {
        assert_eq!(regex_escape("my-app.ns"), "my-app\\.ns");
        assert_eq!(regex_escape("a_b-c9"), "a_b-c9");
    }
}
