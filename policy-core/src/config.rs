//! The filter config: JSON in, a validated [`Policy`] out, or every error at once.
//!
//! The reference is docs/config.md. Validation never stops at the first
//! problem: each error names its field path (`routes[0].versions[1].weight`)
//! and what is wrong with it, so one `sticky-canary check` run shows them all.
//! What comes out cannot hold an invalid state: weights are basis points that
//! sum to 10000, names are already lowercased tokens, Set-Cookie attributes are
//! pre-rendered.
//!
//! ```
//! let policy = policy_core::Policy::from_json(br#"{
//!   "routes": [{
//!     "name": "my-app",
//!     "hosts": ["app.example.com"],
//!     "salt": "my-app-2026",
//!     "versions": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}],
//!     "key_chain": [{"cookie": "session"}]
//!   }]
//! }"#).unwrap();
//! assert_eq!(policy.routes()[0].versions()[1].weight_basis_points(), 1000);
//!
//! let errors = policy_core::Policy::from_json(br#"{"routes": [{"name": "x", "hosts": ["a.b"],
//!   "versions": [{"name": "v1", "weight": 120}], "key_chain": [], "colour": 1}]}"#).unwrap_err();
//! let text = errors.to_string();
//! assert!(text.contains("routes[0].versions[0].weight: 120 is above 100"));
//! assert!(text.contains("routes[0].key_chain: is empty"));
//! assert!(text.contains("routes[0].colour: unknown field"));
//! ```

use std::fmt;

use crate::client_id::SECONDS_PER_DAY;
use crate::json::{self, Value};

/// The routing header used when a route does not name one.
pub const DEFAULT_ROUTING_HEADER: &str = "x-canary-version";
/// Basis points in 100%: weights are kept at 0.01% resolution.
pub const TOTAL_BASIS_POINTS: u16 = 10_000;
/// Browsers cap cookie lifetimes at 400 days; a longer Max-Age only misleads.
pub const MAX_COOKIE_AGE_SECONDS: u64 = 400 * 24 * 3600;

/// One validation problem: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Field path such as `routes[0].versions[1].weight`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// What to do when no key source yields a key and no client id is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoKey {
    /// Serve the stable version (the default: an unmarked request never lands on a canary).
    Stable,
    /// Pick per request by weight, as plain Istio weights do (no stickiness).
    Weighted,
}

/// SameSite attribute of the issued client-id cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// Settings of the client-id cookie issued to clients that bring no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClientId {
    pub cookie: String,
    pub path: String,
    pub domain: Option<String>,
    pub max_age_seconds: u64,
    pub http_only: bool,
    pub secure: bool,
    pub same_site: SameSite,
    /// A request on a day at least this many days after the cookie's stamp sets it again
    /// (same id, today's stamp, full Max-Age): the sliding refresh.
    pub refresh_after_days: u32,
    /// `; Path=/; Max-Age=...` etc., rendered once at configure time.
    pub(crate) attributes: String,
}

impl NewClientId {
    /// The Set-Cookie value for a client id (32 hex digits), stamped with `today` when the
    /// filter knows the date: `NAME=ID.DAY; Path=...` (`NAME=ID; ...` without it).
    pub fn set_cookie(&self, id: &str, today: Option<u32>) -> String {
        let mut out = String::with_capacity(self.cookie.len() + 1 + id.len() + 11 + self.attributes.len());
        out.push_str(&self.cookie);
        out.push('=');
        out.push_str(id);
        if let Some(day) = today {
            out.push('.');
            out.push_str(&day.to_string());
        }
        out.push_str(&self.attributes);
        out
    }
}

