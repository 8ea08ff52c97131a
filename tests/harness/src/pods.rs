//! What answers at the pod addresses KWOK hands out: each address, once a pod of the watched
//! namespace has it, answers as that pod, with the version and error rate its pod spec says.
//!
//! KWOK allocates pod IPs from [`POD_CIDR`](crate::cluster::POD_CIDR) in order, from its first
//! address, and hands a deleted pod's address to the next pod. So [`Pods::start`] listens on
//! the first `count` addresses of the range before any pod exists (port 8080, the examples'
//! `containerPort`), and a `kubectl get pods --watch` tells each address which pod holds it
//! now. A request that reaches an address before the watch has seen its pod waits for it (up
//! to 3 s), as a pod's container is up before its readiness gate lets traffic in; a deleted pod
//! keeps answering for [`GRACE`], its termination grace period, unless a new pod took the
//! address.
//!
//! An address no pod holds (after the wait) answers `503` with `x-served-pod: none-at-ADDRESS`.
//! A pod answers `200` with `x-served-version: VERSION` and `x-served-pod: NAME`, where
//! VERSION is its first container's `VERSION` environment variable (the examples' Deployment
//! sets it); with `ERROR_RATE=0.2` there, exactly one request in five (every fifth) is a `500`.
//! Nothing here reads the pod's labels: what a pod serves is what its template says, as for a
//! real container.

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use sticky_canary::local::backend::{accept_connections, serve_requests};
use sticky_canary::local::{io_error, LocalError};

use crate::cluster::{add_pod_address, Cluster, Watch};

/// The port every pod listens on (the examples' `containerPort: 8080`).
pub const POD_PORT: u16 = 8080;
/// How long a deleted pod keeps answering (its termination grace period).
pub const GRACE: Duration = Duration::from_secs(10);
/// How long a request waits for the watch to name the pod at its address.
const UNKNOWN_WAIT: Duration = Duration::from_secs(3);

/// One pod as its spec says, and what it answered.
#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub version: String,
    pub error_rate: f64,
    /// When the watch saw it deleted.
    pub deleted: Option<Instant>,
    pub answered: u64,
    pub failed: u64,
}

