#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! The CLI's check, assign and wasm commands, run as a user would run them.

use std::io::Write;
use std::process::{Command, Stdio};

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sticky-canary"))
}

fn temp_file(name: &str, contents: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sticky-canary-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn check_accepts_the_example_config() {
    let out = cli().args(["check", "examples/filter-config.json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("route my-app"), "{stdout}");
    assert!(stdout.contains("v2 10%"), "{stdout}");
}

#[test]
fn check_lists_every_error_and_fails() {
    let path = temp_file(
        "bad.json",
        br#"{"routes": [{"name": "app", "hosts": ["a.example.com"], "salt": "s",
            "versions": [{"name": "v1", "weight": 80}, {"name": "v2", "weight": 120}],
            "key_chain": [{"cookie": "bad name"}], "typo": 1}]}"#,
    );
    let out = cli().arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "routes[0].versions[1].weight: 120 is above 100",
        "routes[0].key_chain[0].cookie: \"bad name\" is not a valid cookie name",
        "routes[0].typo: unknown field",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_names_a_missing_file() {
    let out = cli().args(["check", "/nonexistent/config.json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.json: cannot read"));
}

/// `sticky-canary assign` on the example config with `args`, keys from standard input.
fn assign_stdin(args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = cli()
        .args(["assign", "--config", "examples/filter-config.json", "--keys", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn assign_predicts_bucket_and_version_per_key() {
    let out = assign_stdin(&["--host", "my-app.example.com"], b"user-42\r\n\"quoted\"\n\xff\xfe\n");
    assert!(out.status.success());
    let policy = policy_core::Policy::from_json(&std::fs::read("examples/filter-config.json").unwrap()).unwrap();
    let route = &policy.routes()[0];
    let mut expected = Vec::new();
    for key in [&b"user-42"[..], b"\"quoted\"", b"\xff\xfe"] {
        let (bucket, version) = route.assign(key);
        expected.extend_from_slice(key);
        expected.extend_from_slice(format!("\t{bucket}\t{}\n", route.versions()[version].name()).as_bytes());
    }
    assert_eq!(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&expected));
    assert_eq!(
        route.assign(b"user-42").0,
        policy_core::bucket(b"my-app-2026", b"user-42")
    );
}

#[test]
fn assign_reads_id_cookie_values_and_identities() {
    let run = |kind: &str, input: &[u8]| {
        let out = assign_stdin(&["--kind", kind], input);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let policy = policy_core::Policy::from_json(&std::fs::read("examples/filter-config.json").unwrap()).unwrap();
    let route = &policy.routes()[0];
    let name = |version: usize| route.versions()[version].name().to_owned();
    let id = "0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5";
    let (bucket, version) = route.assign(id.as_bytes());
    assert_eq!(
        run("id-cookie", format!("{id}.20415\n{id}\n").as_bytes()),
        format!(
            "{id}.20415\t{bucket}\t{}\n{id}\t{bucket}\t{}\n",
            name(version),
            name(version)
        ),
        "the day stamp is not part of the key"
    );
    let derived = policy_core::identity_id(b"my-app-2026", b"alice");
    let (bucket, version) = route.assign(derived.as_bytes());
    assert_eq!(
        run("identity", b"alice\n"),
        format!("alice\t{bucket}\t{}\n", name(version))
    );
}

#[test]
fn assign_refuses_an_unknown_host() {
    let out = cli()
        .args([
            "assign",
            "--config",
            "examples/filter-config.json",
            "--host",
            "other.org",
            "--keys",
            "-",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no route serves host \"other.org\""));
}

#[test]
fn wasm_writes_the_module_and_its_sha256() {
    let path = std::env::temp_dir().join(format!("sticky-canary-{}.wasm", std::process::id()));
    let out = cli().arg("wasm").arg("--out").arg(&path).output().unwrap();
    assert!(out.status.success());
    let written = std::fs::read(&path).unwrap();
    assert_eq!(written, sticky_canary::FILTER_WASM);
    assert_eq!(&written[..4], b"\0asm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&sticky_canary::sha256_hex(&written)), "{stdout}");
}

/// The shipped module's size budget: 150 KB at most. It is on the `std` library and its
/// allocator since the filter dropped its own heap, `memcmp` and panic handler; docs/benchmarks.md
/// (Module size) has today's size and what each part costs.
#[test]
fn the_shipped_wasm_stays_within_its_size_budget() {
    assert_eq!(
        sticky_canary::FILTER_WASM_OPTIMISED,
        "true",
        "the embedded filter did not go through wasm-opt: install binaryen (make setup) and rebuild"
    );
    let size = sticky_canary::FILTER_WASM.len();
    eprintln!(
        "shipped filter: {size} bytes (before wasm-opt: {} bytes)",
        sticky_canary::FILTER_WASM_RAW_SIZE
    );
    assert!(size <= 150_000, "the filter is {size} bytes, over the 150 KB budget");
}

/// Unsigned LEB128 at `at`; the value and the offset after it.
fn leb128(bytes: &[u8], mut at: usize) -> (u64, usize) {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let byte = bytes[at];
        at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte < 0x80 {
            return (value, at);
        }
    }
}

/// `module.name` of every import of a wasm module, and the name of every export.
fn wasm_imports_and_exports(wasm: &[u8]) -> (Vec<String>, Vec<String>) {
    assert_eq!(&wasm[..8], b"\0asm\x01\0\0\0");
    let name = |p: usize| {
        let (len, start) = leb128(wasm, p);
        let end = start + len as usize;
        (String::from_utf8(wasm[start..end].to_vec()).unwrap(), end)
    };
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut at = 8;
    while at < wasm.len() {
        let id = wasm[at];
        let (size, body) = leb128(wasm, at + 1);
        let end = body + size as usize;
        if id == 2 {
            let (count, mut p) = leb128(wasm, body);
            for _ in 0..count {
                let (module, next) = name(p);
                let (field, next) = name(next);
                imports.push(format!("{module}.{field}"));
                // Import kind, then its type: only functions are expected (kind 0, a type index).
                assert_eq!(wasm[next], 0, "{module}.{field}: not a function import");
                p = leb128(wasm, next + 1).1;
            }
            assert_eq!(p, end);
        } else if id == 7 {
            let (count, mut p) = leb128(wasm, body);
            for _ in 0..count {
                let (field, next) = name(p);
                exports.push(field);
                // Export kind, then its index.
                p = leb128(wasm, next + 1).1;
            }
            assert_eq!(p, end);
        }
        at = end;
    }
    (imports, exports)
}

/// The proxy-wasm calls Envoy provides to a module of ABI 0.2.1, module `env` (proxy-wasm-cpp-host,
/// `FOR_ALL_HOST_FUNCTIONS` in include/proxy-wasm/exports.h, and the 0.2.1 additions registered in
/// src/wasm.cc).
const ENVOY_PROXY_CALLS: &[&str] = &[
    "log",
    "get_status",
    "set_property",
    "get_property",
    "send_local_response",
    "get_shared_data",
    "set_shared_data",
    "register_shared_queue",
    "resolve_shared_queue",
    "dequeue_shared_queue",
    "enqueue_shared_queue",
    "get_header_map_value",
    "add_header_map_value",
    "replace_header_map_value",
    "remove_header_map_value",
    "get_header_map_pairs",
    "set_header_map_pairs",
    "get_header_map_size",
    "get_buffer_status",
    "get_buffer_bytes",
    "set_buffer_bytes",
    "http_call",
    "grpc_call",
    "grpc_stream",
    "grpc_close",
    "grpc_cancel",
    "grpc_send",
    "set_tick_period_milliseconds",
    "get_current_time_nanoseconds",
    "define_metric",
    "increment_metric",
    "record_metric",
    "get_metric",
    "set_effective_context",
    "done",
    "call_foreign_function",
    "continue_stream",
    "close_stream",
    "get_log_level",
];

/// The WASI calls Envoy implements, module `wasi_snapshot_preview1` (proxy-wasm-cpp-host,
/// src/exports.cc): stdout and stderr go to Envoy's log, the environment is the plugin's `env`,
/// `proc_exit` fails the VM. Envoy registers the rest of WASI too, as stubs answering ENOSYS or
/// ENOTSUP (files, sockets, `fd_read`): a module importing one of those would link and then
/// silently not work, so they fail the test like any unknown import.
const ENVOY_WASI_CALLS: &[&str] = &[
    "fd_write",
    "fd_fdstat_get",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "clock_time_get",
    "clock_res_get",
    "random_get",
    "sched_yield",
    "poll_oneoff",
    "proc_exit",
];

/// The module imports only calls Envoy provides (Envoy refuses a module with any other import),
/// and exports `_initialize`, the WASI reactor's entry point Envoy calls once before anything
/// else (without it the linker would wrap every export to run the constructors each time).
#[test]
fn the_shipped_wasm_imports_only_host_calls() {
    let (imports, exports) = wasm_imports_and_exports(sticky_canary::FILTER_WASM);
    assert!(
        imports.contains(&"env.proxy_get_header_map_pairs".to_string()),
        "{imports:?}"
    );
    for import in &imports {
        let known = match import.split_once('.') {
            Some(("env", call)) => call
                .strip_prefix("proxy_")
                .is_some_and(|call| ENVOY_PROXY_CALLS.contains(&call)),
            Some(("wasi_snapshot_preview1", call)) => ENVOY_WASI_CALLS.contains(&call),
            _ => false,
        };
        assert!(known, "unexpected import {import} (all: {imports:?})");
    }
    for export in [
        "_initialize",
        "proxy_abi_version_0_2_1",
        "proxy_on_memory_allocate",
        "proxy_on_request_headers",
    ] {
        assert!(
            exports.iter().any(|e| e == export),
            "{export} is not exported (exports: {exports:?})"
        );
    }
}

#[test]
fn explain_agrees_with_assign_and_names_the_cookie_that_decided() {
    let policy = policy_core::Policy::from_json(&std::fs::read("examples/filter-config.json").unwrap()).unwrap();
    let route = &policy.routes()[0];
    let id = "0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5";
    let (bucket, version) = route.assign(id.as_bytes());
    let out = cli()
        .args([
            "explain",
            "--config",
            "examples/filter-config.json",
            "--host",
            "my-app.example.com",
            "--cookie",
            &format!("a=1; sticky-canary-id={id}.20415"),
            "--header",
            "x-user-id: alice",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The id cookie decides ahead of the identity header (docs/assignment.md §3).
    assert!(text.contains("the client-id cookie sticky-canary-id"), "{text}");
    assert!(text.contains(&format!("bucket:     {bucket} of 0..9999")), "{text}");
    assert!(
        text.contains(&format!("version:    {}", route.versions()[version].name())),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("moves:      ")), "{text}");
}

#[test]
fn explain_names_what_is_wrong_with_its_arguments() {
    let run = |args: &[&str]| {
        let out = cli()
            .args(["explain", "--config", "examples/filter-config.json"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["--header", "x-user-id alice"]).contains("give NAME: VALUE"));
    assert!(run(&["--host", "other.org"]).contains("no route serves host \"other.org\""));
    assert!(run(&["--canary-weight", "40"]).contains("--canary-weight is for routes whose weights a tool sets"));
}
