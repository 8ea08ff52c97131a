//! Traffic mirroring (`mirror: {version, percent}` in the spec): copies of requests sent to one
//! version, whose answers the gateway drops.
//!
//! Envoy's router sends the copy itself (`request_mirror_policies`), after the HTTP filters ran
//! once for the user's request: our filter assigns, counts and sets its cookie once, on the
//! user's request, and the user's answer always comes from the version the filter assigned.
//! The copy goes to the mirror version's pods with `-shadow` appended to its host, which no
//! filter route owns. Only routes that serve another version mirror, so a user already on the
//! mirror version is not served twice by it.

use serde_yaml_ng::{Mapping, Value as Yaml};

use super::spec::App;

/// The VirtualService's HTTP routes with `mirror` and `mirrorPercentage` added to every route
/// whose destination is not the mirror version.
pub fn on_virtual_service_routes(app: &App, mut routes: Vec<Yaml>) -> Vec<Yaml> {
    let Some(mirror) = &app.mirror else { return routes };
    for route in &mut routes {
        let serves = route
            .get("route")
            .and_then(|r| r.get(0))
            .and_then(|d| d.get("destination"))
            .and_then(|d| d.get("subset"))
            .and_then(Yaml::as_str)
            .map(str::to_owned);
        if serves.as_deref() == Some(mirror.version.as_str()) {
            continue;
        }
        if let Yaml::Mapping(route) = route {
            route.insert(
                "mirror".into(),
                map! {
                    "host" => app.service_host(),
                    "subset" => mirror.version.as_str(),
                    "port" => map! {"number" => app.service_port},
                },
            );
            route.insert(
                "mirrorPercentage".into(),
                map! {"value" => super::spec::weight_yaml(mirror.percent)},
            );
        }
    }
    routes
}

/// The HTTPRoute `RequestMirror` filter for a rule that serves `version`, when it mirrors.
/// A whole percent is written as `percent`, anything finer as a `fraction` of 10,000.
pub fn http_route_filter(app: &App, version: &str) -> Option<Yaml> {
    let mirror = app.mirror.as_ref().filter(|m| m.version != version)?;
    let mut filter = Mapping::new();
    filter.insert(
        "backendRef".into(),
        super::gateway_api::backend_ref(app, &mirror.version),
    );
    let hundredths = (mirror.percent * 100.0).round() as u32;
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
