//! The plugin object that installs the filter on a gateway: an Istio WasmPlugin, or an
//! EnvoyFilter that names the module by url or carries it inline; whose routes it carries
//! ([`Install`]), and the comment and warnings of its file.

use base64::Engine as _;
use serde_yaml_ng::{Mapping, Value as Yaml};

use super::emit;
use super::metadata::metadata;
use super::spec::{
    App, FailStrategy, Ingress, ModuleSource, Plugin, PluginForm, GATEWAY_NAME_LABEL, INGRESS_NAMESPACE,
    KUBERNETES_OBJECT_LIMIT,
};
use super::token::Tokens;

/// The type of the proxy-wasm HTTP filter's config.
pub const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The type istio-agent substitutes when it cannot fetch the module (allow-all or deny-all RBAC).
pub const RBAC_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// One plugin object on one add-on gateway: whose routes it carries, its name and settings.
#[derive(Debug, Clone)]
pub struct Install<'a> {
    /// The object name in aks-istio-ingress; also the Envoy filter and VM name.
    pub name: String,
    /// `sticky-canary/app: APP` (one app) or `sticky-canary/gateway: external` (shared).
    pub label: (&'static str, String),
    /// The `istio` label of the gateway pods.
    pub selector: &'static str,
    pub plugin: &'a Plugin,
    /// The whole filter config (every app's route on this gateway).
    pub config: Yaml,
    /// `Some` for an app's own Gateway API gateway (`ingress: gateway-api`): the plugin then
    /// lives in that gateway's namespace and selects its pods, and `selector` is unused.
    pub gateway_api: Option<GatewayApiTarget>,
}

/// The Gateway API gateway a plugin is for: its namespace and the `Gateway`'s name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayApiTarget {
    pub namespace: String,
    pub gateway: String,
}

impl Install<'_> {
    /// The filter config as compact JSON: what the filter receives.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).unwrap_or_default()
    }

    fn labels(&self) -> Yaml {
        map! {"app.kubernetes.io/managed-by" => "sticky-canary", self.label.0 => self.label.1.as_str()}
    }

    /// The namespace of the plugin object: the add-on's ingress namespace, or the Gateway API
    /// gateway's own.
    pub fn namespace(&self) -> &str {
        self.gateway_api
            .as_ref()
            .map_or(INGRESS_NAMESPACE, |t| t.namespace.as_str())
    }

    /// The labels of the gateway pods the plugin applies to.
    fn pod_labels(&self) -> Yaml {
        match &self.gateway_api {
            None => map! {"istio" => self.selector},
            Some(target) => map! {GATEWAY_NAME_LABEL => target.gateway.as_str()},
        }
    }
}

/// The plugin object of one app alone (`render` of a single spec).
pub fn single_install<'a>(app: &'a App, tokens: &Tokens) -> Install<'a> {
    Install {
        name: app.plugin_name(),
        label: ("sticky-canary/app", app.name.clone()),
        selector: app.ingress_selector(),
        plugin: &app.plugin,
        config: app.filter_config(tokens),
        gateway_api: (app.ingress == Ingress::GatewayApi).then(|| GatewayApiTarget {
            namespace: app.namespace.clone(),
            gateway: app.gateway_name(),
        }),
    }
}

/// Where the module is fetched from and the digest istio-agent checks, for the Istio extension
/// forms (they always fetch: inline is an EnvoyFilter form).
fn fetched_module(plugin: &Plugin) -> (String, String) {
    match &plugin.source {
        ModuleSource::Oci { url, digest } => (url.clone(), digest.clone()),
        ModuleSource::Url { url, sha256 } => (url.clone(), sha256.clone()),
        ModuleSource::Inline => (String::new(), crate::sha256_hex(crate::FILTER_WASM)),
    }
}

/// `selector` (an add-on gateway's pods) or `targetRefs` (a Gateway API gateway, Istio's
/// documented way to attach an extension to one), the same in WasmPlugin and TrafficExtension.
fn extension_target(install: &Install<'_>, spec: &mut Mapping) {
    match &install.gateway_api {
        None => {
            spec.insert("selector".into(), map! {"matchLabels" => install.pod_labels()});
        }
        Some(target) => {
            spec.insert(
                "targetRefs".into(),
                Yaml::Sequence(vec![map! {
                    "group" => "gateway.networking.k8s.io",
                    "kind" => "Gateway",
                    "name" => target.gateway.as_str(),
                }]),
            );
        }
    }
}

