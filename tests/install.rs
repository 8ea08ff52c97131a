#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! The CLI as a platform engineer gets it: `cargo install --path .` (here `--debug`, see
//! [`target_dir`]) into a scratch root, then
//! `sticky-canary demo --quick` run from a directory outside the repository. Envoy comes from
//! nowhere but the per-user cache, which the CLI fills itself (a fresh `XDG_CACHE_HOME`, no
//! `$ENVOY`, no `envoy` on `PATH`), so the installed binary needs nothing from the source tree.

use std::path::{Path, PathBuf};
use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The target dir this test was built in (`<target>/debug/deps/install-HASH`): `cargo install
/// --debug` builds there too, so it reuses the dependencies `cargo test` compiled. A release
/// install compiled every dependency again, 248 s of a cold CI run (docs/testing.md); the
/// release profile differs from dev only in optimisation here (no `[profile.release]`), and the
/// embedded module is built by build.rs in its own `wasm` profile either way.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// `$PATH` without any directory holding an `envoy` or lying inside the repository.
fn path_without_envoy() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|dir| !dir.join("envoy").exists() && !dir.starts_with(REPO))
        .collect();
    std::env::join_paths(kept).unwrap().into_string().unwrap()
}

#[test]
fn the_installed_cli_runs_the_demo_from_anywhere_with_envoy_from_its_own_cache() {
    let root = tempfile::tempdir().unwrap();
    let install = Command::new(env!("CARGO"))
        .args(["install", "--quiet", "--locked", "--debug", "--path", REPO, "--root"])
        .arg(root.path())
        .arg("--target-dir")
        .arg(target_dir())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        install.status.success(),
        "cargo install failed:\n{}",
        String::from_utf8_lossy(&install.stderr)
    );
    let cli = root.path().join("bin").join("sticky-canary");
    assert!(cli.is_file(), "cargo install wrote no {}", cli.display());
    // It names no file of the build tree (the old harness ran `<repo>/scripts/ensure-envoy.sh`).
    let bytes = std::fs::read(&cli).unwrap();
    let scripts = format!("{REPO}/scripts");
    assert!(
        !bytes.windows(scripts.len()).any(|w| w == scripts.as_bytes()),
        "the installed CLI refers to {scripts}"
    );

    let elsewhere = tempfile::tempdir().unwrap();
    assert!(!elsewhere.path().starts_with(REPO));
    let cache = tempfile::tempdir().unwrap();
    let demo = Command::new(&cli)
        .args(["demo", "--quick"])
        .current_dir(elsewhere.path())
        .env_remove("ENVOY")
        .env("XDG_CACHE_HOME", cache.path())
        .env("PATH", path_without_envoy())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&demo.stdout);
    let stderr = String::from_utf8_lossy(&demo.stderr);
    assert!(demo.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("Every check held."), "{stdout}");

    let release = cache
        .path()
        .join("sticky-canary")
        .join(format!("envoy-{}", sticky_canary_harness::PINNED_ENVOY));
    assert!(
        stderr.contains(&format!("installing Envoy {}", sticky_canary_harness::PINNED_ENVOY)),
        "the CLI did not install Envoy itself:\n{stderr}"
    );
    let envoy_line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Envoy: "))
        .unwrap_or_else(|| panic!("no `Envoy:` line:\n{stdout}"));
    assert!(
        Path::new(envoy_line).starts_with(&release) && Path::new(envoy_line).is_file(),
        "the demo ran {envoy_line}, not the Envoy in {}",
        release.display()
    );

    // Run again: the cache serves, nothing is installed twice.
    let again = Command::new(&cli)
        .arg("install-envoy")
        .current_dir(elsewhere.path())
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), envoy_line);
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("installing"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
