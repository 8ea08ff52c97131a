//! Steady request load at a fixed rate over keep-alive connections, for ramp
//! tests and benchmarks. What each request is and what counts as a failure is
//! up to the caller's job function.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sticky_canary::local::{io_error, Client, LocalError};

/// The caller's work for one request: sends it on the client and checks the reply.
/// `sequence` counts requests over all workers. `Err` is a failed request.
pub type Job = dyn Fn(u64, &mut Client) -> Result<(), String> + Send + Sync;

/// What a load run did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub sent: u64,
    pub failed: u64,
    /// The first failures (at most 20), as the job reported them.
    pub failures: Vec<String>,
    pub elapsed: Duration,
}

impl LoadReport {
    /// `Err` naming what went wrong when any request failed or the rate stayed under `min_rate`
    /// (a ramp measured at a lower rate proves little).
    pub fn check(&self, min_rate: f64) -> Result<(), String> {
        if self.failed > 0 {
            return Err(format!("{} failed requests: {:#?}", self.failed, self.failures));
        }
        if self.rate() < min_rate {
            return Err(format!(
                "load too low to count: {:.0} req/s (at least {min_rate:.0})",
                self.rate()
            ));
        }
        Ok(())
    }

    /// Requests per second actually achieved.
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.sent as f64 / seconds
        } else {
            0.0
        }
    }
}

struct Shared {
    stop: AtomicBool,
    sequence: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
}

/// A running load; [`Load::stop`] ends it and reports. Dropping it also stops it.
pub struct Load {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Load {
    /// Starts `connections` workers, each on its own keep-alive connection to
    /// `target`, together sending `rate_per_second` requests per second.
    pub fn start(
        target: SocketAddr,
        connections: usize,
        rate_per_second: u32,
        job: Arc<Job>,
    ) -> Result<Load, LocalError> {
        let connections = connections.max(1);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            sequence: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
        });
        let interval = Duration::from_secs_f64(connections as f64 / f64::from(rate_per_second.max(1)));
        let mut workers = Vec::with_capacity(connections);
        for worker in 0..connections {
            let mut client = Client::connect(target)?;
            let shared = Arc::clone(&shared);
            let job = Arc::clone(&job);
            // Spread the workers' first requests over one interval.
            let offset = interval.mul_f64(worker as f64 / connections as f64);
            let handle = std::thread::Builder::new()
                .name(format!("load-{worker}"))
                .spawn(move || {
                    let mut next = Instant::now() + offset;
                    while !shared.stop.load(Ordering::SeqCst) {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        next += interval;
                        let sequence = shared.sequence.fetch_add(1, Ordering::Relaxed);
                        let result = job(sequence, &mut client);
                        shared.sent.fetch_add(1, Ordering::Relaxed);
                        if let Err(message) = result {
                            shared.failed.fetch_add(1, Ordering::Relaxed);
                            let mut failures = shared.failures.lock().unwrap_or_else(|p| p.into_inner());
                            if failures.len() < 20 {
                                failures.push(message);
                            }
                        }
                    }
                })
                .map_err(io_error("start a load thread"))?;
            workers.push(handle);
        }
        Ok(Load {
            shared,
            workers,
            started: Instant::now(),
        })
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Stops the workers (each finishes its current request) and reports.
    pub fn stop(mut self) -> LoadReport {
        self.finish()
    }

    fn finish(&mut self) -> LoadReport {
        self.shared.stop.store(true, Ordering::SeqCst);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        LoadReport {
            sent: self.shared.sent.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            failures: self.shared.failures.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.finish();
    }
}
/// Runs `each` once per item, the items split in order over `connections` keep-alive
/// connections to `addr` (one thread each, each item's request after the one before it on its
/// connection); returns the results in the items' order. A panic in `each` (a failed assertion)
/// reaches the caller.
pub fn over_connections<T: Sync, R: Send>(
    addr: SocketAddr,
    items: &[T],
    connections: usize,
    each: impl Fn(&mut Client, &T) -> R + Sync,
) -> Result<Vec<R>, LocalError> {
    let size = items.len().div_ceil(connections.max(1)).max(1);
    let each = &each;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(size)
            .map(|chunk| {
                scope.spawn(move || -> Result<Vec<R>, LocalError> {
                    let mut client = Client::connect(addr)?;
                    Ok(chunk.iter().map(|item| each(&mut client, item)).collect())
                })
            })
            .collect();
        let mut results = Vec::with_capacity(items.len());
        for worker in workers {
            match worker.join() {
                Ok(part) => results.extend(part?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(results)
    })
}
