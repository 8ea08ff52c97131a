//! The filter config's model: the validated types a [`Policy`] is made of. JSON goes in
//! through [`Policy::from_json`]; `validate` (the child module) reads it into these types, or
//! collects every error at once.
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

use core::fmt;

use crate::json;

mod validate;

use validate::compile;

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

/// Every problem found in one config, in document order. Validation collects into one of
/// these (policy-core's config reader and the CLI's spec checks alike) instead of stopping at
/// the first problem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Records one problem at a field path (`routes[0].versions[1].weight`; empty: the whole document).
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Whether no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

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

impl core::error::Error for ConfigErrors {}

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
        self.set_cookie_with_times(id, today, None)
    }

    /// Like [`NewClientId::set_cookie`], with a cut-over's two times (Unix seconds) after the
    /// stamp: `NAME=ID.DAY.ISSUED.SEEN; ...` (docs/assignment.md §6). The times are written only
    /// with a stamp.
    pub fn set_cookie_with_times(&self, id: &str, today: Option<u32>, times: Option<(u64, u64)>) -> String {
        let mut out = String::with_capacity(self.cookie.len() + 1 + id.len() + 37 + self.attributes.len());
        out.push_str(&self.cookie);
        out.push('=');
        out.push_str(id);
        if let Some(day) = today {
            out.push('.');
            push_decimal(&mut out, u64::from(day));
            if let Some((issued, seen)) = times {
                out.push('.');
                push_decimal(&mut out, issued);
                out.push('.');
                push_decimal(&mut out, seen);
            }
        }
        out.push_str(&self.attributes);
        out
    }
}

/// A blue/green cut-over with session drain (docs/assignment.md §6): from `start`, users new to
/// the route go to `to`, users who had an assignment keep it until idle for `idle_seconds`, and
/// from `deadline` everyone is on `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cutover {
    /// Index of the version everyone ends on.
    pub to: usize,
    /// Unix seconds.
    pub start: u64,
    /// Unix seconds, after `start`.
    pub deadline: u64,
    pub idle_seconds: u64,
}

/// Appends `n` in decimal without the formatting machinery (once per new client).
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    out.push_str(core::str::from_utf8(digits.get(start..).unwrap_or_default()).unwrap_or_default());
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
    /// A canary's declared maximum (basis points): its slot, so that later canaries keep their
    /// buckets while this one ramps (docs/assignment.md §2).
    pub(crate) max_weight: Option<u16>,
    /// Buckets `[start, end)` that this version serves (a canary; stable serves every bucket
    /// no canary serves, and keeps here where the canaries' slots end and 10000).
    pub(crate) start: u16,
    pub(crate) end: u16,
    /// What the filter writes into the routing header for this version: the name, or
    /// `NAME;TOKEN` when the routing token travels in the routing header.
    pub(crate) routing_value: String,
}

/// Between a version name and the routing token when the token travels in the routing header.
/// Version names are DNS labels, so the first `;` always ends the name.
pub const TOKEN_SEPARATOR: char = ';';

/// The routing header's value for `version` when the routing token travels in that header:
/// `VERSION;TOKEN`. The filter writes it; the generated routes match it exactly.
pub fn token_routing_value(version: &str, token: &str) -> String {
    format!("{version}{TOKEN_SEPARATOR}{token}")
}