/// The module, pull and failure settings, in the field names WasmPlugin and TrafficExtension's
/// `wasm` share.
fn wasm_settings(install: &Install<'_>, spec: &mut Mapping) {
    let plugin = install.plugin;
    let (url, sha256) = fetched_module(plugin);
    spec.insert("url".into(), url.into());
    spec.insert("sha256".into(), sha256.into());
    if let Some(policy) = &plugin.image_pull_policy {
        spec.insert("imagePullPolicy".into(), policy.as_str().into());
    }
    if let Some(secret) = &plugin.image_pull_secret {
        spec.insert("imagePullSecret".into(), secret.as_str().into());
    }
}

pub fn wasm_plugin(install: &Install<'_>) -> Yaml {
    let plugin = install.plugin;
    let mut spec = Mapping::new();
    extension_target(install, &mut spec);
    wasm_settings(install, &mut spec);
    spec.insert("phase".into(), plugin.phase.as_str().into());
    spec.insert("failStrategy".into(), plugin.fail_strategy.as_str().into());
    spec.insert("type".into(), "HTTP".into());
    spec.insert("pluginConfig".into(), install.config.clone());
    map! {
        "apiVersion" => "extensions.istio.io/v1alpha1",
        "kind" => "WasmPlugin",
        "metadata" => metadata(&install.name, install.namespace(), Some(install.labels())),
        "spec" => Yaml::Mapping(spec),
    }
}

/// Istio's TrafficExtension (1.30 and later): WasmPlugin's fields, the Wasm ones under `wasm`.
/// Its phase enum says `UNSPECIFIED` where WasmPlugin says `UNSPECIFIED_PHASE`.
pub fn traffic_extension(install: &Install<'_>) -> Yaml {
    let plugin = install.plugin;
    let mut spec = Mapping::new();
    extension_target(install, &mut spec);
    let phase = match plugin.phase.as_str() {
        "UNSPECIFIED_PHASE" => "UNSPECIFIED",
        other => other,
    };
    spec.insert("phase".into(), phase.into());
    let mut wasm = Mapping::new();
    wasm_settings(install, &mut wasm);
    wasm.insert("failStrategy".into(), plugin.fail_strategy.as_str().into());
    wasm.insert("type".into(), "HTTP".into());
    wasm.insert("pluginConfig".into(), install.config.clone());
    spec.insert("wasm".into(), Yaml::Mapping(wasm));
    map! {
        "apiVersion" => "extensions.istio.io/v1alpha1",
        "kind" => "TrafficExtension",
        "metadata" => metadata(&install.name, install.namespace(), Some(install.labels())),
        "spec" => Yaml::Mapping(spec),
    }
}

/// The `typed_config` of the `envoy.filters.http.wasm` filter, as Envoy reads it.
pub fn wasm_typed_config(install: &Install<'_>, form: PluginForm) -> Yaml {
    let code = match (&install.plugin.source, form) {
        (_, PluginForm::EnvoyFilterInline) | (ModuleSource::Inline, _) => map! {
            "local" => map! {
                "inline_bytes" => base64::engine::general_purpose::STANDARD.encode(crate::FILTER_WASM),
            },
        },
        (ModuleSource::Oci { url, digest }, _) => remote_code(url, digest),
        (ModuleSource::Url { url, sha256 }, _) => remote_code(url, sha256),
    };
    let mut config = Mapping::new();
    config.insert("name".into(), install.name.as_str().into());
    config.insert(
        "vm_config".into(),
        map! {
            "vm_id" => install.name.as_str(),
            "runtime" => "envoy.wasm.runtime.v8",
            "code" => code,
        },
    );
    config.insert(
        "configuration".into(),
        map! {
            "@type" => "type.googleapis.com/google.protobuf.StringValue",
            "value" => install.config_json(),
        },
    );
    // istio-agent reads failure_policy too: when it cannot fetch the module it swaps this config
    // for an RBAC filter, allow-all for FAIL_OPEN and deny-all for the others (docs/security.md).
    let failure_policy = match install.plugin.fail_strategy {
        FailStrategy::FailOpen => "FAIL_OPEN",
        FailStrategy::FailClose => "FAIL_CLOSED",
        FailStrategy::FailReload => "FAIL_RELOAD",
    };
    config.insert("failure_policy".into(), failure_policy.into());
    map! {
        "@type" => WASM_TYPE_URL,
        "config" => Yaml::Mapping(config),
    }
}

fn remote_code(url: &str, sha256: &str) -> Yaml {
    map! {
        "remote" => map! {
            // istio-agent fetches this (oci:// or https://), checks sha256 (for oci://, the manifest
            // digest) and hands Envoy a local file; Envoy never fetches it itself.
            // Envoy requires a cluster; the agent fetches the module itself, so Istio's own
            // placeholder `_` (pilot's buildDataSource) names none.
            "http_uri" => map! {"uri" => url, "timeout" => "30s", "cluster" => "_"},
            "sha256" => sha256,
        },
    }
}

