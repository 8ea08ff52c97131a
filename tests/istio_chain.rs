#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! The whole chain as it runs on the AKS add-on: `sticky-canary render` → istiod's own
//! translation → istio-agent's own module fetch and conversion → a real Envoy of each
//! revision's release line (see `sticky_canary_harness::istio` and docs/testing.md).
//!
//! For every revision and every plugin form: 10,000 keys land exactly where
//! `sticky-canary assign` says, a spoofed routing header (with or without a guessed token)
//! lands on stable, the routing token never reaches the app, a `set-weight` ramp
//! 0 → 10 → 50 → 100 → 0 under load fails no request and sends no user back, and the
//! module-fetch drills (registry unreachable, wrong digest) give the documented outcome for
//! each fail strategy, for this app and for another app on the same gateway.
//!
//! The revisions are the tested ones of `src/revisions.rs`; a test per revision and form below,
//! which `every_tested_revision_and_form_has_a_test` keeps in step with that table.
//! `STICKY_CANARY_REVISIONS=asm-1-31` limits the run to some revisions (comma-separated).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::MutexGuard;
use std::time::Instant;

#[macro_use]
mod common;

use common::{
    assert_keys_on_plan, assert_spoofed_headers_stay_on_stable, assign_on, ramp, revision, run_cli, selected, send,
    serial, served, shop, tokens_seen, write_filter_config, FileServer, OTHER_APP, OTHER_HOST, ROUTING_HEADER,
    SHOP_HOST,
};
use sticky_canary_harness::backend::seen_headers;
use sticky_canary_harness::istio::{self, newest, tested_revisions, IstioProxy, Revision, Translate};
use sticky_canary_harness::load::over_connections;
use sticky_canary_harness::{envoy_release, Backend, Client, Registry, Request};

const HOST: &str = SHOP_HOST;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// EnvoyFilter, module pulled by istio-agent from an OCI registry.
    EnvoyFilterOci,
    /// EnvoyFilter, module fetched by istio-agent over https.
    EnvoyFilterHttps,
    /// EnvoyFilter carrying the module inline.
    EnvoyFilterInline,
    /// WasmPlugin (plain Istio; the add-on's webhook refuses it), module from an OCI registry.
    WasmPlugin,
    /// TrafficExtension (Istio 1.30 and later), module from an OCI registry.
    TrafficExtension,
}

impl Form {
    fn plugin_form(self) -> &'static str {
        match self {
            Form::EnvoyFilterOci | Form::EnvoyFilterHttps => "envoyfilter",
            Form::EnvoyFilterInline => "envoyfilter-inline",
            Form::WasmPlugin => "wasmplugin",
            Form::TrafficExtension => "trafficextension",
        }
    }
}

/// Where the module comes from, as the spec's `plugin.url` and `plugin.sha256` say.
#[derive(Debug, Clone)]
enum Module {
    Url { url: String, sha256: String },
    Inline,
}

/// Everything one chain test runs against: app backends, a second app on the same gateway,
/// the module's source, and a work dir for specs and rendered manifests.
struct World {
    revision: Revision,
    form: Form,
    v1: Backend,
    v2: Backend,
    other: Backend,
    module: Module,
    work: tempfile::TempDir,
    _registry: Option<Registry>,
    _server: Option<FileServer>,
    /// The healthy module's url and digest, for drills that break it and put it back.
    registry_host: Option<String>,
}

impl World {
    fn new(revision: Revision, form: Form) -> World {
        let work = tempfile::tempdir().unwrap();
        let (module, registry, server, registry_host) = match form {
            Form::EnvoyFilterOci | Form::WasmPlugin | Form::TrafficExtension => {
                let (registry, url, digest) = common::registry_with_module("chain");
                let host = registry.host();
                (Module::Url { url, sha256: digest }, Some(registry), None, Some(host))
            }
            Form::EnvoyFilterHttps => {
                let file = work.path().join("sticky_canary_filter.wasm");
                std::fs::write(&file, sticky_canary::FILTER_WASM).unwrap();
                let server = FileServer::start(&file);
                let module = Module::Url {
                    url: server.url.clone(),
                    sha256: sticky_canary::sha256_hex(sticky_canary::FILTER_WASM),
                };
                (module, None, Some(server), None)
            }
            Form::EnvoyFilterInline => (Module::Inline, None, None, None),
        };
        std::fs::write(work.path().join("other-app.yaml"), OTHER_APP).unwrap();
        World {
            revision,
            form,
            v1: Backend::start("v1").unwrap(),
            v2: Backend::start("v2").unwrap(),
            other: Backend::start("other").unwrap(),
            module,
            work,
            _registry: registry,
            _server: server,
            registry_host,
        }
    }

    fn spec_path(&self) -> PathBuf {
        self.work.path().join("shop.yaml")
    }

    fn rendered(&self) -> PathBuf {
        self.work.path().join("rendered")
    }

    /// Writes the app spec (canary weight `v2_percent`) and renders it.
    fn render(&self, v2_percent: u32, fail_strategy: &str, module: &Module) -> Vec<PathBuf> {
        let plugin_source = match module {
            Module::Url { url, sha256 } => format!("  url: {url}\n  sha256: \"{sha256}\"\n"),
            Module::Inline => String::new(),
        };
        let plugin = format!(
            "  form: {form}\n{plugin_source}  fail_strategy: {fail_strategy}\n",
            form = self.form.plugin_form()
        );
        let spec = common::shop_spec(self.revision.name, "shop-chain-test", v2_percent, &plugin);
        std::fs::write(self.spec_path(), spec).unwrap();
        let out = self.rendered();
        run_cli(&[
            "render",
            &self.spec_path().to_string_lossy(),
            "--out",
            &out.to_string_lossy(),
        ]);
        self.inputs()
    }

