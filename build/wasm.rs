//! Building the gateway filter for wasm32-wasip1, shared by `build.rs` (which embeds the result
//! in the CLI) and the test that rebuilds it from scratch and compares the bytes
//! (`tests/system/tests/embedded_module.rs`).
//!
//! [`inputs`] lists every file the module is built from: the manifest, the build script (if any)
//! and every target's source directory of each workspace package the filter depends on, found
//! through `cargo metadata` by following path dependencies from the filter, plus the workspace
//! root's `Cargo.toml` (the `[profile.wasm]` settings) and `Cargo.lock`. `build.rs` declares
//! each one with `rerun-if-changed`, so the embedded module can never be older than its
//! sources; a hand-kept list went stale once already (it missed `policy-core/sha256/`).

#![allow(dead_code)] // build.rs and the test each use part of it.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip1";
pub const PACKAGE: &str = "sticky-canary-filter";
pub const ARTIFACT: &str = "sticky_canary_filter.wasm";
/// The root Cargo.toml profile the filter is built with.
pub const PROFILE: &str = "wasm";

/// Every path (file or directory) the module is built from, sorted.
pub fn inputs(cargo: &str, workspace: &Path) -> Result<Vec<PathBuf>, String> {
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .output()
        .map_err(|e| format!("could not run `{cargo} metadata`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("`cargo metadata` printed no JSON: {e}"))?;
    let packages = metadata
        .get("packages")
        .and_then(|p| p.as_array())
        .ok_or("`cargo metadata` listed no packages")?;
    let by_manifest_dir = |dir: &Path| {
        packages.iter().find(|p| {
            p["manifest_path"]
                .as_str()
                .and_then(|m| Path::new(m).parent())
                .is_some_and(|d| d == dir)
        })
    };
    let start = packages
        .iter()
        .find(|p| p["name"] == PACKAGE)
        .ok_or_else(|| format!("`cargo metadata` does not list the package {PACKAGE}"))?;

    let mut paths = BTreeSet::new();
    let root = workspace.to_path_buf();
    paths.insert(root.join("Cargo.toml"));
    paths.insert(root.join("Cargo.lock"));
    for optional in [
        "rust-toolchain.toml",
        "rust-toolchain",
        ".cargo/config.toml",
        ".cargo/config",
    ] {
        // Only when present: cargo counts a declared file that is missing as changed on every
        // build, which would rerun this script (and rebuild the CLI) every time.
        let path = root.join(optional);
        if path.exists() {
            paths.insert(path);
        }
    }
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([start]);
    while let Some(package) = queue.pop_front() {
        let manifest = PathBuf::from(
            package["manifest_path"]
                .as_str()
                .ok_or("a package has no manifest path")?,
        );
        if !seen.insert(manifest.clone()) {
            continue;
        }
        paths.insert(manifest.clone());
        for target in package["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = target["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str())
                .collect();
            // What goes into the module: libraries and the build script (not tests, benches, examples).
            if !kinds.iter().any(|k| {
                matches!(
                    *k,
                    "lib" | "rlib" | "cdylib" | "staticlib" | "dylib" | "proc-macro" | "custom-build"
                )
            }) {
                continue;
            }
            let src = PathBuf::from(target["src_path"].as_str().ok_or("a target has no src_path")?);
            if kinds.contains(&"custom-build") {
                paths.insert(src);
            } else if let Some(dir) = src.parent() {
                paths.insert(dir.to_path_buf());
            }
        }
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            // Dev-dependencies are not in the module; build and normal ones are.
            if dependency["kind"] == "dev" {
                continue;
            }
            if let Some(path) = dependency["path"].as_str() {
                let found = by_manifest_dir(Path::new(path))
                    .ok_or_else(|| format!("path dependency {path} is not a workspace package"))?;
                queue.push_back(found);
            }
        }
    }
    Ok(paths.into_iter().collect())
}

/// Runs the nested `cargo build` of the filter into `target_dir` and returns the built module.
/// `git` is baked into the module's start-up log line.
pub fn build(cargo: &str, workspace: &Path, target_dir: &Path, git: &str) -> Result<PathBuf, String> {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--locked",
            "-p",
            PACKAGE,
            "--target",
            TARGET,
            "--profile",
            PROFILE,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .env("STICKY_CANARY_GIT", git);
    // Do not leak an outer build's settings (rustflags for the host, jobserver, coverage...) into the wasm build.
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_ENCODED_RUSTFLAGS")
            || key == "RUSTFLAGS"
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key == "CARGO_TARGET_DIR"
            || key == "CARGO_BUILD_TARGET"
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key == "CARGO_MAKEFLAGS"
            || key == "LLVM_PROFILE_FILE"
        {
            cmd.env_remove(key);
        }
    }
    let status = cmd
        .status()
        .map_err(|e| format!("could not run cargo to build the wasm filter: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the wasm filter (cargo build -p {PACKAGE} --target {TARGET} --profile {PROFILE}) failed; see the errors above"
        ));
    }
    Ok(target_dir.join(TARGET).join(PROFILE).join(ARTIFACT))
}

/// What [`optimise`] did.
pub enum Optimised {
    Yes,
    /// wasm-opt is not installed.
    Missing,
    /// wasm-opt ran and failed.
    Failed,
}

/// Runs `wasm-opt -Oz` (binaryen) from `input` to `out`.
pub fn optimise(input: &Path, out: &Path) -> Optimised {
    let status = Command::new("wasm-opt")
        .args(["-Oz", "--converge"])
        .args([
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-mutable-globals",
            "--strip-debug",
            "--strip-producers",
        ])
        .arg(input)
        .arg("-o")
        .arg(out)
        .status();
    match status {
        Ok(s) if s.success() => Optimised::Yes,
        Ok(_) => Optimised::Failed,
        Err(_) => Optimised::Missing,
    }
}

/// The short commit hash of the checkout, or "unknown".
pub fn git_hash(dir: &Path) -> String {
    Command::new("git")
        .current_dir(dir)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}