struct Shared {
    namespace: String,
    pods: Mutex<HashMap<Ipv4Addr, Pod>>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Ipv4Addr, Pod>> {
        self.pods.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The pod servers of one namespace and the watch that tells them who they are; stopped on
/// `Drop`.
pub struct Pods {
    shared: Arc<Shared>,
    addresses: Vec<Ipv4Addr>,
    accept_threads: Vec<JoinHandle<()>>,
    watch: Option<Watch>,
}

/// The `n`th address KWOK hands out (10.244.1.0 + n).
pub fn kwok_address(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, n)
}

impl Pods {
    /// Listens on KWOK's first `count` addresses and starts watching the pods of `namespace`.
    /// Call from inside the cluster's network namespace.
    pub fn start(cluster: &Cluster, namespace: &str, count: u8) -> Result<Pods, LocalError> {
        let shared = Arc::new(Shared {
            namespace: namespace.to_owned(),
            pods: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut addresses = Vec::new();
        let mut accept_threads = Vec::new();
        for n in 0..count {
            let address = kwok_address(n);
            add_pod_address(address)?;
            let listener = TcpListener::bind((address, POD_PORT))
                .map_err(io_error(format!("listen on the pod address {address}:{POD_PORT}")))?;
            let accept_shared = Arc::clone(&shared);
            accept_threads.push(
                std::thread::Builder::new()
                    .name(format!("pod-{address}"))
                    .spawn(move || accept_loop(listener, address, accept_shared))
                    .map_err(io_error("start a pod thread"))?,
            );
            addresses.push(address);
        }
        let watch_shared = Arc::clone(&shared);
        let watch = cluster.watch(&["pods", "-n", namespace], move |_, event| {
            on_event(&event, &watch_shared);
        })?;
        Ok(Pods {
            shared,
            addresses,
            accept_threads,
            watch: Some(watch),
        })
    }

    /// Every pod the watch has seen at an address, by name, with what it answered so far.
    pub fn seen(&self) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self.shared.lock().values().cloned().collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        drop(self.watch.take());
        for address in &self.addresses {
            let _ = TcpStream::connect_timeout(&(*address, POD_PORT).into(), Duration::from_millis(200));
        }
        for thread in self.accept_threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The `VERSION` and `ERROR_RATE` of a pod's first container.
fn pod_env(pod: &Value) -> (String, f64) {
    let env = pod
        .pointer("/spec/containers/0/env")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let value = |name: &str| {
        env.iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|e| e.get("value").and_then(Value::as_str))
            .map(str::to_owned)
    };
    let version = value("VERSION").unwrap_or_else(|| "unknown".to_owned());
    let error_rate = value("ERROR_RATE").and_then(|r| r.parse().ok()).unwrap_or(0.0);
    (version, error_rate)
}

/// Keeps the address → pod map current from one watch event (`{"type": ..., "object": pod}`).
fn on_event(event: &Value, shared: &Shared) {
    let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
    if text("/object/metadata/namespace") != Some(shared.namespace.as_str()) {
        return;
    }
    let name = text("/object/metadata/name").unwrap_or_default().to_owned();
    let Some(ip) = text("/object/status/podIP").and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
        return;
    };
    let deleted = text("/type") == Some("DELETED") || text("/object/metadata/deletionTimestamp").is_some();
    let pod = event.get("object").unwrap_or(&Value::Null);
    let (version, error_rate) = pod_env(pod);
    let mut pods = shared.lock();
    match pods.get_mut(&ip) {
        Some(known) if known.name == name => {
            if deleted && known.deleted.is_none() {
                known.deleted = Some(Instant::now());
            }
        }
        _ => {
            pods.insert(
                ip,
                Pod {
                    name,
                    version,
                    error_rate,
                    deleted: deleted.then(Instant::now),
                    answered: 0,
                    failed: 0,
                },
            );
        }
    }
    drop(pods);
    shared.changed.notify_all();
}

fn accept_loop(listener: TcpListener, address: Ipv4Addr, shared: Arc<Shared>) {
    let stop = Arc::clone(&shared);
    accept_connections(&listener, &stop.stop, &format!("pod-{address}-conn"), move |stream| {
        serve(stream, address, &shared);
    });
}

/// The answer of the pod at `address` to one more request: (status, version, pod name).
fn answer(shared: &Shared, address: Ipv4Addr) -> (u16, String, String) {
    let started = Instant::now();
    let mut pods = shared.lock();
    loop {
        // A pod deleted longer ago than its grace period is gone: the address waits for the
        // next pod KWOK gives it, as an address nobody holds.
        if let Some(pod) = pods
            .get_mut(&address)
            .filter(|pod| pod.deleted.is_none_or(|at| at.elapsed() <= GRACE))
        {
            // Every request whose count crosses a multiple of 1/error_rate fails: exactly the
            // rate, evenly spread.
            let n = pod.answered as f64;
            let fails = ((n + 1.0) * pod.error_rate).floor() > (n * pod.error_rate).floor();
            pod.answered += 1;
            pod.failed += u64::from(fails);
            return (if fails { 500 } else { 200 }, pod.version.clone(), pod.name.clone());
        }
        let waited = started.elapsed();
        if waited >= UNKNOWN_WAIT || shared.stop.load(Ordering::SeqCst) {
            return (503, String::new(), format!("none-at-{address}"));
        }
        pods = match shared.changed.wait_timeout(pods, UNKNOWN_WAIT - waited) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}

fn serve(stream: TcpStream, address: Ipv4Addr, shared: &Shared) {
    serve_requests(stream, &shared.stop, |_, close| {
        let (status, version, pod) = answer(shared, address);
        let reason = match status {
            200 => "OK",
            500 => "Internal Server Error",
            _ => "Service Unavailable",
        };
        let body = format!("pod {pod} at {address}, version {version}\n");
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\nx-served-version: {version}\r\nx-served-pod: {pod}\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        )
        .into_bytes()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_version_and_error_rate_from_the_pod_spec() {
        let pod: Value = serde_json::json!({"spec": {"containers": [{"env": [
            {"name": "VERSION", "value": "v2"}, {"name": "ERROR_RATE", "value": "0.2"}]}]}});
        assert_eq!(pod_env(&pod), ("v2".to_owned(), 0.2));
        let plain: Value = serde_json::json!({"spec": {"containers": [{"name": "app"}]}});
        assert_eq!(pod_env(&plain), ("unknown".to_owned(), 0.0));
    }

    #[test]
    fn a_pod_fails_exactly_its_error_rate() {
        let shared = Shared {
            namespace: "ns".to_owned(),
            pods: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        };
        let address = kwok_address(3);
        shared.lock().insert(
            address,
            Pod {
                name: "my-app-abc".to_owned(),
                version: "v2".to_owned(),
                error_rate: 0.2,
                deleted: None,
                answered: 0,
                failed: 0,
            },
        );
        let statuses: Vec<u16> = (0..100).map(|_| answer(&shared, address).0).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 500).count(), 20);
        assert_eq!(&statuses[..5], &[200, 200, 200, 200, 500]);
        // An address no pod holds answers 503 once the wait is over (here at once: stopping),
        // and so does one whose pod is gone past its grace period.
        shared.stop.store(true, Ordering::SeqCst);
        assert_eq!(answer(&shared, kwok_address(9)).0, 503);
        if let Some(pod) = shared.lock().get_mut(&address) {
            pod.deleted = Instant::now().checked_sub(GRACE + Duration::from_secs(1));
        }
        assert_eq!(
            answer(&shared, address),
            (503, String::new(), format!("none-at-{address}"))
        );
    }
}
