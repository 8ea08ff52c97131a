//! The demo's filter config: one route, v1 stable and v2 canary, the id cookie after `session`.

use policy_core::format_percent;

use super::crowd::ID_COOKIE;

/// The header the demo's Envoy routes on, as the generated VirtualService does.
pub(super) const ROUTING_HEADER: &str = "x-canary-version";

/// The filter config of the demo at a given canary weight (basis points).
pub fn filter_config(canary_basis_points: u32) -> String {
    filter_config_with(canary_basis_points, "")
}

/// The demo's filter config with `extra` (`, "cutover": {...}`) appended to its route.
pub(super) fn filter_config_with(canary_basis_points: u32, extra: &str) -> String {
    format!(
        r#"{{"routes": [{{"name": "my-app", "hosts": ["*"], "salt": "demo-2026",
  "routing_header": "{ROUTING_HEADER}",
  "versions": [{{"name": "v1", "weight": {}}}, {{"name": "v2", "weight": {}}}],
  "key_chain": [{{"cookie": "session"}}, {{"new_client_id": {{"cookie": "{ID_COOKIE}", "secure": false}}}}],
  "override": {{"header": "x-canary-force", "allow": ["v2"]}}{extra}}}],
  "response_header": "x-canary-served-version"}}"#,
        format_percent(10_000 - canary_basis_points),
        format_percent(canary_basis_points),
    )
}
