//! `ingress: gateway-api`: the app's own Kubernetes Gateway API `Gateway` (class `istio`), an
//! `HTTPRoute` and one Service per version, instead of the add-on gateway's Istio Gateway,
//! VirtualService and DestinationRule.
//!
//! Istio deploys a gateway for each `Gateway` of class `istio` in the Gateway's namespace
//! (Deployment and LoadBalancer Service `gateway-APP-istio`) and labels its pods
//! `gateway.networking.k8s.io/gateway-name: gateway-APP`, which is what the plugin selects. The
//! HTTPRoute does what the gateway VirtualService does: requests carrying the routing header
//! and the filter's routing token go to that version's Service, everything else to stable, and
//! the token is removed before the request leaves the gateway. Fields the API server would
//! fill in from the CRD defaults (match path, header match type, group and kind of
//! references) are written out, so what `kubectl apply` stores is what was rendered.

use serde_yaml_ng::{Mapping, Value as Yaml};

use super::metadata::metadata;
use super::mirror;
use super::routing::{Guard, HeaderEdits};
use super::spec::App;
use super::token::Tokens;

pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";
const GROUP: &str = "gateway.networking.k8s.io";

/// The listener the app's HTTPRoute attaches to: `https` with TLS, else `http`.
fn serving_listener(app: &App) -> &'static str {
    if app.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// The `Gateway`: HTTP on 80, or HTTPS on 443 with the TLS Secret (and 80 for the redirect).
pub fn gateway(app: &App) -> Yaml {
    let same_namespace = map! {"namespaces" => map! {"from" => "Same"}};
    let mut listeners = Vec::new();
    let http = map! {
        "name" => "http",
        "port" => 80u32,
        "protocol" => "HTTP",
        "allowedRoutes" => same_namespace.clone(),
    };
    match &app.tls {
        None => listeners.push(http),
        Some(tls) => {
            listeners.push(map! {
                "name" => "https",
                "port" => 443u32,
                "protocol" => "HTTPS",
                // The Secret lives in the Gateway's namespace (the app's), where its pods run.
                "tls" => map! {
                    "mode" => "Terminate",
                    "certificateRefs" => vec![map! {
                        "group" => "",
                        "kind" => "Secret",
                        "name" => tls.credential_name.as_str(),
                    }],
                },
                "allowedRoutes" => same_namespace,
            });
            if tls.redirect_http {
                listeners.push(http);
            }
        }
    }
    map! {
        "apiVersion" => API_VERSION,
        "kind" => "Gateway",
        // The add-on's istiod of this revision is the one that deploys and programs it.
        "metadata" => metadata(&app.gateway_name(), &app.namespace, Some(map! {"istio.io/rev" => app.revision.as_str()})),
        "spec" => map! {
            "gatewayClassName" => "istio",
            "listeners" => listeners,
        },
    }
}

fn parent_ref(app: &App, listener: &str) -> Yaml {
    map! {
        "group" => GROUP,
        "kind" => "Gateway",
        "name" => app.gateway_name(),
        "sectionName" => listener,
    }
}

/// A reference to one version's Service, as `backendRefs` and `RequestMirror` take it.
fn backend_ref(app: &App, version: &str) -> Yaml {
    map! {
        "group" => "",
        "kind" => "Service",
        "name" => app.version_service_name(version),
        "port" => app.service_port,
    }
}

fn path_match(app: &App) -> Yaml {
    map! {"type" => "PathPrefix", "value" => app.path_prefix.as_deref().unwrap_or("/")}
}

fn exact(name: &str, value: &str) -> Yaml {
    map! {"type" => "Exact", "name" => name, "value" => value}
}

/// Header edits in an HTTPRoute rule's shape: a `RequestHeaderModifier` filter.
fn request_header_modifier(edits: &HeaderEdits<'_>) -> Option<Yaml> {
    let mut modifier = Mapping::new();
    if !edits.set.is_empty() {
        modifier.insert(
            "set".into(),
            Yaml::Sequence(
                edits
                    .set
                    .iter()
                    .map(|(name, value)| map! {"name" => name.as_str(), "value" => value.as_str()})
                    .collect(),
            ),
        );
    }
    if !edits.remove.is_empty() {
        modifier.insert(
            "remove".into(),
            Yaml::Sequence(edits.remove.iter().map(|n| Yaml::from(*n)).collect()),
        );
    }
    (!edits.is_empty())
        .then(|| map! {"type" => "RequestHeaderModifier", "requestHeaderModifier" => Yaml::Mapping(modifier)})
}

