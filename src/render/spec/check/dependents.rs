//! `dependent_services`: backends the app calls that route by the same routing header.

use super::fields::{is_dns1035, port_ok};
use crate::render::spec::app::{AppVersion, Dependent, SpecErrors};
use crate::render::spec::names::service_name;
use crate::render::spec::raw::RawDependent;

/// The dependents; each runs some of `app`'s versions, stable first, in `namespace` by default.
pub(super) fn check(
    raw: Vec<RawDependent>,
    app: &str,
    namespace: &str,
    versions: &[AppVersion],
    errors: &mut SpecErrors,
) -> Vec<Dependent> {
    let version_names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
    let mut dependents = Vec::new();
    for (i, d) in raw.into_iter().enumerate() {
        let path = format!("dependent_services[{i}]");
        if !is_dns1035(&d.service, 63) {
            errors.add(
                format!("{path}.service"),
                format!("{:?} is not a Service name", d.service),
            );
        }
        if d.service == service_name(app) {
            errors.add(
                format!("{path}.service"),
                "is the app's own Service: the gateway VirtualService already routes it",
            );
        }
        if let Some(port) = d.port {
            port_ok(&format!("{path}.port"), port, errors);
        }
        let dep_versions = d
            .versions
            .unwrap_or_else(|| version_names.iter().map(|s| (*s).to_owned()).collect());
        for (j, name) in dep_versions.iter().enumerate() {
            if !version_names.contains(&name.as_str()) {
                errors.add(
                    format!("{path}.versions[{j}]"),
                    format!("{name:?} is not one of the app's versions (the routing header only carries those)"),
                );
            }
        }
        if let Some(stable) = version_names.first() {
            if dep_versions.first().map(String::as_str) != Some(*stable) {
                errors.add(
                    format!("{path}.versions"),
                    format!("must start with the stable version {stable:?}: unmarked requests go there"),
                );
            }
        }
        dependents.push(Dependent {
            service: d.service,
            namespace: d.namespace.unwrap_or_else(|| namespace.to_owned()),
            port: d.port,
            versions: dep_versions,
        });
    }
    dependents
}
