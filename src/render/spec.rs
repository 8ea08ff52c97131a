//! The app spec: one small YAML file per app, parsed and checked into an [`App`].
//!
//! Two stages, as everywhere in this project: serde reads the YAML into plain
//! structs (unknown fields are refused there), then [`App::from_spec`] checks
//! every field, fills the defaults of the AKS Istio add-on, builds the filter
//! config and runs it through policy-core. Every problem comes back at once,
//! each with its field path in the spec (`versions[1].weight`). The reference
//! for every field is docs/manifests.md.
//!
//! ```
//! let app = sticky_canary::render::App::from_yaml(r#"
//! app: my-app
//! namespace: ns-canary-istio
//! revision: asm-1-28
//! hosts: [my-app.example.com]
//! versions:
//!   - {name: v1, image: containersol/k8s-deployment-strategies, weight: 90}
//!   - {name: v2, image: containersol/k8s-deployment-strategies, weight: 10}
//! routing: {salt: my-app-2024}
//! plugin: {url: "oci://myregistry.azurecr.io/sticky-canary:0.1.0", sha256: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}
//! "#).unwrap();
//! assert_eq!(app.stable().name, "v1");
//! assert_eq!(app.ingress_selector(), "aks-istio-ingressgateway-external");
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value as Yaml;

/// The namespace where the AKS add-on runs its ingress gateways (and where plugins go).
pub const INGRESS_NAMESPACE: &str = "aks-istio-ingress";
/// Kubernetes refuses objects above about 1.5 MiB (the etcd request limit, 1.5 MiB by default).
pub const KUBERNETES_OBJECT_LIMIT: usize = 1_572_864;

// ---------------------------------------------------------------------------
// Stage 1: the YAML as written.
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    app: String,
    namespace: Option<String>,
    revision: String,
    hosts: Vec<String>,
    path_prefix: Option<String>,
    #[serde(default)]
    ingress: Option<String>,
    tls: Option<RawTls>,
    #[serde(default)]
    service_port: Option<u32>,
    #[serde(default)]
    versions: Vec<RawVersion>,
    autoscaling: Option<RawAutoscaling>,
    resources: Option<RawResources>,
    probes: Option<RawProbes>,
    routing: RawRouting,
    plugin: RawPlugin,
    #[serde(default)]
    dependent_services: Vec<RawDependent>,
    mirror: Option<RawMirror>,
    progressive: Option<RawProgressive>,
}

/// Traffic mirroring: copies of requests sent to a version, whose answers are dropped.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMirror {
    version: String,
    percent: f64,
}