    /// `set-weight` on the spec, re-rendering into the same directory, as the runbook does.
    fn set_weight(&self, v2_percent: u32) -> Vec<PathBuf> {
        common::set_weight(&self.spec_path(), v2_percent, &self.rendered());
        self.inputs()
    }

    fn inputs(&self) -> Vec<PathBuf> {
        vec![self.rendered(), self.work.path().join("other-app.yaml")]
    }

    fn translate(&self, inputs: Vec<PathBuf>) -> Translate {
        let mut translate = Translate::new(self.revision, inputs);
        let service = "svc-shop.ns-shop.svc.cluster.local";
        translate.endpoint(&format!("outbound|80||{service}"), self.v1.addr());
        translate.endpoint(&format!("outbound|80|v1|{service}"), self.v1.addr());
        translate.endpoint(&format!("outbound|80|v2|{service}"), self.v2.addr());
        translate.endpoint("outbound|80||svc-other.other.svc.cluster.local", self.other.addr());
        translate
    }

    fn start(&self, inputs: Vec<PathBuf>) -> IstioProxy {
        let envoy = envoy_release(self.revision.envoy).unwrap_or_else(|e| panic!("{e}"));
        IstioProxy::start(&envoy, self.translate(inputs))
            .unwrap_or_else(|e| panic!("{} {:?}: the gateway did not start: {e}", self.revision.name, self.form))
    }

    /// The filter config the rendered plugin carries, for `sticky-canary assign`.
    fn filter_config(&self) -> PathBuf {
        write_filter_config(
            &self.rendered().join("plugin.yaml"),
            &self.work.path().join("filter-config.json"),
        )
    }
}

/// `sticky-canary assign` for many keys at once: key -> version.
fn assign(config: &Path, keys: &[String]) -> HashMap<String, String> {
    assign_on(config, HOST, keys)
}

/// Sends one request per key over `threads` connections; returns key -> (status, version,
/// routing tokens the app saw).
fn serve_keys(gateway: SocketAddr, keys: &[String], threads: usize) -> HashMap<String, (u16, String, usize)> {
    over_connections(gateway, keys, threads, |client, key| {
        let reply = send(client, &shop(Some(key)));
        let tokens = tokens_seen(&reply.body);
        (key.clone(), (reply.status, served(&reply), tokens))
    })
    .unwrap()
    .into_iter()
    .collect()
}

// ---------------------------------------------------------------------------
// Routing, spoofing, token and ramp: one gateway per revision and form.

/// The world for one revision and form, with the one-at-a-time lock held; `None` when
/// `STICKY_CANARY_REVISIONS` leaves the revision out.
fn world_for(revision_name: &str, form: Form) -> Option<(MutexGuard<'static, ()>, World)> {
    let revision = revision(revision_name);
    if !selected(&revision) {
        eprintln!("{revision_name} not selected by STICKY_CANARY_REVISIONS: nothing to run");
        return None;
    }
    let lock = serial();
    Some((lock, World::new(revision, form)))
}

fn routing_and_ramp(revision_name: &str, form: Form) {
    let Some((_serial, world)) = world_for(revision_name, form) else {
        return;
    };
    let revision = world.revision;
    let inputs = world.render(30, "FAIL_OPEN", &world.module.clone());
    let mut gateway = world.start(inputs);
    let outcome = gateway
        .summary()
        .outcome("sticky-canary-shop")
        .or_else(|| gateway.summary().extension_configs.first())
        .cloned()
        .unwrap_or_else(|| panic!("no extension config in the translation: {:?}", gateway.summary()));
    let expected_outcome = if form == Form::EnvoyFilterInline {
        "unchanged"
    } else {
        "wasm"
    };
    assert_eq!(
        outcome.outcome, expected_outcome,
        "istio-agent's conversion: {outcome:?}"
    );

    // 10,000 keys, exactly as `sticky-canary assign` predicts; the token never reaches the app.
    let keys: Vec<String> = (0..10_000).map(|i| format!("chain-{i}")).collect();
    let predicted = assign(&world.filter_config(), &keys);
    let started = Instant::now();
    let results = serve_keys(gateway.listener(), &keys, 4);
    let elapsed = started.elapsed();
    let mut mismatches = Vec::new();
    let mut on_canary = 0;
    for key in &keys {
        let (status, version, tokens) = &results[key];
        assert_eq!(*status, 200, "key {key}");
        assert_eq!(*tokens, 0, "key {key}: the routing token reached the app");
        if version == "v2" {
            on_canary += 1;
        }
        if predicted[key] != *version {
            mismatches.push((key.clone(), predicted[key].clone(), version.clone()));
        }
    }
    eprintln!(
        "{} {form:?} (Envoy {}): 10000 keys in {elapsed:?}, {on_canary} on v2 (30% planned), {} mismatches",
        revision.name,
        revision.envoy,
        mismatches.len()
    );
    assert_keys_on_plan(&mismatches, on_canary, 10000);

    // A client-sent routing header, with or without a guessed token, changes nothing.
    let mut client = Client::connect(gateway.listener()).unwrap();
    assert_spoofed_headers_stay_on_stable(&mut client, &keys, &predicted);
    // The other app on the gateway is served, whatever it sends.
    let reply = send(
        &mut client,
        &Request::get("/").host(OTHER_HOST).header(ROUTING_HEADER, "v2"),
    );
    assert_eq!((reply.status, served(&reply)), (200, "other".to_owned()));

    // The ramp: set-weight re-renders, Istio re-translates, the running Envoy takes it.
    let label = format!("{} {:?}", world.revision.name, world.form);
    ramp(
        &mut gateway,
        HOST,
        &label,
        |percent| world.set_weight(percent),
        || world.filter_config(),
    );
}

