//! Finding, starting, updating and stopping a real Envoy.
//!
//! Which binary runs is [`super::envoy_binary`]'s business: `$ENVOY`, `PATH`, or the pinned
//! release installed into the per-user cache.
//!
//! Envoy 1.40 asks the kernel to kill it when the thread that spawned it exits
//! (`PR_SET_PDEATHSIG`), and test threads come and go. So each Envoy is spawned
//! and watched by its own supervisor thread, which lives exactly as long as the
//! [`Envoy`] value; dropping it stops the process group and removes the temp dir.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::bootstrap::{bootstrap_document, ecds_document, Layout, WasmCode};
use super::bootstrap::{EnvoyConfig, FilterSpec};
use super::client::{Client, Request, Response};
use super::envoy_binary::find_or_install_envoy;
use super::error::{io_error, LocalError};
use super::scratch::{temp_dir, two_free_ports, write_atomically, TempDir};

/// How long after a request its count reaches Envoy's counters at most: the filter's one-second
/// tick, plus a margin for a tick that is late under load.
pub const COUNTER_FLUSH: std::time::Duration = std::time::Duration::from_millis(1500);

/// Set to keep Envoy's temp dir (bootstrap, logs) after the run.
pub const KEEP_ENV: &str = "STICKY_CANARY_KEEP_ENVOY_DIR";

/// Everything [`Envoy::launch`] needs to run one Envoy on a written bootstrap.
pub struct Launch {
    pub binary: PathBuf,
    /// Envoy's temp dir: holds the bootstrap; logs are written here; removed on drop.
    pub dir: TempDir,
    pub bootstrap_path: PathBuf,
    pub layout: Layout,
    pub filter: Option<FilterSpec>,
    pub concurrency: u32,
    pub log_level: String,
}

/// What Envoy did with a pushed filter config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Envoy took it; new requests use it.
    Accepted,
    /// Envoy refused it and kept the previous config. `log` holds the Envoy log
    /// lines written since the push (the filter's error names the bad field).
    Rejected { log: String },
}

/// A running Envoy. Stopped (process group killed) on `Drop`; when dropped
/// during a panic (a failed assertion) it first prints its log tail to stderr.
pub struct Envoy {
    dir: Option<TempDir>,
    layout: Layout,
    log_path: PathBuf,
    stderr_path: PathBuf,
    filter: Option<FilterSpec>,
    stop: Option<mpsc::Sender<()>>,
    supervisor: Option<JoinHandle<()>>,
    exit: Arc<Mutex<Option<ExitStatus>>>,
    pid: u32,
}

/// The ECDS counters of the filter (`extension_config_discovery.http_filter.sticky-canary.*`).
const ECDS_STATS: &str = "extension_config_discovery.http_filter.sticky-canary.";

impl Envoy {
    /// Writes the bootstrap into a temp dir, starts Envoy and waits until `/ready` says LIVE.
    pub fn start(config: &EnvoyConfig) -> Result<Envoy, LocalError> {
        let binary = find_or_install_envoy(config.envoy.as_deref())?;
        let dir = temp_dir("envoy")?;
        let (listener_port, admin_port) = two_free_ports()?;
        let ecds_dir = dir.path().join("ecds");
        std::fs::create_dir_all(&ecds_dir).map_err(io_error(format!("create {}", ecds_dir.display())))?;
        let layout = Layout {
            listener_port,
            admin_port,
            ecds_path: ecds_dir.join("filter.json"),
            wasm_path: dir.path().join("sticky_canary_filter.wasm"),
            access_log: dir.path().join("access.log"),
        };
        if let Some(filter) = &config.filter {
            let wasm_path = match &filter.code {
                WasmCode::Embedded => {
                    std::fs::write(&layout.wasm_path, crate::FILTER_WASM)
                        .map_err(io_error(format!("write {}", layout.wasm_path.display())))?;
                    layout.wasm_path.clone()
                }
                WasmCode::File(path) => path.clone(),
                WasmCode::TypedConfig(_) => layout.wasm_path.clone(),
            };
            write_atomically(&layout.ecds_path, ecds_document(filter, &wasm_path)?.as_bytes())?;
        }
        let bootstrap_path = dir.path().join("bootstrap.json");
        std::fs::write(&bootstrap_path, bootstrap_document(config, &layout))
            .map_err(io_error(format!("write {}", bootstrap_path.display())))?;
        Envoy::launch(Launch {
            binary,
            dir,
            bootstrap_path,
            layout,
            filter: config.filter.clone(),
            concurrency: config.concurrency,
            log_level: config.log_level.clone(),
        })
    }