/// Flagger or Argo Rollouts own the weights (docs/progressive-delivery.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProgressive {
    tool: String,
    route: Option<String>,
    position_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    credential_name: String,
    mode: Option<String>,
    redirect_http: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersion {
    name: String,
    image: String,
    weight: f64,
    port: Option<u32>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    autoscaling: Option<RawAutoscaling>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawAutoscaling {
    min_replicas: Option<u32>,
    max_replicas: Option<u32>,
    cpu_utilization: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    cpu: Option<String>,
    memory: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbes {
    port: Option<u32>,
    liveness_path: Option<String>,
    readiness_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    salt: Option<String>,
    routing_header: Option<String>,
    key_chain: Option<Vec<Yaml>>,
    no_key: Option<String>,
    #[serde(rename = "override")]
    override_: Option<Yaml>,
    response_header: Option<String>,
    token: Option<RawToken>,
}

/// The routing token: set by the filter (in the routing header's value, or in a header of its
/// own) and required by the VirtualService (docs/security.md).
/// Its value comes from the token key (never from the spec); `generation` rotates it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    header: Option<String>,
    value: Option<String>,
    generation: Option<u32>,
    #[serde(default)]
    also_accept: Vec<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    form: Option<String>,
    url: Option<String>,
    sha256: Option<String>,
    phase: Option<String>,
    fail_strategy: Option<String>,
    image_pull_policy: Option<String>,
    image_pull_secret: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDependent {
    service: String,
    namespace: Option<String>,
    port: Option<u32>,
    versions: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

/// One problem in a spec: its field path (`versions[1].weight`) and what is wrong.
/// The same shape as policy-core's config errors, whose paths are mapped onto the spec's.
pub type SpecError = policy_core::ConfigError;
/// Every problem found in one spec, in field order.
pub type SpecErrors = policy_core::ConfigErrors;

/// Where the spec checks collect their problems: the same collector as policy-core's.
type Errors = SpecErrors;

// ---------------------------------------------------------------------------
// Stage 2: the checked app.
// ---------------------------------------------------------------------------

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
}

impl PluginForm {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginForm::WasmPlugin => "wasmplugin",
            PluginForm::EnvoyFilter => "envoyfilter",
            PluginForm::EnvoyFilterInline => "envoyfilter-inline",
        }
    }

    /// Parses the spelling used in the spec and on the command line.
    pub fn parse(text: &str) -> Option<PluginForm> {
        match text {
            "wasmplugin" => Some(PluginForm::WasmPlugin),
            "envoyfilter" => Some(PluginForm::EnvoyFilter),
            "envoyfilter-inline" => Some(PluginForm::EnvoyFilterInline),
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

/// The routing token settings; the values come from [`super::token::Tokens`] at render time.
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progressive {
    pub tool: Tool,
    /// The VirtualService's HTTP route the tool sets weights on (Argo's
    /// `trafficRouting.istio.virtualService.routes`); `None` for Flagger, whose route has no name.
    pub route: Option<String>,
    /// The header the filter writes the position to (lowercase).
    pub position_header: String,
}

/// The default position header.
pub const DEFAULT_POSITION_HEADER: &str = "x-canary-position";

/// The header that carries the mesh token from the gateway to dependent services.
pub const MESH_TOKEN_HEADER: &str = "x-canary-mesh-token";

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
    /// Things that are allowed but probably wrong, printed by the CLI.
    pub warnings: Vec<String>,
}

const PHASES: &[&str] = &["AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE"];
const PULL_POLICIES: &[&str] = &["IfNotPresent", "Always"];

impl App {
    /// Parses and checks a spec; `Err` holds every problem with its field path.
    pub fn from_yaml(text: &str) -> Result<App, SpecErrors> {
        let raw: RawSpec = serde_yaml_ng::from_str(text).map_err(|e| {
            policy_core::ConfigErrors(vec![SpecError {
                path: String::new(),
                message: e.to_string(),
            }])
        })?;
        let mut errors = Errors::default();
        let app = check(raw, &mut errors);
        match app {
            Some(app) if errors.0.is_empty() => Ok(app),
            _ => Err(errors),
        }
    }

    /// The stable version: the first listed.
    pub fn stable(&self) -> &AppVersion {
        // `check` refuses an empty version list, so there is always a first.
        &self.versions[0]
    }

    /// The `istio` label value of the add-on gateway this app uses; empty for
    /// `ingress: gateway-api`, whose gateway pods carry the Gateway's name instead
    /// ([`App::gateway_api_pod_label`]).
    pub fn ingress_selector(&self) -> &'static str {
        match self.ingress {
            Ingress::External => "aks-istio-ingressgateway-external",
            Ingress::Internal => "aks-istio-ingressgateway-internal",
            Ingress::GatewayApi => "",
        }
    }

    /// The label Istio puts on the pods it deploys for a Gateway API `Gateway`, and its value
    /// for this app's Gateway: what the plugin selects with `ingress: gateway-api`.
    pub fn gateway_api_pod_label(&self) -> (&'static str, String) {
        ("gateway.networking.k8s.io/gateway-name", self.gateway_name())
    }

    /// The Service of one version (`ingress: gateway-api`: an HTTPRoute sends to Services, not subsets).
    pub fn version_service_name(&self, version: &str) -> String {
        format!("svc-{}-{}", self.name, version)
    }

    /// The in-mesh name of the app's Service.
    pub fn service_host(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.service_name(), self.namespace)
    }

    pub fn service_name(&self) -> String {
        format!("svc-{}", self.name)
    }

    pub fn deployment_name(&self, version: &str) -> String {
        format!("deployment-{}-{}", self.name, version)
    }

    pub fn hpa_name(&self, version: &str) -> String {
        format!("hpa-{}-{}", self.name, version)
    }

    pub fn gateway_name(&self) -> String {
        format!("gateway-{}", self.name)
    }

    pub fn virtual_service_name(&self) -> String {
        format!("vs-{}", self.name)
    }

    pub fn destination_rule_name(&self) -> String {
        format!("dr-{}", self.name)
    }

    /// Name of the EnvoyFilter that makes a tool's weighted routes sticky (`progressive`).
    pub fn sticky_weights_name(&self) -> String {
        format!("sticky-canary-{}-weights", self.name)
    }

    /// Name of the plugin object (WasmPlugin or EnvoyFilter) in aks-istio-ingress.
    pub fn plugin_name(&self) -> String {
        format!("sticky-canary-{}", self.name)
    }

    /// This app's filter route with its routing token from `tokens`.
    pub fn filter_route(&self, tokens: &super::token::Tokens) -> Yaml {
        let mut route = self.route.clone();
        let value = tokens.token(super::token::Purpose::Gateway, &self.name, self.token.generation);
        route.insert(
            "routing_token".into(),
            map! {"header" => self.token.header.as_str(), "value" => value},
        );
        Yaml::Mapping(route)
    }

    /// A filter config holding this app alone (the one-app form of `render`).
    pub fn filter_config(&self, tokens: &super::token::Tokens) -> Yaml {
        filter_config(vec![self.filter_route(tokens)], self.response_header.as_deref())
    }

    /// Tokens the VirtualServices accept: the one the filter sends first, then those of
    /// `also_accept` and of the keys `--also-accept-key` names (a rotation in progress).
    pub fn accepted_tokens(&self, tokens: &super::token::Tokens, purpose: super::token::Purpose) -> Vec<String> {
        let generations: Vec<u32> = std::iter::once(self.token.generation)
            .chain(self.token.also_accept.iter().copied())
            .collect();
        tokens.accepted(purpose, &self.name, &generations)
    }

    /// The Istio minor version of the add-on revision (`asm-1-28` is 28).
    pub fn minor_revision(&self) -> Option<u32> {
        revision_minor(&self.revision)
    }
}