/// The EnvoyFilter: the Wasm filter as an extension config (ECDS), inserted before the router.
///
/// Delivering the filter config by ECDS (as WasmPlugin does) means a weight
/// change updates the filter alone, without draining the gateway's listeners.
pub fn envoy_filter(install: &Install<'_>, form: PluginForm) -> Yaml {
    let name = install.name.as_str();
    let extension = map! {
        "applyTo" => "EXTENSION_CONFIG",
        "patch" => map! {
            "operation" => "ADD",
            "value" => map! {
                "name" => name,
                "typed_config" => wasm_typed_config(install, form),
            },
        },
    };
    let insert = map! {
        "applyTo" => "HTTP_FILTER",
        "match" => map! {
            "context" => "GATEWAY",
            "listener" => map! {
                "filterChain" => map! {
                    "filter" => map! {
                        "name" => "envoy.filters.network.http_connection_manager",
                        "subFilter" => map! {"name" => "envoy.filters.http.router"},
                    },
                },
            },
        },
        "patch" => map! {
            "operation" => "INSERT_BEFORE",
            "value" => map! {
                "name" => name,
                "config_discovery" => map! {
                    // Wait for the module rather than serve without it (Istio's own choice for Wasm).
                    "config_source" => map! {"ads" => map! {}, "initial_fetch_timeout" => "0s"},
                    // The RBAC type too: when istio-agent cannot fetch the module it delivers an RBAC
                    // filter (allow-all or deny-all) under this name. Without it Envoy rejects that
                    // update and the listener answers 500 for every host on the gateway.
                    "type_urls" => vec![Yaml::from(WASM_TYPE_URL), Yaml::from(RBAC_TYPE_URL)],
                },
            },
        },
    };
    map! {
        "apiVersion" => "networking.istio.io/v1alpha3",
        "kind" => "EnvoyFilter",
        "metadata" => metadata(name, install.namespace(), Some(install.labels())),
        "spec" => map! {
            "workloadSelector" => map! {"labels" => install.pod_labels()},
            "configPatches" => vec![extension, insert],
        },
    }
}

/// The access-log format of the exposure log: Istio's usual fields, the request id (to join
/// with the app's own log) and the filter's record (`route=R version=V source=S bucket=B`;
/// `-` for a request on no route). It holds no key, cookie or header value.
pub const EXPOSURE_LOG_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(:AUTHORITY)%%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%\" \
    %RESPONSE_CODE% %UPSTREAM_CLUSTER% request_id=%REQ(X-REQUEST-ID)% sticky=\"%FILTER_STATE(wasm.sticky_canary:PLAIN)%\"\n";

/// With `exposure_log` on: an EnvoyFilter that adds a stdout access log in
/// [`EXPOSURE_LOG_FORMAT`] to the gateway's HTTP connection managers, beside any access log the
/// mesh config already has (MERGE appends to the repeated `access_log`). No mesh-config change:
/// on the add-on that is a per-revision ConfigMap, to redo at every upgrade.
pub fn exposure_access_log(install: &Install<'_>) -> Option<Yaml> {
    if install.config.get("exposure_log").and_then(Yaml::as_bool) != Some(true) {
        return None;
    }
    let name = format!("{}-exposure-log", install.name);
    let patch = map! {
        "applyTo" => "NETWORK_FILTER",
        "match" => map! {
            "context" => "GATEWAY",
            "listener" => map! {
                "filterChain" => map! {
                    "filter" => map! {"name" => "envoy.filters.network.http_connection_manager"},
                },
            },
        },
        "patch" => map! {
            "operation" => "MERGE",
            "value" => map! {
                "name" => "envoy.filters.network.http_connection_manager",
                "typed_config" => map! {
                    "@type" => "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "access_log" => vec![map! {
                        "name" => "envoy.access_loggers.file",
                        "typed_config" => map! {
                            "@type" => "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                            "path" => "/dev/stdout",
                            "log_format" => map! {
                                "text_format_source" => map! {"inline_string" => EXPOSURE_LOG_FORMAT},
                            },
                        },
                    }],
                },
            },
        },
    };
    Some(map! {
        "apiVersion" => "networking.istio.io/v1alpha3",
        "kind" => "EnvoyFilter",
        "metadata" => metadata(&name, install.namespace(), Some(install.labels())),
        "spec" => map! {
            "workloadSelector" => map! {"labels" => install.pod_labels()},
            "configPatches" => vec![patch],
        },
    })
}

