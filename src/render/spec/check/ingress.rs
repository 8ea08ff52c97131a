//! `ingress` and `tls`: which gateway serves the app, and how it terminates TLS.
//! (`hosts` are checked by policy-core as part of the filter config; the Gateway needs no more.)

use crate::render::spec::app::{Ingress, SpecErrors, Tls, GATEWAY_API_MIN_MINOR};
use crate::render::spec::raw::RawTls;

pub(super) fn check(ingress: Option<&str>, minor: Option<u32>, errors: &mut SpecErrors) -> Ingress {
    match ingress {
        None | Some("external") => Ingress::External,
        Some("internal") => Ingress::Internal,
        Some("gateway-api") => {
            if minor.is_some_and(|m| m < GATEWAY_API_MIN_MINOR) {
                errors.add(
                    "ingress",
                    format!("gateway-api needs revision asm-1-{GATEWAY_API_MIN_MINOR} or later (the add-on's Gateway API support starts there)"),
                );
            }
            Ingress::GatewayApi
        }
        Some(other) => {
            errors.add(
                "ingress",
                format!("{other:?} is not one of \"external\", \"internal\", \"gateway-api\""),
            );
            Ingress::External
        }
    }
}

pub(super) fn check_tls(t: RawTls, ingress: Ingress, errors: &mut SpecErrors) -> Tls {
    if !policy_core::is_dns_name(&t.credential_name) {
        errors.add(
            "tls.credential_name",
            format!("{:?} is not a Secret name", t.credential_name),
        );
    }
    let mode = t.mode.unwrap_or_else(|| "SIMPLE".to_owned());
    if mode != "SIMPLE" && mode != "MUTUAL" {
        errors.add("tls.mode", format!("{mode:?} is not one of \"SIMPLE\", \"MUTUAL\""));
    }
    if mode == "MUTUAL" && ingress == Ingress::GatewayApi {
        errors.add(
            "tls.mode",
            "MUTUAL is not rendered for ingress: gateway-api (a Gateway listener terminates TLS with a server certificate only); use ingress: external",
        );
    }
    Tls {
        credential_name: t.credential_name,
        mode,
        redirect_http: t.redirect_http.unwrap_or(true),
    }
}
