//! The decision trace: one debug line per routed request, saying which version it got and why.
//!
//! ```text
//! sticky-canary: decision route=shop version=v2 source=new_id bucket=417 why="no id cookie: new client id issued" cookie_id=000102…
//! ```
//!
//! Built only while the host's log level is debug or lower (`log::debug!` formats nothing
//! otherwise), and compiled out by the `no-trace` feature, the benchmark's measure of its cost.
//! It never holds a credential: no header value, no cookie value, no secret; of a client id the
//! filter sends it shows six of its 32 hex digits, enough to tell clients apart in a log.

use std::fmt;

use policy_core::{Decision, KeySource, Route};

/// Hex digits of a client id the trace shows.
const ID_PREFIX: usize = 6;

/// One request's decision, as the trace line shows it.
pub struct Decided<'a> {
    pub route: &'a Route,
    pub decision: &'a Decision,
    /// The position written for a tool's weighted clusters, which then pick the version.
    pub position: Option<u8>,
    /// Whether the request carried the route's override header.
    pub override_asked: bool,
}

impl Decided<'_> {
    /// Why this source decided, from what [`Decision`] tells.
    fn why(&self) -> &'static str {
        let decision = self.decision;
        match decision.source {
            KeySource::Override => "override honoured",
            KeySource::Cookie if decision.set_cookie.is_some() => "id cookie found, its stamp due: refreshed",
            KeySource::Cookie => "cookie found",
            KeySource::Header => "header found",
            KeySource::Identity if decision.set_cookie.is_some() => "identity header found, id cookie issued",
            KeySource::Identity => "identity header found",
            KeySource::NewId => "no id cookie: new client id issued",
            KeySource::Address => "client address",
            KeySource::None if decision.bucket.is_some() => "no key: random bucket (no_key weighted)",
            KeySource::None => "no key: stable",
        }
    }
}

/// The first digits of the id in a Set-Cookie value (`NAME=ID.DAY; attributes`).
fn id_prefix(set_cookie: &str) -> Option<&str> {
    let (_, value) = set_cookie.split_once('=')?;
    value.get(..ID_PREFIX)
}

impl fmt::Display for Decided<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decision = self.decision;
        write!(f, "sticky-canary: decision route={}", self.route.name())?;
        match self.position {
            // Envoy's weighted clusters pick the version from the position.
            Some(position) => write!(f, " position={position}")?,
            None => {
                let version = self.route.versions().get(decision.version).map_or("?", |v| v.name());
                write!(f, " version={version}")?;
            }
        }
        write!(f, " source={}", decision.source.as_str())?;
        match decision.bucket {
            Some(bucket) => write!(f, " bucket={bucket}")?,
            None => f.write_str(" bucket=none")?,
        }
        f.write_str(" why=\"")?;
        if self.override_asked && decision.source != KeySource::Override {
            // policy-core's Decision does not say which check refused it.
            f.write_str("override refused (version not allowed, or secret missing or wrong); ")?;
        }
        write!(f, "{}\"", self.why())?;
        if let Some(prefix) = decision.set_cookie.as_deref().and_then(id_prefix) {
            write!(f, " cookie_id={prefix}…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_shows_six_digits_of_its_id_at_most() {
        assert_eq!(
            id_prefix("sc=0123456789abcdef0123456789abcdef.20415; Path=/; HttpOnly"),
            Some("012345")
        );
        assert_eq!(id_prefix("sc=01"), None);
        assert_eq!(id_prefix("no-equals-sign"), None);
    }
}
