//! The checked app: what a spec becomes once every field passed (stage 2), with
//! the defaults of the AKS Istio add-on filled in. Nothing here can hold an invalid value the
//! checks (`check`) refused; the objects' names derived from it are in `names`.

use std::collections::BTreeMap;

use serde_yaml_ng::Value as Yaml;

use crate::render::token::{Purpose, Tokens};

/// The namespace where the AKS add-on runs its ingress gateways (and where plugins go).
pub const INGRESS_NAMESPACE: &str = "aks-istio-ingress";
/// Kubernetes refuses objects above about 1.5 MiB (the etcd request limit, 1.5 MiB by default).
pub const KUBERNETES_OBJECT_LIMIT: usize = 1_572_864;

/// One problem in a spec: its field path (`versions[1].weight`) and what is wrong.
/// The same shape as policy-core's config errors, whose paths are mapped onto the spec's.
pub type SpecError = policy_core::ConfigError;
/// Every problem found in one spec, in field order.
pub type SpecErrors = policy_core::ConfigErrors;

/// Which gateway serves the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ingress {
    /// The add-on's external ingress gateway (Istio Gateway and VirtualService).
    External,
    /// The add-on's internal ingress gateway.
    Internal,
    /// A Kubernetes Gateway API `Gateway` of class `istio` of the app's own, with an HTTPRoute:
    /// Istio deploys that gateway in the app's namespace (docs/manifests.md).
    GatewayApi,
}

/// The first add-on revision whose Istio runs Gateway API ingress with the managed CRDs.
pub const GATEWAY_API_MIN_MINOR: u32 = 26;

/// Traffic mirroring: `percent` of the requests served by the other versions are copied to
/// `version`; the copies' answers are dropped, so users only ever see their own version.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    pub version: String,
    /// Percent of requests, at most two decimals, above 0 and at most 100.
    pub percent: f64,
}

/// A blue/green cut-over with session drain (docs/assignment.md §6): from `start`, users new to
/// the app go to `to`; users who had an assignment keep it until idle for `idle_seconds`; from
/// `deadline` everyone is on `to`. Times in Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cutover {
    pub to: String,
    pub start: u64,
    pub deadline: u64,
    pub idle_seconds: u64,
}

/// The protocol of the app's Service port, which tells Istio how to talk to the pods: a gRPC
/// server refuses the HTTP/1.1 Istio uses for a port named `http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceProtocol {
    Http,
    Http2,
    Grpc,
}

impl ServiceProtocol {
    /// The Service port's name (and, beyond `http`, its `appProtocol`).
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceProtocol::Http => "http",
            ServiceProtocol::Http2 => "http2",
            ServiceProtocol::Grpc => "grpc",
        }
    }
}

/// How the filter is installed on the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginForm {
    /// An Istio WasmPlugin (plain Istio; blocked by the AKS add-on's admission webhook).
    WasmPlugin,
    /// An EnvoyFilter whose Wasm filter config names the module by url (fetched by istio-agent);
    /// the default, for the AKS add-on.
    EnvoyFilter,
    /// An EnvoyFilter carrying the module itself, base64 in `inline_bytes`.
    EnvoyFilterInline,
    /// An Istio TrafficExtension (`extensions.istio.io`, Istio 1.30 and later: WasmPlugin's
    /// successor). Whether the AKS add-on admits it is not published (docs/manifests.md).
    TrafficExtension,
}

