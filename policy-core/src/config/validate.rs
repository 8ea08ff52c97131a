//! Validation of the filter config: reads the parsed JSON into the model's types, field by
//! field, and collects every problem with its field path instead of stopping at the first.

use super::*;
use crate::client_id::SECONDS_PER_DAY;
use crate::json::Value;

/// Where validation collects its problems.
type Errors = ConfigErrors;

/// Reads the members of one JSON object, so that unknown and duplicated
/// member names are reported once every known one has been taken.
struct Fields<'a> {
    path: String,
    members: &'a [(String, Value)],
    taken: Vec<bool>,
}

impl<'a> Fields<'a> {
    fn new(path: &str, value: &'a Value, errors: &mut Errors) -> Option<Fields<'a>> {
        match value {
            Value::Object(members) => Some(Fields {
                path: path.to_owned(),
                members,
                taken: vec![false; members.len()],
            }),
            other => {
                errors.add(path, format!("must be an object, not {}", other.kind()));
                None
            }
        }
    }

    fn child(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{}", self.path, name)
        }
    }

    fn take(&mut self, name: &str) -> Option<&'a Value> {
        let members = self.members;
        let mut found = None;
        for (i, (key, value)) in members.iter().enumerate() {
            if key == name && found.is_none() {
                if let Some(flag) = self.taken.get_mut(i) {
                    *flag = true;
                }
                found = Some(value);
            }
        }
        found
    }

    fn finish(self, errors: &mut Errors) {
        for (i, (key, _)) in self.members.iter().enumerate() {
            let path = self.child(key);
            let first = self.members.iter().position(|(k, _)| k == key) == Some(i);
            if !first {
                errors.add(&path, "is given more than once");
            } else if !self.taken.get(i).copied().unwrap_or(false) {
                errors.add(&path, "unknown field");
            }
        }
    }
}

fn string_field(fields: &mut Fields<'_>, name: &str, errors: &mut Errors) -> Option<String> {
    let path = fields.child(name);
    match fields.take(name)? {
        Value::String(s) => Some(s.clone()),
        other => {
            errors.add(&path, format!("must be a string, not {}", other.kind()));
            None
        }
    }
}

fn bool_field(fields: &mut Fields<'_>, name: &str, default: bool, errors: &mut Errors) -> bool {
    let path = fields.child(name);
    match fields.take(name) {
        None => default,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errors.add(&path, format!("must be true or false, not {}", other.kind()));
            default
        }
    }
}

/// The required `name` member, a DNS label; `what` describes it in the error ("version name (...)").
fn label_field(fields: &mut Fields<'_>, what: &str, errors: &mut Errors) -> Option<String> {
    let path = fields.child("name");
    let name = string_field(fields, "name", errors);
    match name {
        None if fields.take("name").is_none() => {
            errors.add(&path, "is required");
            None
        }
        Some(n) if !is_label(&n) => {
            errors.add(&path, format!("{n:?} is not a valid {what}"));
            None
        }
        other => other,
    }
}

fn array_field<'a>(fields: &mut Fields<'a>, name: &str, errors: &mut Errors) -> Option<&'a [Value]> {
    let path = fields.child(name);
    match fields.take(name)? {
        Value::Array(items) => Some(items),
        other => {
            errors.add(&path, format!("must be an array, not {}", other.kind()));
            None
        }
    }
}

/// RFC 9110 token characters: what header and cookie names may contain.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// A DNS-1123 label: what Istio accepts as a subset name, and safe in metric names.
pub fn is_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// Headers that carry framing, identity or our own cookies: never a routing or override header.
const RESERVED_HEADERS: &[&str] = &[
    "cookie",
    "set-cookie",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "expect",
];

fn header_name(path: &str, name: &str, errors: &mut Errors) -> Option<String> {
    if !is_token(name) {
        errors.add(
            path,
            format!("{name:?} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)"),
        );
        return None;
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        errors.add(path, format!("{name:?} is reserved by HTTP and cannot be used here"));
        return None;
    }
    Some(lower)
}

/// An optional header-name member, lowercased and checked; `default` when absent.
fn header_field(fields: &mut Fields<'_>, name: &str, default: &str, errors: &mut Errors) -> Option<String> {
    let path = fields.child(name);
    match string_field(fields, name, errors) {
        Some(h) => header_name(&path, &h, errors),
        None => Some(default.to_owned()),
    }
}

