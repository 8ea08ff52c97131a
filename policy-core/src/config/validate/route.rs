//! One route: its name, hosts, path prefix, headers and salt here, the rest through the modules
//! of its parts; then the checks across parts (headers that must differ).

use super::cutover::compile_cutover;
use super::fields::Fields;
use super::key_chain::key_chain_field;
use super::override_rule::compile_override;
use super::routing_token::compile_routing_token;
use super::versions::versions_field;
use crate::config::{
    token_routing_value, ConfigErrors, NoKey, Override, Route, RoutingToken, Version, DEFAULT_ROUTING_HEADER,
};
use crate::json::Value;
use crate::names::is_dns_name;

pub(super) fn compile_route(path: &str, value: &Value, errors: &mut ConfigErrors) -> Option<Route> {
    let before = errors.0.len();
    let mut fields = Fields::new(path, value, errors)?;
    let name = fields.label(
        "name (lowercase letters, digits and '-', at most 63, as Kubernetes names)",
        errors,
    );
    let hosts = hosts_field(&mut fields, errors);
    let path_prefix = path_prefix_field(&mut fields, errors);
    let routing_header = fields.header_or("routing_header", DEFAULT_ROUTING_HEADER, errors);
    let position_path = fields.child("position_header");
    let position_header = fields.header("position_header", errors);
    let salt = salt_field(&mut fields, errors);
    let versions = versions_field(&mut fields, errors);
    let key_chain = key_chain_field(&mut fields, errors);
    let no_key = no_key_field(&mut fields, errors);
    let token_path = fields.child("routing_token");
    let routing_token = fields
        .take("routing_token")
        .and_then(|v| compile_routing_token(&token_path, v, errors));
    let override_path = fields.child("override");
    let override_ = fields
        .take("override")
        .and_then(|v| compile_override(&override_path, v, &versions, routing_header.as_deref(), errors));
    let cutover_path = fields.child("cutover");
    let cutover = fields.take("cutover").and_then(|v| {
        compile_cutover(
            &cutover_path,
            v,
            &versions,
            &key_chain,
            position_header.is_some(),
            errors,
        )
    });
    fields.finish(errors);

    let headers = Headers {
        routing: routing_header.as_deref(),
        token: routing_token.as_ref(),
        override_: override_.as_ref(),
    };
    headers.check_token(&token_path, errors);
    if let Some(position) = &position_header {
        headers.check_position(&position_path, position, versions.len(), errors);
    }
    if errors.0.len() != before {
        return None;
    }
    let canary_end = versions.iter().skip(1).map(|v| v.end).max().unwrap_or(0);
    let routing_header = routing_header?;
    let versions = with_routing_values(versions, &routing_header, routing_token.as_ref());
    Some(Route {
        name: name?,
        hosts,
        path_prefix,
        routing_header,
        salt: salt?.into_bytes(),
        versions,
        key_chain,
        no_key,
        override_,
        routing_token,
        position_header,
        canary_end,
        cutover,
    })
}

/// `hosts`: required, at least one, each once.
fn hosts_field(fields: &mut Fields<'_>, errors: &mut ConfigErrors) -> Vec<String> {
    let hosts_path = fields.child("hosts");
    let mut hosts = Vec::new();
    match fields.required_array("hosts", "is required", errors) {
        None => {}
        Some([]) => errors.add(&hosts_path, "is empty: give at least one host"),
        Some(items) => {
            for (i, item) in items.iter().enumerate() {
                let host_path = format!("{hosts_path}[{i}]");
                if let Some(host) = compile_host(&host_path, item, errors) {
                    if hosts.contains(&host) {
                        errors.add(&host_path, format!("{host:?} is listed twice"));
                    } else {
                        hosts.push(host);
                    }
                }
            }
        }
    }
    hosts
}

