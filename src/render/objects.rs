//! The Kubernetes and Istio objects rendered from a checked [`App`], one function per kind.
//!
//! The core Kubernetes kinds (Namespace, Deployment, Service, HorizontalPodAutoscaler) are
//! `k8s-openapi` types, so a misspelt field does not compile; the Istio kinds have no such
//! crate and are built as YAML maps, apiVersion, kind, metadata and spec first, like the AKS
//! canary tutorial's YAML. Nothing here decides which
//! version serves a request: that is policy-core's job, reached through the
//! filter config carried by the plugin object.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, Namespace, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_yaml_ng::{Mapping, Value as Yaml};

use super::spec::{
    App, AppVersion, Dependent, FailStrategy, Ingress, ModuleSource, Plugin, PluginForm, INGRESS_NAMESPACE,
    MESH_TOKEN_HEADER,
};
use super::token::{Purpose, Tokens};

/// The Envoy filter name and type of the proxy-wasm HTTP filter.
pub const WASM_FILTER_NAME: &str = "envoy.filters.http.wasm";
pub const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The type istio-agent substitutes when it cannot fetch the module (allow-all or deny-all RBAC).
pub const RBAC_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// A typed Kubernetes object (`k8s-openapi`) as a YAML value for the emitter. Its fields come out
/// in `k8s-openapi`'s order: apiVersion, kind, metadata, spec, then each struct's fields
/// alphabetically, as `kubectl get -o yaml` prints them.
fn typed<T: serde::Serialize>(object: &T) -> Yaml {
    // These types hold only strings, numbers, lists and string-keyed maps: nothing YAML refuses.
    serde_yaml_ng::to_value(object).expect("a Kubernetes object serialises to YAML")
}

/// A spec number (validated far below `i32::MAX`) as the `int32` Kubernetes fields take.
fn int32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Labels as a Kubernetes label map.
fn labels<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

fn app_labels(app: &App, version: Option<&str>) -> BTreeMap<String, String> {
    let mut m = labels([("app", app.name.as_str())]);
    if let Some(v) = version {
        m.insert("version".to_owned(), v.to_owned());
    }
    m
}