impl PluginForm {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginForm::WasmPlugin => "wasmplugin",
            PluginForm::EnvoyFilter => "envoyfilter",
            PluginForm::EnvoyFilterInline => "envoyfilter-inline",
            PluginForm::TrafficExtension => "trafficextension",
        }
    }

    /// Every form, in the order the docs list them.
    pub const ALL: [PluginForm; 4] = [
        PluginForm::EnvoyFilter,
        PluginForm::EnvoyFilterInline,
        PluginForm::WasmPlugin,
        PluginForm::TrafficExtension,
    ];

    /// The forms as the spec spells them, for error messages.
    pub fn spellings() -> String {
        PluginForm::ALL.map(|f| format!("{:?}", f.as_str())).join(", ")
    }

    /// An Istio extension object (WasmPlugin, TrafficExtension): istiod builds the filter, with
    /// a phase, and istio-agent pulls with the pod's pull secret.
    pub fn is_istio_extension(self) -> bool {
        matches!(self, PluginForm::WasmPlugin | PluginForm::TrafficExtension)
    }

    /// Why the revision of Istio minor `minor` cannot run this form, if it cannot.
    pub fn unsupported_on(self, minor: u32) -> Option<String> {
        (self == PluginForm::TrafficExtension && minor < crate::revisions::TRAFFIC_EXTENSION_MIN_MINOR).then(|| {
            format!(
                "trafficextension needs revision asm-1-{} or later (TrafficExtension is new in Istio 1.{0}): use envoyfilter",
                crate::revisions::TRAFFIC_EXTENSION_MIN_MINOR
            )
        })
    }

    /// Parses the spelling used in the spec and on the command line.
    pub fn parse(text: &str) -> Option<PluginForm> {
        match text {
            "wasmplugin" => Some(PluginForm::WasmPlugin),
            "envoyfilter" => Some(PluginForm::EnvoyFilter),
            "envoyfilter-inline" => Some(PluginForm::EnvoyFilterInline),
            "trafficextension" => Some(PluginForm::TrafficExtension),
            _ => None,
        }
    }
}

/// What the gateway does when the plugin cannot run (Istio's `failStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailStrategy {
    /// Requests pass without the filter: they carry no routing header and land on stable.
    FailOpen,
    /// Requests fail (every host on that gateway, not only this app's).
    FailClose,
    /// A crashed VM is reloaded (Istio 1.27 and later, i.e. asm-1-27 and later).
    FailReload,
}

impl FailStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailStrategy::FailOpen => "FAIL_OPEN",
            FailStrategy::FailClose => "FAIL_CLOSE",
            FailStrategy::FailReload => "FAIL_RELOAD",
        }
    }
}

/// Where the module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// `oci://` with the image manifest digest (hex, no `sha256:` prefix).
    Oci { url: String, digest: String },
    /// `https://` or `file://` with the SHA-256 of the .wasm itself.
    Url { url: String, sha256: String },
    /// The embedded module, inline.
    Inline,
}

/// TLS on the gateway: a Secret named by `credentialName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub credential_name: String,
    pub mode: String,
    pub redirect_http: bool,
}

/// HPA bounds for one Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autoscaling {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub cpu_utilization: u32,
}

/// Liveness and readiness probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probes {
    pub port: u32,
    pub liveness_path: Option<String>,
    pub readiness_path: Option<String>,
}

/// One version of the app (= one Deployment, one HPA, one subset).
#[derive(Debug, Clone, PartialEq)]
pub struct AppVersion {
    pub name: String,
    pub image: String,
    /// Percent, as written (at most two decimals; checked by policy-core).
    pub weight: f64,
    /// A canary's declared maximum (percent), reserving its slot of buckets so that the arms
    /// ramp independently (docs/assignment.md §2); checked by policy-core.
    pub max_weight: Option<f64>,
    pub port: u32,
    pub env: BTreeMap<String, String>,
    pub autoscaling: Autoscaling,
}

/// A backend that routes by the same routing header (a dependent service the app calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependent {
    pub service: String,
    pub namespace: String,
    pub port: Option<u32>,
    /// The app's versions this backend also runs, stable first.
    pub versions: Vec<String>,
}

/// The routing token settings; the values come from [`Tokens`] at render time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// The header that carries the token (lowercase): by default the routing header itself,
    /// whose value is then `VERSION;TOKEN`; else a header the filter sets beside it.
    pub header: String,
    /// The generation the filter sends (rotation: docs/manifests.md).
    pub generation: u32,
    /// Further generations the VirtualServices accept during a rotation.
    pub also_accept: Vec<u32>,
}

/// The progressive-delivery tool that owns an app's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Flagger,
    ArgoRollouts,
}

