//! The Kubernetes and Istio objects rendered from a checked [`App`], one function per kind.
//!
//! The core Kubernetes kinds (Namespace, Deployment, Service, HorizontalPodAutoscaler) are
//! `k8s-openapi` types, so a misspelt field does not compile; the Istio kinds have no such
//! crate and are built as YAML maps, apiVersion, kind, metadata and spec first, like the AKS
//! canary tutorial's YAML. Nothing here decides which
//! version serves a request: that is policy-core's job, reached through the
//! filter config carried by the plugin object ([`super::plugin`]). What the routes require and
//! do to the headers is `routing`'s (shared with the HTTPRoute writer,
//! [`super::gateway_api`]); which routes mirror is `mirror`'s.

use std::collections::BTreeMap;

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

use super::metadata::metadata;
use super::mirror;
use super::routing::{Guard, HeaderEdits};
use super::spec::{weight_yaml, App, AppVersion, Dependent, ServiceProtocol, INGRESS_NAMESPACE};
use super::token::Tokens;

/// Where the harness finds the pods of a Gateway API gateway (the name it had here first).
pub use super::spec::GATEWAY_NAME_LABEL;

/// A typed Kubernetes object (`k8s-openapi`) as a YAML value for the emitter. Its fields come out
/// in `k8s-openapi`'s order: apiVersion, kind, metadata, spec, then each struct's fields
/// alphabetically, as `kubectl get -o yaml` prints them.
#[allow(
    clippy::expect_used,
    reason = "these types hold only strings, numbers, lists and string-keyed maps: nothing YAML refuses"
)]
fn typed<T: serde::Serialize>(object: &T) -> Yaml {
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
    // Both probes check every 5 s; liveness waits 5 s before the first check.
    let probe = |path: Option<&str>, port: u32, initial_delay_seconds: Option<i32>| {
        Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path?.to_owned()),
                port: IntOrString::Int(int32(port)),
                ..HTTPGetAction::default()
            }),
            initial_delay_seconds,
            period_seconds: Some(5),
            ..Probe::default()
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
        liveness_probe: probes.and_then(|p| probe(p.liveness_path.as_deref(), p.port, Some(5))),
        readiness_probe: probes.and_then(|p| probe(p.readiness_path.as_deref(), p.port, None)),
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
            // The port name tells Istio the protocol (HTTP/1.1 for `http`); beyond that,
            // `appProtocol` says it too.
            ports: Some(vec![ServicePort {
                name: Some(app.service_protocol.as_str().to_owned()),
                app_protocol: (app.service_protocol != ServiceProtocol::Http)
                    .then(|| app.service_protocol.as_str().to_owned()),
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

/// One Service per version (`svc-APP-VERSION`): an HTTPRoute sends to Services, not subsets.
pub fn version_services(app: &App) -> Vec<Yaml> {
    app.versions.iter().map(|v| version_service(app, &v.name)).collect()
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

/// Header edits in a VirtualService route's shape: `headers: {request: {set: {..}, remove: [..]}}`.
fn istio_headers(edits: &HeaderEdits<'_>) -> Option<Yaml> {
    let mut request = Mapping::new();
    if !edits.set.is_empty() {
        let mut values = Mapping::new();
        for (name, value) in &edits.set {
            values.insert(name.as_str().into(), value.as_str().into());
        }
        request.insert("set".into(), Yaml::Mapping(values));
    }
    if !edits.remove.is_empty() {
        request.insert(
            "remove".into(),
            Yaml::Sequence(edits.remove.iter().map(|n| Yaml::from(*n)).collect()),
        );
    }
    (!edits.is_empty()).then(|| map! {"request" => Yaml::Mapping(request)})
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
        if let Some(ops) = istio_headers(&guard.canary_edits(version)) {
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
        if let Some(ops) = istio_headers(&guard.stable_edits(stable)) {
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
    let guard = Guard::gateway(app, tokens);
    let routes = header_routes(
        "",
        &guard,
        &names,
        &host,
        Some(app.service_port),
        app.path_prefix.as_deref(),
    );
    map! {
        "apiVersion" => "networking.istio.io/v1",
        "kind" => "VirtualService",
        "metadata" => metadata(&app.virtual_service_name(), &app.namespace, None),
        "spec" => map! {
            "hosts" => app.hosts.iter().map(|h| Yaml::from(h.as_str())).collect::<Vec<_>>(),
            "gateways" => vec![Yaml::from(app.gateway_name())],
            "http" => with_mirror(app, routes),
        },
    }
}

/// The VirtualService's HTTP routes with `mirror` and `mirrorPercentage` on every route that
/// mirrors (`mirror::for_route`).
fn with_mirror(app: &App, mut routes: Vec<Yaml>) -> Vec<Yaml> {
    for route in &mut routes {
        let serves = route
            .get("route")
            .and_then(|r| r.get(0))
            .and_then(|d| d.get("destination"))
            .and_then(|d| d.get("subset"))
            .and_then(Yaml::as_str)
            .unwrap_or_default();
        let Some(mirror) = mirror::for_route(app, serves) else {
            continue;
        };
        let (version, percent) = (mirror.version.as_str(), weight_yaml(mirror.percent));
        if let Yaml::Mapping(route) = route {
            route.insert(
                "mirror".into(),
                map! {
                    "host" => app.service_host(),
                    "subset" => version,
                    "port" => map! {"number" => app.service_port},
                },
            );
            route.insert("mirrorPercentage".into(), map! {"value" => percent});
        }
    }
    routes
}

fn subsets(versions: &[&str]) -> Vec<Yaml> {
    versions
        .iter()
        .map(|v| map! {"name" => *v, "labels" => map! {"version" => *v}})
        .collect()
}

/// A DestinationRule for `host` with one subset per version, selected by the version label.
fn destination_rule_for(name: &str, namespace: &str, host: &str, versions: &[&str]) -> Yaml {
    map! {
        "apiVersion" => "networking.istio.io/v1",
        "kind" => "DestinationRule",
        "metadata" => metadata(name, namespace, None),
        "spec" => map! {
            "host" => host,
            "subsets" => subsets(versions),
        },
    }
}

pub fn destination_rule(app: &App) -> Yaml {
    let names: Vec<&str> = app.versions.iter().map(|v| v.name.as_str()).collect();
    destination_rule_for(
        &app.destination_rule_name(),
        &app.namespace,
        &app.service_host(),
        &names,
    )
}

/// Mesh VirtualService and DestinationRule for a backend that routes by the same header.
///
/// Its canary routes require the mesh token as well as the routing header: the gateway
/// VirtualService sets that token on canary routes only and removes client copies, so a
/// spoofed routing header never reaches a backend canary, even while the filter is skipped.
pub fn dependent(app: &App, dep: &Dependent, tokens: &Tokens) -> [Yaml; 2] {
    let host = dep.host();
    let names: Vec<&str> = dep.versions.iter().map(String::as_str).collect();
    let guard = Guard::dependent(app, tokens);
    let vs = map! {
        "apiVersion" => "networking.istio.io/v1",
        "kind" => "VirtualService",
        "metadata" => metadata(&dep.virtual_service_name(), &dep.namespace, None),
        "spec" => map! {
            // No `gateways`: the default, `mesh`, applies it to sidecars calling the backend.
            "hosts" => vec![Yaml::from(host.as_str())],
            "http" => header_routes(&format!("{}-", dep.service), &guard, &names, &host, dep.port, None),
        },
    };
    let dr = destination_rule_for(&dep.destination_rule_name(), &dep.namespace, &host, &names);
    [vs, dr]
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
