//! The app spec: one small YAML file per app, parsed and checked into an [`App`].
//!
//! Two stages, as everywhere in this project: serde reads the YAML into plain
//! structs (unknown fields are refused there), then [`App::from_yaml`] checks
//! every field, fills the defaults of the AKS Istio add-on, builds the filter
//! config and runs it through policy-core. Every problem comes back at once,
//! each with its field path in the spec (`versions[1].weight`). The reference
//! for every field is docs/manifests.md.
//!
//! ```
//! let app = sticky_canary::render::App::from_yaml(r#"
//! app: my-app
//! namespace: ns-canary-istio
//! revision: asm-1-31
//! hosts: [my-app.example.com]
//! versions:
//!   - {name: v1, image: containersol/k8s-deployment-strategies, weight: 90}
//!   - {name: v2, image: containersol/k8s-deployment-strategies, weight: 10}
//! routing: {salt: my-app-2024}
//! plugin: {url: "oci://myregistry.azurecr.io/sticky-canary:0.1.0", sha256: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}
//! "#).unwrap();
//! assert_eq!(app.stable().name, "v1");
//! assert_eq!(app.ingress_selector(), "aks-istio-ingressgateway-external");
//! ```
//!
//! The module holds the two stages apart: `raw` (the serde types), `check` (one function per
//! section of the spec: versions, routing, plugin, ingress, dependents, ...), `app` (the checked
//! types, re-exported here) and `names` (the objects' names derived from the app).

mod app;
mod check;
mod names;
mod raw;

pub use app::{
    filter_config, weight_yaml, Analysis, App, AppVersion, Autoscaling, Cutover, Dependent, FailStrategy, Ingress,
    Mirror, ModuleSource, Plugin, PluginForm, Probes, Progressive, ServiceProtocol, SpecError, SpecErrors, Tls,
    TokenSettings, Tool, DEFAULT_POSITION_HEADER, GATEWAY_API_MIN_MINOR, INGRESS_NAMESPACE, KUBERNETES_OBJECT_LIMIT,
    MESH_TOKEN_HEADER,
};
pub use names::{service_name, GATEWAY_NAME_LABEL};

impl App {
    /// Parses and checks a spec; `Err` holds every problem with its field path.
    pub fn from_yaml(text: &str) -> Result<App, SpecErrors> {
        let mut errors = SpecErrors::default();
        let raw: raw::RawSpec = match serde_yaml_ng::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                errors.add("", e.to_string());
                return Err(errors);
            }
        };
        let app = check::check(raw, &mut errors);
        match app {
            Some(app) if errors.is_empty() => Ok(app),
            _ => Err(errors),
        }
    }
}

/// Whole seconds in a duration written as the spec writes them (`30m`, `2h`, `90s`), at least 1s.
pub fn duration_seconds(text: &str) -> Option<u64> {
    check::fields::duration_ms(text)
        .filter(|&ms| ms >= 1000)
        .map(|ms| ms / 1000)
}