chain_tests! {
    routing_and_ramp:
    asm_1_30_envoyfilter_oci: "asm-1-30", Form::EnvoyFilterOci;
    asm_1_30_envoyfilter_https: "asm-1-30", Form::EnvoyFilterHttps;
    asm_1_30_envoyfilter_inline: "asm-1-30", Form::EnvoyFilterInline;
    asm_1_30_wasmplugin: "asm-1-30", Form::WasmPlugin;
    asm_1_30_trafficextension: "asm-1-30", Form::TrafficExtension;
    asm_1_31_envoyfilter_oci: "asm-1-31", Form::EnvoyFilterOci;
    asm_1_31_envoyfilter_https: "asm-1-31", Form::EnvoyFilterHttps;
    asm_1_31_envoyfilter_inline: "asm-1-31", Form::EnvoyFilterInline;
    asm_1_31_wasmplugin: "asm-1-31", Form::WasmPlugin;
    asm_1_31_trafficextension: "asm-1-31", Form::TrafficExtension;
}

/// The test names above, per revision: a revision added to (or dropped from) src/revisions.rs
/// without its tests here fails this.
#[test]
fn every_tested_revision_and_form_has_a_test() {
    let source = include_str!("istio_chain.rs");
    for revision in tested_revisions() {
        let prefix = revision.name.replace('-', "_");
        let mut forms = vec![
            "envoyfilter_oci",
            "envoyfilter_https",
            "envoyfilter_inline",
            "wasmplugin",
        ];
        if revision.has_traffic_extension() {
            forms.push("trafficextension");
        }
        for form in forms {
            for test in [
                format!("    {prefix}_{form}: "),
                format!("    drills_{prefix}_{form}: "),
            ] {
                if form == "envoyfilter_inline" && test.contains("drills_") {
                    continue; // an inline module is never fetched
                }
                assert!(source.contains(&test), "no test {test:?} for {}", revision.name);
            }
        }
    }
    for line in source
        .lines()
        .filter(|l| l.trim_start().starts_with("asm_1_") || l.trim_start().starts_with("drills_asm_1_"))
    {
        let name = line.split('"').nth(1).unwrap_or("");
        assert!(
            tested_revisions().iter().any(|r| r.name == name),
            "{line}: {name} is not a tested revision in src/revisions.rs"
        );
    }
}

// ---------------------------------------------------------------------------
// Fetch-failure drills: registry unreachable, wrong digest, for each fail strategy.

/// What the gateway answers while istio-agent could not fetch the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fallback {
    /// FAIL_OPEN: allow-all RBAC; requests pass without the filter and land on stable.
    AllowAll,
    /// FAIL_CLOSE / FAIL_RELOAD: deny-all RBAC; 403 for every host on the gateway.
    DenyAll,
}

fn check_fallback(world: &World, gateway: &IstioProxy, fallback: Fallback, what: &str) {
    let outcome = gateway
        .summary()
        .extension_configs
        .iter()
        .find(|e| e.name.contains("sticky-canary-shop"))
        .cloned()
        .unwrap_or_else(|| panic!("{what}: no extension config: {:?}", gateway.summary()));
    let expected = match fallback {
        Fallback::AllowAll => "rbac-allow",
        Fallback::DenyAll => "rbac-deny",
    };
    assert_eq!(outcome.outcome, expected, "{what}: {outcome:?}");
    assert!(!outcome.error.is_empty(), "{what}: the agent's error is not reported");
    let mut client = Client::connect(gateway.listener()).unwrap();
    for i in 0..40 {
        // A spoofed routing header, with a guessed token in it on every other request.
        let value = if i % 2 == 0 {
            format!("v2;guessed-{i:04}-0123456789")
        } else {
            "v2".to_owned()
        };
        let request = shop(Some(&format!("drill-{i}"))).header(ROUTING_HEADER, value);
        let reply = send(&mut client, &request);
        let other = send(&mut client, &Request::get("/").host(OTHER_HOST));
        match fallback {
            Fallback::AllowAll => {
                assert_eq!(
                    (reply.status, served(&reply)),
                    (200, "v1".to_owned()),
                    "{what}: spoof {i}"
                );
                assert_eq!(tokens_seen(&reply.body), 0, "{what}: token reached the app");
                assert_eq!(
                    seen_headers(&reply.body, ROUTING_HEADER),
                    vec![b"v1".to_vec()],
                    "{what}: the stable route hands the app the stable name"
                );
                assert_eq!(
                    (other.status, served(&other)),
                    (200, "other".to_owned()),
                    "{what}: other app"
                );
            }
            Fallback::DenyAll => {
                assert_eq!(reply.status, 403, "{what}: this app");
                assert_eq!(other.status, 403, "{what}: the other app on the gateway");
            }
        }
    }
    let _ = world;
}

