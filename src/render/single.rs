//! `render` of one spec: the app's own files (namespace, workloads, routing objects) and, for
//! an app alone on its gateway, its plugin and kustomization. The same app files go into a
//! shared-gateway render ([`super::shared`]), one directory per app.

use super::analysis;
use super::gateway_api;
use super::monitoring;
use super::objects;
use super::output::{file, kustomization, File, Rendered};
use super::plugin::{exposure_access_log, fail_strategy_warning, plugin_file, single_install, EXPOSURE_LOG_NOTE};
use super::spec::{App, Ingress, PluginForm, Progressive, MESH_TOKEN_HEADER};
use super::token::Tokens;

/// Renders every file for the app, with the plugin in the form the spec chose: one app on its
/// own plugin (for a gateway shared with other apps, [`super::render_shared`]).
pub fn render(app: &App, source: &str, tokens: &Tokens) -> Rendered {
    render_with_form(app, app.plugin.form, source, tokens)
}

/// Renders with the plugin in a given form (the golden files keep the other forms for comparison).
pub fn render_with_form(app: &App, form: PluginForm, source: &str, tokens: &Tokens) -> Rendered {
    let source = source.replace('\\', "/");
    let mut files = app_files(app, &source, tokens, true, "");
    let mut notes: Vec<String> = app.warnings.iter().map(|w| format!("warning: {source}: {w}")).collect();
    let install = single_install(app, tokens);
    notes.extend(fail_strategy_warning(&install, &[app.name.as_str()]));
    let (plugin, note) = plugin_file(&install, form, "plugin.yaml", &mut notes);
    if app.ingress != Ingress::GatewayApi {
        notes.push(format!(
            "plugin.yaml: one plugin for {} alone. On a gateway shared with other apps, render every app's spec together \
             (`sticky-canary render apps/ --out DIR`): one plugin per gateway, whatever the number of apps.",
            app.name
        ));
    }
    files.push(file("plugin.yaml", &source, &note, vec![plugin]));
    if let Some(log) = exposure_access_log(&install) {
        files.push(file("exposure-log.yaml", &source, EXPOSURE_LOG_NOTE, vec![log]));
    }
    files.push(kustomization("", &source, &files));
    // After the kustomization, which leaves them out: the PrometheusRule kind may not exist.
    files.extend(monitoring::files(app, &source, "", true));
    Rendered { files, notes }
}

/// The app's own files (everything but the plugin and the kustomization), named under `dir`.
pub(crate) fn app_files(app: &App, source: &str, tokens: &Tokens, with_namespace: bool, dir: &str) -> Vec<File> {
    let mut files = Vec::new();
    if with_namespace {
        // `00-` so that `kubectl apply -f DIR`, which goes in file-name order, creates the namespace first.
        files.push(file(
            &format!("{dir}00-namespace.yaml"),
            source,
            "",
            vec![objects::namespace(app)],
        ));
    }
    if let Some(progressive) = &app.progressive {
        files.extend(progressive_files(app, progressive, source, dir));
        return files;
    }
    for version in &app.versions {
        files.push(file(
            &format!("{dir}app-{}.yaml", version.name),
            source,
            "",
            vec![objects::deployment(app, version)],
        ));
    }
    files.push(file(
        &format!("{dir}service.yaml"),
        source,
        "",
        vec![objects::service(app)],
    ));
    files.push(file(
        &format!("{dir}hpa.yaml"),
        source,
        "One HPA per version: scaling follows each version's own load, whatever the split.",
        app.versions.iter().map(|v| objects::hpa(app, v)).collect(),
    ));
    if app.ingress == Ingress::GatewayApi {
        files.extend(gateway_api_files(app, source, tokens, dir));
        files.extend(dependents_file(app, source, tokens, dir));
        return files;
    }
    let token_note = match tokens {
        Tokens::Key(_) | Tokens::Rotating(..) => {
            "Its value is an HMAC of the app name under the token key (never in the spec)."
        }
        Tokens::Example => {
            "EXAMPLE-NOT-SECRET tokens: this file was rendered without a token key. Render with your own\n\
             key (`sticky-canary token-key`, then `render --token-key FILE`) before applying it."
        }
    };
    files.push(file(
        &format!("{dir}istio.yaml"),
        source,
        &format!(
            "{marked} go to that\n\
             subset; every other request goes to the stable subset. A client cannot reach a canary by sending\n\
             {header} itself, even while the filter is skipped: it does not know the token, which is removed\n\
             before the request leaves the gateway. {token_note}\n\
             There is no route on the override header on purpose:\n\
             the filter checks the allow-list (and secret) and then writes {header} itself.",
            marked = marked_requests(app),
            header = app.routing_header,
        ),
        vec![
            objects::gateway(app),
            objects::virtual_service(app, tokens),
            objects::destination_rule(app),
        ],
    ));
    files.extend(dependents_file(app, source, tokens, dir));
    files
}