/// The comment of the exposure log's file.
pub const EXPOSURE_LOG_NOTE: &str = "routing.exposure_log: the gateway's access log gets one line per request with the filter's\n\
    record (route, version, key source, bucket) and the request id, on the gateway pods' stdout\n\
    (docs/aks-runbook.md, \"Which user got which version\"). An EnvoyFilter: the add-on runs it, outside Azure support.";

/// The plugin object in the form the spec chose.
pub fn plugin(install: &Install<'_>, form: PluginForm) -> Yaml {
    match form {
        PluginForm::WasmPlugin => wasm_plugin(install),
        PluginForm::TrafficExtension => traffic_extension(install),
        PluginForm::EnvoyFilter | PluginForm::EnvoyFilterInline => envoy_filter(install, form),
    }
}

/// The warning for a fail strategy that takes every app on the gateway down when the module
/// cannot be fetched.
pub(super) fn fail_strategy_warning(install: &Install<'_>, apps: &[&str]) -> Option<String> {
    let strategy = install.plugin.fail_strategy;
    if let Some(target) = &install.gateway_api {
        return (strategy != FailStrategy::FailOpen).then(|| {
            format!(
                "warning: {name}: plugin.fail_strategy {strategy} on the Gateway API gateway {gateway} (namespace {namespace}), \
                 serving {apps}: when istio-agent cannot fetch the module it installs a deny-all RBAC filter in its place \
                 and that gateway answers 403 for every request. FAIL_OPEN sends these apps' users to stable instead \
                 (see docs/security.md).",
                name = install.name,
                strategy = strategy.as_str(),
                gateway = target.gateway,
                namespace = target.namespace,
                apps = apps.join(", "),
            )
        });
    }
    let crash = match strategy {
        FailStrategy::FailOpen => return None,
        FailStrategy::FailClose => {
            "a crashed filter VM fails every request on that gateway (503) until the gateway restarts"
        }
        FailStrategy::FailReload => "a crashed filter VM is reloaded after a back-off, failing requests meanwhile",
    };
    Some(format!(
        "warning: {name}: plugin.fail_strategy {strategy} on the shared add-on gateway (istio: {selector}), serving {apps}: \
         when istio-agent cannot fetch the module (registry down, digest mismatch), it installs a deny-all RBAC filter \
         in its place, and every host on that gateway answers 403, the other apps' too, not only these. \
         On a VM crash, {crash}. FAIL_OPEN keeps the gateway up and sends these apps' users to stable \
         (the routing token keeps a client-sent routing header off the canaries): see docs/security.md.",
        name = install.name,
        strategy = strategy.as_str(),
        selector = install.selector,
        apps = apps.join(", "),
    ))
}

/// The plugin object and the comment of its file; the inline form's size goes into `notes`.
pub(super) fn plugin_file(
    install: &Install<'_>,
    form: PluginForm,
    file_name: &str,
    notes: &mut Vec<String>,
) -> (Yaml, String) {
    let plugin = plugin(install, form);
    let note = match form {
        PluginForm::WasmPlugin => format!(
            "WasmPlugin (failStrategy {}, phase {}). The AKS add-on's admission webhook blocks WasmPlugin:\n\
             on the add-on use plugin.form: envoyfilter (see docs/manifests.md).",
            install.plugin.fail_strategy.as_str(),
            install.plugin.phase
        ),
        PluginForm::TrafficExtension => format!(
            "TrafficExtension (Istio 1.30 and later; failStrategy {}, phase {}). The AKS add-on's published list of\n\
             blocked kinds names WasmPlugin, not TrafficExtension, and says nothing of it either way: check that\n\
             your cluster admits it (`kubectl apply --dry-run=server -f ...`); otherwise use plugin.form: envoyfilter\n\
             (see docs/manifests.md).",
            install.plugin.fail_strategy.as_str(),
            install.plugin.phase
        ),
        PluginForm::EnvoyFilter => {
            "EnvoyFilter: istio-agent on the gateway fetches the module by url, checks its sha256\n\
             and hands Envoy a local file. EnvoyFilters run on the AKS add-on but outside Azure support."
                .to_owned()
        }
        PluginForm::EnvoyFilterInline => {
            let size = emit::to_yaml(&plugin).len();
            notes.push(format!(
                "{file_name}: the EnvoyFilter carries the module inline: {size} bytes (module {} bytes), limit about {} bytes (1.5 MiB, the etcd request limit)",
                crate::FILTER_WASM.len(),
                KUBERNETES_OBJECT_LIMIT
            ));
            format!(
                "EnvoyFilter with the module inline (base64): {size} bytes, under the Kubernetes object limit\n\
                 of about 1.5 MiB. No registry needed. EnvoyFilters run on the AKS add-on but outside Azure support."
            )
        }
    };
    (plugin, note)
}
