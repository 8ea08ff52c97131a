//! Builds the proxy-wasm filter for wasm32-wasip1 and hands the .wasm to the CLI,
//! which embeds it (`sticky-canary wasm`, `render`, `push`, `demo`).
//!
//! The nested cargo uses its own target dir (target/filter-wasm) so it never
//! waits on the lock the outer build holds. `wasm-opt -Oz` runs when binaryen is
//! installed; without it the build still works, with a larger module.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip1";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in [
        "filter/src",
        "filter/Cargo.toml",
        "policy-core/src",
        "policy-core/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={watched}");
    }
    println!("cargo:rerun-if-env-changed=STICKY_CANARY_NO_WASM_OPT");
    let git = git_hash(&manifest_dir);
    println!("cargo:rustc-env=STICKY_CANARY_GIT={git}");

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    check_target_installed();
    let target_dir = manifest_dir.join("target").join("filter-wasm");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&manifest_dir)
        .args([
            "build",
            "--locked",
            "-p",
            "sticky-canary-filter",
            "--target",
            TARGET,
            "--profile",
            "wasm",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("STICKY_CANARY_GIT", &git);
    // Do not leak the outer build's settings (rustflags for the host, jobserver, coverage...) into the wasm build.
    for (key, _) in env::vars() {
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
    let status = cmd.status().expect("could not run cargo to build the wasm filter");
    if !status.success() {
        panic!("building the wasm filter (cargo build -p sticky-canary-filter --target {TARGET}) failed; see the errors above");
    }
    let built = target_dir.join(TARGET).join("wasm").join("sticky_canary_filter.wasm");
    let raw_size = std::fs::metadata(&built).map(|m| m.len()).unwrap_or(0);
    let shipped = out_dir.join("sticky_canary_filter.wasm");
    let optimised = env::var_os("STICKY_CANARY_NO_WASM_OPT").is_none() && wasm_opt(&built, &shipped);
    if !optimised {
        std::fs::copy(&built, &shipped).expect("copy the wasm filter into OUT_DIR");
    }
    println!("cargo:rustc-env=STICKY_CANARY_WASM_RAW_SIZE={raw_size}");
    println!("cargo:rustc-env=STICKY_CANARY_WASM_OPTIMISED={optimised}");
}

fn check_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    if let Some(sysroot) = sysroot {
        if !sysroot.join("lib/rustlib").join(TARGET).exists() {
            panic!(
                "\n\nThe Rust target {TARGET} is not installed, so the gateway filter cannot be built.\n\
                 Install it with:\n\n    rustup target add {TARGET}\n\n\
                 (`make setup` does this and installs the other tools.)\n"
            );
        }
    }
}

/// Runs `wasm-opt -Oz` when binaryen is on PATH. Returns whether it produced `out`.
fn wasm_opt(input: &Path, out: &Path) -> bool {
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
        Ok(s) if s.success() => true,
        Ok(_) => {
            println!("cargo:warning=wasm-opt failed; embedding the unoptimised filter");
            false
        }
        Err(_) => {
            println!("cargo:warning=wasm-opt (binaryen) not found; embedding the unoptimised filter. `make setup` installs it.");
            false
        }
    }
}

fn git_hash(dir: &Path) -> String {
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
