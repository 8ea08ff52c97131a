//! Many apps on one shared gateway: one plugin per gateway, each app's objects in its own directory.
//!
//! The AKS add-on's ingress gateway serves every app team of the cluster. One
//! plugin per app would make every request pay one Wasm filter per app, and
//! lets each filter's view of the routing header fight the others'. Here the
//! plugin is one per gateway (`istio: aks-istio-ingressgateway-external` and
//! `-internal`), and its filter config holds every app's route (policy-core
//! picks the route by host, so a request costs the same with 50 apps as with
//! 1). Each app keeps its own spec, and its own Deployments, Service, HPAs,
//! Gateway, VirtualService and DestinationRule in its own directory.
//!
//! ```text
//! OUT/kustomization.yaml            gateway/ and one directory per app
//! OUT/gateway/plugin-external.yaml  the EnvoyFilter sticky-canary-external: every external app's route
//! OUT/gateway/kustomization.yaml
//! OUT/my-app/istio.yaml ...         what `render` of that spec alone writes, minus plugin.yaml
//! ```
//!
//! What two specs may not do together is refused with both file names: the
//! same app name, the same host and path prefix on one gateway, different
//! plugin settings for one gateway, one namespace with two revisions, one
//! dependent service claimed twice.

use std::collections::BTreeMap;

use serde_yaml_ng::Value as Yaml;

use super::error::RenderError;
use super::monitoring;
use super::output::{file, kustomization, kustomization_of, File, Rendered, GATEWAY_DIR};
use super::plugin::{
    exposure_access_log, fail_strategy_warning, plugin_file, single_install, Install, EXPOSURE_LOG_NOTE,
};
use super::single::app_files;
use super::spec::{filter_config, App, Ingress, PluginForm};
use super::token::Tokens;

/// One spec: where it came from (for messages and the generated-by line) and the checked app.
pub type Input = (String, App);

fn ingress_key(ingress: Ingress) -> &'static str {
    match ingress {
        Ingress::External => "external",
        Ingress::Internal => "internal",
        Ingress::GatewayApi => "gateway-api",
    }
}

