//! Config parsing and validation: any bytes in, a `Policy` or a list of errors out, never a panic.
//!
//! Invariants checked on every accepted config (what the filter relies on):
//! weights are basis points summing to 10000, bucket ranges tile 0..10000,
//! names are tokens (no header or cookie injection can survive validation),
//! a routing token is a visible-ASCII value of at least 16 characters,
//! the rendered Set-Cookie has no control characters, and every configured
//! host finds a route.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy_core::{is_label, is_token, KeySpec, Policy, TOTAL_BASIS_POINTS};

fn header_ok(name: &str) -> bool {
    is_token(name) && !name.bytes().any(|b| b.is_ascii_uppercase())
}

fuzz_target!(|data: &[u8]| {
    let policy = match Policy::from_json(data) {
        Ok(policy) => policy,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a refused config must say why");
            for error in &errors.0 {
                assert!(!error.message.is_empty());
            }
            let _ = errors.to_string();
            return;
        }
    };
    assert!(!policy.routes().is_empty());
    if let Some(name) = policy.response_header() {
        assert!(header_ok(name), "response header {name:?}");
    }
    for route in policy.routes() {
        assert!(is_label(route.name()));
        assert!(
            header_ok(route.routing_header()),
            "routing header {:?}",
            route.routing_header()
        );
        assert!(policy.routing_headers().iter().any(|h| h == route.routing_header()));
        assert!(!route.salt().contains(&0), "salt with NUL accepted");

        let versions = route.versions();
        assert!(!versions.is_empty());
        let sum: u32 = versions.iter().map(|v| u32::from(v.weight_basis_points())).sum();
        assert_eq!(sum, u32::from(TOTAL_BASIS_POINTS));
        // Canaries tile [0, canary_end) in order, stable takes the rest.
        let mut next = 0u16;
        for version in versions.iter().skip(1) {
            assert!(is_label(version.name()));
            let (start, end) = version.buckets();
            assert_eq!(start, next);
            assert_eq!(end - start, version.weight_basis_points());
            next = end;
        }
        assert_eq!(versions[0].buckets(), (next, TOTAL_BASIS_POINTS));
        for bucket in [0, next.saturating_sub(1), next, 9999] {
            assert!(route.version_for_bucket(bucket) < versions.len());
        }

        assert!(!route.key_chain().is_empty());
        for spec in route.key_chain() {
            match spec {
                KeySpec::Cookie(name) => assert!(is_token(name)),
                KeySpec::Header(name) | KeySpec::IdentityHeader(name) => assert!(header_ok(name)),
                KeySpec::NewClientId(settings) => {
                    assert!(is_token(&settings.cookie));
                    let set_cookie = settings.set_cookie("0123456789abcdef0123456789abcdef", Some(u32::MAX));
                    assert!(
                        !set_cookie.bytes().any(|b| b < 0x20 || b == 0x7f),
                        "control character in Set-Cookie {set_cookie:?}"
                    );
                }
                KeySpec::ClientAddress => {}
            }
        }
        if let Some(rule) = route.override_rule() {
            assert!(header_ok(&rule.header));
            assert_ne!(rule.header, route.routing_header());
            assert!(!rule.allow.is_empty());
            assert!(rule.allow.iter().all(|&i| i < versions.len()));
            if let Some(secret) = &rule.secret {
                assert!(header_ok(&secret.header));
                assert_ne!(secret.header, rule.header);
            }
        }
        if let Some(token) = route.routing_token() {
            assert!(header_ok(&token.header));
            assert!(token.value.len() >= 16 && token.value.bytes().all(|b| b.is_ascii_graphic()));
        }
        // The routing header carries the bare name, or `NAME;TOKEN` when the token travels in it;
        // either way the value has no control characters and the name ends at the first `;`.
        for version in route.versions() {
            let value = version.routing_value();
            match route.routing_token().filter(|_| route.separate_routing_token().is_none()) {
                Some(token) => assert_eq!(value, format!("{};{}", version.name(), token.value)),
                None => assert_eq!(value, version.name()),
            }
            assert_eq!(value.split(';').next(), Some(version.name()));
            assert!(value.bytes().all(|b| b.is_ascii_graphic()));
        }
        for host in route.hosts() {
            let authority = host
                .strip_prefix('*')
                .map_or(host.clone(), |suffix| format!("a{suffix}"));
            let path = route.path_prefix().unwrap_or("/");
            assert!(
                policy.find_route(authority.as_bytes(), path.as_bytes()).is_some(),
                "host {host:?} of route {:?} finds no route",
                route.name()
            );
        }
    }
});
