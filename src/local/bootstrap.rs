//! The Envoy bootstrap the harness starts: one HTTP listener, a route table like
//! the generated Istio VirtualService, an optional sticky-canary wasm filter
//! served over file-based ECDS, and stats tags for the filter's counters.
//!
//! The route table is data ([`RouteTable`]), so the header routes of a rendered
//! VirtualService can be fed in unchanged.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::backend::Backend;
use super::error::LocalError;

/// The name of the filter in the HTTP filter chain, its ECDS resource and its stats.
pub const FILTER_NAME: &str = "sticky-canary";

/// `stats_config.stats_tags` that turn the filter's dotted counter names
/// (`wasmcustom.sticky_canary_assignments_total.route.R.version.V.source.S`)
/// into one metric with `route`, `version` and `source` labels (and the cut-over counters,
/// `...cutover_total.route.R.outcome.O`, into `route` and `outcome`). Each regex runs
/// on the full stat name; its first group is cut out of the name, its second is
/// the label value.
pub const STATS_TAGS: &[(&str, &str)] = &[
    (
        "route",
        r"^wasmcustom\.sticky_canary_(?:assignments|cutover)_total(\.route\.([^.]+))",
    ),
    (
        "version",
        r"^wasmcustom\.sticky_canary_assignments_total\.route\.[^.]+(\.version\.([^.]+))",
    ),
    (
        "source",
        r"^wasmcustom\.sticky_canary_assignments_total\.route\.[^.]+\.version\.[^.]+(\.source\.([^.]+))$",
    ),
    (
        "outcome",
        r"^wasmcustom\.sticky_canary_cutover_total\.route\.[^.]+(\.outcome\.([^.]+))$",
    ),
];

/// One header match of the route table: `header` equal to `value` goes to `cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderRoute {
    pub header: String,
    pub value: String,
    /// Further (header, exact value) pairs the route also requires, like the routing token.
    pub also: Vec<(String, String)>,
    pub cluster: String,
    /// Request headers the route sets, replacing any copy (a VirtualService's `headers.request.set`).
    pub set: Vec<(String, String)>,
    /// Request headers the route removes (`headers.request.remove`).
    pub remove: Vec<String>,
}

/// How Envoy picks the upstream cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTable {
    /// What the generated VirtualService does: the first matching header route
    /// wins (exact match); a request matching none goes to `default_cluster` (stable).
    ByHeader {
        matches: Vec<HeaderRoute>,
        default_cluster: String,
        /// Request headers every route removes before the upstream, as the generated
        /// VirtualService's `headers.request.remove` does with the routing token.
        remove: Vec<String>,
    },
    /// Plain Istio weights: a random cluster per request (for contrast and benchmarks).
    Weighted(Vec<(String, u32)>),
    /// Envoy's own sticky split (Envoy 1.36 and later): weighted clusters picked by the route's
    /// hash policy (`use_hash_policy`), hashing the cookie `cookie`; with `ttl_seconds`, Envoy
    /// sets that cookie itself when a request has none.
    HashWeighted {
        weights: Vec<(String, u32)>,
        cookie: String,
        ttl_seconds: Option<u32>,
    },
}

/// What Envoy does when the filter's VM cannot serve (Envoy's `failure_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Requests fail with 503 while the filter is broken.
    FailClosed,
    /// Requests pass through without the filter.
    FailOpen,
    /// The VM is reloaded, requests fail closed meanwhile.
    FailReload,
}

impl FailurePolicy {
    fn as_envoy(self) -> &'static str {
        match self {
            FailurePolicy::FailClosed => "FAIL_CLOSED",
            FailurePolicy::FailOpen => "FAIL_OPEN",
            FailurePolicy::FailReload => "FAIL_RELOAD",
        }
    }
}

/// Where the filter's .wasm comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasmCode {
    /// [`crate::FILTER_WASM`], written into Envoy's temp dir.
    Embedded,
    /// A module on disk.
    File(PathBuf),
    /// A complete `envoy.extensions.filters.http.wasm.v3.Wasm` typed_config (JSON) used as it
    /// is, code and configuration included: what `render` puts into an EnvoyFilter, so a test
    /// loads exactly what the cluster gets. `FilterSpec::configuration` is not used.
    TypedConfig(String),
}

/// The sticky-canary filter: its code and its config JSON (the WasmPlugin `pluginConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSpec {
    pub code: WasmCode,
    pub configuration: String,
    pub failure_policy: FailurePolicy,
}

impl FilterSpec {
    /// The embedded filter with this config, failing closed.
    pub fn embedded(configuration: impl Into<String>) -> FilterSpec {
        FilterSpec {
            code: WasmCode::Embedded,
            configuration: configuration.into(),
            failure_policy: FailurePolicy::FailClosed,
        }
    }
}

