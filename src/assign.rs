//! `sticky-canary assign`: predict which version each key lands on.

use std::io::{BufRead, Write};

use policy_core::{identity_id, ClientId, Policy, Route};

/// Picks the route for `host` (and `path`, when given), or the only route when no host is given.
pub fn pick_route<'a>(policy: &'a Policy, host: Option<&str>, path: Option<&str>) -> Result<&'a Route, String> {
    match (host, path) {
        (Some(host), Some(path)) => policy
            .find_route(host.as_bytes(), path.as_bytes())
            .ok_or_else(|| format!("no route serves host {host:?} and path {path:?}")),
        // Routes with a path prefix only match paths under it: try the bare host first, then each
        // prefix, so the gateway's own matching rules (exact, longest wildcard, `*`) pick the route.
        (Some(host), None) => std::iter::once("")
            .chain(policy.routes().iter().filter_map(|r| r.path_prefix()))
            .find_map(|path| policy.find_route(host.as_bytes(), path.as_bytes()))
            .ok_or_else(|| format!("no route serves host {host:?}")),
        (None, _) => match policy.routes() {
            [only] => Ok(only),
            _ => Err("the config has several routes: name one with --host".to_owned()),
        },
    }
}

/// What an input line of `assign` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyKind {
    /// The key itself, hashed as it stands (a session cookie's value, a header's value, an id).
    Key,
    /// A client-id cookie value: `ID.DAY` is hashed as `ID` (docs/assignment.md §3).
    IdCookie,
    /// A logged-in user's identity header value: hashed as its identity id.
    Identity,
}

/// Checks `--canary-weight` against the route: required when Flagger or Argo Rollouts set the
/// route's weights (it has a position header), refused otherwise (the config's weights decide).
pub fn check_tool_weight(route: &Route, canary_weight: Option<u8>) -> Result<(), String> {
    match (route.position_header(), canary_weight) {
        (Some(_), None) => Err(format!(
            "route {:?}: a tool sets its weights (position_header): give --canary-weight, the canary weight it set",
            route.name()
        )),
        (None, Some(_)) => Err(format!(
            "route {:?}: --canary-weight is for routes whose weights a tool sets (position_header); this route's weights are in the config",
            route.name()
        )),
        (_, Some(w)) if w > 100 => Err(format!("--canary-weight {w}: give 0 to 100")),
        _ => Ok(()),
    }
}

/// For each line: `line<TAB>bucket<TAB>version`. Lines are taken byte for byte (without the line
/// end), then read as `kind` says. With `canary_weight` (a route whose weights a tool sets), the
/// version is the one Envoy's weighted clusters give at that canary weight (docs/assignment.md §5).
pub fn run(
    route: &Route,
    kind: KeyKind,
    canary_weight: Option<u8>,
    input: impl BufRead,
    mut out: impl Write,
) -> std::io::Result<()> {
    for line in input.split(b'\n') {
        let mut key = line?;
        if key.last() == Some(&b'\r') {
            key.pop();
        }
        let (bucket, version) = match kind {
            KeyKind::Key => route.assign(&key),
            KeyKind::IdCookie => route.assign(ClientId::parse(&key).key),
            KeyKind::Identity => route.assign(identity_id(route.salt(), &key).as_bytes()),
        };
        let version = match canary_weight {
            Some(weight) => route.version_at_tool_weight(bucket, weight),
            None => version,
        };
        let name = route.versions().get(version).map_or("", |v| v.name());
        out.write_all(&key)?;
        writeln!(out, "\t{bucket}\t{name}")?;
    }
    out.flush()
}