/// How a host is compared: lowercase, without a trailing dot (as policy-core matches it).
fn host_key(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Every conflict between the specs, each naming both files.
fn conflicts(inputs: &[&Input]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    let mut hosts: BTreeMap<(Ingress, String, String), (&str, &str)> = BTreeMap::new();
    let mut namespaces: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    let mut dependents: BTreeMap<(&str, &str), (&str, &str)> = BTreeMap::new();
    let mut plugins: BTreeMap<Ingress, &Input> = BTreeMap::new();
    for input in inputs {
        let (source, app) = (input.0.as_str(), &input.1);
        if let Some(other) = names.insert(&app.name, source) {
            errors.push(format!(
                "{source}: app {:?} is also the app of {other}: app names name every object, so each app has one spec",
                app.name
            ));
        }
        for host in &app.hosts {
            let prefix = app.path_prefix.clone().unwrap_or_default();
            let key = (app.ingress, host_key(host), prefix.clone());
            if let Some((other, other_app)) = hosts.get(&key) {
                let on = if prefix.is_empty() {
                    String::new()
                } else {
                    format!(" with path_prefix {prefix:?}")
                };
                errors.push(format!(
                    "{source}: host {host:?}{on} is claimed by app {:?} here and by app {other_app:?} in {other} on the same gateway ({}): one host and path belong to one app",
                    app.name,
                    app.ingress_selector()
                ));
            } else {
                hosts.insert(key, (source, &app.name));
            }
        }
        match namespaces.get(app.namespace.as_str()) {
            Some((other, revision)) if *revision != app.revision => errors.push(format!(
                "{source}: namespace {:?} has revision {:?} here but {revision:?} in {other}: one namespace has one istio.io/rev label",
                app.namespace, app.revision
            )),
            Some(_) => {}
            None => {
                namespaces.insert(&app.namespace, (source, &app.revision));
            }
        }
        for dep in &app.dependents {
            if let Some((other, other_app)) = dependents.insert((&dep.service, &dep.namespace), (source, &app.name)) {
                errors.push(format!(
                    "{source}: dependent service {}.{} is also a dependent of app {other_app:?} in {other}: its mesh VirtualService can follow one app's routing header",
                    dep.service, dep.namespace
                ));
            }
        }
        match plugins.get(&app.ingress) {
            // Each Gateway API app has a gateway and a plugin of its own: nothing to agree on.
            _ if app.ingress == Ingress::GatewayApi => {}
            None => {
                plugins.insert(app.ingress, input);
            }
            Some(first) => {
                let (a, b) = (&first.1, app);
                let differs = [
                    ("plugin.form", a.plugin.form != b.plugin.form),
                    ("plugin.url / plugin.sha256", a.plugin.source != b.plugin.source),
                    ("plugin.fail_strategy", a.plugin.fail_strategy != b.plugin.fail_strategy),
                    ("plugin.phase", a.plugin.phase != b.plugin.phase),
                    (
                        "plugin.image_pull_policy",
                        a.plugin.image_pull_policy != b.plugin.image_pull_policy,
                    ),
                    (
                        "plugin.image_pull_secret",
                        a.plugin.image_pull_secret != b.plugin.image_pull_secret,
                    ),
                    ("routing.response_header", a.response_header != b.response_header),
                    ("routing.exposure_log", a.exposure_log != b.exposure_log),
                ];
                for (field, different) in differs {
                    if different {
                        errors.push(format!(
                            "{source}: {field} differs from {}: the apps on one gateway share one plugin, so they agree on it (keep it the same in every spec, or in a shared fragment your platform team owns)",
                            first.0
                        ));
                    }
                }
            }
        }
    }
    errors
}

/// One plugin per gateway the apps use (external first), its config holding every app's route
/// in app-name order. `Err` lists every conflict, naming both specs.
pub fn gateway_installs<'a>(inputs: &[&'a Input], tokens: &Tokens) -> Result<Vec<Install<'a>>, RenderError> {
    let errors = conflicts(inputs);
    if !errors.is_empty() {
        return Err(RenderError::Conflicts(errors));
    }
    let mut installs = Vec::new();
    let mut errors = Vec::new();
    for ingress in [Ingress::External, Ingress::Internal] {
        let mut apps: Vec<&'a Input> = inputs.iter().copied().filter(|i| i.1.ingress == ingress).collect();
        apps.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        let Some(first) = apps.first() else { continue };
        let routes = apps.iter().map(|i| i.1.filter_route(tokens)).collect();
        let config = filter_config(routes, first.1.response_header.as_deref(), first.1.exposure_log);
        // Each route was valid alone; together they must be too (policy-core checks overlaps).
        let json = serde_json::to_string(&config).unwrap_or_default();
        if let Err(policy_errors) = policy_core::Policy::from_json(json.as_bytes()) {
            for e in policy_errors.0 {
                let source = e
                    .path
                    .strip_prefix("routes[")
                    .and_then(|rest| rest.split(']').next())
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| apps.get(i))
                    .map_or("(the shared filter config)", |i| i.0.as_str());
                errors.push(format!("{source}: on the shared gateway filter: {e}"));
            }
        }
        installs.push(Install {
            name: format!("sticky-canary-{}", ingress_key(ingress)),
            label: ("sticky-canary/gateway", ingress_key(ingress).to_owned()),
            selector: first.1.ingress_selector(),
            plugin: &first.1.plugin,
            config,
            gateway_api: None,
        });
    }
    if errors.is_empty() {
        Ok(installs)
    } else {
        Err(RenderError::Conflicts(errors))
    }
}