    /// Starts Envoy on a bootstrap already written into `launch.dir`, waits until LIVE.
    pub fn launch(launch: Launch) -> Result<Envoy, LocalError> {
        let Launch {
            binary,
            dir,
            bootstrap_path,
            layout,
            filter,
            concurrency,
            log_level,
        } = launch;
        let log_path = dir.path().join("envoy.log");
        let stderr_path = dir.path().join("envoy.stderr");
        let stdout_file =
            std::fs::File::create(dir.path().join("envoy.stdout")).map_err(io_error("create envoy.stdout"))?;
        let stderr_file = std::fs::File::create(&stderr_path).map_err(io_error("create envoy.stderr"))?;

        let mut command = dies_with_its_parent(&binary);
        command
            .arg("-c")
            .arg(&bootstrap_path)
            .arg("--concurrency")
            .arg(concurrency.max(1).to_string())
            .arg("--log-path")
            .arg(&log_path)
            .arg("-l")
            .arg(&log_level)
            // Flush the log often, so a failure report and a rejected update see the latest lines.
            .arg("--file-flush-interval-msec")
            .arg("50")
            // Several Envoys may run at once: no shared-memory hot-restart domain.
            .arg("--disable-hot-restart")
            .stdin(Stdio::null())
            .stdout(stdout_file)
            .stderr(stderr_file)
            .process_group(0);

        let (started_tx, started_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let exit = Arc::new(Mutex::new(None));
        let supervisor_exit = Arc::clone(&exit);
        let supervisor = std::thread::Builder::new()
            .name("envoy-supervisor".to_owned())
            .spawn(move || supervise(command, started_tx, stop_rx, supervisor_exit))
            .map_err(io_error("start the Envoy supervisor thread"))?;
        let pid = match started_rx.recv() {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => {
                let _ = supervisor.join();
                return Err(LocalError::Io {
                    what: format!("run {}", binary.display()),
                    source: e,
                });
            }
            Err(_) => {
                let _ = supervisor.join();
                return Err(LocalError::EnvoyStart {
                    reason: "the supervisor thread ended before starting Envoy".to_owned(),
                    log_tail: String::new(),
                });
            }
        };
        let envoy = Envoy {
            dir: Some(dir),
            layout,
            log_path,
            stderr_path,
            filter,
            stop: Some(stop_tx),
            supervisor: Some(supervisor),
            exit,
            pid,
        };
        envoy.wait_ready(Duration::from_secs(30))?;
        Ok(envoy)
    }

    fn wait_ready(&self, limit: Duration) -> Result<(), LocalError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                return Err(LocalError::EnvoyStart {
                    reason: format!("Envoy exited with {status}"),
                    log_tail: self.log_tail(40),
                });
            }
            if let Ok(reply) = self.admin_get("/ready") {
                if reply.status == 200 && reply.body.trim_ascii() == b"LIVE" {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(LocalError::EnvoyStart {
                    reason: format!("not ready after {limit:?}"),
                    log_tail: self.log_tail(40),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status when Envoy has stopped on its own.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The HTTP listener clients connect to.
    pub fn listener(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.layout.listener_port))
    }

    pub fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.layout.admin_port))
    }

    /// Envoy's temp dir (bootstrap.json, ecds/filter.json, envoy.log, access.log).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(TempDir::path)
    }

    /// The filter config last accepted (or the one Envoy started with).
    pub fn filter(&self) -> Option<&FilterSpec> {
        self.filter.as_ref()
    }

    /// GET on the admin port.
    pub fn admin_get(&self, path: &str) -> Result<Response, LocalError> {
        let mut client = Client::connect(self.admin())?;
        client.send(&Request::get(path).header("Connection", "close"))
    }

    /// `/stats` as text (`name: value` lines).
    pub fn stats(&self) -> Result<String, LocalError> {
        Ok(self.admin_get("/stats")?.body_text())
    }

    /// `/stats/prometheus`.
    pub fn prometheus(&self) -> Result<String, LocalError> {
        Ok(self.admin_get("/stats/prometheus")?.body_text())
    }

    /// `/stats/prometheus` once the filter has handed Envoy every count made before this call.
    ///
    /// The filter counts decisions in module memory and adds them to Envoy's counters on a tick
    /// (every second, `TICK_MILLISECONDS` in filter/src/lib.rs), so a scrape made right after the
    /// requests can miss up to a second of them. Waiting [`COUNTER_FLUSH`] covers one full tick
    /// on every worker.
    pub fn prometheus_flushed(&self) -> Result<String, LocalError> {
        std::thread::sleep(COUNTER_FLUSH);
        self.prometheus()
    }

    /// `/stats` once the filter has flushed its counts, as [`Envoy::prometheus_flushed`].
    pub fn stats_flushed(&self) -> Result<String, LocalError> {
        std::thread::sleep(COUNTER_FLUSH);
        self.stats()
    }

    /// One counter or gauge from `/stats` by its full name; `None` when absent.
    pub fn stat(&self, name: &str) -> Result<Option<u64>, LocalError> {
        let text = self.stats()?;
        Ok(stat_value(&text, name))
    }

    /// Pushes a new filter config the way a control plane would (ECDS file,
    /// written then renamed over), and waits for Envoy to accept or reject it.
    pub fn update_filter_config(&mut self, configuration: &str) -> Result<UpdateOutcome, LocalError> {
        self.update_filter_config_settling(configuration, Duration::from_millis(200))
    }

    /// [`Envoy::update_filter_config`], waiting `settle` after Envoy's main thread took or refused
    /// the config (for the workers to pick it up, and for the log lines of a rejection) instead
    /// of 200 ms: the soak pushes configs back to back. Polls only the ECDS counters.
    pub fn update_filter_config_settling(
        &mut self,
        configuration: &str,
        settle: Duration,
    ) -> Result<UpdateOutcome, LocalError> {
        let mut filter = self.filter.clone().ok_or_else(|| {
            LocalError::Protocol("this Envoy runs without the wasm filter: nothing to update".to_owned())
        })?;
        filter.configuration = configuration.to_owned();
        let wasm_path = match &filter.code {
            WasmCode::Embedded | WasmCode::TypedConfig(_) => self.layout.wasm_path.clone(),
            WasmCode::File(path) => path.clone(),
        };
        let ecds_stats = || -> Result<String, LocalError> {
            let reply = self.admin_get(&format!("/stats?filter={ECDS_STATS}"))?;
            Ok(reply.body_text())
        };
        let stats = ecds_stats()?;
        let success = stat_value(&stats, &format!("{ECDS_STATS}update_success")).unwrap_or(0);
        let rejected = stat_value(&stats, &format!("{ECDS_STATS}update_rejected")).unwrap_or(0);
        let log_offset = std::fs::metadata(&self.log_path).map_or(0, |m| m.len());
        write_atomically(&self.layout.ecds_path, ecds_document(&filter, &wasm_path)?.as_bytes())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let stats = ecds_stats()?;
            if stat_value(&stats, &format!("{ECDS_STATS}update_success")).unwrap_or(0) > success {
                self.filter = Some(filter);
                // The main thread has the new config; give the workers a moment to pick it up.
                std::thread::sleep(settle);
                return Ok(UpdateOutcome::Accepted);
            }
            if stat_value(&stats, &format!("{ECDS_STATS}update_rejected")).unwrap_or(0) > rejected {
                // Let Envoy flush the log lines about the rejection.
                std::thread::sleep(settle);
                return Ok(UpdateOutcome::Rejected {
                    log: read_from(&self.log_path, log_offset),
                });
            }
            if Instant::now() > deadline {
                return Err(LocalError::Timeout(format!(
                    "Envoy neither accepted nor rejected the filter config pushed to {}\n--- Envoy log ---\n{}",
                    self.layout.ecds_path.display(),
                    self.log_tail(30)
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The length of Envoy's log now: a mark for [`Envoy::log_since`].
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log_path).map_or(0, |m| m.len())
    }

    /// Envoy's log from a [`Envoy::log_len`] mark on, without the start-up inventory.
    pub fn log_since(&self, mark: u64) -> String {
        tail(&read_from(&self.log_path, mark), usize::MAX)
    }

    /// The last `lines` lines of Envoy's log (and of its stderr, when not empty).
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = tail(&read_from(&self.log_path, 0), lines);
        let stderr = read_from(&self.stderr_path, 0);
        if !stderr.trim().is_empty() {
            out.push_str("--- Envoy stderr ---\n");
            out.push_str(&tail(&stderr, lines));
        }
        out
    }

    /// The last `lines` lines of the access log (one line per request: host, path, status, cluster).
    pub fn access_log_tail(&self, lines: usize) -> String {
        tail(&read_from(&self.layout.access_log, 0), lines)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Envoy flushes its log every 50 ms.
            std::thread::sleep(Duration::from_millis(100));
            eprintln!(
                "--- Envoy log (last 40 lines), pid {} ---\n{}--- access log (last 10 lines) ---\n{}---",
                self.pid,
                self.log_tail(40),
                self.access_log_tail(10)
            );
        }
        drop(self.stop.take());
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
        if std::env::var_os(KEEP_ENV).is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("kept Envoy's files in {}", dir.keep().display());
            }
        }
    }
}