/// One host: a DNS name, `*.` and a DNS name, or `*`; lowercased, without a trailing dot.
fn compile_host(path: &str, value: &Value, errors: &mut ConfigErrors) -> Option<String> {
    let Value::String(raw) = value else {
        errors.add(path, format!("must be a string, not {}", value.kind()));
        return None;
    };
    let host = raw.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host).to_owned();
    if host == "*" {
        return Some(host);
    }
    let name = host.strip_prefix("*.").unwrap_or(&host);
    if host.contains(':') {
        errors.add(
            path,
            format!("{raw:?} has a port: give the host name only (any port matches)"),
        );
        None
    } else if !is_dns_name(name) {
        errors.add(
            path,
            format!("{raw:?} is not a host name (letters, digits, '-' and '.', optionally starting with '*.', or '*' alone)"),
        );
        None
    } else {
        Some(host)
    }
}

/// `path_prefix`: optional; starts with `/`, no spaces, query or fragment.
fn path_prefix_field(fields: &mut Fields<'_>, errors: &mut ConfigErrors) -> Option<String> {
    let prefix_path = fields.child("path_prefix");
    let path_prefix = fields.string("path_prefix", errors);
    if let Some(p) = &path_prefix {
        if !p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'?' || b == b'#') {
            errors.add(
                &prefix_path,
                format!("{p:?} must start with '/' and hold no spaces, '?' or '#'"),
            );
        }
    }
    path_prefix
}

/// `salt`: required; no NUL, which separates salt and key in the hash.
fn salt_field(fields: &mut Fields<'_>, errors: &mut ConfigErrors) -> Option<String> {
    let salt_path = fields.child("salt");
    let salt = fields.string("salt", errors);
    if salt.as_deref().is_some_and(|s| s.contains('\0')) {
        errors.add(
            &salt_path,
            "holds a NUL character, which the hash uses as the separator between salt and key",
        );
    }
    if fields.take("salt").is_none() {
        errors.add(
            &salt_path,
            "is required (any string; changing it reshuffles every user)",
        );
    }
    salt
}

/// `no_key`: `"stable"` (the default) or `"weighted"`.
fn no_key_field(fields: &mut Fields<'_>, errors: &mut ConfigErrors) -> NoKey {
    let no_key_path = fields.child("no_key");
    match fields.string("no_key", errors).as_deref() {
        None | Some("stable") => NoKey::Stable,
        Some("weighted") => NoKey::Weighted,
        Some(other) => {
            errors.add(
                &no_key_path,
                format!("{other:?} is not one of \"stable\", \"weighted\""),
            );
            NoKey::Stable
        }
    }
}

/// The headers a route writes or reads besides the key chain's, for the checks that they differ.
struct Headers<'a> {
    routing: Option<&'a str>,
    token: Option<&'a RoutingToken>,
    override_: Option<&'a Override>,
}

impl Headers<'_> {
    /// The routing token's header is neither override header (it may be the routing header).
    fn check_token(&self, token_path: &str, errors: &mut ConfigErrors) {
        if let (Some(token), Some(rule)) = (self.token, self.override_) {
            let secret = rule.secret.as_ref().map(|s| s.header.as_str());
            if token.header == rule.header || Some(token.header.as_str()) == secret {
                errors.add(format!("{token_path}.header"), "must differ from the override headers");
            }
        }
    }

    /// The position header is none of the others, and the route has the two versions a
    /// progressive-delivery tool's weighted clusters stand for.
    fn check_position(&self, position_path: &str, position: &str, versions: usize, errors: &mut ConfigErrors) {
        let taken = [
            self.routing,
            self.token.map(|t| t.header.as_str()),
            self.override_.map(|r| r.header.as_str()),
            self.override_
                .and_then(|r| r.secret.as_ref())
                .map(|s| s.header.as_str()),
        ];
        if taken.contains(&Some(position)) {
            errors.add(
                position_path,
                "must differ from the routing, token and override headers",
            );
        }
        if versions != 2 {
            errors.add(
                position_path,
                "needs exactly two versions, stable then canary: the weighted clusters a tool manages are two",
            );
        }
    }
}

/// Each version's routing-header value: `NAME;TOKEN` when the routing token travels in the
/// routing header, the bare name otherwise (as [`super::versions`] left it).
fn with_routing_values(mut versions: Vec<Version>, routing_header: &str, token: Option<&RoutingToken>) -> Vec<Version> {
    if let Some(token) = token.filter(|t| t.header == routing_header) {
        for version in &mut versions {
            version.routing_value = token_routing_value(&version.name, &token.value);
        }
    }
    versions
}
