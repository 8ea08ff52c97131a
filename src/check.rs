//! `sticky-canary check CONFIG`: validate a filter config and list every problem.

use std::path::Path;

use policy_core::{format_percent, KeySpec, Policy};

/// Reads and validates a config file. Errors are ready to print, one per line.
pub fn load(path: &Path) -> Result<Policy, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    Policy::from_json(&bytes).map_err(|errors| {
        errors
            .0
            .iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// A short human summary of a valid policy.
pub fn summary(policy: &Policy) -> String {
    let mut out = String::new();
    for route in policy.routes() {
        let versions: Vec<String> = match route.position_header() {
            // The weights are in the tool's VirtualService, not here.
            Some(_) => route.versions().iter().map(|v| v.name().to_owned()).collect(),
            None => route
                .versions()
                .iter()
                .map(|v| format!("{} {}%", v.name(), format_percent(u32::from(v.weight_basis_points()))))
                .collect(),
        };
        let chain: Vec<String> = route
            .key_chain()
            .iter()
            .map(|k| match k {
                KeySpec::Cookie(n) => format!("cookie {n}"),
                KeySpec::Header(n) => format!("header {n}"),
                KeySpec::IdentityHeader(n) => format!("identity header {n}"),
                KeySpec::NewClientId(c) => format!(
                    "new client id cookie {} (decides first once present; refreshed every {} day(s))",
                    c.cookie, c.refresh_after_days
                ),
                KeySpec::ClientAddress => "client address".to_owned(),
            })
            .collect();
        let header = match route.position_header() {
            Some(h) => format!("weights set by Flagger or Argo Rollouts; position header {h}"),
            None => format!("routing header {}", route.routing_header()),
        };
        out.push_str(&format!(
            "route {}: hosts {} -> {} (stable {}); keys: {}; {header}\n",
            route.name(),
            route.hosts().join(", "),
            versions.join(", "),
            route.versions().first().map_or("", |v| v.name()),
            chain.join(" > "),
        ));
    }
    out
}
