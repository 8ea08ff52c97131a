//! A real Prometheus (Debian's `prometheus` 2.42, which scripts/setup.sh installs) scraping
//! the test's gateways every second, with a rules file; queried over its HTTP API.
//!
//! tests/observability.rs runs it against a plain Envoy's admin port with the rendered rules;
//! tests/controllers.rs runs it inside the cluster suite's network namespace, scraping the
//! gateway agent's merged `/stats/prometheus`, as the source of Flagger's and Argo Rollouts'
//! analysis.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sticky_canary::local::{io_error, temp_dir, Client, LocalError, Request, TempDir};

/// A Debian tool scripts/setup.sh installs, from `PATH`; missing is an error naming the
/// package, never a skip.
pub fn debian_tool(name: &str) -> Result<PathBuf, LocalError> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            LocalError::Tool(format!(
                "{name} is not installed: run scripts/setup.sh (Debian package prometheus)"
            ))
        })
}

/// One scrape job: its name, the target `host:port` and the metrics path.
pub struct Target<'a> {
    pub job: &'a str,
    pub addr: SocketAddr,
    pub path: &'a str,
}

/// A Prometheus server, killed on `Drop`.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus on `listen`, scraping and evaluating every second, with `rules` as its
    /// rules file; waits until it is ready.
    pub fn start(listen: SocketAddr, targets: &[Target<'_>], rules: &str) -> Result<Prometheus, LocalError> {
        let binary = debian_tool("prometheus")?;
        let dir = temp_dir("prometheus")?;
        std::fs::write(dir.path().join("rules.yaml"), rules).map_err(io_error("write the rules file"))?;
        let mut config = String::from(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [rules.yaml]\nscrape_configs:\n",
        );
        for target in targets {
            config.push_str(&format!(
                "- job_name: {}\n  metrics_path: {}\n  static_configs: [{{targets: ['{}']}}]\n",
                target.job, target.path, target.addr
            ));
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).map_err(io_error("write prometheus.yml"))?;
        let log =
            std::fs::File::create(dir.path().join("prometheus.log")).map_err(io_error("create prometheus.log"))?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--web.enable-lifecycle")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io_error("start prometheus"))?;
        let prometheus = Prometheus {
            child,
            addr: listen,
            dir,
        };
        prometheus.wait_until(Duration::from_secs(30), "ready", || {
            prometheus
                .get("/-/ready")
                .is_some_and(|(status, _)| status == 200)
                .then_some(())
        })?;
        Ok(prometheus)
    }

    /// Where it listens (what a MetricTemplate's or an AnalysisTemplate's `address` names).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut client = Client::connect(self.addr).ok()?;
        client.set_timeout(Duration::from_secs(10));
        let reply = client.send(&Request::get(path).host("prometheus")).ok()?;
        Some((reply.status, reply.body_text()))
    }

    /// New rules, as a user applies a fresh render: the file replaced, then a reload.
    pub fn reload_rules(&self, rules: &str) -> Result<(), LocalError> {
        std::fs::write(self.dir.path().join("rules.yaml"), rules).map_err(io_error("write the rules file"))?;
        let mut client = Client::connect(self.addr)?;
        let reply = client.send(&Request::get("/-/reload").method("POST").host("prometheus"))?;
        if reply.status == 200 {
            Ok(())
        } else {
            Err(LocalError::Protocol(format!(
                "Prometheus reload: {} {}\n{}",
                reply.status,
                reply.body_text(),
                self.log()
            )))
        }
    }

    /// An instant query's result vector; an error when Prometheus refuses the query.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, LocalError> {
        let (status, body) = self
            .get(&format!("/api/v1/query?query={}", encode(promql)))
            .ok_or_else(|| LocalError::Protocol(format!("Prometheus: no answer to {promql}")))?;
        let reply: Value = serde_json::from_str(&body)
            .map_err(|e| LocalError::Protocol(format!("Prometheus: {promql}: {e}: {body}")))?;
        if status != 200 || reply.get("status").and_then(Value::as_str) != Some("success") {
            return Err(LocalError::Protocol(format!("Prometheus: {promql}: {body}")));
        }
        Ok(reply
            .pointer("/data/result")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// The value of the one sample `promql` selects, if there is exactly one.
    pub fn value(&self, promql: &str) -> Result<Option<f64>, LocalError> {
        Ok(match self.query(promql)?.as_slice() {
            [one] => one
                .pointer("/value/1")
                .and_then(Value::as_str)
                .and_then(|v| v.parse().ok()),
            _ => None,
        })
    }

    /// Polls `check` every 250 ms until it gives a value or `limit` passes (an error with
    /// Prometheus's log).
    pub fn wait_until<T>(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut() -> Option<T>,
    ) -> Result<T, LocalError> {
        let started = Instant::now();
        loop {
            if let Some(value) = check() {
                return Ok(value);
            }
            if started.elapsed() > limit {
                return Err(LocalError::Timeout(format!(
                    "Prometheus: {what}: not within {limit:?}\n{}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding for a query string value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_promql_for_a_query_string() {
        assert_eq!(encode("rate(x{a=\"b\"}[1m])"), "rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29");
    }
}