/// A filter config from routes (in order) and the optional response header.
pub fn filter_config(routes: Vec<Yaml>, response_header: Option<&str>) -> Yaml {
    let mut config = serde_yaml_ng::Mapping::new();
    config.insert("routes".into(), Yaml::Sequence(routes));
    if let Some(header) = response_header {
        config.insert("response_header".into(), header.into());
    }
    Yaml::Mapping(config)
}

/// A digest nobody pushed: one hex digit repeated (the examples' `000...`).
fn is_placeholder_digest(hex: &str) -> bool {
    let mut bytes = hex.bytes();
    bytes.next().is_some_and(|first| bytes.all(|b| b == first))
}

/// A secret copied from an example rather than generated.
fn is_placeholder_secret(secret: &str) -> bool {
    let lower = secret.to_ascii_lowercase();
    [
        "change-me",
        "changeme",
        "change_me",
        "example",
        "placeholder",
        "replace-me",
    ]
    .iter()
    .any(|word| lower.contains(word))
        || secret.bytes().all(|b| Some(b) == secret.bytes().next())
}

fn revision_minor(revision: &str) -> Option<u32> {
    revision.strip_prefix("asm-1-")?.parse().ok()
}

/// DNS-1035 label: a DNS-1123 label ([`policy_core::is_label`]) that starts with a letter, at
/// most `max` bytes.
fn is_dns1035(name: &str, max: usize) -> bool {
    name.len() <= max && name.starts_with(|c: char| c.is_ascii_lowercase()) && policy_core::is_label(name)
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A Kubernetes quantity such as `100m`, `0.5`, `128Mi`, `1G`.
fn is_quantity(q: &str) -> bool {
    let number_end = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(number_end);
    !number.is_empty()
        && number.bytes().filter(|b| *b == b'.').count() <= 1
        && number != "."
        && [
            "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
        ]
        .contains(&suffix)
}

fn port_ok(path: &str, port: u32, errors: &mut Errors) {
    if !(1..=65535).contains(&port) {
        errors.add(path, format!("{port} is not a port (1 to 65535)"));
    }
}

fn check_autoscaling(path: &str, raw: Option<RawAutoscaling>, base: Autoscaling, errors: &mut Errors) -> Autoscaling {
    let Some(raw) = raw else { return base };
    let a = Autoscaling {
        min_replicas: raw.min_replicas.unwrap_or(base.min_replicas),
        max_replicas: raw.max_replicas.unwrap_or(base.max_replicas),
        cpu_utilization: raw.cpu_utilization.unwrap_or(base.cpu_utilization),
    };
    if a.min_replicas < 1 {
        errors.add(format!("{path}.min_replicas"), "must be at least 1");
    }
    if a.max_replicas < a.min_replicas {
        errors.add(
            format!("{path}.max_replicas"),
            format!("{} is below min_replicas {}", a.max_replicas, a.min_replicas),
        );
    }
    if !(1..=100).contains(&a.cpu_utilization) {
        errors.add(
            format!("{path}.cpu_utilization"),
            format!(
                "{} is not a percentage of the CPU request (1 to 100)",
                a.cpu_utilization
            ),
        );
    }
    a
}

/// A weight as a number that policy-core reads exactly once written: `90`, `12.5`, `33.33`.
pub fn weight_yaml(weight: f64) -> Yaml {
    if weight.fract() == 0.0 && (0.0..=1e15).contains(&weight) {
        Yaml::from(weight as u64)
    } else {
        Yaml::from(weight)
    }
}

/// Maps a policy-core field path (`routes[0].versions[1].weight`) to the spec's.
fn spec_path(filter_path: &str) -> String {
    let Some(rest) = filter_path.strip_prefix("routes[0]") else {
        return match filter_path {
            "response_header" => "routing.response_header".to_owned(),
            other => format!("routing ({other})"),
        };
    };
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    let top = rest.split(['.', '[']).next().unwrap_or("");
    match top {
        "name" => "app".to_owned(),
        "hosts" | "path_prefix" | "versions" => rest.to_owned(),
        "" => "routing".to_owned(),
        "routing_token" => format!("routing.{}", rest.replacen("routing_token", "token", 1)),
        _ => format!("routing.{rest}"),
    }
}

fn check(mut raw: RawSpec, errors: &mut Errors) -> Option<App> {
    // app, namespace, revision
    if !is_dns1035(&raw.app, 40) {
        errors.add(
            "app",
            format!(
                "{:?} is not a valid app name (lowercase letters, digits and '-', starting with a letter, at most 40: it names the Service svc-APP and the Deployments)",
                raw.app
            ),
        );
    }
    let namespace = raw.namespace.clone().unwrap_or_else(|| raw.app.clone());
    if !is_dns1035(&namespace, 63) && !policy_core::is_label(&namespace) {
        errors.add("namespace", format!("{namespace:?} is not a valid namespace name"));
    }
    if namespace == INGRESS_NAMESPACE || namespace == "aks-istio-system" || namespace == "kube-system" {
        errors.add(
            "namespace",
            format!("{namespace:?} belongs to the add-on or the cluster: give the app its own namespace"),
        );
    }
    let minor = revision_minor(&raw.revision);
    if minor.is_none() {
        errors.add(
            "revision",
            format!(
                "{:?} is not an add-on revision: give it as asm-1-NN (see `az aks show --query serviceMeshProfile.istio.revisions`); the add-on ignores istio-injection=enabled",
                raw.revision
            ),
        );
    }

    // hosts: checked by policy-core as part of the filter config; the Gateway needs no more.
    let ingress = match raw.ingress.as_deref() {
        None | Some("external") => Ingress::External,
        Some("internal") => Ingress::Internal,
        Some("gateway-api") => {
            if minor.is_some_and(|m| m < GATEWAY_API_MIN_MINOR) {
                errors.add(
                    "ingress",
                    format!("gateway-api needs revision asm-1-{GATEWAY_API_MIN_MINOR} or later (the add-on's Gateway API support starts there)"),
                );
            }
            Ingress::GatewayApi
        }
        Some(other) => {
            errors.add(
                "ingress",
                format!("{other:?} is not one of \"external\", \"internal\", \"gateway-api\""),
            );
            Ingress::External
        }
    };

    let tls = raw.tls.map(|t| {
        if !policy_core::is_dns_name(&t.credential_name) {
            errors.add(
                "tls.credential_name",
                format!("{:?} is not a Secret name", t.credential_name),
            );
        }
        let mode = t.mode.unwrap_or_else(|| "SIMPLE".to_owned());
        if mode != "SIMPLE" && mode != "MUTUAL" {
            errors.add("tls.mode", format!("{mode:?} is not one of \"SIMPLE\", \"MUTUAL\""));
        }
        if mode == "MUTUAL" && ingress == Ingress::GatewayApi {
            errors.add(
                "tls.mode",
                "MUTUAL is not rendered for ingress: gateway-api (a Gateway listener terminates TLS with a server certificate only); use ingress: external",
            );
        }
        Tls {
            credential_name: t.credential_name,
            mode,
            redirect_http: t.redirect_http.unwrap_or(true),
        }
    });

    let service_port = raw.service_port.unwrap_or(80);
    port_ok("service_port", service_port, errors);

    let progressive = raw.progressive.take().map(|p| check_progressive(p, errors));
    if let Some(p) = &progressive {
        let tool = p.tool.title();
        let managed = [
            ("versions", !raw.versions.is_empty()),
            ("autoscaling", raw.autoscaling.is_some()),
            ("resources", raw.resources.is_some()),
            ("probes", raw.probes.is_some()),
            ("dependent_services", !raw.dependent_services.is_empty()),
        ];
        for (field, given) in managed {
            if given {
                errors.add(
                    field,
                    format!("leave it out with progressive: {tool} owns the workloads, their Services and the weights (docs/progressive-delivery.md)"),
                );
            }
        }
        if raw.mirror.is_some() {
            errors.add(
                "mirror",
                format!("leave it out with progressive: {tool} mirrors with its own settings (docs/progressive-delivery.md)"),
            );
        }
        if ingress == Ingress::GatewayApi {
            errors.add(
                "ingress",
                "gateway-api is not rendered with progressive: the sticky weights patch an Istio VirtualService's routes on the add-on's gateway; use external or internal",
            );
        }
        // The filter's two sides: the tool's stable (or primary) and canary destinations.
        raw.versions = ["stable", "canary"]
            .iter()
            .zip([100.0, 0.0])
            .map(|(name, weight)| RawVersion {
                name: (*name).to_owned(),
                image: "managed-by-the-tool".to_owned(),
                weight,
                port: None,
                env: BTreeMap::new(),
                autoscaling: None,
            })
            .collect();
        raw.probes = None;
        raw.dependent_services = Vec::new();
    }
    let base_scaling = check_autoscaling(
        "autoscaling",
        raw.autoscaling,
        Autoscaling {
            min_replicas: 1,
            max_replicas: 10,
            cpu_utilization: 50,
        },
        errors,
    );

    if raw.versions.is_empty() {
        errors.add("versions", "is empty: give at least the stable version");
    }
    let mut versions = Vec::new();
    for (i, v) in raw.versions.into_iter().enumerate() {
        let path = format!("versions[{i}]");
        if v.image.trim().is_empty() || v.image.contains(char::is_whitespace) {
            errors.add(
                format!("{path}.image"),
                format!("{:?} is not an image reference", v.image),
            );
        }
        let port = v.port.unwrap_or(8080);
        port_ok(&format!("{path}.port"), port, errors);
        for name in v.env.keys() {
            if name.is_empty() || name.contains('=') || name.contains(char::is_whitespace) {
                errors.add(format!("{path}.env.{name}"), "is not an environment variable name");
            }
        }
        if !is_dns1035(&v.name, 20) && policy_core::is_label(&v.name) {
            errors.add(
                format!("{path}.name"),
                format!(
                    "{:?} must start with a letter and be at most 20 long (it names Deployments and HPAs)",
                    v.name
                ),
            );
        }
        let autoscaling = check_autoscaling(&format!("{path}.autoscaling"), v.autoscaling, base_scaling, errors);
        versions.push(AppVersion {
            name: v.name,
            image: v.image,
            weight: v.weight,
            port,
            env: v.env,
            autoscaling,
        });
    }

    let resources = raw.resources.unwrap_or(RawResources {
        cpu: None,
        memory: None,
    });
    let cpu_request = resources.cpu.unwrap_or_else(|| "100m".to_owned());
    let memory_request = resources.memory.unwrap_or_else(|| "128Mi".to_owned());
    if !is_quantity(&cpu_request) {
        errors.add(
            "resources.cpu",
            format!("{cpu_request:?} is not a Kubernetes quantity (e.g. 100m)"),
        );
    }
    if !is_quantity(&memory_request) {
        errors.add(
            "resources.memory",
            format!("{memory_request:?} is not a Kubernetes quantity (e.g. 128Mi)"),
        );
    }

    let probes = raw.probes.map(|p| {
        let port = p.port.unwrap_or_else(|| versions.first().map_or(8080, |v| v.port));
        port_ok("probes.port", port, errors);
        for (field, value) in [
            ("liveness_path", &p.liveness_path),
            ("readiness_path", &p.readiness_path),
        ] {
            if let Some(path) = value {
                if !path.starts_with('/') {
                    errors.add(format!("probes.{field}"), format!("{path:?} must start with '/'"));
                }
            }
        }
        if p.liveness_path.is_none() && p.readiness_path.is_none() {
            errors.add("probes", "names neither liveness_path nor readiness_path");
        }
        Probes {
            port,
            liveness_path: p.liveness_path,
            readiness_path: p.readiness_path,
        }
    });

    // The filter config, built from the spec and validated by policy-core.
    let routing = raw.routing;
    let routing_header = routing
        .routing_header
        .clone()
        .unwrap_or_else(|| policy_core::DEFAULT_ROUTING_HEADER.to_owned())
        .to_ascii_lowercase();
    let mut route = serde_yaml_ng::Mapping::new();
    route.insert("name".into(), raw.app.clone().into());
    route.insert("hosts".into(), raw.hosts.clone().into());
    if let Some(prefix) = &raw.path_prefix {
        route.insert("path_prefix".into(), prefix.clone().into());
    }
    match &routing.salt {
        Some(salt) => {
            route.insert("salt".into(), salt.clone().into());
        }
        None => errors.add(
            "routing.salt",
            "is required: any string, kept for the life of the app (changing it reshuffles every user), e.g. the app name and a year",
        ),
    }
    route.insert("routing_header".into(), routing_header.clone().into());
    if let Some(p) = &progressive {
        route.insert("position_header".into(), p.position_header.clone().into());
    }
    route.insert(
        "versions".into(),
        Yaml::Sequence(
            versions
                .iter()
                .map(|v| map! {"name" => v.name.clone(), "weight" => weight_yaml(v.weight)})
                .collect(),
        ),
    );
    let key_chain = match &routing.key_chain {
        Some(chain) => Yaml::Sequence(chain.clone()),
        None => Yaml::Sequence(vec![map! {"new_client_id" => map! {}}]),
    };
    route.insert("key_chain".into(), key_chain);
    if let Some(no_key) = &routing.no_key {
        route.insert("no_key".into(), no_key.clone().into());
    }
    if let Some(rule) = &routing.override_ {
        route.insert("override".into(), rule.clone());
    }
    let token_header = routing
        .token
        .as_ref()
        .and_then(|t| t.header.clone())
        // By default the token travels in the routing header's value (`VERSION;TOKEN`): one
        // header write per request instead of two (docs/security.md).
        .unwrap_or_else(|| routing_header.clone())
        .to_ascii_lowercase();
    let token_generation = routing.token.as_ref().and_then(|t| t.generation).unwrap_or(1);
    let token_also_accept = routing
        .token
        .as_ref()
        .map(|t| t.also_accept.clone())
        .unwrap_or_default();
    if routing.token.as_ref().is_some_and(|t| t.value.is_some()) {
        errors.add(
            "routing.token.value",
            "is no longer accepted: a token written in the spec is as public as the spec. The value is derived from the token key (`--token-key`); to rotate it, raise routing.token.generation (docs/manifests.md)",
        );
    }
    if token_generation == 0 {
        errors.add("routing.token.generation", "starts at 1");
    }
    for (i, g) in token_also_accept.iter().enumerate() {
        if *g == 0 || *g == token_generation || token_also_accept[..i].contains(g) {
            errors.add(
                format!("routing.token.also_accept[{i}]"),
                format!("{g} is 0, the current generation or listed twice"),
            );
        }
    }
    let route_without_token = route.clone();
    // Validated with a stand-in of the real token's shape; render puts the real one in.
    route.insert(
        "routing_token".into(),
        map! {"header" => token_header.clone(), "value" => "0".repeat(32)},
    );
    let filter_config = filter_config(vec![Yaml::Mapping(route)], routing.response_header.as_deref());
    let filter_config_text = serde_json::to_string(&filter_config).unwrap_or_default();
    let mut policy = None;
    if routing.salt.is_some() {
        match policy_core::Policy::from_json(filter_config_text.as_bytes()) {
            Ok(p) => policy = Some(p),
            Err(policy_errors) => {
                for e in policy_errors.0 {
                    errors.add(spec_path(&e.path), e.message);
                }
            }
        }
    }

    let mut warnings = Vec::new();
    if let Some(policy) = &policy {
        if let Some(route) = policy.routes().first() {
            for key in route.key_chain() {
                if let policy_core::KeySpec::NewClientId(cookie) = key {
                    if cookie.secure && tls.is_none() {
                        warnings.push(format!(
                            "routing.key_chain: the client-id cookie {:?} is Secure but the gateway serves plain HTTP (no tls): browsers keep it only if TLS ends in front of the gateway",
                            cookie.cookie
                        ));
                    }
                }
            }
        }
    }

    if let Some(secret) = routing
        .override_
        .as_ref()
        .and_then(|o| o.get("secret"))
        .and_then(Yaml::as_str)
    {
        if is_placeholder_secret(secret) {
            warnings.push(format!(
                "routing.override.secret: {secret:?} looks like a placeholder: anyone who reads the example can force a canary; generate one (e.g. `openssl rand -hex 24`)"
            ));
        }
    }

    let plugin = check_plugin(raw.plugin, minor, errors);
    if let Some(Plugin {
        source: ModuleSource::Oci { digest: hex, .. } | ModuleSource::Url { sha256: hex, .. },
        ..
    }) = &plugin
    {
        if is_placeholder_digest(hex) {
            warnings.push(format!(
                "plugin.sha256: {hex} is a placeholder: istio-agent will refuse the module (digest mismatch) and the gateway runs without the filter; put the digest `sticky-canary push` printed"
            ));
        }
    }

    let version_names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
    let mut dependents = Vec::new();
    for (i, d) in raw.dependent_services.into_iter().enumerate() {
        let path = format!("dependent_services[{i}]");
        if !is_dns1035(&d.service, 63) {
            errors.add(
                format!("{path}.service"),
                format!("{:?} is not a Service name", d.service),
            );
        }
        if d.service == format!("svc-{}", raw.app) {
            errors.add(
                format!("{path}.service"),
                "is the app's own Service: the gateway VirtualService already routes it",
            );
        }
        if let Some(port) = d.port {
            port_ok(&format!("{path}.port"), port, errors);
        }
        let dep_versions = d
            .versions
            .unwrap_or_else(|| version_names.iter().map(|s| (*s).to_owned()).collect());
        for (j, name) in dep_versions.iter().enumerate() {
            if !version_names.contains(&name.as_str()) {
                errors.add(
                    format!("{path}.versions[{j}]"),
                    format!("{name:?} is not one of the app's versions (the routing header only carries those)"),
                );
            }
        }
        if let Some(stable) = version_names.first() {
            if dep_versions.first().map(String::as_str) != Some(*stable) {
                errors.add(
                    format!("{path}.versions"),
                    format!("must start with the stable version {stable:?}: unmarked requests go there"),
                );
            }
        }
        dependents.push(Dependent {
            service: d.service,
            namespace: d.namespace.unwrap_or_else(|| namespace.clone()),
            port: d.port,
            versions: dep_versions,
        });
    }

    let mirror = raw.mirror.map(|m| {
        match version_names.iter().position(|v| *v == m.version) {
            None => errors.add(
                "mirror.version",
                format!("{:?} is not one of the app's versions", m.version),
            ),
            Some(0) => errors.add(
                "mirror.version",
                format!(
                    "{:?} is the stable version, which already serves every request it would copy: mirror a canary",
                    m.version
                ),
            ),
            Some(_) => {}
        }
        let hundredths = m.percent * 100.0;
        if !(m.percent > 0.0 && m.percent <= 100.0) || (hundredths - hundredths.round()).abs() > 1e-6 {
            errors.add(
                "mirror.percent",
                format!(
                    "{} is not a percentage above 0 and at most 100 with at most two decimals",
                    m.percent
                ),
            );
        }
        if ingress == Ingress::GatewayApi && m.percent < 100.0 {
            warnings.push(format!(
                "mirror.percent: {} on an HTTPRoute needs the Gateway API v1.3 CRDs or later (AKS Managed Gateway API on Kubernetes 1.34 and later); \
                 with v1.2.1 (Kubernetes 1.26 to 1.33) the API server refuses the RequestMirror's percent, or drops it and every request is copied. \
                 Check the bundle-version annotation of crd/httproutes.gateway.networking.k8s.io (docs/aks-runbook.md)",
                m.percent
            ));
        }
        Mirror {
            version: m.version,
            percent: m.percent,
        }
    });

    if !errors.0.is_empty() {
        return None;
    }
    Some(App {
        name: raw.app,
        namespace,
        revision: raw.revision,
        hosts: raw.hosts,
        path_prefix: raw.path_prefix,
        ingress,
        tls,
        service_port,
        versions,
        cpu_request,
        memory_request,
        probes,
        routing_header,
        token: TokenSettings {
            header: token_header,
            generation: token_generation,
            also_accept: token_also_accept,
        },
        plugin: plugin?,
        dependents,
        mirror,
        progressive,
        route: route_without_token,
        response_header: routing.response_header.clone(),
        warnings,
    })
}

fn check_progressive(raw: RawProgressive, errors: &mut Errors) -> Progressive {
    let tool = match raw.tool.as_str() {
        "flagger" => Tool::Flagger,
        "argo-rollouts" => Tool::ArgoRollouts,
        other => {
            errors.add(
                "progressive.tool",
                format!("{other:?} is not one of \"flagger\", \"argo-rollouts\""),
            );
            Tool::Flagger
        }
    };
    match (tool, &raw.route) {
        (Tool::Flagger, Some(_)) => errors.add(
            "progressive.route",
            "leave it out for Flagger: the route Flagger writes has no name, the patch matches the app's hosts",
        ),
        (Tool::ArgoRollouts, None) => errors.add(
            "progressive.route",
            "is required for Argo Rollouts: the VirtualService route named in the Rollout's trafficRouting.istio.virtualService.routes",
        ),
        (Tool::ArgoRollouts, Some(route)) if route.is_empty() || route.bytes().any(|b| b.is_ascii_whitespace()) => {
            errors.add("progressive.route", format!("{route:?} is not a route name"))
        }
        _ => {}
    }
    Progressive {
        tool,
        route: raw.route,
        position_header: raw
            .position_header
            .unwrap_or_else(|| DEFAULT_POSITION_HEADER.to_owned())
            .to_ascii_lowercase(),
    }
}

fn check_plugin(raw: RawPlugin, minor: Option<u32>, errors: &mut Errors) -> Option<Plugin> {
    let before = errors.0.len();
    let form = match raw.form.as_deref() {
        // The AKS add-on's admission webhook refuses WasmPlugin; EnvoyFilters are allowed.
        None => PluginForm::EnvoyFilter,
        Some(text) => PluginForm::parse(text).unwrap_or_else(|| {
            errors.add(
                "plugin.form",
                format!("{text:?} is not one of \"wasmplugin\", \"envoyfilter\", \"envoyfilter-inline\""),
            );
            PluginForm::WasmPlugin
        }),
    };
    let sha256 = raw
        .sha256
        .as_deref()
        .map(|s| s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase());
    if let Some(s) = &sha256 {
        if !is_hex64(s) {
            errors.add("plugin.sha256", "must be 64 hex digits (optionally after \"sha256:\")");
        }
    }
    let source = match (form, raw.url.as_deref()) {
        (PluginForm::EnvoyFilterInline, None) => Some(ModuleSource::Inline),
        (PluginForm::EnvoyFilterInline, Some(_)) => {
            errors.add(
                "plugin.url",
                "is not used by the envoyfilter-inline form (the module travels inside the EnvoyFilter): remove it",
            );
            None
        }
        (_, None) => {
            errors.add(
                "plugin.url",
                "is required: oci://REGISTRY/REPO:TAG (e.g. pushed with `sticky-canary push`) or https://.../sticky_canary_filter.wasm",
            );
            None
        }
        (_, Some(url)) if url.starts_with("oci://") => {
            let from_url = url.rsplit_once("@sha256:").map(|(_, d)| d.to_ascii_lowercase());
            match (from_url, sha256.clone()) {
                (Some(a), Some(b)) if a != b => {
                    errors.add("plugin.sha256", "differs from the digest in plugin.url");
                    None
                }
                (Some(d), _) | (None, Some(d)) => Some(ModuleSource::Oci {
                    url: url.to_owned(),
                    digest: d,
                }),
                (None, None) => {
                    errors.add(
                        "plugin.sha256",
                        "is required for an oci:// url: the image manifest digest that `sticky-canary push` prints (Istio compares it with the manifest digest, not with the .wasm's SHA-256)",
                    );
                    None
                }
            }
        }
        (_, Some(url)) if url.starts_with("https://") || url.starts_with("file://") => Some(ModuleSource::Url {
            url: url.to_owned(),
            sha256: sha256.clone().unwrap_or_else(|| crate::sha256_hex(crate::FILTER_WASM)),
        }),
        (_, Some(url)) => {
            errors.add(
                "plugin.url",
                format!("{url:?} must start with oci://, https:// or file:// (plain http:// is not accepted)"),
            );
            None
        }
    };
    let phase_set_for_envoyfilter = raw.phase_is_set_for_envoyfilter(form);
    let phase = raw.phase.unwrap_or_else(|| "AUTHZ".to_owned());
    if !PHASES.contains(&phase.as_str()) {
        errors.add("plugin.phase", format!("{phase:?} is not one of {}", PHASES.join(", ")));
    }
    if phase_set_for_envoyfilter {
        errors.add(
            "plugin.phase",
            "only applies to the wasmplugin form (an EnvoyFilter is inserted just before the router)",
        );
    }
    let fail_strategy = match raw.fail_strategy.as_deref() {
        None | Some("FAIL_OPEN") => FailStrategy::FailOpen,
        Some("FAIL_CLOSE") => FailStrategy::FailClose,
        Some("FAIL_RELOAD") => {
            if minor.is_some_and(|m| m < 27) {
                errors.add(
                    "plugin.fail_strategy",
                    "FAIL_RELOAD exists from Istio 1.27 (revision asm-1-27): use FAIL_OPEN or FAIL_CLOSE on older revisions",
                );
            }
            FailStrategy::FailReload
        }
        Some(other) => {
            errors.add(
                "plugin.fail_strategy",
                format!("{other:?} is not one of \"FAIL_OPEN\", \"FAIL_CLOSE\", \"FAIL_RELOAD\""),
            );
            FailStrategy::FailOpen
        }
    };
    if let Some(policy) = &raw.image_pull_policy {
        if !PULL_POLICIES.contains(&policy.as_str()) {
            errors.add(
                "plugin.image_pull_policy",
                format!("{policy:?} is not one of {}", PULL_POLICIES.join(", ")),
            );
        }
    }
    if raw.image_pull_secret.is_some() && form != PluginForm::WasmPlugin {
        errors.add(
            "plugin.image_pull_secret",
            "only the wasmplugin form can use a pull secret: with an EnvoyFilter, istio-agent pulls anonymously (make the repository anonymously readable, or use an https:// url or the inline form)",
        );
    }
    if raw.image_pull_policy.is_some() && form != PluginForm::WasmPlugin {
        errors.add("plugin.image_pull_policy", "only applies to the wasmplugin form");
    }
    if errors.0.len() != before {
        return None;
    }
    Some(Plugin {
        form,
        source: source?,
        phase,
        fail_strategy,
        image_pull_policy: raw.image_pull_policy,
        image_pull_secret: raw.image_pull_secret,
    })
}

impl RawPlugin {
    fn phase_is_set_for_envoyfilter(&self, form: PluginForm) -> bool {
        self.phase.is_some() && form != PluginForm::WasmPlugin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_paths_map_to_spec_paths() {
        assert_eq!(spec_path("routes[0].versions[1].weight"), "versions[1].weight");
        assert_eq!(spec_path("routes[0].versions"), "versions");
        assert_eq!(
            spec_path("routes[0].key_chain[0].cookie"),
            "routing.key_chain[0].cookie"
        );
        assert_eq!(spec_path("routes[0].override.allow[0]"), "routing.override.allow[0]");
        assert_eq!(spec_path("routes[0].hosts[0]"), "hosts[0]");
        assert_eq!(spec_path("routes[0].name"), "app");
        assert_eq!(spec_path("response_header"), "routing.response_header");
    }

    #[test]
    fn weights_keep_their_written_value() {
        let text = |w: f64| serde_json::to_string(&weight_yaml(w)).unwrap();
        assert_eq!(text(90.0), "90");
        assert_eq!(text(12.5), "12.5");
        assert_eq!(text(33.33), "33.33");
    }

    #[test]
    fn quantities() {
        for ok in ["100m", "0.5", "128Mi", "1", "2G"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "m", "1x", "1..2", "-1"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