impl Tool {
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Flagger => "flagger",
            Tool::ArgoRollouts => "argo-rollouts",
        }
    }

    /// How the docs name it.
    pub fn title(self) -> &'static str {
        match self {
            Tool::Flagger => "Flagger",
            Tool::ArgoRollouts => "Argo Rollouts",
        }
    }
}

/// An app whose weights a progressive-delivery tool sets (`progressive:` in the spec): render
/// writes the plugin, the Gateway and the route patch that makes Envoy's weighted clusters
/// sticky; the tool owns the Deployments, Services, VirtualService and DestinationRules.
#[derive(Debug, Clone, PartialEq)]
pub struct Progressive {
    pub tool: Tool,
    /// The VirtualService's HTTP route the tool sets weights on (Argo's
    /// `trafficRouting.istio.virtualService.routes`); `None` for Flagger, whose route has no name.
    pub route: Option<String>,
    /// The header the filter writes the position to (lowercase).
    pub position_header: String,
    /// What the analysis templates of `analysis.yaml` are rendered with.
    pub analysis: Analysis,
}

/// The analysis templates' settings (`progressive.analysis`; docs/progressive-delivery.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// The Prometheus that scrapes the gateway pods (the templates' provider address).
    pub prometheus: String,
    /// Argo Rollouts: how often each measurement runs, and the rate window of its queries
    /// (Flagger takes both from the Canary's `analysis.metrics[].interval`).
    pub interval: String,
    /// Argo Rollouts: failed measurements tolerated before the rollout aborts.
    pub failure_limit: u32,
    /// The lowest share of non-5xx answers, in percent (Argo's condition; Flagger's
    /// `thresholdRange.min` in the note).
    pub min_success: f64,
    /// The highest p99 latency in milliseconds (Argo's condition; Flagger's
    /// `thresholdRange.max` in the note).
    pub max_latency_ms: u64,
}

impl Default for Analysis {
    fn default() -> Analysis {
        Analysis {
            prometheus: "http://prometheus.monitoring:9090".to_owned(),
            interval: "1m".to_owned(),
            failure_limit: 2,
            min_success: 99.0,
            max_latency_ms: 500,
        }
    }
}

/// The default position header.
pub const DEFAULT_POSITION_HEADER: &str = "x-canary-position";

/// The header that carries the mesh token from the gateway to dependent services.
pub const MESH_TOKEN_HEADER: &str = "x-canary-mesh-token";

/// What the Prometheus rules and the dashboard of `monitoring/` are rendered with
/// (`monitoring:` in the spec; docs/observability.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Monitoring {
    /// The recording rules' rate window, a Prometheus duration (`5m`).
    pub window: String,
    /// How long the share, error and not-deciding conditions hold before their alerts fire.
    pub for_duration: String,
    /// Percentage points a version's keyed share may stray from its weight.
    pub share_tolerance: f64,
    /// Percentage points a canary's 5xx ratio may exceed stable's.
    pub error_margin: f64,
    /// Requests per second below which the share, error and not-deciding alerts keep quiet.
    pub min_rate: f64,
    /// Labels on the PrometheusRule object (what a Prometheus Operator's `ruleSelector` selects).
    pub rule_labels: BTreeMap<String, String>,
}

impl Default for Monitoring {
    fn default() -> Monitoring {
        Monitoring {
            window: "5m".to_owned(),
            for_duration: "10m".to_owned(),
            share_tolerance: 5.0,
            error_margin: 2.0,
            min_rate: 1.0,
            rule_labels: BTreeMap::new(),
        }
    }
}

/// The plugin settings after defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugin {
    pub form: PluginForm,
    pub source: ModuleSource,
    pub phase: String,
    pub fail_strategy: FailStrategy,
    pub image_pull_policy: Option<String>,
    pub image_pull_secret: Option<String>,
}

