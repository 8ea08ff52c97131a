use super::*;

#[test]
fn parses_tagged_references() {
    let r = ImageReference::parse("oci://myacr.azurecr.io/filters/sticky-canary:1.2.3").unwrap();
    assert_eq!(r.registry(), "myacr.azurecr.io");
    assert_eq!(r.repository(), "filters/sticky-canary");
    assert_eq!(r.tag(), Some("1.2.3"));
    assert_eq!(r.url(), "oci://myacr.azurecr.io/filters/sticky-canary:1.2.3");
    assert!(!r.is_loopback());
}

#[test]
fn parses_ports_and_loopback() {
    for (text, loopback) in [
        ("oci://localhost:5000/a:1", true),
        ("127.0.0.1:5000/a:1", true),
        ("oci://[::1]:5000/a:1", true),
        ("oci://localhost/a:1", true),
        ("oci://127.0.0.2:5000/a:1", false),
        ("oci://registry.example:443/a:1", false),
    ] {
        let r = ImageReference::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(r.is_loopback(), loopback, "{text}");
        assert_eq!(r.tag(), Some("1"), "{text}");
    }
}

#[test]
fn parses_digests() {
    let hex = "a".repeat(64);
    let r = ImageReference::parse(&format!("oci://r.example/a@sha256:{hex}")).unwrap();
    assert_eq!(r.digest().map(Digest::hex), Some(hex.as_str()));
    assert_eq!(r.url(), format!("oci://r.example/a@sha256:{hex}"));
}

#[test]
fn refuses_bad_references_with_the_reason() {
    for (text, needle) in [
        ("oci://sticky-canary:1.0", "REGISTRY/REPOSITORY"),
        ("oci://library/sticky-canary:1.0", "not a registry host"),
        ("oci://r.example/Sticky:1.0", "lowercase"),
        ("oci://r.example/a:-bad", "must start"),
        ("oci://r.example/a:bad!tag", "may hold only"),
        ("oci://r.example/a:", "is empty"),
        ("oci://r.example/a//b:1", "empty path component"),
        ("oci://r.example/a@sha256:abc", "digest"),
        ("oci://r.example:port/a:1", "port"),
        ("https://r.example/a:1", "only oci://"),
    ] {
        let error = ImageReference::parse(text).expect_err(text).to_string();
        assert!(error.contains(needle), "{text}: {error}");
    }
}

/// What `push` of a minimal module to `reference`, anonymously, fails with (before any network).
fn push_error(reference: &str, options: TransportOptions) -> OciError {
    let r = ImageReference::parse(reference).unwrap();
    push_with(&r, b"\0asm\x01\0\0\0", options, &Credentials::anonymous()).unwrap_err()
}

#[test]
fn insecure_is_refused_for_remote_registries() {
    let error = push_error("oci://myacr.azurecr.io/a:1", TransportOptions { insecure: true });
    assert!(matches!(error, OciError::InsecureNotLoopback { .. }), "{error}");
    assert!(error.to_string().contains("localhost"), "{error}");
}

#[test]
fn push_needs_a_tag() {
    let error = push_error("oci://localhost:5000/a", TransportOptions::default());
    assert!(error.to_string().contains("needs a tag"), "{error}");
}

#[test]
fn pin_uses_the_bare_hex_of_the_manifest_digest() {
    let wasm = b"\0asm\x01\0\0\0";
    let pinned = pin_for_wasm("oci://r.example/a:1", wasm).unwrap();
    let digest = WasmImage::from_wasm(wasm).unwrap().digest();
    assert_eq!(pinned.sha256, digest.hex());
    assert_eq!(pinned.sha256.len(), 64);
    assert_ne!(
        pinned.sha256,
        crate::sha256_hex(wasm),
        "the manifest digest, not the module's hash"
    );
    let hex = "b".repeat(64);
    let given = pin_for_wasm(&format!("oci://r.example/a@sha256:{hex}"), wasm).unwrap();
    assert_eq!(given.sha256, hex);
}
