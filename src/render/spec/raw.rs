//! Stage 1 of the spec: the YAML as written, read by serde. Unknown fields are refused here;
//! every other check is stage 2's ([`super::check`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value as Yaml;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpec {
    pub(super) app: String,
    pub(super) namespace: Option<String>,
    pub(super) revision: String,
    pub(super) hosts: Vec<String>,
    pub(super) path_prefix: Option<String>,
    #[serde(default)]
    pub(super) ingress: Option<String>,
    pub(super) tls: Option<RawTls>,
    #[serde(default)]
    pub(super) service_port: Option<u32>,
    pub(super) service_protocol: Option<String>,
    #[serde(default)]
    pub(super) versions: Vec<RawVersion>,
    pub(super) autoscaling: Option<RawAutoscaling>,
    pub(super) resources: Option<RawResources>,
    pub(super) probes: Option<RawProbes>,
    pub(super) routing: RawRouting,
    pub(super) plugin: RawPlugin,
    #[serde(default)]
    pub(super) dependent_services: Vec<RawDependent>,
    pub(super) mirror: Option<RawMirror>,
    pub(super) progressive: Option<RawProgressive>,
    pub(super) monitoring: Option<RawMonitoring>,
    pub(super) cutover: Option<RawCutover>,
}

/// A blue/green cut-over with session drain (docs/assignment.md §6), as `sticky-canary cutover`
/// writes it: times in RFC 3339, `idle` a duration such as `30m`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCutover {
    pub(super) to: String,
    pub(super) start: String,
    pub(super) deadline: String,
    pub(super) idle: String,
}

/// The Prometheus rules and dashboard `render` writes to `monitoring/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMonitoring {
    pub(super) window: Option<String>,
    #[serde(rename = "for")]
    pub(super) for_duration: Option<String>,
    pub(super) share_tolerance: Option<f64>,
    pub(super) error_margin: Option<f64>,
    pub(super) min_rate: Option<f64>,
    #[serde(default)]
    pub(super) rule_labels: BTreeMap<String, String>,
}

/// Traffic mirroring: copies of requests sent to a version, whose answers are dropped.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMirror {
    pub(super) version: String,
    pub(super) percent: f64,
}

/// Flagger or Argo Rollouts own the weights (docs/progressive-delivery.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProgressive {
    pub(super) tool: String,
    pub(super) route: Option<String>,
    pub(super) position_header: Option<String>,
    pub(super) analysis: Option<RawAnalysis>,
}

/// The tool's analysis templates render writes (`analysis.yaml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnalysis {
    pub(super) prometheus: Option<String>,
    pub(super) interval: Option<String>,
    pub(super) failure_limit: Option<u32>,
    pub(super) min_success_rate: Option<f64>,
    pub(super) max_latency_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) credential_name: String,
    pub(super) mode: Option<String>,
    pub(super) redirect_http: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVersion {
    pub(super) name: String,
    pub(super) image: String,
    pub(super) weight: f64,
    pub(super) max_weight: Option<f64>,
    pub(super) port: Option<u32>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    pub(super) autoscaling: Option<RawAutoscaling>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutoscaling {
    pub(super) min_replicas: Option<u32>,
    pub(super) max_replicas: Option<u32>,
    pub(super) cpu_utilization: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResources {
    pub(super) cpu: Option<String>,
    pub(super) memory: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbes {
    pub(super) port: Option<u32>,
    pub(super) liveness_path: Option<String>,
    pub(super) readiness_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    pub(super) salt: Option<String>,
    pub(super) routing_header: Option<String>,
    pub(super) key_chain: Option<Vec<Yaml>>,
    pub(super) no_key: Option<String>,
    #[serde(rename = "override")]
    pub(super) override_: Option<Yaml>,
    pub(super) response_header: Option<String>,
    pub(super) exposure_log: Option<bool>,
    pub(super) token: Option<RawToken>,
}

/// The routing token: set by the filter (in the routing header's value, or in a header of its
/// own) and required by the VirtualService (docs/security.md).
/// Its value comes from the token key (never from the spec); `generation` rotates it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    pub(super) header: Option<String>,
    pub(super) value: Option<String>,
    pub(super) generation: Option<u32>,
    #[serde(default)]
    pub(super) also_accept: Vec<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    pub(super) form: Option<String>,
    pub(super) url: Option<String>,
    pub(super) sha256: Option<String>,
    pub(super) phase: Option<String>,
    pub(super) fail_strategy: Option<String>,
    pub(super) image_pull_policy: Option<String>,
    pub(super) image_pull_secret: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDependent {
    pub(super) service: String,
    pub(super) namespace: Option<String>,
    pub(super) port: Option<u32>,
    pub(super) versions: Option<Vec<String>>,
}