fn broken_modules(world: &World) -> Vec<(&'static str, Module)> {
    let Module::Url { url, sha256 } = world.module.clone() else {
        panic!("drills need a fetched module");
    };
    let unreachable = match &world.registry_host {
        Some(_) => "oci://127.0.0.1:9/sticky-canary:chain".to_owned(),
        None => "https://127.0.0.1:9/sticky_canary_filter.wasm".to_owned(),
    };
    let wrong = if sha256.starts_with("sha256:") {
        format!("sha256:{}", "0".repeat(64))
    } else {
        "0".repeat(64)
    };
    vec![
        (
            "registry unreachable",
            Module::Url {
                url: unreachable,
                sha256: sha256.clone(),
            },
        ),
        ("wrong digest", Module::Url { url, sha256: wrong }),
    ]
}

fn drills(revision_name: &str, form: Form) {
    let Some((_serial, world)) = world_for(revision_name, form) else {
        return;
    };
    let revision = world.revision;
    for (strategy, fallback) in [
        ("FAIL_OPEN", Fallback::AllowAll),
        ("FAIL_CLOSE", Fallback::DenyAll),
        ("FAIL_RELOAD", Fallback::DenyAll),
    ] {
        let broken = broken_modules(&world);
        // A gateway that starts while the module cannot be fetched still warms its listener.
        let (first, first_module) = &broken[0];
        let mut gateway = world.start(world.render(30, strategy, first_module));
        let what = format!("{} {form:?} {strategy}, {first} at start", revision.name);
        check_fallback(&world, &gateway, fallback, &what);
        // The other failure pushed to a running gateway.
        let (second, second_module) = &broken[1];
        gateway
            .update(world.render(30, strategy, second_module))
            .unwrap_or_else(|e| panic!("push {second}: {e}"));
        let what = format!("{} {form:?} {strategy}, {second} pushed", revision.name);
        check_fallback(&world, &gateway, fallback, &what);
        // The module back: sticky routing again, without a restart.
        gateway
            .update(world.render(30, strategy, &world.module.clone()))
            .unwrap_or_else(|e| panic!("push the healthy module: {e}"));
        let keys: Vec<String> = (0..200).map(|i| format!("recovered-{i}")).collect();
        let predicted = assign(&world.filter_config(), &keys);
        let results = serve_keys(gateway.listener(), &keys, 2);
        for key in &keys {
            assert_eq!(
                (results[key].0, &results[key].1),
                (200, &predicted[key]),
                "{} {form:?} {strategy}: after recovery, key {key}",
                revision.name
            );
        }
        eprintln!(
            "{} {form:?} {strategy}: {first} and {second} gave {fallback:?}; recovered",
            revision.name
        );
    }
}

chain_tests! {
    drills:
    drills_asm_1_30_envoyfilter_oci: "asm-1-30", Form::EnvoyFilterOci;
    drills_asm_1_30_envoyfilter_https: "asm-1-30", Form::EnvoyFilterHttps;
    drills_asm_1_30_wasmplugin: "asm-1-30", Form::WasmPlugin;
    drills_asm_1_30_trafficextension: "asm-1-30", Form::TrafficExtension;
    drills_asm_1_31_envoyfilter_oci: "asm-1-31", Form::EnvoyFilterOci;
    drills_asm_1_31_envoyfilter_https: "asm-1-31", Form::EnvoyFilterHttps;
    drills_asm_1_31_wasmplugin: "asm-1-31", Form::WasmPlugin;
    drills_asm_1_31_trafficextension: "asm-1-31", Form::TrafficExtension;
}

/// The defect this suite was written for: with only the Wasm type URL in the EnvoyFilter's
/// `config_discovery` (our render before the fix), istio-agent's allow-all fallback is
/// refused by Envoy and the whole listener fails, for every app on the gateway.
#[test]
fn without_the_rbac_type_url_a_failed_fetch_breaks_every_host() {
    let revision = newest();
    let _serial = serial();
    let world = World::new(revision, Form::EnvoyFilterOci);
    let broken = broken_modules(&world);
    world.render(30, "FAIL_OPEN", &broken[0].1);
    let plugin = world.rendered().join("plugin.yaml");
    let text = std::fs::read_to_string(&plugin).unwrap();
    let rbac = "\n          - type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
    assert!(
        text.contains(rbac),
        "the rendered EnvoyFilter does not list the RBAC type:\n{text}"
    );
    std::fs::write(&plugin, text.replace(rbac, "")).unwrap();
    let envoy = envoy_release(revision.envoy).unwrap();
    let outcome = IstioProxy::start(&envoy, world.translate(world.inputs()));
    match outcome {
        // Envoy refused the fallback: the listener is never ready...
        Err(e) => eprintln!("old render: the gateway never became ready: {e}"),
        // ...or it serves, but not these hosts.
        Ok(gateway) => {
            let mut client = Client::connect(gateway.listener()).unwrap();
            let reply = send(&mut client, &Request::get("/").host(OTHER_HOST));
            assert_ne!(
                reply.status, 200,
                "the old render survived the fallback: the check is void"
            );
            eprintln!("old render: the other app got {}", reply.status);
        }
    }
}

