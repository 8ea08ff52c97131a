//! `sticky-canary push`: ship the filter as an OCI image that Istio's wasm fetcher accepts,
//! and pin a WasmPlugin to it by manifest digest.
//!
//! ```
//! use sticky_canary::oci::{self, ImageReference};
//!
//! let wasm = b"\0asm\x01\0\0\0";
//! let reference = ImageReference::parse("oci://myacr.azurecr.io/filters/sticky-canary:1.0.0").unwrap();
//! // The image is built deterministically, so its digest is known before (and without) a push.
//! let image = oci::WasmImage::from_wasm(wasm).unwrap();
//! let pinned = oci::pin(&reference, &image.digest());
//! assert_eq!(pinned.url, "oci://myacr.azurecr.io/filters/sticky-canary:1.0.0");
//! assert_eq!(pinned.sha256, image.digest().hex());
//! ```
//!
//! The format is the "compat" variant of the Wasm image spec (see docs/oci.md for why): an OCI image
//! manifest whose single layer is `application/vnd.oci.image.layer.v1.tar+gzip` holding `plugin.wasm`.
//! What a WasmPlugin `sha256` must hold for an `oci://` url is the hex of that manifest's digest,
//! not the hash of the .wasm: Istio compares it with the manifest digest it resolves.

//!
//! The parts: [`ImageReference`] (`reference`), the image itself ([`WasmImage`], `image`),
//! pinning by digest (`pin`), the registry round trips (`push`, `pull_wasm`: `registry`),
//! credentials (`credentials`, `source`), [`Digest`] (`digest`) and [`OciError`] (`error`).

mod credentials;
mod digest;
mod error;
mod image;
mod pin;
mod reference;
mod registry;
mod source;

pub use credentials::Credentials;
pub use digest::{is_sha256_hex, Digest};
pub use error::OciError;
pub use image::{extract_plugin_wasm, WasmImage, PLUGIN_FILE_NAME};
pub use pin::{pin, pin_for_wasm, PinnedPlugin};
pub use reference::ImageReference;
pub use registry::{pull_wasm, pull_wasm_with, push, push_with, PulledWasm, Pushed, TransportOptions};
pub use source::{CredentialSource, PASSWORD_VARIABLE, USERNAME_VARIABLE};

#[cfg(test)]
mod tests;
