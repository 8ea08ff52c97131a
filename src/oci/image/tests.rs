use super::*;

const WASM: &[u8] = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0";

#[test]
fn the_layer_round_trips_and_is_what_istio_expects() {
    let image = WasmImage::from_wasm(WASM).unwrap();
    assert_eq!(extract_plugin_wasm(image.layer()).unwrap(), WASM);
    let manifest: serde_json::Value = serde_json::from_slice(image.manifest()).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(1));
    assert_eq!(manifest["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
    assert_eq!(manifest["layers"][0]["digest"], image.layer_digest().to_string());
    assert_eq!(manifest["layers"][0]["size"], image.layer().len());
    assert_eq!(manifest["config"]["digest"], image.config_digest().to_string());
    let config: serde_json::Value = serde_json::from_slice(image.config()).unwrap();
    assert_eq!(config["rootfs"]["type"], "layers");
}

#[test]
fn packaging_is_deterministic_and_follows_the_module() {
    let a = WasmImage::from_wasm(WASM).unwrap();
    let b = WasmImage::from_wasm(WASM).unwrap();
    assert_eq!(a.manifest(), b.manifest());
    assert_eq!(a.layer(), b.layer());
    let mut other = WASM.to_vec();
    other.push(0);
    assert_ne!(WasmImage::from_wasm(&other).unwrap().digest(), a.digest());
}

#[test]
fn the_layer_carries_no_time_or_owner() {
    let image = WasmImage::from_wasm(WASM).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(image.layer()));
    let entry = archive.entries().unwrap().next().unwrap().unwrap();
    let header = entry.header();
    assert_eq!(header.mtime().unwrap(), 0);
    assert_eq!(header.uid().unwrap(), 0);
    assert_eq!(header.mode().unwrap(), 0o644);
    // gzip header: mtime bytes 4..8 are zero, no file name flag.
    assert_eq!(&image.layer()[4..8], &[0, 0, 0, 0]);
    assert_eq!(image.layer()[3] & 0x08, 0);
}

#[test]
fn extraction_refuses_what_istio_refuses() {
    assert!(extract_plugin_wasm(b"not gzip").is_err());
    let tar = plugin_tar(b"not wasm at all").unwrap();
    let error = extract_plugin_wasm(&gzip(&tar).unwrap()).unwrap_err();
    assert!(error.contains("not a wasm module"), "{error}");
    let empty = tar::Builder::new(Vec::new()).into_inner().unwrap();
    let error = extract_plugin_wasm(&gzip(&empty).unwrap()).unwrap_err();
    assert!(error.contains("no plugin.wasm"), "{error}");
}

#[test]
fn digests_parse_strictly() {
    let hex = "0123456789abcdef".repeat(4);
    assert_eq!(Digest::parse(&format!("sha256:{hex}")).unwrap().hex(), hex);
    assert!(Digest::parse(&hex).is_err());
    assert!(Digest::parse(&format!("sha256:{}", hex.to_uppercase())).is_err());
    assert!(Digest::parse("sha256:abc").is_err());
}