/// The `RequestMirror` filter of a rule that serves `version`, when it mirrors
/// (`mirror::for_route`). A whole percent is written as `percent`, anything finer as a
/// `fraction` of 10,000.
fn request_mirror(app: &App, version: &str) -> Option<Yaml> {
    let mirror = mirror::for_route(app, version)?;
    let mut filter = Mapping::new();
    filter.insert("backendRef".into(), backend_ref(app, &mirror.version));
    // Exact: the spec allows at most two decimals.
    let hundredths = super::weights::to_basis_points(mirror.percent).unwrap_or(0);
    if hundredths.is_multiple_of(100) {
        filter.insert("percent".into(), (hundredths / 100).into());
    } else {
        filter.insert(
            "fraction".into(),
            map! {"numerator" => hundredths, "denominator" => 10_000u32},
        );
    }
    Some(map! {"type" => "RequestMirror", "requestMirror" => Yaml::Mapping(filter)})
}

fn rule(app: &App, version: &str, matches: Vec<Yaml>, headers: Option<Yaml>) -> Yaml {
    let mut filters: Vec<Yaml> = headers.into_iter().collect();
    filters.extend(request_mirror(app, version));
    let mut rule = Mapping::new();
    rule.insert("matches".into(), Yaml::Sequence(matches));
    if !filters.is_empty() {
        rule.insert("filters".into(), Yaml::Sequence(filters));
    }
    rule.insert("backendRefs".into(), Yaml::Sequence(vec![backend_ref(app, version)]));
    Yaml::Mapping(rule)
}

/// The rules: one per canary version on the routing header and a token (one match per accepted
/// token), then stable for the rest of the path. Gateway API ranks, among matches on the same
/// path, the one with more header matches first, so a canary rule wins over stable's.
fn rules(app: &App, guard: &Guard<'_>) -> Vec<Yaml> {
    let mut rules = Vec::new();
    for version in app.versions.iter().skip(1) {
        let matches = guard
            .canary_matches(&version.name)
            .into_iter()
            .map(|pairs| {
                map! {
                    "path" => path_match(app),
                    "headers" => pairs.iter().map(|(name, value)| exact(name, value)).collect::<Vec<_>>(),
                }
            })
            .collect();
        let headers = request_header_modifier(&guard.canary_edits(&version.name));
        rules.push(rule(app, &version.name, matches, headers));
    }
    let stable = &app.stable().name;
    let headers = request_header_modifier(&guard.stable_edits(stable));
    rules.push(rule(app, stable, vec![map! {"path" => path_match(app)}], headers));
    rules
}

/// The HTTPRoute of the app, and with TLS and `redirect_http` a second one that redirects
/// plain HTTP to HTTPS.
pub fn http_routes(app: &App, tokens: &Tokens) -> Vec<Yaml> {
    let guard = Guard::gateway(app, tokens);
    let hostnames: Vec<Yaml> = app.hosts.iter().map(|h| Yaml::from(h.as_str())).collect();
    let mut routes = vec![map! {
        "apiVersion" => API_VERSION,
        "kind" => "HTTPRoute",
        "metadata" => metadata(&app.http_route_name(), &app.namespace, None),
        "spec" => map! {
            "parentRefs" => vec![parent_ref(app, serving_listener(app))],
            "hostnames" => hostnames.clone(),
            "rules" => rules(app, &guard),
        },
    }];
    if app.tls.as_ref().is_some_and(|t| t.redirect_http) {
        routes.push(map! {
            "apiVersion" => API_VERSION,
            "kind" => "HTTPRoute",
            "metadata" => metadata(&app.http_redirect_route_name(), &app.namespace, None),
            "spec" => map! {
                "parentRefs" => vec![parent_ref(app, "http")],
                "hostnames" => hostnames,
                "rules" => vec![map! {
                    "matches" => vec![map! {"path" => map! {"type" => "PathPrefix", "value" => "/"}}],
                    "filters" => vec![map! {
                        "type" => "RequestRedirect",
                        "requestRedirect" => map! {"scheme" => "https", "statusCode" => 301u32},
                    }],
                }],
            },
        });
    }
    routes
}