/// istioctl analyze's own analyzers (no cluster) find no error in anything we render.
#[test]
fn istioctl_analyze_finds_no_error_in_rendered_manifests() {
    let _serial = serial();
    let work = tempfile::tempdir().unwrap();
    let mut inputs = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests")];
    for example in ["my-app", "frontend-backend", "gateway-api"] {
        for form in ["envoyfilter", "envoyfilter-inline", "wasmplugin", "trafficextension"] {
            let out = work.path().join(format!("{example}-{form}"));
            run_cli(&[
                "render",
                &format!("{}/examples/{example}.yaml", env!("CARGO_MANIFEST_DIR")),
                "--plugin-form",
                form,
                "--out",
                &out.to_string_lossy(),
            ]);
            inputs.push(out);
        }
    }
    for revision in tested_revisions().iter().filter(|r| selected(r)) {
        for input in &inputs {
            let report = istio::analyze(*revision, std::slice::from_ref(input))
                .unwrap_or_else(|e| panic!("{}: {e}", revision.name));
            eprintln!("{} analyze {}:\n{report}", revision.name, input.display());
        }
    }
}

// ---------------------------------------------------------------------------
// A shared gateway: many apps rendered together, one plugin, through Istio's translation.

/// App `i` of a fleet: its own split (2 or 3 versions), key source (a cookie or a header),
/// salt, and for every fourth app a routing header of its own. Returns the spec and how its
/// users send their key.
fn fleet_spec(i: usize) -> (String, String, (bool, String)) {
    let name = format!("app-{i:02}");
    let host = format!("{name}.example.com");
    let (cookie, key_name) = if i.is_multiple_of(2) {
        (true, format!("session-{i}"))
    } else {
        (false, format!("x-user-{i}"))
    };
    let chain = if cookie {
        format!("[{{cookie: {key_name}}}]")
    } else {
        format!("[{{header: {key_name}}}]")
    };
    let canary = 5 + (i * 37) % 86;
    let versions = if i % 3 == 2 {
        let v3 = (canary / 3).max(1);
        format!(
            "  - {{name: v1, image: example/{name}, weight: {}}}\n  - {{name: v2, image: example/{name}, weight: {}}}\n  - {{name: v3, image: example/{name}, weight: {v3}}}\n",
            100 - canary,
            canary - v3
        )
    } else {
        format!(
            "  - {{name: v1, image: example/{name}, weight: {}}}\n  - {{name: v2, image: example/{name}, weight: {canary}}}\n",
            100 - canary
        )
    };
    let routing_header = if i % 4 == 3 {
        format!("  routing_header: x-{name}-version\n")
    } else {
        String::new()
    };
    let spec = format!(
        "app: {name}\nrevision: {revision}\nhosts: [{host}]\nversions:\n{versions}routing:\n  salt: {name}-salt-{i}\n{routing_header}  key_chain: {chain}\nplugin:\n  form: envoyfilter-inline\n",
        revision = newest().name,
    );
    (name, spec, (cookie, key_name))
}

