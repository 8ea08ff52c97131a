//! The demo's crowd: simulated users with cookie jars, the traffic threads that drive them,
//! and how each user's versions are tallied.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use policy_core::{ClientId, Policy};

use crate::local::{Client, CookieJar, Request};

/// The id cookie the demo's filter config issues.
pub(super) const ID_COOKIE: &str = "sticky-canary-id";
/// The header the demo's app versions name themselves in.
const SERVED_HEADER: &str = "x-served-version";

/// One simulated user: a cookie jar and what it was served.
#[derive(Default)]
pub(super) struct User {
    pub(super) jar: CookieJar,
    /// Version index (0 = v1, 1 = v2) of the last response.
    pub(super) last: Option<usize>,
    pub(super) last_at: Option<Instant>,
    /// Changes of version in the current phase, by direction.
    pub(super) to_canary: u32,
    pub(super) to_stable: u32,
    /// Whether the user is sending requests (the blue/green act pauses some and lets others
    /// arrive later).
    pub(super) away: bool,
}

/// Per-phase tallies.
#[derive(Default, Clone)]
pub(super) struct Tally {
    pub(super) requests: [u64; 2],
    pub(super) failed: u64,
    pub(super) new_ids: u64,
    pub(super) failures: Vec<String>,
}

pub(super) struct Crowd {
    pub(super) users: Vec<User>,
    pub(super) tally: Tally,
    /// While users are logged in: the generation of their `session` cookie (a new one on each
    /// login or rotation). `None`: logged out, no session cookie.
    pub(super) session: Option<u32>,
}

impl Crowd {
    pub(super) fn new(users: usize) -> Crowd {
        Crowd {
            users: (0..users).map(|_| User::default()).collect(),
            tally: Tally::default(),
            session: None,
        }
    }

    /// Starts a new phase: counters back to zero, what users were on is kept.
    pub(super) fn next_phase(&mut self) -> Tally {
        for user in &mut self.users {
            user.to_canary = 0;
            user.to_stable = 0;
        }
        std::mem::take(&mut self.tally)
    }

    pub(super) fn users_on(&self, version: usize) -> usize {
        self.users.iter().filter(|u| u.last == Some(version)).count()
    }

    /// Users who changed version more than once in this phase.
    pub(super) fn flipped(&self) -> usize {
        self.users.iter().filter(|u| u.to_canary + u.to_stable > 1).count()
    }

    pub(super) fn moved(&self, to: usize) -> usize {
        self.users
            .iter()
            .filter(|u| if to == 1 { u.to_canary > 0 } else { u.to_stable > 0 })
            .count()
    }
}

/// The crowd's worker threads, sending requests until stopped.
pub(super) struct Traffic {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) workers: Vec<JoinHandle<()>>,
}

impl Traffic {
    pub(super) fn start(target: SocketAddr, crowd: Arc<Mutex<Crowd>>, rate_per_second: u32) -> Result<Traffic, String> {
        let user_count = lock(&crowd).users.len();
        let threads = 8.min(user_count.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let interval = Duration::from_secs_f64(threads as f64 / f64::from(rate_per_second.max(1)));
        let mut workers = Vec::new();
        for t in 0..threads {
            let mine: Vec<usize> = (t..user_count).step_by(threads).collect();
            let mut clients = Vec::with_capacity(mine.len());
            for _ in &mine {
                clients.push(Client::connect(target).map_err(|e| format!("connect to Envoy: {e}"))?);
            }
            let crowd = Arc::clone(&crowd);
            let stop = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name(format!("crowd-{t}"))
                .spawn(move || {
                    let mut next = Instant::now() + interval.mul_f64(t as f64 / threads as f64);
                    'outer: loop {
                        for (slot, &user) in mine.iter().enumerate() {
                            if stop.load(Ordering::SeqCst) {
                                break 'outer;
                            }
                            let now = Instant::now();
                            if next > now {
                                std::thread::sleep(next - now);
                            }
                            next += interval;
                            if let Some(client) = clients.get_mut(slot) {
                                one_request(client, &crowd, user);
                            }
                        }
                    }
                })
                .map_err(|e| format!("start a crowd thread: {e}"))?;
            workers.push(handle);
        }
        Ok(Traffic { stop, workers })
    }

    pub(super) fn stop(mut self) {
        self.halt();
    }

    pub(super) fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.halt();
    }
}

pub(super) fn lock(crowd: &Mutex<Crowd>) -> std::sync::MutexGuard<'_, Crowd> {
    crowd.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One request of one user, as a browser would send it, and its bookkeeping.
pub(super) fn one_request(client: &mut Client, crowd: &Mutex<Crowd>, user: usize) {
    let request = {
        let mut crowd = lock(crowd);
        let session = crowd.session;
        let Some(state) = crowd.users.get_mut(user) else { return };
        if state.away {
            return;
        }
        match session {
            // A login, or the framework rotating the session id: a new session cookie.
            Some(generation) => state.jar.set("session", &format!("s{generation}-user{user}")),
            None => {
                state.jar.cookies.remove("session");
            }
        }
        state.jar.apply(Request::get("/").host("my-app.example.com"))
    };
    let result = client.send(&request);
    let mut crowd = lock(crowd);
    let version = match &result {
        Ok(response) if response.status == 200 => match response.header(SERVED_HEADER) {
            Some(b"v1") => Some(0),
            Some(b"v2") => Some(1),
            _ => None,
        },
        _ => None,
    };
    let Some(version) = version else {
        crowd.tally.failed += 1;
        let message = match result {
            Ok(response) => format!("status {} from {}", response.status, response.header_str(SERVED_HEADER)),
            Err(e) => e.to_string(),
        };
        if crowd.tally.failures.len() < 5 {
            crowd.tally.failures.push(message);
        }
        return;
    };
    if let Some(count) = crowd.tally.requests.get_mut(version) {
        *count += 1;
    }
    let Some(state) = crowd.users.get_mut(user) else { return };
    let id_before = state.jar.cookies.get(ID_COOKIE).map(|v| id_of(v).to_owned());
    if let Ok(response) = &result {
        state.jar.store(response);
    }
    // A new id, not a refresh of the same one (a run across midnight UTC refreshes stamps).
    let issued = state.jar.cookies.get(ID_COOKIE).map(|v| id_of(v)) != id_before.as_deref();
    match (state.last, version) {
        (Some(0), 1) => state.to_canary += 1,
        (Some(1), 0) => state.to_stable += 1,
        _ => {}
    }
    state.last = Some(version);
    state.last_at = Some(Instant::now());
    if issued {
        crowd.tally.new_ids += 1;
    }
}

/// The id in a client-id cookie value, without its day stamp (what is hashed).
pub(super) fn id_of(value: &str) -> &str {
    std::str::from_utf8(ClientId::parse(value.as_bytes()).key).unwrap_or(value)
}

/// Users whose last response (within this phase) is not the version their id predicts.
pub(super) fn off_plan(crowd: &Crowd, policy: &Policy, since: Instant) -> usize {
    let Some(route) = policy.routes().first() else {
        return crowd.users.len();
    };
    crowd
        .users
        .iter()
        .filter(|user| !user.away)
        .filter(|user| {
            let Some(id) = user.jar.cookies.get(ID_COOKIE) else {
                return true;
            };
            let predicted = route.assign(id_of(id).as_bytes()).1;
            user.last_at.is_none_or(|at| at < since) || user.last != Some(predicted)
        })
        .count()
}