/// A checked spec: everything the renderer needs, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub name: String,
    pub namespace: String,
    pub revision: String,
    pub hosts: Vec<String>,
    pub path_prefix: Option<String>,
    pub ingress: Ingress,
    pub tls: Option<Tls>,
    pub service_port: u32,
    /// What the app's pods speak, as Istio reads it from the Service port's name and
    /// `appProtocol`: HTTP/1.1 (`http`, the default), `http2` or `grpc`.
    pub service_protocol: ServiceProtocol,
    pub versions: Vec<AppVersion>,
    pub cpu_request: String,
    pub memory_request: String,
    pub probes: Option<Probes>,
    pub routing_header: String,
    /// The routing token: set by the filter, required by the canary routes.
    pub token: TokenSettings,
    pub plugin: Plugin,
    pub dependents: Vec<Dependent>,
    /// Copies of requests to one version, whose answers are dropped.
    pub mirror: Option<Mirror>,
    /// Set when Flagger or Argo Rollouts own the weights; `versions` is then `stable`, `canary`.
    pub progressive: Option<Progressive>,
    /// This app's route of the filter config (policy-core's JSON, fields in their documented
    /// order), without its routing token, which [`App::filter_route`] adds. Validated with a
    /// stand-in token.
    pub route: serde_yaml_ng::Mapping,
    /// The filter config's `response_header` (one setting of the whole filter).
    pub response_header: Option<String>,
    /// The filter config's `exposure_log` (one setting of the whole filter).
    pub exposure_log: bool,
    /// The rules and dashboard of `monitoring/`.
    pub monitoring: Monitoring,
    /// The blue/green cut-over in progress, if any (in the filter route too).
    pub cutover: Option<Cutover>,
    /// Things that are allowed but probably wrong, printed by the CLI.
    pub warnings: Vec<String>,
}

impl App {
    /// The stable version: the first listed.
    #[allow(
        clippy::indexing_slicing,
        reason = "`check` refuses an empty version list: there is always a first"
    )]
    pub fn stable(&self) -> &AppVersion {
        &self.versions[0]
    }

    /// This app's filter route with its routing token from `tokens`.
    pub fn filter_route(&self, tokens: &Tokens) -> Yaml {
        let mut route = self.route.clone();
        let value = tokens.token(Purpose::Gateway, &self.name, self.token.generation);
        route.insert(
            "routing_token".into(),
            map! {"header" => self.token.header.as_str(), "value" => value},
        );
        Yaml::Mapping(route)
    }

    /// A filter config holding this app alone (the one-app form of `render`).
    pub fn filter_config(&self, tokens: &Tokens) -> Yaml {
        filter_config(
            vec![self.filter_route(tokens)],
            self.response_header.as_deref(),
            self.exposure_log,
        )
    }

    /// Tokens the VirtualServices accept: the one the filter sends first, then those of
    /// `also_accept` and of the keys `--also-accept-key` names (a rotation in progress).
    pub fn accepted_tokens(&self, tokens: &Tokens, purpose: Purpose) -> Vec<String> {
        let generations: Vec<u32> = std::iter::once(self.token.generation)
            .chain(self.token.also_accept.iter().copied())
            .collect();
        tokens.accepted(purpose, &self.name, &generations)
    }
}

/// A filter config from routes (in order), the optional response header and the exposure log
/// (written only when on, so configs without it stay as they were).
pub fn filter_config(routes: Vec<Yaml>, response_header: Option<&str>, exposure_log: bool) -> Yaml {
    let mut config = serde_yaml_ng::Mapping::new();
    config.insert("routes".into(), Yaml::Sequence(routes));
    if let Some(header) = response_header {
        config.insert("response_header".into(), header.into());
    }
    if exposure_log {
        config.insert("exposure_log".into(), true.into());
    }
    Yaml::Mapping(config)
}

/// A weight as a number that policy-core reads exactly once written: `90`, `12.5`, `33.33`.
pub fn weight_yaml(weight: f64) -> Yaml {
    if weight.fract() == 0.0 && (0.0..=1e15).contains(&weight) {
        Yaml::from(weight as u64)
    } else {
        Yaml::from(weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_keep_their_written_value() {
        let text = |w: f64| serde_json::to_string(&weight_yaml(w)).unwrap();
        assert_eq!(text(90.0), "90");
        assert_eq!(text(12.5), "12.5");
        assert_eq!(text(33.33), "33.33");
    }
}