/// Typed metadata: a name, the app's namespace and labels.
fn object_meta(name: String, app: &App, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(app.namespace.clone()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

pub fn namespace(app: &App) -> Yaml {
    typed(&Namespace {
        metadata: ObjectMeta {
            name: Some(app.namespace.clone()),
            // The add-on injects sidecars by revision label only; istio-injection=enabled does nothing.
            labels: Some(labels([("istio.io/rev", app.revision.as_str())])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    })
}

pub fn deployment(app: &App, version: &AppVersion) -> Yaml {
    let http_get = |path: &str, port: u32| {
        Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(int32(port)),
            ..HTTPGetAction::default()
        })
    };
    let probes = app.probes.as_ref();
    let container = Container {
        name: app.name.clone(),
        image: Some(version.image.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: int32(version.port),
            ..ContainerPort::default()
        }]),
        env: (!version.env.is_empty()).then(|| {
            version
                .env
                .iter()
                .map(|(k, v)| EnvVar {
                    name: k.clone(),
                    value: Some(v.clone()),
                    ..EnvVar::default()
                })
                .collect()
        }),
        // The HPA scales on CPU utilisation, which is relative to the request: without one it cannot scale.
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity(app.cpu_request.clone())),
                ("memory".to_owned(), Quantity(app.memory_request.clone())),
            ])),
            ..ResourceRequirements::default()
        }),
        liveness_probe: probes.and_then(|p| {
            let path = p.liveness_path.as_deref()?;
            Some(Probe {
                http_get: http_get(path, p.port),
                initial_delay_seconds: Some(5),
                period_seconds: Some(5),
                ..Probe::default()
            })
        }),
        readiness_probe: probes.and_then(|p| {
            let path = p.readiness_path.as_deref()?;
            Some(Probe {
                http_get: http_get(path, p.port),
                period_seconds: Some(5),
                ..Probe::default()
            })
        }),
        ..Container::default()
    };
    let version_labels = app_labels(app, Some(&version.name));
    typed(&Deployment {
        metadata: object_meta(app.deployment_name(&version.name), app, version_labels.clone()),
        // No `replicas`: the HPA owns it, and `kubectl apply` would otherwise reset it on every ramp.
        spec: Some(DeploymentSpec {
            selector: LabelSelector {
                match_labels: Some(version_labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(version_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    })
}

/// The app's Service: every version behind it; the DestinationRule subsets split them by the
/// version label.
pub fn service(app: &App) -> Yaml {
    http_service(app.service_name(), app, app_labels(app, None))
}

/// One version's own Service (`svc-APP-VERSION`), for an HTTPRoute, which sends to Services
/// rather than subsets.
pub fn version_service(app: &App, version: &str) -> Yaml {
    http_service(app.version_service_name(version), app, app_labels(app, Some(version)))
}

/// A Service named `name` in the app's namespace, selecting the pods with `labels`.
fn http_service(name: String, app: &App, labels: BTreeMap<String, String>) -> Yaml {
    typed(&Service {
        metadata: object_meta(name, app, labels.clone()),
        spec: Some(ServiceSpec {
            selector: Some(labels),
            // The port name tells Istio the protocol is HTTP.
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: int32(app.service_port),
                target_port: Some(IntOrString::String("http".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

pub fn hpa(app: &App, version: &AppVersion) -> Yaml {
    let a = version.autoscaling;
    typed(&HorizontalPodAutoscaler {
        metadata: object_meta(app.hpa_name(&version.name), app, app_labels(app, Some(&version.name))),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: app.deployment_name(&version.name),
            },
            min_replicas: Some(int32(a.min_replicas)),
            max_replicas: int32(a.max_replicas),
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(int32(a.cpu_utilization)),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    })
}

/// Metadata of an Istio object (a YAML map: name, namespace, labels).
fn metadata(name: &str, namespace: &str, labels: Option<Yaml>) -> Yaml {
    let mut m = Mapping::new();
    m.insert("name".into(), name.into());
    m.insert("namespace".into(), namespace.into());
    if let Some(labels) = labels {
        m.insert("labels".into(), labels);
    }
    Yaml::Mapping(m)
}

pub fn gateway(app: &App) -> Yaml {
    let hosts: Vec<Yaml> = app.hosts.iter().map(|h| Yaml::from(h.as_str())).collect();
    let mut servers = Vec::new();
    match &app.tls {
        None => servers.push(map! {
            "port" => map! {"number" => 80u32, "name" => "http", "protocol" => "HTTP"},
            "hosts" => hosts.clone(),
        }),
        Some(tls) => {
            servers.push(map! {
                "port" => map! {"number" => 443u32, "name" => "https", "protocol" => "HTTPS"},
                // The Secret lives where the gateway pods run (aks-istio-ingress), not in the app's namespace.
                "tls" => map! {"mode" => tls.mode.as_str(), "credentialName" => tls.credential_name.as_str()},
                "hosts" => hosts.clone(),
            });
            if tls.redirect_http {
                servers.push(map! {
                    "port" => map! {"number" => 80u32, "name" => "http", "protocol" => "HTTP"},
                    "tls" => map! {"httpsRedirect" => true},
                    "hosts" => hosts.clone(),
                });
            }
        }
    }
    map! {
        "apiVersion" => "networking.istio.io/v1",
        "kind" => "Gateway",
        "metadata" => metadata(&app.gateway_name(), &app.namespace, None),
        "spec" => map! {
            "selector" => map! {"istio" => app.ingress_selector()},
            "servers" => servers,
        },
    }
}

fn destination(host: &str, subset: &str, port: Option<u32>) -> Yaml {
    let mut d = Mapping::new();
    d.insert("host".into(), host.into());
    d.insert("subset".into(), subset.into());
    if let Some(p) = port {
        d.insert("port".into(), map! {"number" => p});
    }
    map! {"destination" => Yaml::Mapping(d)}
}

/// What the routes of one VirtualService (or HTTPRoute) require and do to the request headers.
pub(super) struct Guard<'a> {
    /// The header every canary route matches on.
    pub(super) routing_header: &'a str,
    /// The token's own header, or `None` when the token travels in the routing header's value
    /// (`VERSION;TOKEN`, see [`policy_core::Version::routing_value`]).
    pub(super) token_header: Option<&'a str>,
    /// The accepted token values (any one matches).
    pub(super) accepted: &'a [String],
    /// The mesh token, when dependent services route on the routing header: canary routes set
    /// it (replacing any client copy), and the stable route removes the routing header and any
    /// client-sent mesh token instead of setting the header.
    pub(super) mesh_token: Option<&'a str>,
    /// A mesh VirtualService (a dependent service's): it passes every header on untouched, as
    /// the backend may call further services with the same headers.
    pub(super) pass_through: bool,
}

impl Guard<'_> {
    /// The header matches of a canary route for `version`: one match per accepted token, each
    /// as (header, exact value) pairs, the routing header first.
    pub(super) fn canary_matches(&self, version: &str) -> Vec<Vec<(String, String)>> {
        self.accepted
            .iter()
            .map(|token| match self.token_header {
                None => vec![(
                    self.routing_header.to_owned(),
                    policy_core::token_routing_value(version, token),
                )],
                Some(header) => vec![
                    (self.routing_header.to_owned(), version.to_owned()),
                    (header.to_owned(), token.clone()),
                ],
            })
            .collect()
    }

    /// Headers a canary route for `version` sets: the bare version name when the token came in
    /// the routing header (so the app sees what it always saw), and the mesh token.
    pub(super) fn canary_set(&self, version: &str) -> Vec<(String, String)> {
        let mut set = Vec::new();
        if self.token_header.is_none() {
            set.push((self.routing_header.to_owned(), version.to_owned()));
        }
        if let Some(mesh) = self.mesh_token {
            set.push((MESH_TOKEN_HEADER.to_owned(), mesh.to_owned()));
        }
        set
    }

    /// Headers a canary route removes: the token's own header.
    pub(super) fn canary_remove(&self) -> Vec<&str> {
        match self.token_header {
            Some(header) if !self.pass_through => vec![header],
            _ => Vec::new(),
        }
    }

    /// Headers the stable route sets: the stable name in the routing header, replacing the
    /// filter's `VERSION;TOKEN` (or a client's value while the filter is skipped).
    pub(super) fn stable_set(&self, stable: &str) -> Vec<(String, String)> {
        if self.token_header.is_none() && self.mesh_token.is_none() {
            vec![(self.routing_header.to_owned(), stable.to_owned())]
        } else {
            Vec::new()
        }
    }

    /// Headers the stable route removes: the token's own header; with dependent services also
    /// the routing header and any client-sent mesh token, so nothing a client sends can steer a
    /// dependent service (docs/security.md).
    pub(super) fn stable_remove(&self) -> Vec<&str> {
        if self.pass_through {
            return Vec::new();
        }
        let mut remove: Vec<&str> = self.token_header.into_iter().collect();
        if self.mesh_token.is_some() {
            remove.push(self.routing_header);
            remove.push(MESH_TOKEN_HEADER);
        }
        remove
    }
}

/// The gateway routes' guard: canary routes require the gateway token (in the routing header's
/// value, or in a header of its own that they remove); with dependent services they also set
/// the mesh token, and the stable route removes the routing header and any client-sent mesh
/// token, so nothing a client sends can steer a dependent service (docs/security.md).
pub(super) fn gateway_guard<'a>(app: &'a App, accepted: &'a [String], mesh_token: &'a str) -> Guard<'a> {
    Guard {
        routing_header: app.routing_header.as_str(),
        token_header: (app.token.header != app.routing_header).then_some(app.token.header.as_str()),
        accepted,
        mesh_token: (!app.dependents.is_empty()).then_some(mesh_token),
        pass_through: false,
    }
}

fn header_ops(set: &[(String, String)], remove: &[&str]) -> Option<Yaml> {
    let mut request = Mapping::new();
    if !set.is_empty() {
        let mut values = Mapping::new();
        for (name, value) in set {
            values.insert(name.as_str().into(), value.as_str().into());
        }
        request.insert("set".into(), Yaml::Mapping(values));
    }
    if !remove.is_empty() {
        request.insert(
            "remove".into(),
            Yaml::Sequence(remove.iter().map(|n| Yaml::from(*n)).collect()),
        );
    }
    (!request.is_empty()).then(|| map! {"request" => Yaml::Mapping(request)})
}

/// HTTP routes: one per non-stable version on the routing header and a token, then stable for the rest.
///
/// Never a route on the override header: the filter checks the allow-list and
/// the secret, then writes the routing header; a route on the raw override
/// header would skip both. Each canary route has one match per accepted token
/// (Istio ORs the matches), which is how a token rotation keeps everyone where they are.
fn header_routes(
    name_prefix: &str,
    guard: &Guard<'_>,
    versions: &[&str],
    host: &str,
    port: Option<u32>,
    path_prefix: Option<&str>,
) -> Vec<Yaml> {
    let uri = path_prefix.map(|p| map! {"prefix" => p});
    let mut routes = Vec::new();
    for version in versions.iter().skip(1) {
        let matches = guard
            .canary_matches(version)
            .into_iter()
            .map(|pairs| {
                let mut m = Mapping::new();
                let mut headers = Mapping::new();
                for (name, value) in pairs {
                    headers.insert(name.into(), map! {"exact" => value});
                }
                m.insert("headers".into(), Yaml::Mapping(headers));
                if let Some(uri) = &uri {
                    m.insert("uri".into(), uri.clone());
                }
                Yaml::Mapping(m)
            })
            .collect();
        let mut route = Mapping::new();
        route.insert("name".into(), format!("{name_prefix}{version}").into());
        route.insert("match".into(), Yaml::Sequence(matches));
        route.insert("route".into(), Yaml::Sequence(vec![destination(host, version, port)]));
        if let Some(ops) = header_ops(&guard.canary_set(version), &guard.canary_remove()) {
            route.insert("headers".into(), ops);
        }
        routes.push(Yaml::Mapping(route));
    }
    if let Some(stable) = versions.first() {
        let mut route = Mapping::new();
        route.insert("name".into(), format!("{name_prefix}{stable}-default").into());
        if let Some(uri) = uri {
            route.insert("match".into(), Yaml::Sequence(vec![map! {"uri" => uri}]));
        }
        route.insert("route".into(), Yaml::Sequence(vec![destination(host, stable, port)]));
        if let Some(ops) = header_ops(&guard.stable_set(stable), &guard.stable_remove()) {
            route.insert("headers".into(), ops);
        }
        routes.push(Yaml::Mapping(route));
    }
    routes
}

/// The gateway VirtualService. Canary routes require the routing header and the gateway token
/// and remove the token; with dependent services they also set the mesh token, and the stable
/// route removes the routing header and any client-sent mesh token, so nothing a client sends
/// can steer a dependent service (docs/security.md).
pub fn virtual_service(app: &App, tokens: &Tokens) -> Yaml {
    let names: Vec<&str> = app.versions.iter().map(|v| v.name.as_str()).collect();
    let host = app.service_host();
    let accepted = app.accepted_tokens(tokens, Purpose::Gateway);
    let mesh_token = tokens.token(Purpose::Mesh, &app.name, app.token.generation);
    let guard = gateway_guard(app, &accepted, &mesh_token);
    map! {
        "apiVersion" => "networking.istio.io/v1",
        "kind" => "VirtualService",
        "metadata" => metadata(&app.virtual_service_name(), &app.namespace, None),
        "spec" => map! {
            "hosts" => app.hosts.iter().map(|h| Yaml::from(h.as_str())).collect::<Vec<_>>(),
            "gateways" => vec![Yaml::from(app.gateway_name())],
            "http" => super::mirror::on_virtual_service_routes(app, header_routes(
                "",
                &guard,
                &names,
                &host,
                Some(app.service_port),
                app.path_prefix.as_deref(),
            )),
        },
    }
}

fn subsets(versions: &[&str]) -> Vec<Yaml> {
    versions
        .iter()
        .map(|v| map! {"name" => *v, "labels" => map! {"version" => *v}})
        .collect()
}

pub fn destination_rule(app: &App) -> Yaml {
    let names: Vec<&str> = app.versions.iter().map(|v| v.name.as_str()).collect();
    map! {
        "apiVersion" => "networking.istio.io/v1",
        "kind" => "DestinationRule",
        "metadata" => metadata(&app.destination_rule_name(), &app.namespace, None),
        "spec" => map! {
            "host" => app.service_host(),
            "subsets" => subsets(&names),
        },
    }
}

/// Mesh VirtualService and DestinationRule for a backend that routes by the same header.
///
/// Its canary routes require the mesh token as well as the routing header: the gateway
/// VirtualService sets that token on canary routes only and removes client copies, so a
/// spoofed routing header never reaches a backend canary, even while the filter is skipped.
pub fn dependent(app: &App, dep: &Dependent, tokens: &Tokens) -> [Yaml; 2] {
    let host = format!("{}.{}.svc.cluster.local", dep.service, dep.namespace);
    let names: Vec<&str> = dep.versions.iter().map(String::as_str).collect();
    let accepted = app.accepted_tokens(tokens, Purpose::Mesh);
    // Nothing set or removed: the backend may call further services with the same headers.
    let guard = Guard {
        routing_header: app.routing_header.as_str(),
        token_header: Some(MESH_TOKEN_HEADER),
        accepted: &accepted,
        mesh_token: None,
        pass_through: true,
    };
    let vs = map! {
        "apiVersion" => "networking.istio.io/v1",
        "kind" => "VirtualService",
        "metadata" => metadata(&format!("vs-{}", dep.service), &dep.namespace, None),
        "spec" => map! {
            // No `gateways`: the default, `mesh`, applies it to sidecars calling the backend.
            "hosts" => vec![Yaml::from(host.as_str())],
            "http" => header_routes(&format!("{}-", dep.service), &guard, &names, &host, dep.port, None),
        },
    };
    let dr = map! {
        "apiVersion" => "networking.istio.io/v1",
        "kind" => "DestinationRule",
        "metadata" => metadata(&format!("dr-{}", dep.service), &dep.namespace, None),
        "spec" => map! {
            "host" => host.as_str(),
            "subsets" => subsets(&names),
        },
    };
    [vs, dr]
}

/// One plugin object on one add-on gateway: whose routes it carries, its name and settings.
#[derive(Debug, Clone)]
pub struct Install<'a> {
    /// The object name in aks-istio-ingress; also the Envoy filter and VM name.
    pub name: String,
    /// `sticky-canary/app: APP` (one app) or `sticky-canary/gateway: external` (shared).
    pub label: (&'static str, String),
    /// The `istio` label of the gateway pods.
    pub selector: &'static str,
    pub plugin: &'a Plugin,
    /// The whole filter config (every app's route on this gateway).
    pub config: Yaml,
    /// `Some` for an app's own Gateway API gateway (`ingress: gateway-api`): the plugin then
    /// lives in that gateway's namespace and selects its pods, and `selector` is unused.
    pub gateway_api: Option<GatewayApiTarget>,
}

/// The Gateway API gateway a plugin is for: its namespace and the `Gateway`'s name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayApiTarget {
    pub namespace: String,
    pub gateway: String,
}

/// The label Istio puts on the pods it deploys for a Gateway API `Gateway` (value: its name).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

impl Install<'_> {
    /// The filter config as compact JSON: what the filter receives.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).unwrap_or_default()
    }

    fn labels(&self) -> Yaml {
        map! {"app.kubernetes.io/managed-by" => "sticky-canary", self.label.0 => self.label.1.as_str()}
    }

    /// The namespace of the plugin object: the add-on's ingress namespace, or the Gateway API
    /// gateway's own.
    pub fn namespace(&self) -> &str {
        self.gateway_api
            .as_ref()
            .map_or(INGRESS_NAMESPACE, |t| t.namespace.as_str())
    }

    /// The labels of the gateway pods the plugin applies to.
    fn pod_labels(&self) -> Yaml {
        match &self.gateway_api {
            None => map! {"istio" => self.selector},
            Some(target) => map! {GATEWAY_NAME_LABEL => target.gateway.as_str()},
        }
    }
}

/// The plugin object of one app alone (`render` of a single spec).
pub fn single_install<'a>(app: &'a App, tokens: &Tokens) -> Install<'a> {
    Install {
        name: app.plugin_name(),
        label: ("sticky-canary/app", app.name.clone()),
        selector: app.ingress_selector(),
        plugin: &app.plugin,
        config: app.filter_config(tokens),
        gateway_api: (app.ingress == Ingress::GatewayApi).then(|| GatewayApiTarget {
            namespace: app.namespace.clone(),
            gateway: app.gateway_name(),
        }),
    }
}

pub fn wasm_plugin(install: &Install<'_>) -> Yaml {
    let plugin = install.plugin;
    let (url, sha256) = match &plugin.source {
        ModuleSource::Oci { url, digest } => (url.clone(), digest.clone()),
        ModuleSource::Url { url, sha256 } => (url.clone(), sha256.clone()),
        // Inline is an EnvoyFilter form; a WasmPlugin always fetches.
        ModuleSource::Inline => (String::new(), crate::sha256_hex(crate::FILTER_WASM)),
    };
    let mut spec = Mapping::new();
    match &install.gateway_api {
        None => {
            spec.insert("selector".into(), map! {"matchLabels" => install.pod_labels()});
        }
        // Istio's documented way to attach a WasmPlugin to a Gateway API gateway.
        Some(target) => {
            spec.insert(
                "targetRefs".into(),
                Yaml::Sequence(vec![map! {
                    "group" => "gateway.networking.k8s.io",
                    "kind" => "Gateway",
                    "name" => target.gateway.as_str(),
                }]),
            );
        }
    }
    spec.insert("url".into(), url.into());
    spec.insert("sha256".into(), sha256.into());
    if let Some(policy) = &plugin.image_pull_policy {
        spec.insert("imagePullPolicy".into(), policy.as_str().into());
    }
    if let Some(secret) = &plugin.image_pull_secret {
        spec.insert("imagePullSecret".into(), secret.as_str().into());
    }
    spec.insert("phase".into(), plugin.phase.as_str().into());
    spec.insert("failStrategy".into(), plugin.fail_strategy.as_str().into());
    spec.insert("type".into(), "HTTP".into());
    spec.insert("pluginConfig".into(), install.config.clone());
    map! {
        "apiVersion" => "extensions.istio.io/v1alpha1",
        "kind" => "WasmPlugin",
        "metadata" => metadata(&install.name, install.namespace(), Some(install.labels())),
        "spec" => Yaml::Mapping(spec),
    }
}

/// The `typed_config` of the `envoy.filters.http.wasm` filter, as Envoy reads it.
pub fn wasm_typed_config(install: &Install<'_>, form: PluginForm) -> Yaml {
    let code = match (&install.plugin.source, form) {
        (_, PluginForm::EnvoyFilterInline) | (ModuleSource::Inline, _) => map! {
            "local" => map! {
                "inline_bytes" => base64::engine::general_purpose::STANDARD.encode(crate::FILTER_WASM),
            },
        },
        (ModuleSource::Oci { url, digest }, _) => remote_code(url, digest),
        (ModuleSource::Url { url, sha256 }, _) => remote_code(url, sha256),
    };
    let mut config = Mapping::new();
    config.insert("name".into(), install.name.as_str().into());
    config.insert(
        "vm_config".into(),
        map! {
            "vm_id" => install.name.as_str(),
            "runtime" => "envoy.wasm.runtime.v8",
            "code" => code,
        },
    );
    config.insert(
        "configuration".into(),
        map! {
            "@type" => "type.googleapis.com/google.protobuf.StringValue",
            "value" => install.config_json(),
        },
    );
    // istio-agent reads failure_policy too: when it cannot fetch the module it swaps this config
    // for an RBAC filter, allow-all for FAIL_OPEN and deny-all for the others (docs/security.md).
    let failure_policy = match install.plugin.fail_strategy {
        FailStrategy::FailOpen => "FAIL_OPEN",
        FailStrategy::FailClose => "FAIL_CLOSED",
        FailStrategy::FailReload => "FAIL_RELOAD",
    };
    config.insert("failure_policy".into(), failure_policy.into());
    map! {
        "@type" => WASM_TYPE_URL,
        "config" => Yaml::Mapping(config),
    }
}

fn remote_code(url: &str, sha256: &str) -> Yaml {
    map! {
        "remote" => map! {
            // istio-agent fetches this (oci:// or https://), checks sha256 (for oci://, the manifest
            // digest) and hands Envoy a local file; Envoy never fetches it itself.
            // Envoy requires a cluster; the agent fetches the module itself, so Istio's own
            // placeholder `_` (pilot's buildDataSource) names none.
            "http_uri" => map! {"uri" => url, "timeout" => "30s", "cluster" => "_"},
            "sha256" => sha256,
        },
    }
}

/// The EnvoyFilter: the Wasm filter as an extension config (ECDS), inserted before the router.
///
/// Delivering the filter config by ECDS (as WasmPlugin does) means a weight
/// change updates the filter alone, without draining the gateway's listeners.
pub fn envoy_filter(install: &Install<'_>, form: PluginForm) -> Yaml {
    let name = install.name.as_str();
    let extension = map! {
        "applyTo" => "EXTENSION_CONFIG",
        "patch" => map! {
            "operation" => "ADD",
            "value" => map! {
                "name" => name,
                "typed_config" => wasm_typed_config(install, form),
            },
        },
    };
    let insert = map! {
        "applyTo" => "HTTP_FILTER",
        "match" => map! {
            "context" => "GATEWAY",
            "listener" => map! {
                "filterChain" => map! {
                    "filter" => map! {
                        "name" => "envoy.filters.network.http_connection_manager",
                        "subFilter" => map! {"name" => "envoy.filters.http.router"},
                    },
                },
            },
        },
        "patch" => map! {
            "operation" => "INSERT_BEFORE",
            "value" => map! {
                "name" => name,
                "config_discovery" => map! {
                    // Wait for the module rather than serve without it (Istio's own choice for Wasm).
                    "config_source" => map! {"ads" => map! {}, "initial_fetch_timeout" => "0s"},
                    // The RBAC type too: when istio-agent cannot fetch the module it delivers an RBAC
                    // filter (allow-all or deny-all) under this name. Without it Envoy rejects that
                    // update and the listener answers 500 for every host on the gateway.
                    "type_urls" => vec![Yaml::from(WASM_TYPE_URL), Yaml::from(RBAC_TYPE_URL)],
                },
            },
        },
    };
    map! {
        "apiVersion" => "networking.istio.io/v1alpha3",
        "kind" => "EnvoyFilter",
        "metadata" => metadata(name, install.namespace(), Some(install.labels())),
        "spec" => map! {
            "workloadSelector" => map! {"labels" => install.pod_labels()},
            "configPatches" => vec![extension, insert],
        },
    }
}

/// The EnvoyFilter that makes the weighted routes Flagger or Argo Rollouts manage sticky: on
/// the app's virtual hosts (and, for Argo Rollouts, only the named route), Envoy picks the
/// weighted cluster from the position header the filter writes (`header_name`: the value modulo
/// the total weight, over the clusters' cumulative weights) instead of a random number. It only
/// matches routes with `action: ROUTE` on this app's hosts, so no other app's route is touched.
/// Both tools always list two destinations, so Istio emits `weighted_clusters` at every step,
/// 0 % and 100 % included (one cluster then): the merge never lands on a single-`cluster`
/// route, which would leave an empty `weighted_clusters` that Envoy rejects (tests/progressive.rs).
pub fn sticky_weights(app: &App) -> Option<Yaml> {
    let progressive = app.progressive.as_ref()?;
    let port = if app.tls.is_some() { 443u32 } else { 80u32 };
    let patches: Vec<Yaml> = app
        .hosts
        .iter()
        .map(|host| {
            let mut route = Mapping::new();
            if let Some(name) = &progressive.route {
                route.insert("name".into(), name.as_str().into());
            }
            route.insert("action".into(), "ROUTE".into());
            map! {
                "applyTo" => "HTTP_ROUTE",
                "match" => map! {
                    "context" => "GATEWAY",
                    "routeConfiguration" => map! {
                        "vhost" => map! {
                            "name" => format!("{host}:{port}"),
                            "route" => Yaml::Mapping(route),
                        },
                    },
                },
                "patch" => map! {
                    "operation" => "MERGE",
                    "value" => map! {
                        "route" => map! {
                            "weighted_clusters" => map! {"header_name" => progressive.position_header.as_str()},
                        },
                    },
                },
            }
        })
        .collect();
    Some(map! {
        "apiVersion" => "networking.istio.io/v1alpha3",
        "kind" => "EnvoyFilter",
        "metadata" => metadata(&app.sticky_weights_name(), INGRESS_NAMESPACE, Some(typed(&app_labels(app, None)))),
        "spec" => map! {
            "workloadSelector" => map! {"labels" => map! {"istio" => app.ingress_selector()}},
            "configPatches" => patches,
        },
    })
}

/// The plugin object in the form the spec chose.
pub fn plugin(install: &Install<'_>, form: PluginForm) -> Yaml {
    match form {
        PluginForm::WasmPlugin => wasm_plugin(install),
        PluginForm::EnvoyFilter | PluginForm::EnvoyFilterInline => envoy_filter(install, form),
    }
}
