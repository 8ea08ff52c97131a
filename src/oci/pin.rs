//! Pinning a WasmPlugin (or an EnvoyFilter's remote code) to the image by its manifest digest.

use super::digest::Digest;
use super::error::OciError;
use super::image::WasmImage;
use super::reference::ImageReference;

/// What a WasmPlugin needs to pull the filter pinned: `spec.url` and `spec.sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedPlugin {
    /// `oci://REGISTRY/REPOSITORY:TAG` (or `@sha256:HEX` when the reference was given by digest).
    pub url: String,
    /// The manifest digest as bare lowercase hex, the form the WasmPlugin CRD accepts.
    pub sha256: String,
}

/// Pins `reference` to `digest`: the WasmPlugin keeps the readable url and Istio refuses any image
/// whose manifest digest differs (a re-pushed tag fails closed instead of silently changing code).
pub fn pin(reference: &ImageReference, digest: &Digest) -> PinnedPlugin {
    PinnedPlugin {
        url: reference.url(),
        sha256: digest.hex().to_owned(),
    }
}

/// Pins `reference` for `render`: a digest in the reference wins (an image pushed by another build);
/// otherwise the digest is that of the image `push` builds from `wasm`, computed offline. For the
/// embedded filter that is the digest `sticky-canary push` printed for the same build.
pub fn pin_for_wasm(reference: &str, wasm: &[u8]) -> Result<PinnedPlugin, OciError> {
    let reference = ImageReference::parse(reference)?;
    let digest = match reference.digest() {
        Some(digest) => digest.clone(),
        None => WasmImage::from_wasm(wasm)?.digest(),
    };
    Ok(pin(&reference, &digest))
}
