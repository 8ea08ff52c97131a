//! `progressive`: Flagger or Argo Rollouts own the weights (docs/progressive-delivery.md), so
//! the spec leaves out what the tool owns, and the filter sees the tool's two sides.

use std::collections::BTreeMap;

use super::fields::{bounded_number, window_duration};
use crate::render::spec::app::{Analysis, Ingress, Progressive, SpecErrors, Tool, DEFAULT_POSITION_HEADER};
use crate::render::spec::raw::{RawAnalysis, RawProgressive, RawSpec, RawVersion};

pub(super) fn check(raw: RawProgressive, errors: &mut SpecErrors) -> Progressive {
    let tool = match raw.tool.as_str() {
        "flagger" => Tool::Flagger,
        "argo-rollouts" => Tool::ArgoRollouts,
        other => {
            errors.add(
                "progressive.tool",
                format!("{other:?} is not one of \"flagger\", \"argo-rollouts\""),
            );
            Tool::Flagger
        }
    };
    match (tool, &raw.route) {
        (Tool::Flagger, Some(_)) => errors.add(
            "progressive.route",
            "leave it out for Flagger: the route Flagger writes has no name, the patch matches the app's hosts",
        ),
        (Tool::ArgoRollouts, None) => errors.add(
            "progressive.route",
            "is required for Argo Rollouts: the VirtualService route named in the Rollout's trafficRouting.istio.virtualService.routes",
        ),
        (Tool::ArgoRollouts, Some(route)) if route.is_empty() || route.bytes().any(|b| b.is_ascii_whitespace()) => {
            errors.add("progressive.route", format!("{route:?} is not a route name"))
        }
        _ => {}
    }
    Progressive {
        tool,
        route: raw.route,
        position_header: raw
            .position_header
            .unwrap_or_else(|| DEFAULT_POSITION_HEADER.to_owned())
            .to_ascii_lowercase(),
        analysis: analysis(raw.analysis, errors),
    }
}

/// `progressive.analysis` after defaults; every problem goes to `errors`.
fn analysis(raw: Option<RawAnalysis>, errors: &mut SpecErrors) -> Analysis {
    let mut analysis = Analysis::default();
    let Some(raw) = raw else { return analysis };
    if let Some(url) = raw.prometheus {
        let host = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .map(|rest| rest.split('/').next().unwrap_or_default());
        match host {
            Some(host) if !host.is_empty() && !url.bytes().any(|b| b.is_ascii_whitespace() || b == b'"') => {
                analysis.prometheus = url;
            }
            _ => errors.add(
                "progressive.analysis.prometheus",
                format!("{url:?} is not an http:// or https:// URL of a Prometheus (such as http://prometheus.monitoring:9090)"),
            ),
        }
    }
    window_duration(
        errors,
        "progressive.analysis.interval",
        raw.interval,
        "1m or 30s",
        &mut analysis.interval,
    );
    if let Some(limit) = raw.failure_limit {
        analysis.failure_limit = limit;
    }
    bounded_number(
        errors,
        "progressive.analysis.min_success_rate",
        raw.min_success_rate,
        (0.0, 100.0),
        "a percentage above 0 and at most 100",
        &mut analysis.min_success,
    );
    if let Some(ms) = raw.max_latency_ms {
        if ms > 0 {
            analysis.max_latency_ms = ms;
        } else {
            errors.add(
                "progressive.analysis.max_latency_ms",
                "0 is not a latency: give milliseconds above 0",
            );
        }
    }
    analysis
}

/// Refuses the fields the tool owns, and puts in their place the filter's two sides.
pub(super) fn take_over(raw: &mut RawSpec, p: &Progressive, ingress: Ingress, errors: &mut SpecErrors) {
    let tool = p.tool.title();
    let managed = [
        ("versions", !raw.versions.is_empty()),
        ("autoscaling", raw.autoscaling.is_some()),
        ("resources", raw.resources.is_some()),
        ("probes", raw.probes.is_some()),
        ("dependent_services", !raw.dependent_services.is_empty()),
    ];
    for (field, given) in managed {
        if given {
            errors.add(
                field,
                format!("leave it out with progressive: {tool} owns the workloads, their Services and the weights (docs/progressive-delivery.md)"),
            );
        }
    }
    if raw.mirror.is_some() {
        errors.add(
            "mirror",
            format!(
                "leave it out with progressive: {tool} mirrors with its own settings (docs/progressive-delivery.md)"
            ),
        );
    }
    if ingress == Ingress::GatewayApi {
        errors.add(
            "ingress",
            "gateway-api is not rendered with progressive: the sticky weights patch an Istio VirtualService's routes on the add-on's gateway; use external or internal",
        );
    }
    // The filter's two sides: the tool's stable (or primary) and canary destinations.
    raw.versions = ["stable", "canary"]
        .iter()
        .zip([100.0, 0.0])
        .map(|(name, weight)| RawVersion {
            name: (*name).to_owned(),
            image: "managed-by-the-tool".to_owned(),
            weight,
            max_weight: None,
            port: None,
            env: BTreeMap::new(),
            autoscaling: None,
        })
        .collect();
    raw.probes = None;
    raw.dependent_services = Vec::new();
}
