#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! The README's main job: `sticky-canary demo`, run short and non-interactive, must pass all its checks;
//! and Ctrl-C during `--serve` leaves no Envoy behind.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn demo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sticky-canary"))
}

#[test]
fn the_quick_demo_passes_every_check() {
    let out = demo().args(["demo", "--quick"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("Every check held."), "{stdout}");
    assert!(stdout.contains("0 mismatches"), "{stdout}");
    // Users log in, get the session rotated and log out mid-ramp: nobody moves.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("[ok ] login, session rotation and logout mid-ramp: 0 of ")),
        "{stdout}"
    );
    for phase in ["log in, rotate session, 10%", "log out at 50%"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(phase))
            .unwrap_or_else(|| panic!("no {phase:?} row:\n{stdout}"));
        let bounced: usize = row.split_whitespace().rev().nth(3).unwrap().parse().unwrap();
        assert_eq!(bounced, 0, "{row}");
    }
    // Blue/green: every newcomer on green, no active user moved before the deadline, every
    // user back from being away moved.
    let bluegreen = stdout
        .lines()
        .find(|l| l.starts_with("[ok ] blue/green cut-over: "))
        .unwrap_or_else(|| panic!("no passing blue/green line:\n{stdout}"));
    assert!(bluegreen.contains("40 of 40 new users on green"), "{bluegreen}");
    assert!(
        bluegreen.contains("; 0 of 120 active users moved before the deadline"),
        "{bluegreen}"
    );
    assert!(bluegreen.contains("40 of 40 users back after"), "{bluegreen}");
    // The contrast must show: plain weights bounce users.
    let plain = stdout.lines().find(|l| l.starts_with("plain weights:")).unwrap();
    let bounced: usize = plain.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(bounced > 20, "plain weights bounced only {bounced} users: {plain}");
}

/// Pids of the direct children of `pid` (Envoy is one).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

#[test]
fn ctrl_c_while_serving_leaves_no_process_behind() {
    let mut child = demo()
        .args(["demo", "--quick", "--users", "40", "--serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("Envoy with sticky-canary at 50% is serving ") {
            url = Some(rest.to_owned());
        }
        if line.starts_with("Press Ctrl-C") || Instant::now() > deadline {
            break;
        }
    }
    let url = url.expect("the demo printed no serving URL");
    let envoys = children(pid);
    assert!(
        !envoys.is_empty(),
        "the demo has no child process (Envoy) while serving {url}"
    );
    // The served Envoy answers with a version and a client id cookie.
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut client = sticky_canary_harness::Client::connect(addr.parse().unwrap()).unwrap();
    let reply = client.send(&sticky_canary_harness::Request::get("/")).unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("set-cookie")
        .is_some_and(|c| c.starts_with(b"sticky-canary-id=")));
    drop(client);

    // SIGINT, as Ctrl-C sends it.
    let status = Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<u32> = envoys
            .iter()
            .copied()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect();
        let zombies_only = alive
            .iter()
            .all(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |s| s.contains(") Z ")));
        if alive.is_empty() || zombies_only {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes left behind after Ctrl-C: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
