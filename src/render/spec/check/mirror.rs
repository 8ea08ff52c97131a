//! `mirror`: copies of requests sent to one version, whose answers are dropped.

use crate::render::spec::app::{AppVersion, Ingress, Mirror, SpecErrors};
use crate::render::spec::raw::RawMirror;

/// The mirror: a canary, and a percentage with at most two decimals; on an HTTPRoute a
/// fraction needs recent Gateway API CRDs (a warning).
pub(super) fn check(
    m: RawMirror,
    versions: &[AppVersion],
    ingress: Ingress,
    errors: &mut SpecErrors,
    warnings: &mut Vec<String>,
) -> Mirror {
    match versions.iter().position(|v| v.name == m.version) {
        None => errors.add(
            "mirror.version",
            format!("{:?} is not one of the app's versions", m.version),
        ),
        Some(0) => errors.add(
            "mirror.version",
            format!(
                "{:?} is the stable version, which already serves every request it would copy: mirror a canary",
                m.version
            ),
        ),
        Some(_) => {}
    }
    if crate::render::weights::to_basis_points(m.percent).is_none_or(|bp| bp == 0) {
        errors.add(
            "mirror.percent",
            format!(
                "{} is not a percentage above 0 and at most 100 with at most two decimals",
                m.percent
            ),
        );
    }
    if ingress == Ingress::GatewayApi && m.percent < 100.0 {
        warnings.push(format!(
            "mirror.percent: {} on an HTTPRoute needs the Gateway API v1.3 CRDs or later (AKS Managed Gateway API on Kubernetes 1.34 and later); \
             with v1.2.1 (Kubernetes 1.26 to 1.33) the API server refuses the RequestMirror's percent, or drops it and every request is copied. \
             Check the bundle-version annotation of crd/httproutes.gateway.networking.k8s.io (docs/aks-runbook.md)",
            m.percent
        ));
    }
    Mirror {
        version: m.version,
        percent: m.percent,
    }
}