fn cookie_name(path: &str, name: &str, errors: &mut Errors) -> Option<String> {
    if is_token(name) {
        Some(name.to_owned())
    } else {
        errors.add(
            path,
            format!("{name:?} is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~ only)"),
        );
        None
    }
}

/// A lowercase DNS name (RFC 1123): at most 253 bytes of [`is_label`] labels joined by dots.
pub fn is_dns_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_label)
}

/// Converts a weight written as a JSON number to basis points, exactly.
fn weight_basis_points(text: &str) -> Result<u16, String> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => {
            let exp = unsigned.get(i + 1..).unwrap_or("");
            let exp = exp.strip_prefix('+').unwrap_or(exp);
            let exp: i64 = exp.parse().map_err(|_| format!("{text} is not a weight"))?;
            (unsigned.get(..i).unwrap_or(""), exp)
        }
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    let digits: String = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    if negative {
        return Err(format!("{text} is negative"));
    }
    // value = digits * 10^(exponent - frac_len); basis points = value * 100.
    let shift = exponent.saturating_add(2).saturating_sub(frac_part.len() as i64);
    let (kept, dropped) = if shift >= 0 {
        (digits, "")
    } else {
        let cut = digits.len() as i64 + shift;
        if cut < 0 {
            ("", digits)
        } else {
            digits.split_at(cut as usize)
        }
    };
    if dropped.bytes().any(|b| b != b'0') {
        return Err(format!(
            "{text} has more than two decimals (weights have 0.01% resolution)"
        ));
    }
    let zeros = shift.max(0);
    if kept.len() as i64 + zeros > 6 {
        return Err(format!("{text} is above 100"));
    }
    let mut value: u64 = 0;
    for b in kept.bytes() {
        value = value * 10 + u64::from(b - b'0');
    }
    for _ in 0..zeros {
        value *= 10;
    }
    if value > u64::from(TOTAL_BASIS_POINTS) {
        return Err(format!("{text} is above 100"));
    }
    Ok(value as u16)
}

/// Formats basis points as a percentage without trailing zeros (`1250` -> `12.5`).
pub fn format_percent(basis_points: u32) -> String {
    let whole = basis_points / 100;
    let frac = basis_points % 100;
    if frac == 0 {
        format!("{whole}")
    } else if frac.is_multiple_of(10) {
        format!("{whole}.{}", frac / 10)
    } else {
        format!("{whole}.{frac:02}")
    }
}

