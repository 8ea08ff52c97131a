//! Validation of the filter config: reads the parsed JSON into the model's types, field by
//! field, and collects every problem with its field path instead of stopping at the first.
//!
//! This file reads the document and indexes its routes by host; the child modules read the
//! parts: [`fields`] one object's members, [`route`] a route, and the route's versions, key
//! chain, override and routing token in modules of those names.

mod cutover;
mod fields;
mod key_chain;
mod override_rule;
mod route;
mod routing_token;
mod versions;

use crate::config::{ConfigErrors, HostTable, Policy, Route};
use crate::json::Value;
use fields::Fields;

/// The whole document: `response_header`, `exposure_log` and `routes`.
pub(super) fn compile(value: &Value, errors: &mut ConfigErrors) -> Option<Policy> {
    let mut top = Fields::new("", value, errors)?;
    let response_header = top.header("response_header", errors);
    let exposure_log = top.bool("exposure_log", false, errors);
    let routes_value = top.required_array("routes", "is required", errors);
    top.finish(errors);

    let mut routes = Vec::new();
    if let Some(items) = routes_value {
        if items.is_empty() {
            errors.add("routes", "is empty: give at least one route");
        }
        for (i, item) in items.iter().enumerate() {
            if let Some(route) = route::compile_route(&format!("routes[{i}]"), item, errors) {
                routes.push(route);
            }
        }
    }
    if !errors.is_empty() {
        return None;
    }
    let mut policy = index_routes(routes, response_header, errors);
    policy.exposure_log = exposure_log;
    if errors.is_empty() {
        Some(policy)
    } else {
        None
    }
}

/// The policy over valid routes: each host's routes in the order they are tried, every routing
/// header once. Reports what only the routes together can get wrong: a name used twice, or a
/// host and path prefix an earlier route already serves.
fn index_routes(routes: Vec<Route>, response_header: Option<String>, errors: &mut ConfigErrors) -> Policy {
    let mut policy = Policy {
        routes: Vec::new(),
        exact_hosts: HostTable::default(),
        wildcard_hosts: HostTable::default(),
        any_host: Vec::new(),
        needs_path: false,
        response_header,
        exposure_log: false,
        routing_headers: Vec::new(),
    };
    // (host, path prefix) -> the route that claimed it first.
    let mut taken: Vec<(&str, &str, usize)> = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        if let Some(first) = routes.iter().take(i).position(|r| r.name == route.name) {
            errors.add(
                format!("routes[{i}].name"),
                format!("{:?} is already the name of routes[{first}]", route.name),
            );
        }
        let prefix = route.path_prefix.as_deref().unwrap_or_default();
        for (h, host) in route.hosts.iter().enumerate() {
            let claimed = taken
                .iter()
                .find(|(t_host, t_prefix, _)| t_host == host && *t_prefix == prefix);
            if let Some(&(_, _, first)) = claimed {
                errors.add(
                    format!("routes[{i}].hosts[{h}]"),
                    format!("{host:?} with this path prefix is already served by routes[{first}], so this route would never match"),
                );
            } else {
                taken.push((host, prefix, i));
            }
            if host == "*" {
                policy.any_host.push(i);
            } else if let Some(suffix) = host.strip_prefix('*') {
                policy.wildcard_hosts.add(suffix.as_bytes(), i);
            } else {
                policy.exact_hosts.add(host.as_bytes(), i);
            }
        }
        policy.needs_path |= route.path_prefix.is_some();
        if !policy.routing_headers.contains(&route.routing_header) {
            policy.routing_headers.push(route.routing_header.clone());
        }
    }
    // Within one host, a longer path prefix is more specific: try it first.
    for list in policy
        .exact_hosts
        .lists_mut()
        .chain(policy.wildcard_hosts.lists_mut())
        .chain(core::iter::once(&mut policy.any_host))
    {
        list.sort_by_key(|&r| {
            let len = routes
                .get(r)
                .and_then(|route| route.path_prefix.as_ref())
                .map_or(0, String::len);
            core::cmp::Reverse(len)
        });
        list.dedup();
    }
    policy.routes = routes;
    policy
}
