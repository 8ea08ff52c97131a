//! `versions`, `autoscaling`, `resources` and `probes`: the Deployments and their HPAs.

use super::fields::{is_dns1035, is_quantity, port_ok};
use crate::render::spec::app::{AppVersion, Autoscaling, Probes, SpecErrors};
use crate::render::spec::raw::{RawAutoscaling, RawProbes, RawResources, RawVersion};

/// The HPA bounds when the spec gives none.
pub(super) const DEFAULT_SCALING: Autoscaling = Autoscaling {
    min_replicas: 1,
    max_replicas: 10,
    cpu_utilization: 50,
};

/// HPA bounds: the fields given, the others from `base` (the spec's, or the default).
pub(super) fn check_autoscaling(
    path: &str,
    raw: Option<RawAutoscaling>,
    base: Autoscaling,
    errors: &mut SpecErrors,
) -> Autoscaling {
    let Some(raw) = raw else { return base };
    let a = Autoscaling {
        min_replicas: raw.min_replicas.unwrap_or(base.min_replicas),
        max_replicas: raw.max_replicas.unwrap_or(base.max_replicas),
        cpu_utilization: raw.cpu_utilization.unwrap_or(base.cpu_utilization),
    };
    if a.min_replicas < 1 {
        errors.add(format!("{path}.min_replicas"), "must be at least 1");
    }
    if a.max_replicas < a.min_replicas {
        errors.add(
            format!("{path}.max_replicas"),
            format!("{} is below min_replicas {}", a.max_replicas, a.min_replicas),
        );
    }
    if !(1..=100).contains(&a.cpu_utilization) {
        errors.add(
            format!("{path}.cpu_utilization"),
            format!(
                "{} is not a percentage of the CPU request (1 to 100)",
                a.cpu_utilization
            ),
        );
    }
    a
}

/// The versions, stable first; each version's autoscaling starts from `base_scaling`.
pub(super) fn check_versions(
    raw: Vec<RawVersion>,
    base_scaling: Autoscaling,
    errors: &mut SpecErrors,
) -> Vec<AppVersion> {
    if raw.is_empty() {
        errors.add("versions", "is empty: give at least the stable version");
    }
    let mut versions = Vec::new();
    for (i, v) in raw.into_iter().enumerate() {
        let path = format!("versions[{i}]");
        if v.image.trim().is_empty() || v.image.contains(char::is_whitespace) {
            errors.add(
                format!("{path}.image"),
                format!("{:?} is not an image reference", v.image),
            );
        }
        let port = v.port.unwrap_or(8080);
        port_ok(&format!("{path}.port"), port, errors);
        for name in v.env.keys() {
            if name.is_empty() || name.contains('=') || name.contains(char::is_whitespace) {
                errors.add(format!("{path}.env.{name}"), "is not an environment variable name");
            }
        }
        if !is_dns1035(&v.name, 20) && policy_core::is_label(&v.name) {
            errors.add(
                format!("{path}.name"),
                format!(
                    "{:?} must start with a letter and be at most 20 long (it names Deployments and HPAs)",
                    v.name
                ),
            );
        }
        let autoscaling = check_autoscaling(&format!("{path}.autoscaling"), v.autoscaling, base_scaling, errors);
        versions.push(AppVersion {
            name: v.name,
            image: v.image,
            weight: v.weight,
            max_weight: v.max_weight,
            port,
            env: v.env,
            autoscaling,
        });
    }
    versions
}

/// The CPU and memory requests of every Deployment.
pub(super) fn check_resources(raw: Option<RawResources>, errors: &mut SpecErrors) -> (String, String) {
    let resources = raw.unwrap_or(RawResources {
        cpu: None,
        memory: None,
    });
    let cpu_request = resources.cpu.unwrap_or_else(|| "100m".to_owned());
    let memory_request = resources.memory.unwrap_or_else(|| "128Mi".to_owned());
    if !is_quantity(&cpu_request) {
        errors.add(
            "resources.cpu",
            format!("{cpu_request:?} is not a Kubernetes quantity (e.g. 100m)"),
        );
    }
    if !is_quantity(&memory_request) {
        errors.add(
            "resources.memory",
            format!("{memory_request:?} is not a Kubernetes quantity (e.g. 128Mi)"),
        );
    }
    (cpu_request, memory_request)
}

/// The probes; their port is by default the stable version's.
pub(super) fn check_probes(p: RawProbes, versions: &[AppVersion], errors: &mut SpecErrors) -> Probes {
    let port = p.port.unwrap_or_else(|| versions.first().map_or(8080, |v| v.port));
    port_ok("probes.port", port, errors);
    for (field, value) in [
        ("liveness_path", &p.liveness_path),
        ("readiness_path", &p.readiness_path),
    ] {
        if let Some(path) = value {
            if !path.starts_with('/') {
                errors.add(format!("probes.{field}"), format!("{path:?} must start with '/'"));
            }
        }
    }
    if p.liveness_path.is_none() && p.readiness_path.is_none() {
        errors.add("probes", "names neither liveness_path nor readiness_path");
    }
    Probes {
        port,
        liveness_path: p.liveness_path,
        readiness_path: p.readiness_path,
    }
}
