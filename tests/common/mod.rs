//! What the Istio chain suites share: the CLI as a user runs it (with a routing-token key made
//! once per test process), one-at-a-time locking, and reading rendered plugins back.

#![allow(dead_code)] // each test file uses its own subset

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

pub const CLI: &str = env!("CARGO_BIN_EXE_sticky-canary");

/// One test at a time: each runs Envoys under load on a 2-core machine.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A routing-token key for this test process, made once by `sticky-canary token-key`
/// (`render` refuses to run without one).
pub fn token_key() -> &'static Path {
    static KEY: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &KEY.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let output = Command::new(CLI)
            .arg("token-key")
            .arg("--out")
            .arg(&path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        (dir, path)
    })
    .1
}

/// Runs `sticky-canary ARGS` with the test token key; panics with its output when it fails.
pub fn run_cli(args: &[&str]) -> String {
    let output = Command::new(CLI)
        .env(sticky_canary::render::token::KEY_FILE_ENV, token_key())
        .args(args)
        .output()
        .expect("run sticky-canary");
    assert!(
        output.status.success(),
        "sticky-canary {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The filter's JSON config inside a rendered plugin object: the Wasm config's
/// `configuration.value` (EnvoyFilter) or `pluginConfig` (WasmPlugin).
pub fn find_filter_config(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(config) = map.get("pluginConfig") {
                return Some(config.to_string());
            }
            if let Some(text) = map
                .get("configuration")
                .and_then(|c| c.get("value"))
                .and_then(|v| v.as_str())
            {
                return Some(text.to_owned());
            }
            map.values().find_map(find_filter_config)
        }
        serde_json::Value::Array(items) => items.iter().find_map(find_filter_config),
        _ => None,
    }
}

/// The filter config the rendered plugin file carries, written to `out` for `sticky-canary assign`.
pub fn write_filter_config(plugin_file: &Path, out: &Path) -> PathBuf {
    let text = std::fs::read_to_string(plugin_file).unwrap();
    let mut found = None;
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: serde_json::Value = serde::Deserialize::deserialize(document).unwrap();
        found = found.or_else(|| find_filter_config(&value));
    }
    let config = found.unwrap_or_else(|| panic!("{} carries no filter config", plugin_file.display()));
    std::fs::write(out, config).unwrap();
    out.to_path_buf()
}

/// `sticky-canary assign` for the route of `host`, many keys at once: key -> version.
pub fn assign_on(config: &Path, host: &str, keys: &[String]) -> HashMap<String, String> {
    assign_with(config, host, keys, &[])
}

/// [`assign_on`] with more arguments (`--canary-weight 10`).
pub fn assign_with(config: &Path, host: &str, keys: &[String], extra: &[&str]) -> HashMap<String, String> {
    let mut child = Command::new(CLI)
        .args(["assign", "--host", host, "--config"])
        .arg(config)
        .args(["--keys", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sticky-canary assign");
    let mut stdin = child.stdin.take().unwrap();
    let input = keys.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "assign failed");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (fields[0].to_owned(), fields[fields.len() - 1].to_owned())
        })
        .collect()
}
