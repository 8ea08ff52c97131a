//! The module embedded in this build is byte for byte what a fresh build of the same tree
//! produces: the build script's inputs are complete (see tests/build_inputs.rs) and nothing
//! stale slipped in. Builds the filter from scratch into a temporary target dir (a minute or
//! two), with wasm-opt when the embedded one went through it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../build/wasm.rs"]
mod wasm;

use std::path::Path;

#[test]
fn the_embedded_module_is_what_a_fresh_build_makes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = tempfile::Builder::new()
        .prefix("sticky-canary-fresh-wasm-")
        .tempdir()
        .unwrap();
    let built = wasm::build(&cargo, root, target.path(), sticky_canary::GIT_HASH).unwrap();
    let fresh = if sticky_canary::FILTER_WASM_OPTIMISED == "true" {
        let out = target.path().join("optimised.wasm");
        assert!(
            matches!(wasm::optimise(&built, &out), wasm::Optimised::Yes),
            "the embedded module went through wasm-opt, but wasm-opt failed here"
        );
        std::fs::read(out).unwrap()
    } else {
        std::fs::read(&built).unwrap()
    };
    assert!(
        fresh == sticky_canary::FILTER_WASM,
        "the embedded module ({} bytes) differs from a fresh build of this tree ({} bytes): \
         build.rs missed an input",
        sticky_canary::FILTER_WASM.len(),
        fresh.len()
    );
}
