//! A real OCI registry on loopback: Debian's `docker-registry` (the CNCF distribution
//! registry), with its own storage dir and port, killed on drop. `tests/oci.rs` pushes to it
//! and the Istio chain tests have istio-agent pull our image from it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sticky_canary::local::{free_port, io_error, temp_dir, Client, LocalError, Request, TempDir};

/// Set to a `registry` binary to use instead of `docker-registry` on PATH.
pub const REGISTRY_ENV: &str = "STICKY_CANARY_DOCKER_REGISTRY";

/// A running `docker-registry` on 127.0.0.1.
pub struct Registry {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl Registry {
    /// An anonymous registry (push and pull without credentials).
    pub fn start() -> Result<Registry, LocalError> {
        Registry::start_with_config("")
    }

    /// A registry whose config gets `extra` appended (YAML, e.g. an `auth:` section); `{dir}`
    /// in it is replaced by the registry's own directory, where a caller can put an htpasswd file.
    pub fn start_with_config(extra: &str) -> Result<Registry, LocalError> {
        let binary = registry_binary()?;
        let dir = temp_dir("registry")?;
        let port = free_port()?;
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: sticky-canary-test\n",
            storage = dir.path().join("storage").display(),
        );
        config.push_str(&extra.replace("{dir}", &dir.path().to_string_lossy()));
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).map_err(io_error(format!("write {}", config_path.display())))?;
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path).map_err(io_error(format!("create {}", log_path.display())))?;
        let log_err = log.try_clone().map_err(io_error("clone the registry log handle"))?;
        let child = Command::new(&binary)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io_error(format!("start {}", binary.display())))?;
        let mut registry = Registry { child, dir, port };
        registry.wait_ready()?;
        Ok(registry)
    }

    fn wait_ready(&mut self) -> Result<(), LocalError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(LocalError::Tool(format!(
                    "docker-registry exited ({status}) before serving:\n{}",
                    self.log_tail()
                )));
            }
            let answer = Client::connect(([127, 0, 0, 1], self.port).into())
                .and_then(|mut client| client.send(&Request::get("/v2/").host(&self.host())));
            if let Ok(reply) = answer {
                if reply.status == 200 || reply.status == 401 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(LocalError::Timeout(format!(
                    "docker-registry did not answer on {}:\n{}",
                    self.host(),
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`, as it goes into an `oci://` reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's own directory (config, storage, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last 30 lines of the registry's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let skip = lines.len().saturating_sub(30);
        lines.into_iter().skip(skip).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry binary: `$STICKY_CANARY_DOCKER_REGISTRY`, else `docker-registry` on PATH.
fn registry_binary() -> Result<PathBuf, LocalError> {
    if let Some(path) = std::env::var_os(REGISTRY_ENV) {
        return Ok(PathBuf::from(path));
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("docker-registry"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            LocalError::Tool(
                "no docker-registry: install Debian's package with `sudo apt-get install -y docker-registry` \
                 (or `make setup`), or point STICKY_CANARY_DOCKER_REGISTRY at a `registry` binary"
                    .to_owned(),
            )
        })
}
