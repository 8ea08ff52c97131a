//! `sticky-canary render SPEC...` and `set-weight`: one small spec per app in, every resource out.
//!
//! The spec (reference: docs/manifests.md) names the app, its versions and
//! weights, its hosts and the key chain; [`render`] turns it into the
//! Namespace, Deployments, Service, HPAs, Gateway, VirtualService,
//! DestinationRule and the plugin install (EnvoyFilter or WasmPlugin) for the
//! AKS Istio add-on, as ordinary YAML files that `kubectl apply -f` and
//! kustomize accept. [`render_shared`] renders many apps for one shared
//! gateway: each app's objects in its own directory, and one plugin per
//! gateway whose config holds every app's route, so a request costs the same
//! whatever the number of apps. Routing tokens come from a key outside the
//! spec ([`token`]).
//!
//! ```no_run
//! use sticky_canary::render::{self, token::{TokenKey, Tokens}};
//! let (_, app) = render::load(std::path::Path::new("examples/my-app.yaml")).unwrap();
//! let tokens = Tokens::Key(TokenKey::from_file(std::path::Path::new("token.key")).unwrap());
//! let rendered = render::render(&app, "examples/my-app.yaml", &tokens);
//! for note in &rendered.notes {
//!     println!("{note}");
//! }
//! render::write(std::path::Path::new("manifests"), &rendered).unwrap();
//! ```
//!
//! The modules, in the order data flows: [`spec`] (the spec, parsed and checked), the writers
//! of the objects ([`objects`]: Kubernetes and Istio; [`gateway_api`]: Gateway API; [`plugin`]:
//! the filter's install) over the rules they share (`routing`: what routes require and do to
//! headers; `mirror`: which routes mirror), `single` and [`shared`] (which objects go into
//! which files), [`emit`] (the YAML text), `write` (the output directory) and [`cli`].

/// Builds an ordered YAML mapping: `map! {"kind" => "Service", "spec" => map! {}}`.
macro_rules! map {
    ($($key:expr => $value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut m = serde_yaml_ng::Mapping::new();
        $( m.insert(serde_yaml_ng::Value::from($key), serde_yaml_ng::Value::from($value)); )*
        serde_yaml_ng::Value::Mapping(m)
    }};
}

pub mod analysis;
pub mod cli;
pub mod cutover;
pub mod emit;
mod error;
pub mod gateway_api;
mod metadata;
mod mirror;
pub mod monitoring;
pub mod objects;
mod output;
pub mod plugin;
mod routing;
mod set_weight;
pub mod shared;
mod single;
pub mod spec;
pub mod token;
pub mod weights;
mod write;

pub use cli::load;
pub use cutover::{cutover_text, CutoverChange};
pub use error::{Action, RenderError};
pub use output::{File, Rendered, GATEWAY_DIR, GENERATED_MARKER, MONITORING_DIR};
pub use plugin::Install;
pub use set_weight::set_weight_text;
pub use shared::{gateway_installs, render_shared};
pub use single::{render, render_with_form};
pub use spec::{
    App, FailStrategy, Ingress, Mirror, ModuleSource, PluginForm, SpecError, SpecErrors, KUBERNETES_OBJECT_LIMIT,
};
pub use token::{TokenKey, Tokens};
pub use write::{check_target, write, WriteReport};
