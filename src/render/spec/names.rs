//! The names of the objects rendered for an app, derived from its name: one place, so the
//! writers and the checks agree (a dependent service may not take the app's own Service name).

use super::app::{App, Dependent, Ingress};

/// The label Istio puts on the pods it deploys for a Gateway API `Gateway` (value: its name).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// The Service of the app called `app`: `svc-APP`.
pub fn service_name(app: &str) -> String {
    format!("svc-{app}")
}

/// The in-mesh host of a Service.
fn cluster_host(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc.cluster.local")
}

impl App {
    /// The `istio` label value of the add-on gateway this app uses; empty for
    /// `ingress: gateway-api`, whose gateway pods carry the Gateway's name instead
    /// ([`GATEWAY_NAME_LABEL`]: the Gateway's name).
    pub fn ingress_selector(&self) -> &'static str {
        match self.ingress {
            Ingress::External => "aks-istio-ingressgateway-external",
            Ingress::Internal => "aks-istio-ingressgateway-internal",
            Ingress::GatewayApi => "",
        }
    }

    /// The Service of one version (`ingress: gateway-api`: an HTTPRoute sends to Services, not subsets).
    pub fn version_service_name(&self, version: &str) -> String {
        format!("svc-{}-{}", self.name, version)
    }

    /// The in-mesh name of the app's Service.
    pub fn service_host(&self) -> String {
        cluster_host(&self.service_name(), &self.namespace)
    }

    pub fn service_name(&self) -> String {
        service_name(&self.name)
    }

    pub fn deployment_name(&self, version: &str) -> String {
        format!("deployment-{}-{}", self.name, version)
    }

    pub fn hpa_name(&self, version: &str) -> String {
        format!("hpa-{}-{}", self.name, version)
    }

    pub fn gateway_name(&self) -> String {
        format!("gateway-{}", self.name)
    }

    pub fn virtual_service_name(&self) -> String {
        format!("vs-{}", self.name)
    }

    pub fn destination_rule_name(&self) -> String {
        format!("dr-{}", self.name)
    }

    /// Name of the EnvoyFilter that makes a tool's weighted routes sticky (`progressive`).
    pub fn sticky_weights_name(&self) -> String {
        format!("sticky-canary-{}-weights", self.name)
    }

    /// Name of the plugin object (WasmPlugin or EnvoyFilter) in aks-istio-ingress.
    pub fn plugin_name(&self) -> String {
        format!("sticky-canary-{}", self.name)
    }

    /// The app's HTTPRoute (`ingress: gateway-api`).
    pub fn http_route_name(&self) -> String {
        format!("httproute-{}", self.name)
    }

    /// The HTTPRoute that redirects plain HTTP to HTTPS (`tls.redirect_http`).
    pub fn http_redirect_route_name(&self) -> String {
        format!("httproute-{}-redirect", self.name)
    }
}

impl Dependent {
    /// The in-mesh host of the backend.
    pub fn host(&self) -> String {
        cluster_host(&self.service, &self.namespace)
    }

    /// Its mesh VirtualService.
    pub fn virtual_service_name(&self) -> String {
        format!("vs-{}", self.service)
    }

    /// Its DestinationRule.
    pub fn destination_rule_name(&self) -> String {
        format!("dr-{}", self.service)
    }
}