impl Version {
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The routing header's value for this version: its name, followed by `;` and the routing
    /// token when the route's token travels in the routing header (`routing_token.header` is the
    /// routing header), so that one header write carries both.
    pub fn routing_value(&self) -> &str {
        &self.routing_value
    }
    /// The weight in 0.01% units: 10000 is 100%.
    pub fn weight_basis_points(&self) -> u16 {
        self.weight
    }
    /// The declared maximum weight in basis points, if any.
    pub fn max_weight_basis_points(&self) -> Option<u16> {
        self.max_weight
    }
    /// For a canary, the buckets it serves, `[start, end)`. For stable, `[end of the canaries'
    /// slots, 10000)`: stable also serves the unused part of each slot.
    pub fn buckets(&self) -> (u16, u16) {
        (self.start, self.end)
    }
    /// The buckets this canary's slot reserves: `max_weight`, or the weight when none is declared.
    pub(crate) fn slot(&self) -> u16 {
        self.max_weight.unwrap_or(self.weight)
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
    /// A blue/green cut-over in progress, if any.
    pub(crate) cutover: Option<Cutover>,
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
    /// The key sources this route's decisions can report, in a fixed order: `override` when an
    /// override is configured, each source of the chain (`new_client_id` reports `new_id` on the
    /// request that issues the id and `cookie` afterwards), and always `none`. The filter defines
    /// a counter for exactly these, and the rendered Prometheus rules read exactly these.
    pub fn key_sources(&self) -> Vec<crate::KeySource> {
        use crate::KeySource;
        let mut sources = Vec::new();
        let mut add = |s: KeySource| {
            if !sources.contains(&s) {
                sources.push(s);
            }
        };
        if self.override_.is_some() {
            add(KeySource::Override);
        }
        for spec in &self.key_chain {
            match spec {
                KeySpec::Cookie(_) => add(KeySource::Cookie),
                KeySpec::Header(_) => add(KeySource::Header),
                KeySpec::IdentityHeader(_) => add(KeySource::Identity),
                KeySpec::NewClientId(_) => {
                    add(KeySource::Cookie);
                    add(KeySource::NewId);
                }
                KeySpec::ClientAddress => add(KeySource::Address),
            }
        }
        add(KeySource::None);
        sources
    }
    pub fn override_rule(&self) -> Option<&Override> {
        self.override_.as_ref()
    }
    /// The routing token, if configured: a header set beside the routing header, or, when its
    /// header is the routing header, carried in the routing header's value
    /// ([`Version::routing_value`]).
    pub fn routing_token(&self) -> Option<&RoutingToken> {
        self.routing_token.as_ref()
    }
    /// The routing token when it needs a header of its own (not carried in the routing header).
    pub fn separate_routing_token(&self) -> Option<&RoutingToken> {
        self.routing_token
            .as_ref()
            .filter(|token| token.header != self.routing_header)
    }
    /// The position header, when a progressive-delivery tool owns this route's weights: the
    /// filter then writes the user's position there, and neither the routing header nor the token.
    pub fn position_header(&self) -> Option<&str> {
        self.position_header.as_deref()
    }
    /// The cut-over in progress, if any (docs/assignment.md §6).
    pub fn cutover(&self) -> Option<&Cutover> {
        self.cutover.as_ref()
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
    /// Whether each decision is put where the access log can read it (filter state
    /// `wasm.sticky_canary`, docs/config.md "Exposure log").
    pub(crate) exposure_log: bool,
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
        let mut errors = ConfigErrors::default();
        let policy = compile(&value, &mut errors);
        match policy {
            Some(policy) if errors.0.is_empty() => Ok(policy),
            _ => Err(errors),
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

    /// Whether the filter records each decision for the access log (`exposure_log`).
    pub fn exposure_log(&self) -> bool {
        self.exposure_log
    }

    /// Every distinct routing header name. (The filter leaves requests on no route untouched:
    /// on a shared gateway they belong to other apps, whose VirtualServices require the token.)
    pub fn routing_headers(&self) -> &[String] {
        &self.routing_headers
    }
}

#[cfg(test)]
mod decimal_tests {
    #[test]
    fn push_decimal_writes_what_to_string_writes() {
        for n in [
            0u64,
            7,
            10,
            99,
            100,
            20_415,
            999_999_999,
            1_000_000_000,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = String::from("x.");
            super::push_decimal(&mut out, n);
            assert_eq!(out, format!("x.{n}"));
        }
    }
}
