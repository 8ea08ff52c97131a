//! Builds the proxy-wasm filter for wasm32-wasip1 and hands the .wasm to the CLI,
//! which embeds it (`sticky-canary wasm`, `render`, `push`, `demo`).
//!
//! The nested cargo uses its own target dir (target/filter-wasm) so it never
//! waits on the lock the outer build holds. `wasm-opt -Oz` runs when binaryen is
//! installed; without it the build still works, with a larger module.
//! Every input of the module is declared (build/wasm.rs, `inputs`), so an edit to any of them
//! rebuilds it.

use std::env;
use std::path::PathBuf;
use std::process::Command;

#[path = "build/wasm.rs"]
mod wasm;

fn main() {
    if let Err(message) = run() {
        // A build script reports failure by exiting non-zero; cargo shows what it printed.
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|_| "cargo sets CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|_| "cargo sets OUT_DIR")?);
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/wasm.rs");
    for input in wasm::inputs(&cargo, &manifest_dir)? {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    println!("cargo:rerun-if-env-changed=STICKY_CANARY_NO_WASM_OPT");
    let git = wasm::git_hash(&manifest_dir);
    println!("cargo:rustc-env=STICKY_CANARY_GIT={git}");

    check_target_installed()?;
    let target_dir = manifest_dir.join("target").join("filter-wasm");
    let built = wasm::build(&cargo, &manifest_dir, &target_dir, &git)?;
    let raw_size = std::fs::metadata(&built).map(|m| m.len()).unwrap_or(0);
    let shipped = out_dir.join(wasm::ARTIFACT);
    let optimised = if env::var_os("STICKY_CANARY_NO_WASM_OPT").is_some() {
        false
    } else {
        match wasm::optimise(&built, &shipped) {
            wasm::Optimised::Yes => true,
            wasm::Optimised::Failed => {
                println!("cargo:warning=wasm-opt failed; embedding the unoptimised filter");
                false
            }
            wasm::Optimised::Missing => {
                println!("cargo:warning=wasm-opt (binaryen) not found; embedding the unoptimised filter. `make setup` installs it.");
                false
            }
        }
    };
    if !optimised {
        std::fs::copy(&built, &shipped).map_err(|e| format!("copy the wasm filter into OUT_DIR: {e}"))?;
    }
    println!("cargo:rustc-env=STICKY_CANARY_WASM_RAW_SIZE={raw_size}");
    println!("cargo:rustc-env=STICKY_CANARY_WASM_OPTIMISED={optimised}");
    println!("cargo:rustc-env=STICKY_CANARY_WASM_BUILT={}", built.display());
    Ok(())
}

fn check_target_installed() -> Result<(), String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    match sysroot {
        Some(sysroot) if !sysroot.join("lib/rustlib").join(wasm::TARGET).exists() => Err(format!(
            "\n\nThe Rust target {t} is not installed, so the gateway filter cannot be built.\n\
             Install it with:\n\n    rustup target add {t}\n\n\
             (`make setup` does this and installs the other tools.)\n",
            t = wasm::TARGET
        )),
        _ => Ok(()),
    }
}