pub(super) fn compile(value: &Value, errors: &mut Errors) -> Option<Policy> {
    let mut top = Fields::new("", value, errors)?;
    let response_header = string_field(&mut top, "response_header", errors)
        .and_then(|name| header_name("response_header", &name, errors));
    let routes_value = array_field(&mut top, "routes", errors);
    if top.take("routes").is_none() {
        errors.add("routes", "is required");
    }
    top.finish(errors);

    let mut routes = Vec::new();
    if let Some(items) = routes_value {
        if items.is_empty() {
            errors.add("routes", "is empty: give at least one route");
        }
        for (i, item) in items.iter().enumerate() {
            if let Some(route) = compile_route(&format!("routes[{i}]"), item, errors) {
                routes.push(route);
            }
        }
    }
    if !errors.0.is_empty() {
        return None;
    }

    let mut policy = Policy {
        routes: Vec::new(),
        exact_hosts: HostTable::default(),
        wildcard_hosts: HostTable::default(),
        any_host: Vec::new(),
        needs_path: false,
        response_header,
        routing_headers: Vec::new(),
    };
    // (host, path prefix) -> the route that claimed it first.
    let mut taken: Vec<(&str, &str, usize)> = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        if let Some(first) = routes.iter().take(i).position(|r| r.name == route.name) {
            errors.add(
                &format!("routes[{i}].name"),
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
                    &format!("routes[{i}].hosts[{h}]"),
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
    if errors.0.is_empty() {
        Some(policy)
    } else {
        None
    }
}

fn compile_host(path: &str, value: &Value, errors: &mut Errors) -> Option<String> {
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

fn compile_route(path: &str, value: &Value, errors: &mut Errors) -> Option<Route> {
    let before = errors.0.len();
    let mut fields = Fields::new(path, value, errors)?;

    let name = label_field(
        &mut fields,
        "name (lowercase letters, digits and '-', at most 63, as Kubernetes names)",
        errors,
    );

    let hosts_path = fields.child("hosts");
    let mut hosts = Vec::new();
    match array_field(&mut fields, "hosts", errors) {
        None if fields.take("hosts").is_none() => errors.add(&hosts_path, "is required"),
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

    let prefix_path = fields.child("path_prefix");
    let path_prefix = string_field(&mut fields, "path_prefix", errors);
    if let Some(p) = &path_prefix {
        if !p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'?' || b == b'#') {
            errors.add(
                &prefix_path,
                format!("{p:?} must start with '/' and hold no spaces, '?' or '#'"),
            );
        }
    }

    let routing_header = header_field(&mut fields, "routing_header", DEFAULT_ROUTING_HEADER, errors);

    let position_path = fields.child("position_header");
    let position_header =
        string_field(&mut fields, "position_header", errors).and_then(|h| header_name(&position_path, &h, errors));

    let salt_path = fields.child("salt");
    let salt = string_field(&mut fields, "salt", errors);
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

    let versions_path = fields.child("versions");
    let versions = match array_field(&mut fields, "versions", errors) {
        None => {
            if fields.take("versions").is_none() {
                errors.add(&versions_path, "is required");
            }
            Vec::new()
        }
        Some(items) => compile_versions(&versions_path, items, errors),
    };

    let chain_path = fields.child("key_chain");
    let key_chain = match array_field(&mut fields, "key_chain", errors) {
        None => {
            if fields.take("key_chain").is_none() {
                errors.add(&chain_path, "is required");
            }
            Vec::new()
        }
        Some([]) => {
            errors.add(&chain_path, "is empty: give at least one key source");
            Vec::new()
        }
        Some(items) => compile_key_chain(&chain_path, items, errors),
    };

    let no_key_path = fields.child("no_key");
    let no_key = match string_field(&mut fields, "no_key", errors).as_deref() {
        None | Some("stable") => NoKey::Stable,
        Some("weighted") => NoKey::Weighted,
        Some(other) => {
            errors.add(
                &no_key_path,
                format!("{other:?} is not one of \"stable\", \"weighted\""),
            );
            NoKey::Stable
        }
    };

    let token_path = fields.child("routing_token");
    let routing_token = fields
        .take("routing_token")
        .and_then(|v| compile_routing_token(&token_path, v, errors));
    let override_path = fields.child("override");
    let override_ = fields
        .take("override")
        .and_then(|v| compile_override(&override_path, v, &versions, routing_header.as_deref(), errors));
    fields.finish(errors);
    if let (Some(token), Some(rule)) = (&routing_token, &override_) {
        let secret = rule.secret.as_ref().map(|s| s.header.as_str());
        if token.header == rule.header || Some(token.header.as_str()) == secret {
            errors.add(&format!("{token_path}.header"), "must differ from the override headers");
        }
    }

    if let Some(header) = &position_header {
        let taken = [
            routing_header.as_deref(),
            routing_token.as_ref().map(|t| t.header.as_str()),
            override_.as_ref().map(|r| r.header.as_str()),
            override_
                .as_ref()
                .and_then(|r| r.secret.as_ref())
                .map(|s| s.header.as_str()),
        ];
        if taken.contains(&Some(header.as_str())) {
            errors.add(
                &position_path,
                "must differ from the routing, token and override headers",
            );
        }
        if versions.len() != 2 {
            errors.add(
                &position_path,
                "needs exactly two versions, stable then canary: the weighted clusters a tool manages are two",
            );
        }
    }

    if errors.0.len() != before {
        return None;
    }
    let canary_end = versions.iter().skip(1).map(|v| v.weight).sum();
    let mut versions = versions;
    if let Some(token) = routing_token
        .as_ref()
        .filter(|t| Some(&t.header) == routing_header.as_ref())
    {
        for version in &mut versions {
            version.routing_value = token_routing_value(&version.name, &token.value);
        }
    }
    Some(Route {
        name: name?,
        hosts,
        path_prefix,
        routing_header: routing_header?,
        salt: salt?.into_bytes(),
        versions,
        key_chain,
        no_key,
        override_,
        routing_token,
        position_header,
        canary_end,
    })
}

fn compile_versions(path: &str, items: &[Value], errors: &mut Errors) -> Vec<Version> {
    if items.is_empty() {
        errors.add(path, "is empty: give at least the stable version");
        return Vec::new();
    }
    let mut versions = Vec::new();
    let mut seen_names: Vec<String> = Vec::new();
    let mut sum: u32 = 0;
    let mut all_weights = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Some(mut fields) = Fields::new(&item_path, item, errors) else {
            all_weights = false;
            continue;
        };
        let name_path = fields.child("name");
        let mut name = label_field(
            &mut fields,
            "version name (lowercase letters, digits and '-', at most 63, as Istio subset names)",
            errors,
        );
        if let Some(n) = &name {
            if seen_names.contains(n) {
                errors.add(&name_path, format!("{n:?} is listed twice"));
                name = None;
            } else {
                seen_names.push(n.clone());
            }
        }
        let weight_path = fields.child("weight");
        let weight = match fields.take("weight") {
            None => {
                errors.add(
                    &weight_path,
                    "is required (a percentage, 0 to 100, at most two decimals)",
                );
                None
            }
            Some(Value::Number(text)) => match weight_basis_points(text) {
                Ok(bp) => Some(bp),
                Err(message) => {
                    errors.add(&weight_path, message);
                    None
                }
            },
            Some(other) => {
                errors.add(&weight_path, format!("must be a number, not {}", other.kind()));
                None
            }
        };
        fields.finish(errors);
        match weight {
            Some(w) => sum += u32::from(w),
            None => all_weights = false,
        }
        if let (Some(name), Some(weight)) = (name, weight) {
            versions.push(Version {
                routing_value: name.clone(),
                name,
                weight,
                start: 0,
                end: 0,
            });
        }
    }
    if all_weights && sum != u32::from(TOTAL_BASIS_POINTS) {
        errors.add(path, format!("weights sum to {}, not 100", format_percent(sum)));
    }
    // Canaries take consecutive ranges from bucket 0 in listed order; stable takes the rest.
    let mut next: u16 = 0;
    for version in versions.iter_mut().skip(1) {
        version.start = next;
        next = next.saturating_add(version.weight);
        version.end = next;
    }
    if let Some(stable) = versions.first_mut() {
        stable.start = next;
        stable.end = TOTAL_BASIS_POINTS;
    }
    versions
}

fn compile_key_chain(path: &str, items: &[Value], errors: &mut Errors) -> Vec<KeySpec> {
    let mut chain = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let spec = match item {
            Value::String(s) if s == "client_address" => Some(KeySpec::ClientAddress),
            Value::Object(members) if members.len() == 1 => {
                let Some((kind, inner)) = members.first() else {
                    continue;
                };
                let inner_path = format!("{item_path}.{kind}");
                match (kind.as_str(), inner) {
                    ("cookie", Value::String(name)) => cookie_name(&inner_path, name, errors).map(KeySpec::Cookie),
                    ("header", Value::String(name)) => header_name(&inner_path, name, errors).map(KeySpec::Header),
                    ("identity_header", Value::String(name)) => {
                        header_name(&inner_path, name, errors).map(KeySpec::IdentityHeader)
                    }
                    ("new_client_id", settings) => {
                        compile_new_client_id(&inner_path, settings, errors).map(KeySpec::NewClientId)
                    }
                    ("cookie" | "header" | "identity_header", other) => {
                        errors.add(
                            &inner_path,
                            format!("must be a string (the name), not {}", other.kind()),
                        );
                        None
                    }
                    _ => {
                        errors.add(
                            &inner_path,
                            "unknown key source (cookie, header, identity_header, new_client_id or \"client_address\")",
                        );
                        None
                    }
                }
            }
            _ => {
                errors.add(
                    &item_path,
                    "must be {\"cookie\": NAME}, {\"header\": NAME}, {\"identity_header\": NAME}, {\"new_client_id\": {...}} or \"client_address\"",
                );
                None
            }
        };
        let Some(spec) = spec else { continue };
        if chain.contains(&spec) {
            errors.add(&item_path, "repeats an earlier key source");
            continue;
        }
        if let Some(last) = chain.last() {
            if matches!(last, KeySpec::NewClientId(_) | KeySpec::ClientAddress) {
                errors.add(
                    &item_path,
                    "can never be reached: new_client_id and client_address always yield a key, so they must come last",
                );
                continue;
            }
        }
        chain.push(spec);
    }
    chain
}

fn compile_new_client_id(path: &str, value: &Value, errors: &mut Errors) -> Option<NewClientId> {
    let before = errors.0.len();
    let mut fields = Fields::new(path, value, errors)?;
    let cookie_path = fields.child("cookie");
    let cookie = match string_field(&mut fields, "cookie", errors) {
        Some(name) => cookie_name(&cookie_path, &name, errors),
        None => Some("sticky-canary-id".to_owned()),
    };
    let cookie_path_attr = fields.child("path");
    let path_attr = string_field(&mut fields, "path", errors).unwrap_or_else(|| "/".to_owned());
    if !path_attr.starts_with('/')
        || path_attr
            .bytes()
            .any(|b| b < 0x20 || b == 0x7f || b == b';' || b >= 0x80)
    {
        errors.add(
            &cookie_path_attr,
            format!("{path_attr:?} must start with '/' and hold no ';' or control characters"),
        );
    }
    let domain_path = fields.child("domain");
    let domain = string_field(&mut fields, "domain", errors);
    if let Some(d) = &domain {
        if !is_dns_name(d.strip_prefix('.').unwrap_or(d)) {
            errors.add(&domain_path, format!("{d:?} is not a domain name"));
        }
    }
    let age_path = fields.child("max_age_seconds");
    let errors_before_age = errors.0.len();
    let max_age_seconds = match fields.take("max_age_seconds") {
        None => 30 * 24 * 3600,
        Some(Value::Number(text)) => match text.parse::<u64>() {
            Ok(n) if n <= MAX_COOKIE_AGE_SECONDS => n,
            Ok(n) => {
                errors.add(
                    &age_path,
                    format!("{n} is above {MAX_COOKIE_AGE_SECONDS} (400 days, what browsers allow)"),
                );
                0
            }
            Err(_) => {
                errors.add(&age_path, format!("{text} is not a whole number of seconds"));
                0
            }
        },
        Some(other) => {
            errors.add(&age_path, format!("must be a number, not {}", other.kind()));
            0
        }
    };
    let refresh_path = fields.child("refresh_after_days");
    let refresh_after_days = match fields.take("refresh_after_days") {
        None => 1,
        Some(Value::Number(text)) => match text.parse::<u32>() {
            Ok(0) => {
                errors.add(&refresh_path, "must be at least 1 (a day)");
                1
            }
            Ok(days) if errors.0.len() == errors_before_age && u64::from(days) * SECONDS_PER_DAY >= max_age_seconds => {
                errors.add(
                    &refresh_path,
                    format!(
                        "{days} day(s) is not shorter than max_age_seconds ({max_age_seconds} s): the cookie would expire before its refresh"
                    ),
                );
                1
            }
            Ok(days) => days,
            Err(_) => {
                errors.add(&refresh_path, format!("{text} is not a whole number of days"));
                1
            }
        },
        Some(other) => {
            errors.add(&refresh_path, format!("must be a number, not {}", other.kind()));
            1
        }
    };
    let http_only = bool_field(&mut fields, "http_only", true, errors);
    let secure = bool_field(&mut fields, "secure", true, errors);
    let same_site_path = fields.child("same_site");
    let same_site = match string_field(&mut fields, "same_site", errors).as_deref() {
        None | Some("Lax") => SameSite::Lax,
        Some("Strict") => SameSite::Strict,
        Some("None") => SameSite::None,
        Some(other) => {
            errors.add(
                &same_site_path,
                format!("{other:?} is not one of \"Strict\", \"Lax\", \"None\""),
            );
            SameSite::Lax
        }
    };
    if same_site == SameSite::None && !secure {
        errors.add(
            &same_site_path,
            "\"None\" needs secure: true (browsers drop the cookie otherwise)",
        );
    }
    fields.finish(errors);
    if errors.0.len() != before {
        return None;
    }
    let mut attributes = format!("; Path={path_attr}");
    if let Some(d) = &domain {
        attributes.push_str("; Domain=");
        attributes.push_str(d);
    }
    attributes.push_str(&format!("; Max-Age={max_age_seconds}"));
    if http_only {
        attributes.push_str("; HttpOnly");
    }
    if secure {
        attributes.push_str("; Secure");
    }
    attributes.push_str("; SameSite=");
    attributes.push_str(same_site.as_str());
    Some(NewClientId {
        cookie: cookie?,
        path: path_attr,
        domain,
        max_age_seconds,
        http_only,
        secure,
        same_site,
        refresh_after_days,
        attributes,
    })
}

fn compile_override(
    path: &str,
    value: &Value,
    versions: &[Version],
    routing_header: Option<&str>,
    errors: &mut Errors,
) -> Option<Override> {
    let before = errors.0.len();
    let mut fields = Fields::new(path, value, errors)?;
    let header_path = fields.child("header");
    let header = header_field(&mut fields, "header", "x-canary-force", errors);
    if header.is_some() && header.as_deref() == routing_header {
        errors.add(&header_path, "must differ from the routing header");
    }
    let allow_path = fields.child("allow");
    let mut allow = Vec::new();
    match array_field(&mut fields, "allow", errors) {
        None if fields.take("allow").is_none() => {
            errors.add(&allow_path, "is required: the versions testers may force")
        }
        None => {}
        Some([]) => errors.add(&allow_path, "is empty: list the versions testers may force"),
        Some(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{allow_path}[{i}]");
                match item {
                    Value::String(name) => match versions.iter().position(|v| &v.name == name) {
                        Some(index) if allow.contains(&index) => {
                            errors.add(&item_path, format!("{name:?} is listed twice"))
                        }
                        Some(index) => allow.push(index),
                        None => errors.add(&item_path, format!("{name:?} is not one of this route's versions")),
                    },
                    other => errors.add(&item_path, format!("must be a string, not {}", other.kind())),
                }
            }
        }
    }
    let secret_header_path = fields.child("secret_header");
    let secret_header =
        string_field(&mut fields, "secret_header", errors).and_then(|h| header_name(&secret_header_path, &h, errors));
    let secret_path = fields.child("secret");
    let secret = string_field(&mut fields, "secret", errors);
    fields.finish(errors);
    let secret = match (secret_header, secret) {
        (Some(header), Some(value)) => {
            if value.len() < 16 {
                errors.add(&secret_path, "is shorter than 16 characters: too easy to guess");
            }
            Some(OverrideSecret {
                header,
                value: value.into_bytes(),
            })
        }
        (Some(_), None) => {
            errors.add(&secret_path, "is required when secret_header is set");
            None
        }
        (None, Some(_)) => {
            errors.add(&secret_header_path, "is required when secret is set");
            None
        }
        (None, None) => None,
    };
    if let (Some(h), Some(s)) = (&header, &secret) {
        if h == &s.header {
            errors.add(&secret_header_path, "must differ from the override header");
        }
    }
    if errors.0.len() != before {
        return None;
    }
    Some(Override {
        header: header?,
        allow,
        secret,
    })
}

/// The routing token. Its header may be the routing header itself: the token then travels in
/// that header's value (`VERSION;TOKEN`), one header write instead of two.
fn compile_routing_token(path: &str, value: &Value, errors: &mut Errors) -> Option<RoutingToken> {
    let before = errors.0.len();
    let mut fields = Fields::new(path, value, errors)?;
    let header = header_field(&mut fields, "header", DEFAULT_TOKEN_HEADER, errors);
    let value_path = fields.child("value");
    let token = string_field(&mut fields, "value", errors);
    match &token {
        None if fields.take("value").is_none() => errors.add(&value_path, "is required"),
        Some(t) if t.len() < 16 => errors.add(&value_path, "is shorter than 16 characters: too easy to guess"),
        Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => errors.add(
            &value_path,
            "may hold visible ASCII characters only (it is a header value matched exactly)",
        ),
        _ => {}
    }
    fields.finish(errors);
    if errors.0.len() != before {
        return None;
    }
    Some(RoutingToken {
        header: header?,
        value: token?,
    })
}
