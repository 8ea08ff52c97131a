//! The routing rules both route writers share: what a canary or stable route of the gateway
//! (a VirtualService in `objects`, an HTTPRoute in `gateway_api`) or of a dependent service
//! requires of a request, and what it does to its headers. Each writer spells them in its own
//! API's shape; the rules are only here.

use super::spec::{App, MESH_TOKEN_HEADER};
use super::token::{Purpose, Tokens};

/// What one route does to the request headers before the request leaves the gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct HeaderEdits<'a> {
    /// Headers set (replacing whatever the client sent), as (name, value).
    pub(super) set: Vec<(String, String)>,
    /// Headers removed.
    pub(super) remove: Vec<&'a str>,
}

impl HeaderEdits<'_> {
    /// Whether the route leaves the headers alone.
    pub(super) fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// What the routes of one VirtualService (or HTTPRoute) require and do to the request headers.
pub(super) struct Guard<'a> {
    /// The header every canary route matches on.
    routing_header: &'a str,
    /// The token's own header, or `None` when the token travels in the routing header's value
    /// (`VERSION;TOKEN`, see [`policy_core::Version::routing_value`]).
    token_header: Option<&'a str>,
    /// The accepted token values (any one matches).
    accepted: Vec<String>,
    /// The mesh token, when dependent services route on the routing header: canary routes set
    /// it (replacing any client copy), and the stable route removes the routing header and any
    /// client-sent mesh token instead of setting the header.
    mesh_token: Option<String>,
    /// A mesh VirtualService (a dependent service's): it passes every header on untouched, as
    /// the backend may call further services with the same headers.
    pass_through: bool,
}

impl<'a> Guard<'a> {
    /// The gateway routes' guard: canary routes require the gateway token (in the routing
    /// header's value, or in a header of its own that they remove); with dependent services they
    /// also set the mesh token, and the stable route removes the routing header and any
    /// client-sent mesh token, so nothing a client sends can steer a dependent service
    /// (docs/security.md).
    pub(super) fn gateway(app: &'a App, tokens: &Tokens) -> Guard<'a> {
        Guard {
            routing_header: app.routing_header.as_str(),
            token_header: (app.token.header != app.routing_header).then_some(app.token.header.as_str()),
            accepted: app.accepted_tokens(tokens, Purpose::Gateway),
            mesh_token: (!app.dependents.is_empty())
                .then(|| tokens.token(Purpose::Mesh, &app.name, app.token.generation)),
            pass_through: false,
        }
    }

    /// A dependent service's guard: canary routes require the routing header and the mesh
    /// token, which the gateway sets on canary requests only; nothing is set or removed, as the
    /// backend may call further services with the same headers.
    pub(super) fn dependent(app: &'a App, tokens: &Tokens) -> Guard<'a> {
        Guard {
            routing_header: app.routing_header.as_str(),
            token_header: Some(MESH_TOKEN_HEADER),
            accepted: app.accepted_tokens(tokens, Purpose::Mesh),
            mesh_token: None,
            pass_through: true,
        }
    }

    /// The header matches of a canary route for `version`: one match per accepted token, each
    /// as (header, exact value) pairs, the routing header first.
    pub(super) fn canary_matches(&self, version: &str) -> Vec<Vec<(String, String)>> {
        self.accepted
            .iter()
            .map(|token| match self.token_header {
                None => vec![(
                    self.routing_header.to_owned(),
                    policy_core::token_routing_value(version, token),
                )],
                Some(header) => vec![
                    (self.routing_header.to_owned(), version.to_owned()),
                    (header.to_owned(), token.clone()),
                ],
            })
            .collect()
    }

    /// What a canary route for `version` does to the headers. It sets the bare version name
    /// when the token came in the routing header (so the app sees what it always saw), and the
    /// mesh token; it removes the token's own header.
    pub(super) fn canary_edits(&self, version: &str) -> HeaderEdits<'a> {
        let mut edits = HeaderEdits::default();
        if self.token_header.is_none() {
            edits.set.push((self.routing_header.to_owned(), version.to_owned()));
        }
        if let Some(mesh) = &self.mesh_token {
            edits.set.push((MESH_TOKEN_HEADER.to_owned(), mesh.clone()));
        }
        if let Some(header) = self.token_header.filter(|_| !self.pass_through) {
            edits.remove.push(header);
        }
        edits
    }

    /// What the stable route does to the headers. It sets the stable name in the routing
    /// header, replacing the filter's `VERSION;TOKEN` (or a client's value while the filter is
    /// skipped). It removes the token's own header; with dependent services also the routing
    /// header and any client-sent mesh token, so nothing a client sends can steer a dependent
    /// service (docs/security.md).
    pub(super) fn stable_edits(&self, stable: &str) -> HeaderEdits<'a> {
        let mut edits = HeaderEdits::default();
        if self.token_header.is_none() && self.mesh_token.is_none() {
            edits.set.push((self.routing_header.to_owned(), stable.to_owned()));
        }
        if self.pass_through {
            return edits;
        }
        edits.remove.extend(self.token_header);
        if self.mesh_token.is_some() {
            edits.remove.push(self.routing_header);
            edits.remove.push(MESH_TOKEN_HEADER);
        }
        edits
    }
}