/// Everything needed to start one Envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoyConfig {
    /// Upstream clusters: name and address (one endpoint each).
    pub clusters: Vec<(String, SocketAddr)>,
    pub routes: RouteTable,
    /// `None`: no wasm filter at all (plain Envoy routing).
    pub filter: Option<FilterSpec>,
    /// Envoy worker threads (`--concurrency`).
    pub concurrency: u32,
    /// Envoy's `-l` log level; `info` shows the filter's config errors.
    pub log_level: String,
    /// The connection manager's `max_request_headers_kb`; `None` keeps Envoy's
    /// default (60 KiB: a larger request head gets 431 before any filter runs).
    pub max_request_headers_kb: Option<u32>,
    /// Whether the bootstrap carries [`STATS_TAGS`] (labels on the filter's counters). Istio's
    /// bootstrap has none for them: Prometheus then sees the labels folded into the names,
    /// which is what the rules `render` writes query.
    pub stats_tags: bool,
    /// The Envoy binary; `None`: [`find_or_install_envoy`](super::envoy_binary::find_or_install_envoy)
    /// picks one (`$ENVOY`, `PATH`, the per-user cache).
    pub envoy: Option<PathBuf>,
}

impl EnvoyConfig {
    /// Routes by `header` (exact version name) to each backend's cluster; no header
    /// goes to the first backend (stable). No filter.
    pub fn by_header(header: &str, backends: &[&Backend]) -> EnvoyConfig {
        let clusters: Vec<(String, SocketAddr)> = backends.iter().map(|b| (b.version().to_owned(), b.addr())).collect();
        let matches = clusters
            .iter()
            .map(|(name, _)| HeaderRoute {
                header: header.to_owned(),
                value: name.clone(),
                cluster: name.clone(),
                ..HeaderRoute::default()
            })
            .collect();
        let default_cluster = clusters.first().map(|(name, _)| name.clone()).unwrap_or_default();
        EnvoyConfig {
            clusters,
            routes: RouteTable::ByHeader {
                matches,
                default_cluster,
                remove: Vec::new(),
            },
            filter: None,
            concurrency: 2,
            log_level: "info".to_owned(),
            max_request_headers_kb: None,
            stats_tags: true,
            envoy: None,
        }
    }

    /// A random backend per request, in proportion to the weights. No filter.
    pub fn weighted(backends: &[(&Backend, u32)]) -> EnvoyConfig {
        let clusters: Vec<(String, SocketAddr)> = backends
            .iter()
            .map(|(b, _)| (b.version().to_owned(), b.addr()))
            .collect();
        let weights = backends.iter().map(|(b, w)| (b.version().to_owned(), *w)).collect();
        EnvoyConfig {
            clusters,
            routes: RouteTable::Weighted(weights),
            filter: None,
            concurrency: 2,
            log_level: "info".to_owned(),
            max_request_headers_kb: None,
            stats_tags: true,
            envoy: None,
        }
    }

    /// Envoy's native hash-based split (`WeightedCluster.use_hash_policy` with a cookie
    /// `hash_policy`), as an EnvoyFilter patching Istio's routes would configure it. No filter.
    pub fn hash_weighted(backends: &[(&Backend, u32)], cookie: &str, ttl_seconds: Option<u32>) -> EnvoyConfig {
        let mut config = EnvoyConfig::weighted(backends);
        config.routes = RouteTable::HashWeighted {
            weights: backends.iter().map(|(b, w)| (b.version().to_owned(), *w)).collect(),
            cookie: cookie.to_owned(),
            ttl_seconds,
        };
        config
    }

    /// Like the generated VirtualService: every version route but the default one also
    /// requires the routing token, and every route removes it before the app.
    pub fn with_routing_token(mut self, header: &str, value: &str) -> EnvoyConfig {
        if let RouteTable::ByHeader { matches, remove, .. } = &mut self.routes {
            for route in matches.iter_mut() {
                route.also.push((header.to_owned(), value.to_owned()));
            }
            remove.push(header.to_owned());
        }
        self
    }

    pub fn with_filter(mut self, filter: FilterSpec) -> EnvoyConfig {
        self.filter = Some(filter);
        self
    }

    /// Runs this Envoy binary (`None`: the one `find_or_install_envoy` picks).
    pub fn with_envoy(mut self, binary: Option<PathBuf>) -> EnvoyConfig {
        self.envoy = binary;
        self
    }

    pub fn with_concurrency(mut self, concurrency: u32) -> EnvoyConfig {
        self.concurrency = concurrency;
        self
    }

    /// No `stats_tags`, as under Istio: the filter's counters reach Prometheus with their labels
    /// folded into the name (`sticky_canary_assignments_total_route_R_version_V_source_S`).
    pub fn without_stats_tags(mut self) -> EnvoyConfig {
        self.stats_tags = false;
        self
    }