/// How the filter marks a request for a version, for the header comment of the routing objects.
fn marked_requests(app: &App) -> String {
    if app.token.header == app.routing_header {
        format!(
            "Requests the filter marked with {header}: VERSION{sep}TOKEN (the routing token, in one header)",
            header = app.routing_header,
            sep = policy_core::TOKEN_SEPARATOR
        )
    } else {
        format!(
            "Requests the filter marked with {header}: VERSION and its routing token ({token})",
            header = app.routing_header,
            token = app.token.header
        )
    }
}

/// `dependents.yaml`, when the app has dependent services.
fn dependents_file(app: &App, source: &str, tokens: &Tokens, dir: &str) -> Option<File> {
    if app.dependents.is_empty() {
        return None;
    }
    let objects = app
        .dependents
        .iter()
        .flat_map(|d| objects::dependent(app, d, tokens))
        .collect();
    Some(file(
        &format!("{dir}dependents.yaml"),
        source,
        &format!(
            "Mesh routes for backends called by the app: they route by {} and the mesh token {},\n\
             which the gateway sets on canary requests only, so the app must copy both headers from its\n\
             incoming request onto its outgoing calls (as it does for trace headers).",
            app.routing_header, MESH_TOKEN_HEADER
        ),
        objects,
    ))
}

/// `ingress: gateway-api`: the per-version Services and `gateway-api.yaml` (Gateway and
/// HTTPRoutes) in place of `istio.yaml`.
fn gateway_api_files(app: &App, source: &str, tokens: &Tokens, dir: &str) -> Vec<File> {
    let mirror_note = match &app.mirror {
        Some(m) => format!(
            "\nThe rules of the other versions mirror {}% of their requests to {} (RequestMirror): the copies'\n\
             answers are dropped, and the filter runs once per user request, before the copy is made.",
            m.percent, m.version
        ),
        None => String::new(),
    };
    vec![
        file(
            &format!("{dir}services-by-version.yaml"),
            source,
            "One Service per version: an HTTPRoute sends requests to Services (there are no subsets).",
            objects::version_services(app),
        ),
        file(
            &format!("{dir}gateway-api.yaml"),
            source,
            &format!(
                "The app's own Gateway API gateway (class istio: Istio deploys gateway-{app}-istio in this namespace)\n\
                 and its HTTPRoute. {marked}\n\
                 go to that version's Service; every other request goes to stable. The token is removed before\n\
                 the request leaves the gateway, so a client sending {header} itself lands on stable.{mirror_note}",
                app = app.name,
                marked = marked_requests(app),
                header = app.routing_header,
            ),
            std::iter::once(gateway_api::gateway(app))
                .chain(gateway_api::http_routes(app, tokens))
                .collect(),
        ),
    ]
}

/// The files of an app whose weights Flagger or Argo Rollouts own: its Gateway (the tool's
/// VirtualService binds to it) and the patch that makes the tool's weighted routes sticky.
fn progressive_files(app: &App, progressive: &Progressive, source: &str, dir: &str) -> Vec<File> {
    let tool = progressive.tool.title();
    let route = match &progressive.route {
        Some(name) => format!("its route {name:?}"),
        None => "its route".to_owned(),
    };
    vec![
        file(
            &format!("{dir}gateway.yaml"),
            source,
            &format!(
                "The Gateway {tool}'s VirtualService binds to (gateways: [{ns}/{gw}]).",
                ns = app.namespace,
                gw = app.gateway_name()
            ),
            vec![objects::gateway(app)],
        ),
        file(
            &format!("{dir}sticky-weights.yaml"),
            source,
            &format!(
                "{tool} sets the weights of the VirtualService for {hosts}; on {route} Envoy then picks the\n\
                 destination from {header}, the position the filter gives each user, instead of a random\n\
                 number: every user stays on one version at every step (docs/progressive-delivery.md).\n\
                 List the stable destination first, keep the total weight 100, and keep that host's routes to the tool's.",
                hosts = app.hosts.join(", "),
                header = progressive.position_header,
            ),
            objects::sticky_weights(app).into_iter().collect(),
        ),
        file(
            &format!("{dir}analysis.yaml"),
            source,
            &analysis::note(app, progressive),
            analysis::objects(app, progressive),
        ),
    ]
}