/// Spawns Envoy, reports its pid, then waits for the stop signal (or its exit)
/// and kills its process group.
fn supervise(
    mut command: Command,
    started: mpsc::Sender<std::io::Result<u32>>,
    stop: mpsc::Receiver<()>,
    exit: Arc<Mutex<Option<ExitStatus>>>,
) {
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let pid = child.id();
    let _ = started.send(Ok(pid));
    // Until the stop signal, or the `Envoy` value is gone (the sender dropped).
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_millis(100)) {
        if let Ok(Some(status)) = child.try_wait() {
            *exit.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(status);
            // Keep waiting for the stop signal so `Drop` stays simple.
            let _ = stop.recv();
            return;
        }
    }
    // The whole process group: Envoy and anything it started.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// A value from `/stats` text output (`name: value` lines).
pub fn stat_value(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|line| {
        let (n, v) = line.split_once(": ")?;
        if n == name {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether a log line is part of Envoy's start-up inventory (extension and
/// header-map lists, message indented by two spaces): noise in a failure report.
fn is_inventory(line: &str) -> bool {
    line.split_once("] ")
        .and_then(|(_, rest)| rest.split_once("] "))
        .is_some_and(|(_, message)| message.starts_with("  "))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|line| !is_inventory(line)).collect();
    let start = all.len().saturating_sub(lines);
    let mut out = String::new();
    for line in all.iter().skip(start) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A command that runs `binary` and is killed by the kernel when the thread that spawned it
/// (the supervisor) dies, which also happens when this whole process is killed before any
/// destructor runs: Envoy sits in its own process group, so a terminal's Ctrl-C does not reach it.
/// On Linux through util-linux's `setpriv --pdeathsig KILL` (which then execs Envoy in its own
/// place: same pid), so this crate needs no `unsafe` `pre_exec`; without `setpriv`, or on other
/// systems, Envoy is still stopped on `Drop`.
fn dies_with_its_parent(binary: &Path) -> Command {
    #[cfg(target_os = "linux")]
    {
        const SETPRIV: &str = "/usr/bin/setpriv";
        if Path::new(SETPRIV).is_file() {
            let mut command = Command::new(SETPRIV);
            command.args(["--pdeathsig", "KILL"]).arg(binary);
            return command;
        }
    }
    Command::new(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reports_skip_the_start_up_inventory() {
        let log = "[2026-11-23 09:16:20.835][4808][info][main] [source/server/server.cc:465] statically linked extensions:\n\
                   [2026-11-23 09:16:20.835][4808][info][main] [source/server/server.cc:467]   envoy.upstreams: envoy.filters.connection_pools.tcp.generic\n\
                   [2026-11-23 09:16:36.931][5147][error][wasm] [source/extensions/common/wasm/context.cc:1157] wasm log sticky-canary: bad\n";
        let out = tail(log, 10);
        assert!(!out.contains("envoy.upstreams"));
        assert!(out.contains("statically linked extensions") && out.contains("wasm log sticky-canary: bad"));
    }

    #[test]
    fn reads_stat_values() {
        let stats = "a.b: 3\nextension_config_discovery.http_filter.sticky-canary.update_success: 12\n";
        assert_eq!(
            stat_value(
                stats,
                "extension_config_discovery.http_filter.sticky-canary.update_success"
            ),
            Some(12)
        );
        assert_eq!(stat_value(stats, "a"), None);
    }
}