    /// Raises (or lowers) Envoy's request header size limit, in KiB (Envoy allows up to 8192).
    pub fn with_max_request_headers_kb(mut self, kb: u32) -> EnvoyConfig {
        self.max_request_headers_kb = Some(kb);
        self
    }
}

/// Ports and file paths of one Envoy run.
#[derive(Debug, Clone)]
pub struct Layout {
    pub listener_port: u16,
    pub admin_port: u16,
    /// The ECDS file Envoy watches (replaced by rename on updates).
    pub ecds_path: PathBuf,
    pub wasm_path: PathBuf,
    pub access_log: PathBuf,
}

fn socket_address(address: &str, port: u16) -> Value {
    json!({"socket_address": {"address": address, "port_value": port}})
}

fn type_url(type_name: &str) -> String {
    format!("type.googleapis.com/{type_name}")
}

/// A route's header edits, added to an Envoy route's members.
fn add_header_edits(entry: &mut Value, route: &HeaderRoute) {
    if !route.set.is_empty() {
        let add: Vec<Value> = route
            .set
            .iter()
            .map(|(name, value)| {
                json!({
                    "header": {"key": name, "value": value},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                })
            })
            .collect();
        entry["request_headers_to_add"] = json!(add);
    }
    if !route.remove.is_empty() {
        entry["request_headers_to_remove"] = json!(route.remove);
    }
}

fn header_route_entry(m: &HeaderRoute) -> Value {
    let headers: Vec<Value> = std::iter::once((&m.header, &m.value))
        .chain(m.also.iter().map(|(n, v)| (n, v)))
        .map(|(name, value)| json!({"name": name, "string_match": {"exact": value}}))
        .collect();
    let mut entry = json!({
        "match": {"prefix": "/", "headers": headers},
        "route": {"cluster": m.cluster},
    });
    add_header_edits(&mut entry, m);
    entry
}

fn default_entry(default: &HeaderRoute) -> Value {
    let mut entry = json!({"match": {"prefix": "/"}, "route": {"cluster": default.cluster}});
    add_header_edits(&mut entry, default);
    entry
}

fn route_entries(routes: &RouteTable) -> Value {
    match routes {
        RouteTable::ByHeader {
            matches,
            default_cluster,
            remove,
        } => {
            // The table's removals apply to every route, on top of each route's own.
            let with_removals = |route: &HeaderRoute| {
                let mut route = route.clone();
                for name in remove {
                    if !route.remove.contains(name) {
                        route.remove.push(name.clone());
                    }
                }
                route
            };
            let mut entries: Vec<Value> = matches.iter().map(|m| header_route_entry(&with_removals(m))).collect();
            entries.push(default_entry(&with_removals(&HeaderRoute {
                cluster: default_cluster.clone(),
                ..HeaderRoute::default()
            })));
            json!(entries)
        }
        RouteTable::Weighted(weights) => {
            let clusters: Vec<Value> = weights
                .iter()
                .map(|(name, weight)| json!({"name": name, "weight": weight}))
                .collect();
            json!([{"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": clusters}}}])
        }
        RouteTable::HashWeighted {
            weights,
            cookie,
            ttl_seconds,
        } => {
            let clusters: Vec<Value> = weights
                .iter()
                .map(|(name, weight)| json!({"name": name, "weight": weight}))
                .collect();
            let mut cookie = json!({"name": cookie});
            if let (Some(ttl), Some(fields)) = (ttl_seconds, cookie.as_object_mut()) {
                fields.insert("ttl".to_owned(), json!(format!("{ttl}s")));
                fields.insert("path".to_owned(), json!("/"));
            }
            json!([{"match": {"prefix": "/"}, "route": {
                "weighted_clusters": {"clusters": clusters, "use_hash_policy": true},
                "hash_policy": [{"cookie": cookie}],
            }}])
        }
    }
}

/// The ECDS resource file: a DiscoveryResponse holding the wasm filter config.
pub(crate) fn ecds_document(filter: &FilterSpec, wasm_path: &Path) -> Result<String, LocalError> {
    let wasm = if let WasmCode::TypedConfig(raw) = &filter.code {
        serde_json::from_str(raw)
            .map_err(|e| LocalError::Protocol(format!("the filter's typed_config is not JSON: {e}")))?
    } else {
        built_typed_config(filter, wasm_path)
    };
    let resource = json!({
        "@type": type_url("envoy.config.core.v3.TypedExtensionConfig"),
        "name": FILTER_NAME,
        "typed_config": wasm,
    });
    Ok(json!({"resources": [resource]}).to_string())
}

