#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The embedded filter can never be older than its sources: every file that went into the
//! module (rustc's dep-info of the nested wasm build) and the workspace's Cargo.toml and
//! Cargo.lock are declared to cargo by build.rs (`cargo:rerun-if-changed`), so editing any of
//! them reruns the build script. Read from the build script's own output, the file cargo acts on.
//! `tests/embedded_module.rs` (system tier) rebuilds the module from scratch and compares bytes.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The `rerun-if-changed` paths the build script gave cargo for this build, canonical.
fn declared() -> Vec<PathBuf> {
    // OUT_DIR is `.../build/sticky-canary-HASH/out`; cargo keeps the script's stdout beside it.
    let output = Path::new(env!("OUT_DIR")).with_file_name("output");
    let text = std::fs::read_to_string(&output).unwrap_or_else(|e| panic!("read {}: {e}", output.display()));
    let declared: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix("cargo:rerun-if-changed=")
                .or_else(|| l.strip_prefix("cargo::rerun-if-changed="))
        })
        .map(|p| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                Path::new(ROOT).join(p)
            }
        })
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .collect();
    assert!(
        !declared.is_empty(),
        "build.rs declared no inputs in {}",
        output.display()
    );
    declared
}

fn covered(file: &Path, declared: &[PathBuf]) -> bool {
    declared.iter().any(|d| file == d || file.starts_with(d))
}

/// The workspace files rustc read to build the module: the nested build's dep-info.
fn module_sources() -> Vec<PathBuf> {
    let built = PathBuf::from(env!("STICKY_CANARY_WASM_BUILT"));
    let dep_info = built.with_extension("d");
    let text = std::fs::read_to_string(&dep_info).unwrap_or_else(|e| panic!("read {}: {e}", dep_info.display()));
    let root = std::fs::canonicalize(ROOT).unwrap();
    let mut files: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split_once(": "))
        .flat_map(|(_, deps)| deps.split_whitespace().map(PathBuf::from).collect::<Vec<_>>())
        .filter(|p| p.starts_with(&root) && !p.starts_with(root.join("target")))
        .collect();
    files.sort();
    files.dedup();
    files
}

#[test]
fn every_source_of_the_module_is_declared_to_cargo() {
    let declared = declared();
    let sources = module_sources();
    // The filter, policy-core and its SHA-256 all went in: the dep-info is the real list.
    for must in ["filter/src/lib.rs", "policy-core/src/lib.rs"] {
        let must = std::fs::canonicalize(Path::new(ROOT).join(must)).unwrap();
        assert!(
            sources.contains(&must),
            "the dep-info lacks {}: {sources:?}",
            must.display()
        );
    }
    let missing: Vec<&PathBuf> = sources.iter().filter(|f| !covered(f, &declared)).collect();
    assert!(
        missing.is_empty(),
        "build.rs does not declare these module sources: {missing:?}"
    );
}

#[test]
fn manifests_lock_and_profile_are_declared() {
    let declared = declared();
    // Cargo.toml at the root holds [profile.wasm]; each crate's own manifest its dependencies.
    let mut needed = vec![
        "Cargo.toml",
        "Cargo.lock",
        "filter/Cargo.toml",
        "policy-core/Cargo.toml",
        "build.rs",
    ];
    if Path::new(ROOT).join("policy-core/sha256/Cargo.toml").exists() {
        needed.push("policy-core/sha256/Cargo.toml");
        needed.push("policy-core/sha256/src/lib.rs");
    }
    for file in needed {
        let path = std::fs::canonicalize(Path::new(ROOT).join(file)).unwrap();
        assert!(covered(&path, &declared), "build.rs does not declare {file}");
    }
}

#[test]
fn the_check_sees_an_undeclared_file() {
    // The check itself can fail: a file outside every declared path is reported.
    let declared = vec![PathBuf::from("/repo/filter/src")];
    assert!(covered(Path::new("/repo/filter/src/lib.rs"), &declared));
    assert!(!covered(Path::new("/repo/policy-core/sha256/src/lib.rs"), &declared));
    assert!(!covered(Path::new("/repo/filter/srcx/lib.rs"), &declared));
}
