//! The image Istio pulls: an OCI image manifest whose last (only) layer is a gzip tar holding
//! `plugin.wasm`, built byte-for-byte deterministically so the same module always has the same digest.
//!
//! ```
//! use sticky_canary::oci::{extract_plugin_wasm, WasmImage};
//!
//! let wasm = b"\0asm\x01\0\0\0";
//! let image = WasmImage::from_wasm(wasm).unwrap();
//! assert_eq!(extract_plugin_wasm(image.layer()).unwrap(), wasm);
//! assert_eq!(image.digest(), WasmImage::from_wasm(wasm).unwrap().digest());
//! ```

use std::io::{Read, Write};

use serde::Serialize;

use super::digest::Digest;
use super::error::OciError;

/// The file name Istio looks for inside the layer (the "compat" variant of the Wasm image spec).
pub const PLUGIN_FILE_NAME: &str = "plugin.wasm";
/// The manifest type; Istio reads an OCI manifest as the compat variant when its last layer is a gzip tar.
pub(crate) const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The layer type Istio's `extractOCIStandardImage` requires of the last layer.
pub(crate) const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The Docker layer type Istio also reads (under a Docker manifest); accepted when pulling back.
pub(crate) const DOCKER_LAYER_MEDIA_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The three blobs of the image, ready to push.
#[derive(Debug, Clone)]
pub struct WasmImage {
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

impl WasmImage {
    /// Packages a module. Nothing in the result depends on time, user or host, so the manifest
    /// digest is a function of the module bytes (and of this code).
    pub fn from_wasm(wasm: &[u8]) -> Result<Self, OciError> {
        let tar = plugin_tar(wasm).map_err(|e| OciError::Internal(format!("packaging {PLUGIN_FILE_NAME}: {e}")))?;
        let layer = gzip(&tar).map_err(|e| OciError::Internal(format!("compressing the layer: {e}")))?;
        let config = serde_json::to_vec(&ImageConfig {
            architecture: "wasm",
            os: "wasip1",
            rootfs: RootFs {
                kind: "layers",
                diff_ids: [Digest::of(&tar).to_string()],
            },
        })
        .map_err(|e| OciError::Internal(format!("image config: {e}")))?;
        let manifest = serde_json::to_vec(&Manifest {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE,
            config: Descriptor::of(CONFIG_MEDIA_TYPE, &config),
            layers: [Descriptor::of(LAYER_MEDIA_TYPE, &layer)],
        })
        .map_err(|e| OciError::Internal(format!("image manifest: {e}")))?;
        Ok(Self {
            layer,
            config,
            manifest,
        })
    }

    /// The manifest digest: what the registry serves as `Docker-Content-Digest`, what Istio compares
    /// with a WasmPlugin's `sha256`.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    /// The gzip tar layer holding `plugin.wasm`.
    pub fn layer(&self) -> &[u8] {
        &self.layer
    }

    /// The layer's digest.
    pub fn layer_digest(&self) -> Digest {
        Digest::of(&self.layer)
    }

    /// The image config (JSON).
    pub fn config(&self) -> &[u8] {
        &self.config
    }

    /// The config's digest.
    pub fn config_digest(&self) -> Digest {
        Digest::of(&self.config)
    }

    /// The manifest (JSON), exactly the bytes pushed.
    pub fn manifest(&self) -> &[u8] {
        &self.manifest
    }
}

// Our own structs rather than the client crate's: field order and presence decide the digest, and
// must not change when that crate is upgraded.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u8,
    media_type: &'static str,
    config: Descriptor,
    layers: [Descriptor; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: &'static str,
    digest: String,
    size: usize,
}

impl Descriptor {
    fn of(media_type: &'static str, blob: &[u8]) -> Self {
        Self {
            media_type,
            digest: Digest::of(blob).to_string(),
            size: blob.len(),
        }
    }
}

#[derive(Serialize)]
struct ImageConfig {
    architecture: &'static str,
    os: &'static str,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: [String; 1],
}

fn plugin_tar(wasm: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(PLUGIN_FILE_NAME)?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::with_capacity(wasm.len() + 2048));
    builder.append(&header, wasm)?;
    builder.into_inner()
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    // No file name, mtime 0 and a fixed OS byte: the header carries nothing about this machine.
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::with_capacity(bytes.len() / 2), flate2::Compression::best());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Reads `plugin.wasm` out of a gzip tar layer, as Istio does (any directory, first match),
/// and checks the wasm magic number as Istio does before loading it.
pub fn extract_plugin_wasm(layer: &[u8]) -> Result<Vec<u8>, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let entries = archive
        .entries()
        .map_err(|e| format!("the layer is not a gzip tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the layer is not a gzip tar: {e}"))?;
        let path = entry.path().map_err(|e| format!("bad path in the layer: {e}"))?;
        if path.file_name().is_some_and(|name| name == PLUGIN_FILE_NAME) {
            let mut wasm = Vec::new();
            entry
                .read_to_end(&mut wasm)
                .map_err(|e| format!("reading {PLUGIN_FILE_NAME}: {e}"))?;
            if !wasm.starts_with(b"\0asm") || wasm.len() < 8 {
                return Err(format!("{PLUGIN_FILE_NAME} is not a wasm module"));
            }
            return Ok(wasm);
        }
    }
    Err(format!("no {PLUGIN_FILE_NAME} in the layer"))
}

#[cfg(test)]
mod tests;