/// The Wasm filter's typed_config for our module and config JSON.
fn built_typed_config(filter: &FilterSpec, wasm_path: &Path) -> Value {
    json!({
        "@type": type_url("envoy.extensions.filters.http.wasm.v3.Wasm"),
        "config": {
            "name": FILTER_NAME,
            "root_id": "",
            "vm_config": {
                "vm_id": FILTER_NAME,
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": wasm_path.to_string_lossy()}},
            },
            "configuration": {
                "@type": type_url("google.protobuf.StringValue"),
                "value": filter.configuration,
            },
            "failure_policy": filter.failure_policy.as_envoy(),
        },
    })
}

/// The bootstrap document (JSON, which Envoy reads as YAML).
pub(crate) fn bootstrap_document(config: &EnvoyConfig, layout: &Layout) -> String {
    let mut http_filters = Vec::new();
    if config.filter.is_some() {
        let ecds_dir = layout.ecds_path.parent().map(Path::to_path_buf).unwrap_or_default();
        http_filters.push(json!({
            "name": FILTER_NAME,
            "config_discovery": {
                "config_source": {
                    "path_config_source": {
                        "path": layout.ecds_path.to_string_lossy(),
                        "watched_directory": {"path": ecds_dir.to_string_lossy()},
                    },
                },
                "type_urls": [type_url("envoy.extensions.filters.http.wasm.v3.Wasm")],
            },
        }));
    }
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": type_url("envoy.extensions.filters.http.router.v3.Router")},
    }));
    let access_log = json!({
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": type_url("envoy.extensions.access_loggers.file.v3.FileAccessLog"),
            "path": layout.access_log.to_string_lossy(),
            "log_format": {
                "text_format_source": {
                    "inline_string": "[%START_TIME%] %REQ(:METHOD)% %REQ(:AUTHORITY)%%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% cluster=%UPSTREAM_CLUSTER% exposure=\"%FILTER_STATE(wasm.sticky_canary:PLAIN)%\"\n",
                },
            },
        },
    });
    let mut connection_manager = json!({
        "@type": type_url("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"),
        "stat_prefix": "ingress",
        "access_log": [access_log],
        "route_config": {
            "name": "sticky-canary-e2e",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": route_entries(&config.routes)}],
        },
        "http_filters": http_filters,
    });
    if let (Some(kb), Some(manager)) = (config.max_request_headers_kb, connection_manager.as_object_mut()) {
        manager.insert("max_request_headers_kb".to_owned(), json!(kb));
    }
    let listener = json!({
        "name": "main",
        "address": socket_address("127.0.0.1", layout.listener_port),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": connection_manager,
        }]}],
    });
    let clusters: Vec<Value> = config
        .clusters
        .iter()
        .map(|(name, addr)| {
            json!({
                "name": name,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {
                        "address": socket_address(&addr.ip().to_string(), addr.port()),
                    }}]}],
                },
            })
        })
        .collect();
    let stats_tags: Vec<Value> = STATS_TAGS
        .iter()
        .filter(|_| config.stats_tags)
        .map(|(name, regex)| json!({"tag_name": name, "regex": regex}))
        .collect();
    json!({
        "node": {"id": "sticky-canary-e2e", "cluster": "sticky-canary-e2e"},
        "admin": {"address": socket_address("127.0.0.1", layout.admin_port)},
        "stats_config": {"stats_tags": stats_tags},
        "static_resources": {"listeners": [listener], "clusters": clusters},
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_header_values_reach_envoy_intact() {
        let mut config = EnvoyConfig {
            clusters: vec![("v1".to_owned(), "127.0.0.1:1".parse().unwrap())],
            routes: RouteTable::Weighted(vec![("v1".to_owned(), 100)]),
            filter: None,
            concurrency: 1,
            log_level: "info".to_owned(),
            max_request_headers_kb: Some(96),
            stats_tags: true,
            envoy: None,
        };
        config.routes = RouteTable::ByHeader {
            matches: vec![HeaderRoute {
                header: "x-a\"b".to_owned(),
                value: "x\ny\u{1}".to_owned(),
                cluster: "v1".to_owned(),
                ..HeaderRoute::default()
            }],
            default_cluster: "v1".to_owned(),
            remove: vec!["x-token".to_owned()],
        };
        let layout = Layout {
            listener_port: 1,
            admin_port: 2,
            ecds_path: PathBuf::from("/tmp/ecds/filter.json"),
            wasm_path: PathBuf::from("/tmp/f.wasm"),
            access_log: PathBuf::from("/tmp/access.log"),
        };
        let document: Value = serde_json::from_str(&bootstrap_document(&config, &layout)).unwrap();
        let manager = &document["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(manager["max_request_headers_kb"], 96);
        let routes = &manager["route_config"]["virtual_hosts"][0]["routes"];
        assert_eq!(routes[0]["match"]["headers"][0]["name"], "x-a\"b");
        assert_eq!(routes[0]["match"]["headers"][0]["string_match"]["exact"], "x\ny\u{1}");
        assert_eq!(routes[1]["request_headers_to_remove"], json!(["x-token"]));
    }
}
