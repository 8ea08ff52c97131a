//! `routing`: the app's route of the filter config (salt, routing header, key chain, override,
//! routing token), built from the spec and validated by policy-core, whose field paths are
//! mapped back onto the spec's.

use serde_yaml_ng::{Mapping, Value as Yaml};

use super::fields::is_placeholder_secret;
use crate::render::spec::app::{filter_config, weight_yaml, AppVersion, Progressive, SpecErrors, TokenSettings};
use crate::render::spec::raw::{RawRouting, RawSpec};

/// What the routing section gives the app.
pub(super) struct Routing {
    pub(super) routing_header: String,
    pub(super) token: TokenSettings,
    /// The app's filter route, without its routing token (render adds it).
    pub(super) route: Mapping,
    pub(super) response_header: Option<String>,
    pub(super) exposure_log: bool,
}

/// Builds the filter route and checks it with policy-core; warns about what is allowed but
/// probably wrong (a Secure cookie without TLS, a placeholder override secret).
pub(super) fn check(
    raw: &RawSpec,
    versions: &[AppVersion],
    progressive: Option<&Progressive>,
    has_tls: bool,
    errors: &mut SpecErrors,
    warnings: &mut Vec<String>,
) -> Routing {
    let routing = &raw.routing;
    let routing_header = routing
        .routing_header
        .clone()
        .unwrap_or_else(|| policy_core::DEFAULT_ROUTING_HEADER.to_owned())
        .to_ascii_lowercase();
    let route = filter_route(raw, versions, progressive, &routing_header, errors);
    let token = check_token(routing, &routing_header, errors);
    let policy = validate(routing, &route, &token, errors);
    if let Some(policy) = &policy {
        secure_cookie_warnings(policy, has_tls, warnings);
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
    Routing {
        routing_header,
        token,
        route,
        response_header: routing.response_header.clone(),
        exposure_log: routing.exposure_log.unwrap_or(false),
    }
}

/// The app's route of the filter config, fields in their documented order.
fn filter_route(
    raw: &RawSpec,
    versions: &[AppVersion],
    progressive: Option<&Progressive>,
    routing_header: &str,
    errors: &mut SpecErrors,
) -> Mapping {
    let routing = &raw.routing;
    let mut route = Mapping::new();
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
    route.insert("routing_header".into(), routing_header.into());
    if let Some(p) = progressive {
        route.insert("position_header".into(), p.position_header.clone().into());
    }
    route.insert(
        "versions".into(),
        Yaml::Sequence(
            versions
                .iter()
                .map(|v| {
                    let mut version = map! {"name" => v.name.clone(), "weight" => weight_yaml(v.weight)};
                    if let (Some(max), Yaml::Mapping(m)) = (v.max_weight, &mut version) {
                        m.insert("max_weight".into(), weight_yaml(max));
                    }
                    version
                })
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
    if let Some(cutover) = raw.cutover.as_ref().and_then(|c| super::cutover::check(c, errors)) {
        route.insert("cutover".into(), cutover.filter_config());
    }
    route
}

/// The routing token's header and generations (its value comes from the token key).
fn check_token(routing: &RawRouting, routing_header: &str, errors: &mut SpecErrors) -> TokenSettings {
    let token_header = routing
        .token
        .as_ref()
        .and_then(|t| t.header.clone())
        // By default the token travels in the routing header's value (`VERSION;TOKEN`): one
        // header write per request instead of two (docs/security.md).
        .unwrap_or_else(|| routing_header.to_owned())
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
        if *g == 0 || *g == token_generation || token_also_accept.iter().take(i).any(|earlier| earlier == g) {
            errors.add(
                format!("routing.token.also_accept[{i}]"),
                format!("{g} is 0, the current generation or listed twice"),
            );
        }
    }
    TokenSettings {
        header: token_header,
        generation: token_generation,
        also_accept: token_also_accept,
    }
}

/// Runs the route through policy-core, with a stand-in of the real token's shape (render puts
/// the real one in); its errors come back with the spec's field paths.
fn validate(
    routing: &RawRouting,
    route: &Mapping,
    token: &TokenSettings,
    errors: &mut SpecErrors,
) -> Option<policy_core::Policy> {
    // Without a salt policy-core would only repeat the error already given.
    routing.salt.as_ref()?;
    let mut route = route.clone();
    route.insert(
        "routing_token".into(),
        map! {"header" => token.header.clone(), "value" => "0".repeat(32)},
    );
    let filter_config = filter_config(
        vec![Yaml::Mapping(route)],
        routing.response_header.as_deref(),
        routing.exposure_log.unwrap_or(false),
    );
    let filter_config_text = serde_json::to_string(&filter_config).unwrap_or_default();
    match policy_core::Policy::from_json(filter_config_text.as_bytes()) {
        Ok(p) => Some(p),
        Err(policy_errors) => {
            for e in policy_errors.0 {
                errors.add(spec_path(&e.path), e.message);
            }
            None
        }
    }
}

/// A Secure client-id cookie on a gateway that serves plain HTTP.
fn secure_cookie_warnings(policy: &policy_core::Policy, has_tls: bool, warnings: &mut Vec<String>) {
    let Some(route) = policy.routes().first() else { return };
    for key in route.key_chain() {
        if let policy_core::KeySpec::NewClientId(cookie) = key {
            if cookie.secure && !has_tls {
                warnings.push(format!(
                    "routing.key_chain: the client-id cookie {:?} is Secure but the gateway serves plain HTTP (no tls): browsers keep it only if TLS ends in front of the gateway",
                    cookie.cookie
                ));
            }
        }
    }
}

/// Maps a policy-core field path (`routes[0].versions[1].weight`) to the spec's.
fn spec_path(filter_path: &str) -> String {
    let Some(rest) = filter_path.strip_prefix("routes[0]") else {
        return match filter_path {
            "response_header" => "routing.response_header".to_owned(),
            "exposure_log" => "routing.exposure_log".to_owned(),
            other => format!("routing ({other})"),
        };
    };
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    let top = rest.split(['.', '[']).next().unwrap_or("");
    match top {
        "name" => "app".to_owned(),
        "hosts" | "path_prefix" | "versions" | "cutover" => rest.to_owned(),
        "" => "routing".to_owned(),
        "routing_token" => format!("routing.{}", rest.replacen("routing_token", "token", 1)),
        _ => format!("routing.{rest}"),
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
}
