//! Stage 2 of the spec: every section checked, defaults filled in, problems collected with
//! their field paths. [`check`] reads as the spec does, one section after another; each
//! section's rules are in its own file.

mod cutover;
mod dependents;
pub(crate) mod fields;
mod identity;
mod ingress;
mod mirror;
mod monitoring;

mod plugin;
mod progressive;
mod routing;
mod workloads;

use super::app::{App, ServiceProtocol, SpecErrors};
use super::raw::RawSpec;

/// The checked app, or `None` when `errors` holds a problem (then every problem is there).
pub(super) fn check(mut raw: RawSpec, errors: &mut SpecErrors) -> Option<App> {
    let mut warnings = Vec::new();
    let (namespace, minor) = identity::check(&raw, errors, &mut warnings);
    let ingress = ingress::check(raw.ingress.as_deref(), minor, errors);
    let tls = raw.tls.take().map(|t| ingress::check_tls(t, ingress, errors));
    let service_port = raw.service_port.unwrap_or(80);
    fields::port_ok("service_port", service_port, errors);
    let service_protocol = match raw.service_protocol.as_deref() {
        None | Some("http") => ServiceProtocol::Http,
        Some("http2") => ServiceProtocol::Http2,
        Some("grpc") => ServiceProtocol::Grpc,
        Some(other) => {
            errors.add(
                "service_protocol",
                format!("{other:?} is not one of \"http\", \"http2\", \"grpc\""),
            );
            ServiceProtocol::Http
        }
    };
    let progressive = raw.progressive.take().map(|p| progressive::check(p, errors));
    if let Some(p) = &progressive {
        progressive::take_over(&mut raw, p, ingress, errors);
    }
    let base_scaling = workloads::check_autoscaling("autoscaling", raw.autoscaling, workloads::DEFAULT_SCALING, errors);
    let versions = workloads::check_versions(std::mem::take(&mut raw.versions), base_scaling, errors);
    let (cpu_request, memory_request) = workloads::check_resources(raw.resources.take(), errors);
    let probes = raw.probes.take().map(|p| workloads::check_probes(p, &versions, errors));
    let routing = routing::check(
        &raw,
        &versions,
        progressive.as_ref(),
        tls.is_some(),
        errors,
        &mut warnings,
    );
    let plugin = plugin::check(raw.plugin, minor, errors, &mut warnings);
    let dependents = dependents::check(raw.dependent_services, &raw.app, &namespace, &versions, errors);
    let mirror = raw
        .mirror
        .map(|m| mirror::check(m, &versions, ingress, errors, &mut warnings));
    let monitoring = monitoring::check(raw.monitoring.take(), errors, &mut warnings);
    let cutover = raw
        .cutover
        .as_ref()
        .and_then(|c| cutover::check(c, &mut SpecErrors::default()));
    if let Some(c) = &cutover {
        cutover::warn(c, &mut warnings);
    }
    if !errors.is_empty() {
        return None;
    }
    Some(App {
        name: raw.app,
        namespace,
        revision: raw.revision,
        hosts: raw.hosts,
        path_prefix: raw.path_prefix,
        ingress,
        tls,
        service_port,
        service_protocol,
        versions,
        cpu_request,
        memory_request,
        probes,
        routing_header: routing.routing_header,
        token: routing.token,
        plugin: plugin?,
        dependents,
        mirror,
        progressive,
        route: routing.route,
        response_header: routing.response_header,
        exposure_log: routing.exposure_log,
        monitoring,
        cutover,
        warnings,
    })
}