/// Renders every app for a shared gateway (layout in the module docs). `form` overrides the
/// specs' plugin form. `Err` holds every problem, one per line, each naming its spec.
pub fn render_shared(inputs: &[Input], form: Option<PluginForm>, tokens: &Tokens) -> Result<Rendered, RenderError> {
    let mut sorted: Vec<&Input> = inputs.iter().collect();
    sorted.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    let installs = gateway_installs(&sorted, tokens)?;
    let all_sources = sorted
        .iter()
        .map(|i| i.0.replace('\\', "/"))
        .collect::<Vec<_>>()
        .join(" ");

    let mut notes = Vec::new();
    let mut files: Vec<File> = Vec::new();
    let mut gateway_files = Vec::new();
    for install in &installs {
        let served: Vec<&str> = sorted
            .iter()
            .filter(|i| i.1.ingress_selector() == install.selector)
            .map(|i| i.1.name.as_str())
            .collect();
        let form = form.unwrap_or(install.plugin.form);
        let gateway = install.name.trim_start_matches("sticky-canary-");
        let file_name = format!("{GATEWAY_DIR}/plugin-{gateway}.yaml");
        notes.extend(fail_strategy_warning(install, &served));
        let (plugin, note) = plugin_file(install, form, &file_name, &mut notes);
        let note = format!(
            "One plugin for every app on this gateway ({}): {}.\n{note}",
            install.selector,
            served.join(", ")
        );
        gateway_files.push(file(&file_name, &all_sources, &note, vec![plugin]));
        if let Some(log) = exposure_access_log(install) {
            let log_name = format!("{GATEWAY_DIR}/exposure-log-{gateway}.yaml");
            gateway_files.push(file(&log_name, &all_sources, EXPOSURE_LOG_NOTE, vec![log]));
        }
    }
    gateway_files.push(kustomization(&format!("{GATEWAY_DIR}/"), &all_sources, &gateway_files));
    if let Some(first) = sorted.first() {
        gateway_files.extend(monitoring::gateway_files(
            &first.1,
            &all_sources,
            &format!("{GATEWAY_DIR}/"),
        ));
    }

    let mut namespaces_done = Vec::new();
    let mut directories = vec![Yaml::from(GATEWAY_DIR)];
    for input in &sorted {
        let (source, app) = (input.0.replace('\\', "/"), &input.1);
        notes.extend(app.warnings.iter().map(|w| format!("warning: {source}: {w}")));
        // One Namespace object per namespace, with the first app (by name) that lives there.
        let with_namespace = !namespaces_done.contains(&app.namespace);
        namespaces_done.push(app.namespace.clone());
        let dir = format!("{}/", app.name);
        let mut app_dir = app_files(app, &source, tokens, with_namespace, &dir);
        if app.ingress == Ingress::GatewayApi {
            // Its own gateway, so its own plugin, beside its other objects.
            let install = single_install(app, tokens);
            let form = form.unwrap_or(install.plugin.form);
            let name = format!("{dir}plugin.yaml");
            notes.extend(fail_strategy_warning(&install, &[app.name.as_str()]));
            let (plugin, note) = plugin_file(&install, form, &name, &mut notes);
            app_dir.push(file(&name, &source, &note, vec![plugin]));
            if let Some(log) = exposure_access_log(&install) {
                app_dir.push(file(
                    &format!("{dir}exposure-log.yaml"),
                    &source,
                    EXPOSURE_LOG_NOTE,
                    vec![log],
                ));
            }
        }
        app_dir.push(kustomization(&dir, &source, &app_dir));
        // After the kustomization, which leaves them out: the PrometheusRule kind may not exist.
        app_dir.extend(monitoring::files(app, &source, &dir, false));
        files.extend(app_dir);
        directories.push(Yaml::from(app.name.as_str()));
    }
    files.splice(0..0, gateway_files);
    files.push(kustomization_of("kustomization.yaml", &all_sources, directories));
    notes.push(format!(
        "{} app(s) on {} add-on gateway plugin(s): {}",
        sorted.iter().filter(|i| i.1.ingress != Ingress::GatewayApi).count(),
        installs.len(),
        installs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
    ));
    let own: Vec<&str> = sorted
        .iter()
        .filter(|i| i.1.ingress == Ingress::GatewayApi)
        .map(|i| i.1.name.as_str())
        .collect();
    if !own.is_empty() {
        notes.push(format!(
            "on Gateway API gateways of their own, each with its own plugin (APP/plugin.yaml): {}",
            own.join(", ")
        ));
    }
    Ok(Rendered { files, notes })
}