/// One link of a route's key chain, tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// The value of this cookie (case-sensitive name).
    Cookie(String),
    /// The value of this request header (lowercased name).
    Header(String),
    /// The id of a logged-in user, from a header a trusted layer sets before the filter
    /// (lowercased name). Hashed as a derived id, and issued as the client-id cookie when the
    /// chain has one, so the user keeps the version after logging out.
    IdentityHeader(String),
    /// The client-id cookie: when present it decides ahead of every other source; when absent
    /// and nothing else decides, a new random id is issued as that cookie.
    NewClientId(NewClientId),
    /// The downstream client address (a weak key: NAT and proxies share addresses).
    ClientAddress,
}

/// The tester override: `header: VERSION` honoured for allow-listed versions only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub header: String,
    /// Indices into the route's versions.
    pub allow: Vec<usize>,
    /// When set, the request must also carry `secret_header: secret`.
    pub secret: Option<OverrideSecret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideSecret {
    pub header: String,
    pub value: Vec<u8>,
}

/// A second header the filter sets on every routed request, holding a value clients do not
/// know. The generated VirtualService's canary routes require it, so a client that sends the
/// routing header itself (possible only while the filter is skipped, e.g. under FAIL_OPEN)
/// still lands on stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingToken {
    pub header: String,
    pub value: String,
}

/// The routing token header used when the config does not name one.
pub const DEFAULT_TOKEN_HEADER: &str = "x-canary-token";

/// A version of the app and its share of the traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub(crate) name: String,
    pub(crate) weight: u16,
    /// Buckets `[start, end)` that this version serves (stable: the rest, up to 9999).
    pub(crate) start: u16,
    pub(crate) end: u16,
}

impl Version {
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The weight in 0.01% units: 10000 is 100%.
    pub fn weight_basis_points(&self) -> u16 {
        self.weight
    }
    /// The buckets this version serves, `[start, end)`.
    pub fn buckets(&self) -> (u16, u16) {
        (self.start, self.end)
    }
}

/// A validated route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub(crate) name: String,
    pub(crate) hosts: Vec<String>,
    pub(crate) path_prefix: Option<String>,
    pub(crate) routing_header: String,
    pub(crate) salt: Vec<u8>,
    pub(crate) versions: Vec<Version>,
    pub(crate) key_chain: Vec<KeySpec>,
    pub(crate) no_key: NoKey,
    pub(crate) override_: Option<Override>,
    pub(crate) routing_token: Option<RoutingToken>,
    /// When Flagger or Argo Rollouts own the weights: the header that carries the user's
    /// position for Envoy's weighted clusters (docs/assignment.md §5), instead of the routing header.
    pub(crate) position_header: Option<String>,
    /// End of the canary bucket ranges: buckets at or above it are stable.
    pub(crate) canary_end: u16,
}

impl Route {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
    pub fn path_prefix(&self) -> Option<&str> {
        self.path_prefix.as_deref()
    }
    /// The header the filter sets (lowercase).
    pub fn routing_header(&self) -> &str {
        &self.routing_header
    }
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }
    /// Versions in config order; the first is stable.
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }
    pub fn key_chain(&self) -> &[KeySpec] {
        &self.key_chain
    }
    /// The client-id cookie settings, when the chain has `new_client_id` (always its last entry).
    pub fn client_id(&self) -> Option<&NewClientId> {
        match self.key_chain.last() {
            Some(KeySpec::NewClientId(settings)) => Some(settings),
            _ => None,
        }
    }
    pub fn no_key(&self) -> NoKey {
        self.no_key
    }
    pub fn override_rule(&self) -> Option<&Override> {
        self.override_.as_ref()
    }
    /// The token header and value set beside the routing header, if configured.
    pub fn routing_token(&self) -> Option<&RoutingToken> {
        self.routing_token.as_ref()
    }
    /// The position header, when a progressive-delivery tool owns this route's weights: the
    /// filter then writes the user's position there, and neither the routing header nor the token.
    pub fn position_header(&self) -> Option<&str> {
        self.position_header.as_deref()
    }
    /// Index of the version with this name.
    pub fn version_index(&self, name: &str) -> Option<usize> {
        self.versions.iter().position(|v| v.name == name)
    }
}

