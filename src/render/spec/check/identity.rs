//! `app`, `namespace` and `revision`: who the app is and which add-on revision serves it.

use super::fields::is_dns1035;
use crate::render::spec::app::{SpecErrors, INGRESS_NAMESPACE};
use crate::render::spec::raw::RawSpec;
use crate::revisions;

/// The namespace (by default the app's name) and the Istio minor version of the revision.
pub(super) fn check(raw: &RawSpec, errors: &mut SpecErrors, warnings: &mut Vec<String>) -> (String, Option<u32>) {
    if !is_dns1035(&raw.app, 40) {
        errors.add(
            "app",
            format!(
                "{:?} is not a valid app name (lowercase letters, digits and '-', starting with a letter, at most 40: it names the Service svc-APP and the Deployments)",
                raw.app
            ),
        );
    }
    let namespace = raw.namespace.clone().unwrap_or_else(|| raw.app.clone());
    if !is_dns1035(&namespace, 63) && !policy_core::is_label(&namespace) {
        errors.add("namespace", format!("{namespace:?} is not a valid namespace name"));
    }
    if namespace == INGRESS_NAMESPACE || namespace == "aks-istio-system" || namespace == "kube-system" {
        errors.add(
            "namespace",
            format!("{namespace:?} belongs to the add-on or the cluster: give the app its own namespace"),
        );
    }
    let minor = revisions::minor_of(&raw.revision);
    if minor.is_none() {
        errors.add(
            "revision",
            format!(
                "{:?} is not an add-on revision: give it as asm-1-NN (see `az aks show --query serviceMeshProfile.istio.revisions`); the add-on ignores istio-injection=enabled",
                raw.revision
            ),
        );
    }
    if minor.is_some() {
        warnings.extend(revisions::support_warning(&raw.revision, revisions::this_month()));
    }
    (namespace, minor)
}
