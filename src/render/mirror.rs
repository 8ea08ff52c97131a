//! Traffic mirroring (`mirror: {version, percent}` in the spec): copies of requests sent to one
//! version, whose answers the gateway drops.
//!
//! Envoy's router sends the copy itself (`request_mirror_policies`), after the HTTP filters ran
//! once for the user's request: our filter assigns, counts and sets its cookie once, on the
//! user's request, and the user's answer always comes from the version the filter assigned.
//! The copy goes to the mirror version's pods with `-shadow` appended to its host, which no
//! filter route owns. Only routes that serve another version mirror, so a user already on the
//! mirror version is not served twice by it.
//!
//! The rules are here; `objects` writes them as a VirtualService route's `mirror` and
//! `mirrorPercentage`, `gateway_api` as an HTTPRoute rule's `RequestMirror` filter.

use super::spec::{App, Mirror};

/// The mirror a route serving `version` carries: every route mirrors but the mirror version's
/// own, so a user already on it is not served twice by it.
pub(super) fn for_route<'a>(app: &'a App, version: &str) -> Option<&'a Mirror> {
    app.mirror.as_ref().filter(|m| m.version != version)
}