/// `n` apps rendered together onto one gateway, translated by Istio, in one Envoy: 5,000 keys
/// per app, each request with a spoofed routing header and a guessed token, all served as
/// `sticky-canary assign` predicts.
fn fleet(n: usize) {
    const KEYS: usize = 5_000;
    let _serial = serial();
    let work = tempfile::tempdir().unwrap();
    let specs = work.path().join("specs");
    std::fs::create_dir_all(&specs).unwrap();
    let fleet: Vec<(String, String, (bool, String))> = (0..n).map(fleet_spec).collect();
    for (name, spec, _) in &fleet {
        std::fs::write(specs.join(format!("{name}.yaml")), spec).unwrap();
    }
    let out = work.path().join("rendered");
    run_cli(&["render", &specs.to_string_lossy(), "--out", &out.to_string_lossy()]);
    let plugins: Vec<PathBuf> = std::fs::read_dir(out.join("gateway"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(
        plugins.len(),
        2,
        "one plugin (and a kustomization) for {n} apps: {plugins:?}"
    );
    let plugin = plugins
        .iter()
        .find(|p| p.ends_with("plugin-external.yaml"))
        .expect("plugin-external.yaml");
    let config = write_filter_config(plugin, &work.path().join("filter-config.json"));

    let mut backends = Vec::new();
    let mut translate = Translate::new(newest(), vec![out.clone()]);
    for (name, spec, _) in &fleet {
        let versions = spec.matches("{name: v").count();
        let service = format!("svc-{name}.{name}.svc.cluster.local");
        for v in 1..=versions {
            let backend = Backend::start(&format!("{name}-v{v}")).unwrap();
            translate.endpoint(&format!("outbound|80|v{v}|{service}"), backend.addr());
            if v == 1 {
                translate.endpoint(&format!("outbound|80||{service}"), backend.addr());
            }
            backends.push(backend);
        }
    }
    let envoy = envoy_release(newest().envoy).unwrap();
    let gateway = IstioProxy::start(&envoy, translate).unwrap_or_else(|e| panic!("{n} apps: {e}"));
    assert_eq!(
        gateway.summary().extension_configs.len(),
        1,
        "{n} apps, one Wasm plugin: {:?}",
        gateway.summary()
    );

    let started = Instant::now();
    let listener = gateway.listener();
    let results: Vec<(String, usize, HashMap<String, usize>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|worker| {
                let (fleet, config) = (&fleet, &config);
                scope.spawn(move || {
                    let mut client = Client::connect(listener).unwrap();
                    let mut out = Vec::new();
                    for (name, spec, (cookie, key_name)) in fleet.iter().skip(worker).step_by(4) {
                        let host = format!("{name}.example.com");
                        let routing_header = if spec.contains("routing_header:") {
                            format!("x-{name}-version")
                        } else {
                            ROUTING_HEADER.to_owned()
                        };
                        let keys: Vec<String> = (0..KEYS).map(|k| format!("{name}-user-{k}")).collect();
                        let predicted = assign_on(config, &host, &keys);
                        let mut mismatches = 0;
                        let mut served_by: HashMap<String, usize> = HashMap::new();
                        for key in &keys {
                            let mut request = Request::get("/")
                                .host(&host)
                                .header(&routing_header, "v2;guessed-0123456789abcdef0123456789");
                            request = if *cookie {
                                request.header("cookie", format!("{key_name}={key}"))
                            } else {
                                request.header(key_name, key)
                            };
                            let reply = send(&mut client, &request);
                            let got = served(&reply);
                            if reply.status != 200 || got != format!("{name}-{}", predicted[key]) {
                                mismatches += 1;
                            }
                            assert!(
                                seen_headers(&reply.body, &routing_header)
                                    .iter()
                                    .all(|v| !v.contains(&b';')),
                                "{name}: token reached the app"
                            );
                            *served_by.entry(got).or_default() += 1;
                        }
                        out.push((name.clone(), mismatches, served_by));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    eprintln!(
        "{n} apps on one gateway through Istio's translation, {KEYS} keys each, in {:?}:",
        started.elapsed()
    );
    for (name, mismatches, served_by) in &results {
        eprintln!("  {name}: {mismatches} mismatches; served {served_by:?}");
    }
    assert_eq!(results.len(), n);
    for (name, mismatches, served_by) in &results {
        assert_eq!(
            *mismatches, 0,
            "{name}: {mismatches} of {KEYS} keys not where assign says"
        );
        assert!(served_by.len() >= 2, "{name}: every key on one version: {served_by:?}");
    }
}

#[test]
fn two_apps_on_one_gateway_route_every_key_as_assign_predicts() {
    fleet(2);
}

#[test]
fn twenty_apps_on_one_gateway_route_every_key_as_assign_predicts() {
    fleet(20);
}

/// Envoy's own validation of the Wasm config the rendered EnvoyFilter carries, in the remote
/// form Envoy sees when nothing converts it: `http_uri` needs a cluster (Istio's placeholder
/// `_`), which our render lacked before; the same config without it is refused.
#[test]
fn the_rendered_remote_wasm_config_passes_envoy_validation_on_every_line() {
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/plugin.yaml")).unwrap();
    let plugin: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let typed_config = plugin
        .pointer("/spec/configPatches/0/patch/value/typed_config")
        .expect("the EnvoyFilter's EXTENSION_CONFIG patch")
        .clone();
    assert!(
        typed_config.pointer("/config/vm_config/code/remote/http_uri").is_some(),
        "{typed_config}"
    );
    let mut without_cluster = typed_config.clone();
    without_cluster
        .pointer_mut("/config/vm_config/code/remote/http_uri")
        .and_then(|uri| uri.as_object_mut())
        .map(|uri| uri.remove("cluster"));
    let work = tempfile::tempdir().unwrap();
    let bootstrap = |typed_config: &serde_json::Value| {
        serde_json::json!({
            "static_resources": {"listeners": [{
                "name": "validate",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "validate",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
                        "http_filters": [
                            {"name": "sticky-canary", "typed_config": typed_config},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                        ],
                    },
                }]}],
            }]},
        })
        .to_string()
    };
    let (good, bad) = (
        work.path().join("rendered.json"),
        work.path().join("without-cluster.json"),
    );
    std::fs::write(&good, bootstrap(&typed_config)).unwrap();
    std::fs::write(&bad, bootstrap(&without_cluster)).unwrap();
    for revision in tested_revisions().iter().filter(|r| selected(r)) {
        let envoy = envoy_release(revision.envoy).unwrap();
        let validate = |path: &Path| {
            Command::new(&envoy)
                .args(["--mode", "validate", "-c"])
                .arg(path)
                .output()
                .unwrap()
        };
        let output = validate(&good);
        assert!(
            output.status.success(),
            "Envoy {} refused the rendered config:\n{}",
            revision.envoy,
            String::from_utf8_lossy(&output.stderr)
        );
        let output = validate(&bad);
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && log.contains("http_upstream_type"),
            "Envoy {} took an http_uri without a cluster:\n{log}",
            revision.envoy
        );
    }
}

/// The identity header (docs/config.md) is trustworthy only if Istio's JWT filter, which copies
/// a claim into it (`RequestAuthentication.outputClaimToHeaders`), runs before our filter. Both
/// plugin forms, as istiod orders the gateway's HTTP filters: `jwt_authn` first, then ours.
#[test]
fn istios_jwt_filter_runs_before_ours_in_both_plugin_forms() {
    const REQUEST_AUTHENTICATION: &str = r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt-users
  namespace: aks-istio-ingress
spec:
  selector:
    matchLabels:
      istio: aks-istio-ingressgateway-external
  jwtRules:
  - issuer: https://login.example.com/
    jwks: '{"keys":[{"kty":"RSA","e":"AQAB","kid":"k1","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw"}]}'
    outputClaimToHeaders:
    - header: x-user-id
      claim: sub
"#;
    let _serial = serial();
    for form in [Form::EnvoyFilterInline, Form::WasmPlugin, Form::TrafficExtension] {
        let world = World::new(newest(), form);
        let module = match form {
            Form::WasmPlugin | Form::TrafficExtension => world.module.clone(),
            _ => Module::Inline,
        };
        let mut inputs = world.render(30, "FAIL_OPEN", &module);
        let auth = world.work.path().join("request-authentication.yaml");
        std::fs::write(&auth, REQUEST_AUTHENTICATION).unwrap();
        inputs.push(auth);
        let gateway = world.start(inputs);
        let lds: serde_json::Value =
            serde_json::from_slice(&std::fs::read(gateway.xds_dir().join("lds.json")).unwrap()).unwrap();
        let filters: Vec<String> = lds["resources"][0]["filter_chains"][0]["filters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["name"] == "envoy.filters.network.http_connection_manager")
            .flat_map(|hcm| {
                hcm["typed_config"]["http_filters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|f| f["name"].as_str().unwrap_or("").to_owned())
            .collect();
        eprintln!("{form:?}: the gateway's HTTP filters, in order: {filters:?}");
        let jwt = filters.iter().position(|n| n == "envoy.filters.http.jwt_authn");
        let ours = filters.iter().position(|n| n.contains("sticky-canary"));
        let router = filters.iter().position(|n| n == "envoy.filters.http.router");
        assert!(
            matches!((jwt, ours, router), (Some(j), Some(o), Some(r)) if j < o && o < r),
            "{form:?}: expected jwt_authn, then ours, then the router: {filters:?}"
        );
    }
}

/// `routing.exposure_log: true`: the rendered `exposure-log.yaml` (an EnvoyFilter merging an
/// access log into the gateway's connection managers), through istiod's translation, makes the
/// gateway print each decision on its stdout: route, version, key source and bucket, as
/// policy-core computes them, with the request id; `-` for a host no route serves.
#[test]
fn the_rendered_exposure_log_prints_each_decision_on_the_gateways_stdout() {
    let _serial = serial();
    let world = World::new(newest(), Form::EnvoyFilterInline);
    world.render(30, "FAIL_OPEN", &Module::Inline);
    let spec = std::fs::read_to_string(world.spec_path()).unwrap().replacen(
        "  salt: shop-chain-test\n",
        "  salt: shop-chain-test\n  exposure_log: true\n",
        1,
    );
    std::fs::write(world.spec_path(), spec).unwrap();
    run_cli(&[
        "render",
        &world.spec_path().to_string_lossy(),
        "--out",
        &world.rendered().to_string_lossy(),
    ]);
    assert!(world.rendered().join("exposure-log.yaml").is_file());
    let gateway = world.start(world.inputs());
    let config = std::fs::read_to_string(world.filter_config()).unwrap();
    let policy = policy_core::Policy::from_json(config.as_bytes()).unwrap();
    let route = policy.find_route(HOST.as_bytes(), b"/").unwrap();
    let mut client = Client::connect(gateway.listener()).unwrap();
    let mut expected = Vec::new();
    for i in 0..40 {
        let key = format!("exposed-{i}");
        let reply = send(&mut client, &shop(Some(&key)));
        assert_eq!(reply.status, 200);
        let (bucket, index) = route.assign(key.as_bytes());
        let version = route.versions()[index].name();
        assert_eq!(served(&reply), version, "{key}");
        // The gateway sets its own request id (Istio does not trust a client's), so match the record.
        expected.push(format!(
            "sticky=\"route=shop version={version} source=cookie bucket={bucket}\""
        ));
    }
    let other = send(
        &mut client,
        &Request::get("/")
            .host(OTHER_HOST)
            .header("x-request-id", "request-other"),
    );
    assert_eq!(other.status, 200);
    expected.push(format!("{OTHER_HOST}/\" 200"));
    // Envoy flushes file access logs about once a second.
    let stdout = gateway.envoy().dir().unwrap().join("envoy.stdout");
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(&stdout).unwrap_or_default();
        let missing: Vec<&String> = expected.iter().filter(|line| !log.contains(line.as_str())).collect();
        if missing.is_empty() {
            assert!(!log.contains("exposed-"), "a key reached the log:\n{log}");
            let other = log.lines().find(|l| l.contains(&format!("{OTHER_HOST}/\""))).unwrap();
            assert!(other.ends_with(" sticky=\"-\""), "a host no route serves: {other}");
            let lines = log.lines().filter(|l| l.contains(" sticky=\"route=shop ")).count();
            assert_eq!(lines, 40, "one line per decided request:\n{log}");
            assert!(
                log.lines().all(|l| !l.contains("request_id=-")),
                "every line carries the request id:\n{log}"
            );
            break;
        }
        assert!(
            started.elapsed().as_secs() < 15,
            "not in the gateway's stdout: {missing:?}\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The spec of the three-version shop: v1 stable, v2 with a `max_weight` (an arm that ramps on
/// its own), v3 last.
fn arms_spec(revision: &str, v2: u32, v3: u32) -> String {
    let versions = format!(
        "  - name: v1\n    image: example/shop:1\n    weight: {v1}\n  \
           - name: v2\n    image: example/shop:2\n    weight: {v2}\n    max_weight: 30\n  \
           - name: v3\n    image: example/shop:3\n    weight: {v3}\n",
        v1 = 100 - v2 - v3,
    );
    common::shop_spec_with_versions(revision, "shop-arms-chain", &versions, "  form: envoyfilter-inline\n")
}

/// A/B/n and the blue/green cut-over through Istio's translation on the newest revision: the
/// three-version spec rendered, translated by istiod's code and served by the revision's Envoy;
/// `set-weight` of the first arm moves only users between it and stable; `cutover --to v3`
/// sends newcomers to v3 at once while users with an id cookie keep their version; `--rollback`
/// puts every one of them back where the weights say.
#[test]
fn newest_revision_arms_and_cutover_through_istio() {
    let _serial = serial();
    let revision = newest();
    let work = tempfile::tempdir().unwrap();
    let backends: Vec<Backend> = ["v1", "v2", "v3"].iter().map(|v| Backend::start(v).unwrap()).collect();
    let spec = work.path().join("shop.yaml");
    let rendered = work.path().join("rendered");
    std::fs::write(&spec, arms_spec(revision.name, 10, 10)).unwrap();
    run_cli(&["render", &spec.to_string_lossy(), "--out", &rendered.to_string_lossy()]);
    let mut translate = Translate::new(revision, vec![rendered.clone()]);
    let service = "svc-shop.ns-shop.svc.cluster.local";
    translate.endpoint(&format!("outbound|80||{service}"), backends[0].addr());
    for backend in &backends {
        translate.endpoint(&format!("outbound|80|{}|{service}", backend.version()), backend.addr());
    }
    let envoy = envoy_release(revision.envoy).unwrap_or_else(|e| panic!("{e}"));
    let mut gateway = IstioProxy::start(&envoy, translate).unwrap_or_else(|e| panic!("the gateway did not start: {e}"));
    let config = || write_filter_config(&rendered.join("plugin.yaml"), &work.path().join("filter-config.json"));
    let keys: Vec<String> = (0..2000).map(|i| format!("arm-user-{i}")).collect();
    let serve = |gateway: &IstioProxy| -> HashMap<String, String> {
        serve_keys(gateway.listener(), &keys, 4)
            .into_iter()
            .map(|(k, (status, version, _))| {
                assert_eq!(status, 200, "{k}");
                (k, version)
            })
            .collect()
    };
    let before = serve(&gateway);
    assert_eq!(
        before,
        assign(&config(), &keys),
        "{}: three versions at 80/10/10",
        revision.name
    );

    // The first arm from 10 to 25 %: only users between v2 and v1 move, v3's keep their version.
    run_cli(&[
        "set-weight",
        &spec.to_string_lossy(),
        "v2",
        "25",
        "--out",
        &rendered.to_string_lossy(),
    ]);
    gateway.update(vec![rendered.clone()]).unwrap_or_else(|e| panic!("{e}"));
    let after = serve(&gateway);
    assert_eq!(after, assign(&config(), &keys), "{}: at 65/25/10", revision.name);
    let moved: Vec<_> = keys.iter().filter(|k| before[*k] != after[*k]).collect();
    assert!(!moved.is_empty());
    for key in &moved {
        let pair = [before[*key].as_str(), after[*key].as_str()];
        assert!(pair.contains(&"v1") && pair.contains(&"v2"), "{key} moved {pair:?}");
    }

    // The cut-over to v3: users with an id cookie keep their version, newcomers land on v3.
    let mut client = Client::connect(gateway.listener()).unwrap();
    let visit = |client: &mut Client, jar: &mut sticky_canary_harness::CookieJar| -> String {
        let reply = send(client, &jar.apply(Request::get("/").host(HOST)));
        jar.store(&reply);
        served(&reply)
    };
    let mut existing: Vec<(sticky_canary_harness::CookieJar, String)> = (0..100)
        .map(|_| {
            let mut jar = sticky_canary_harness::CookieJar::default();
            let version = visit(&mut client, &mut jar);
            (jar, version)
        })
        .collect();
    run_cli(&[
        "cutover",
        &spec.to_string_lossy(),
        "--to",
        "v3",
        "--idle",
        "1h",
        "--deadline",
        "2h",
        "--out",
        &rendered.to_string_lossy(),
    ]);
    gateway.update(vec![rendered.clone()]).unwrap_or_else(|e| panic!("{e}"));
    // The filter's clock is read once a second: past the start before any newcomer arrives.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    for (jar, version) in &mut existing {
        assert_eq!(&visit(&mut client, jar), version, "an existing user during the drain");
    }
    let mut newcomers: Vec<sticky_canary_harness::CookieJar> =
        (0..100).map(|_| sticky_canary_harness::CookieJar::default()).collect();
    for jar in &mut newcomers {
        assert_eq!(visit(&mut client, jar), "v3", "a newcomer during the drain");
        assert_eq!(visit(&mut client, jar), "v3");
    }
    // Rollback: everyone where the weights (65/25/10) put their id.
    run_cli(&[
        "cutover",
        &spec.to_string_lossy(),
        "--rollback",
        "--out",
        &rendered.to_string_lossy(),
    ]);
    gateway.update(vec![rendered.clone()]).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<String> = newcomers
        .iter()
        .chain(existing.iter().map(|(jar, _)| jar))
        .map(|jar| {
            let value = jar.cookies.get("sticky-canary-id").expect("an id cookie");
            String::from_utf8_lossy(policy_core::ClientId::parse(value.as_bytes()).key).into_owned()
        })
        .collect();
    let planned = assign(&config(), &ids);
    let jars = newcomers.iter_mut().chain(existing.iter_mut().map(|(jar, _)| jar));
    let mut off = 0;
    for (jar, id) in jars.zip(&ids) {
        off += usize::from(visit(&mut client, jar) != planned[id]);
    }
    assert_eq!(off, 0, "users not where the weights put them after the rollback");
}