/// Host (lowercase bytes) -> route indices, sorted by host. A sorted Vec keeps
/// lookups O(log n) like a map, at a fraction of a BTreeMap's wasm size.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct HostTable(Vec<(Vec<u8>, Vec<usize>)>);

impl HostTable {
    pub(crate) fn get(&self, host: &[u8]) -> Option<&[usize]> {
        let i = self.0.binary_search_by(|(key, _)| key.as_slice().cmp(host)).ok()?;
        self.0.get(i).map(|(_, routes)| routes.as_slice())
    }

    fn add(&mut self, host: &[u8], route: usize) {
        match self.0.binary_search_by(|(key, _)| key.as_slice().cmp(host)) {
            Ok(i) => {
                if let Some((_, routes)) = self.0.get_mut(i) {
                    routes.push(route);
                }
            }
            Err(i) => self.0.insert(i, (host.to_vec(), vec![route])),
        }
    }

    fn lists_mut(&mut self) -> impl Iterator<Item = &mut Vec<usize>> {
        self.0.iter_mut().map(|(_, routes)| routes)
    }
}

/// A validated config: the routes and how to find them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub(crate) routes: Vec<Route>,
    /// Exact host -> route indices, sorted by host for binary search.
    pub(crate) exact_hosts: HostTable,
    /// Wildcard suffix (with its leading dot, `.example.com`) -> route indices, sorted likewise.
    pub(crate) wildcard_hosts: HostTable,
    /// Routes with host `*`.
    pub(crate) any_host: Vec<usize>,
    pub(crate) needs_path: bool,
    pub(crate) response_header: Option<String>,
    pub(crate) routing_headers: Vec<String>,
}

impl Policy {
    /// Parses and validates a config document.
    pub fn from_json(input: &[u8]) -> Result<Policy, ConfigErrors> {
        let value = json::parse(input).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: e.to_string(),
            }])
        })?;
        let mut errors = Errors::default();
        let policy = compile(&value, &mut errors);
        match policy {
            Some(policy) if errors.0.is_empty() => Ok(policy),
            _ => Err(ConfigErrors(errors.0)),
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Whether any route has a path prefix (so the filter must read `:path`).
    pub fn needs_path(&self) -> bool {
        self.needs_path
    }

    /// The optional response header that echoes the version served (for debugging and demos).
    pub fn response_header(&self) -> Option<&str> {
        self.response_header.as_deref()
    }

    /// Every distinct routing header name. (The filter leaves requests on no route untouched:
    /// on a shared gateway they belong to other apps, whose VirtualServices require the token.)
    pub fn routing_headers(&self) -> &[String] {
        &self.routing_headers
    }
}

#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.to_owned(),
            message: message.into(),
        });
    }
}

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

/// Checks a DNS name made of labels of letters, digits and hyphens.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
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

fn compile(value: &Value, errors: &mut Errors) -> Option<Policy> {
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
        .chain(std::iter::once(&mut policy.any_host))
    {
        list.sort_by_key(|&r| {
            let len = routes
                .get(r)
                .and_then(|route| route.path_prefix.as_ref())
                .map_or(0, String::len);
            std::cmp::Reverse(len)
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
        .and_then(|v| compile_routing_token(&token_path, v, routing_header.as_deref(), errors));
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

fn compile_routing_token(
    path: &str,
    value: &Value,
    routing_header: Option<&str>,
    errors: &mut Errors,
) -> Option<RoutingToken> {
    let before = errors.0.len();
    let mut fields = Fields::new(path, value, errors)?;
    let header_path = fields.child("header");
    let header = header_field(&mut fields, "header", DEFAULT_TOKEN_HEADER, errors);
    if header.is_some() && header.as_deref() == routing_header {
        errors.add(&header_path, "must differ from the routing header");
    }
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
