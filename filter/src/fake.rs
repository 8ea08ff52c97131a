//! A host for native tests: serves the plugin configuration, the headers, the clock and random
//! bytes from test data, and records every call the filter makes, in order.
//!
//! Its state is per thread, as a VM's is per worker (each unit test runs on its own thread), so
//! [`FakeHost`] has no fields and the `log` facade's one logger writes through it too: log lines
//! are recorded calls like any other. Header maps behave as Envoy's do for the calls the filter
//! makes: replace drops every value of the name, add appends, remove drops all.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::headers::serialise;
use crate::host::{Headers, Host, HostError, HostResult, Level};
use crate::logger::HostLogger;

/// One host call, as the filter made it (values as text, for readable assertions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Log(Level, String),
    LogLevel,
    PluginConfiguration,
    HeaderPairs(Headers),
    Header(Headers, String),
    Replace(Headers, String, String),
    Add(Headers, String, String),
    Remove(Headers, String),
    Property(String),
    SetProperty(String, String),
    DefineCounter(String),
    Increment(u32, u64),
    Now,
    SetTickPeriod(u32),
    Random(usize),
}

impl Call {
    /// Whether the call changes a header map.
    pub fn writes_headers(&self) -> bool {
        matches!(self, Call::Replace(..) | Call::Add(..) | Call::Remove(..))
    }
}

/// What the fake host holds and has seen.
#[derive(Debug)]
pub struct State {
    pub calls: Vec<Call>,
    /// What `proxy_get_log_level` answers (`None`: logging off).
    pub level: Option<Level>,
    pub config: Vec<u8>,
    pub request: Vec<(String, String)>,
    pub response: Vec<(String, String)>,
    pub client_address: Option<String>,
    pub now_nanoseconds: u64,
    /// `proxy_get_header_map_pairs` answers with this status instead of the headers.
    pub pairs_fail: Option<u32>,
    /// Counter names; a name's id is its index plus one (Envoy gives one id per name).
    pub counters: Vec<String>,
    /// Random bytes count up from here, wrapping: the first id is `000102…0f`.
    next_random: u8,
}

impl Default for State {
    fn default() -> State {
        State {
            calls: Vec::new(),
            level: Some(Level::Info),
            config: Vec::new(),
            request: Vec::new(),
            response: Vec::new(),
            client_address: None,
            // 2025-11-23T00:00:00Z, day 20415.
            now_nanoseconds: 1_763_856_000 * 1_000_000_000,
            pairs_fail: None,
            counters: Vec::new(),
            next_random: 0,
        }
    }
}

impl State {
    fn map(&mut self, map: Headers) -> &mut Vec<(String, String)> {
        match map {
            Headers::Request => &mut self.request,
            Headers::Response => &mut self.response,
        }
    }
}

type Hook = Box<dyn FnMut(&Call)>;

std::thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
    static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

static LOGGER: HostLogger<FakeHost> = HostLogger(FakeHost);

/// The fake host of the current thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct FakeHost;

impl FakeHost {
    /// A fresh host for this thread (the `log` facade's logger is registered once per process).
    pub fn new() -> FakeHost {
        let _ = log::set_logger(&LOGGER);
        STATE.with(|state| *state.borrow_mut() = State::default());
        HOOK.with(|hook| *hook.borrow_mut() = None);
        FakeHost
    }

    /// Reads or changes the host's state.
    pub fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
        STATE.with(|state| f(&mut state.borrow_mut()))
    }

    /// The calls made since the last `take_calls`.
    pub fn take_calls() -> Vec<Call> {
        FakeHost::with(|state| std::mem::take(&mut state.calls))
    }

    /// Runs `hook` after every call (but not after calls the hook itself causes): a host
    /// calling back into the filter in the middle of a callback.
    pub fn on_call(hook: impl FnMut(&Call) + 'static) {
        HOOK.with(|slot| *slot.borrow_mut() = Some(Box::new(hook)));
    }

    /// The sum of every increment, by counter name.
    pub fn counts() -> HashMap<String, u64> {
        FakeHost::with(|state| {
            let mut counts = HashMap::new();
            for call in &state.calls {
                if let Call::Increment(id, count) = call {
                    let name = state.counters[*id as usize - 1].clone();
                    *counts.entry(name).or_insert(0) += count;
                }
            }
            counts
        })
    }

    fn record<T>(call: Call, answer: impl FnOnce(&mut State) -> T) -> T {
        let result = FakeHost::with(|state| {
            state.calls.push(call.clone());
            answer(state)
        });
        // The hook is out of its slot while it runs, so the calls it causes do not run it again.
        if let Some(mut hook) = HOOK.with(|slot| slot.borrow_mut().take()) {
            hook(&call);
            HOOK.with(|slot| {
                slot.borrow_mut().get_or_insert(hook);
            });
        }
        result
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Host for FakeHost {
    fn log(&self, level: Level, message: &str) {
        FakeHost::record(Call::Log(level, message.to_owned()), |_| ());
    }

    fn log_level(&self) -> HostResult<Option<Level>> {
        FakeHost::record(Call::LogLevel, |state| Ok(state.level))
    }

    fn plugin_configuration(&self, size: usize) -> HostResult<Vec<u8>> {
        FakeHost::record(Call::PluginConfiguration, |state| {
            Ok(state.config.get(..size).unwrap_or(&state.config).to_vec())
        })
    }

    fn header_pairs(&self, map: Headers) -> HostResult<Vec<u8>> {
        FakeHost::record(Call::HeaderPairs(map), |state| {
            if let Some(status) = state.pairs_fail {
                return Err(HostError(status));
            }
            let pairs: Vec<(&str, &str)> = state.map(map).iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            Ok(serialise(&pairs))
        })
    }

    fn header(&self, map: Headers, name: &str) -> HostResult<Option<Vec<u8>>> {
        FakeHost::record(Call::Header(map, name.to_owned()), |state| {
            Ok(state
                .map(map)
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_bytes().to_vec()))
        })
    }

    fn replace_header(&self, map: Headers, name: &str, value: &[u8]) -> HostResult<()> {
        FakeHost::record(Call::Replace(map, name.to_owned(), text(value)), |state| {
            let headers = state.map(map);
            headers.retain(|(n, _)| n != name);
            headers.push((name.to_owned(), text(value)));
            Ok(())
        })
    }

    fn add_header(&self, map: Headers, name: &str, value: &[u8]) -> HostResult<()> {
        FakeHost::record(Call::Add(map, name.to_owned(), text(value)), |state| {
            state.map(map).push((name.to_owned(), text(value)));
            Ok(())
        })
    }

    fn remove_header(&self, map: Headers, name: &str) -> HostResult<()> {
        FakeHost::record(Call::Remove(map, name.to_owned()), |state| {
            state.map(map).retain(|(n, _)| n != name);
            Ok(())
        })
    }

    fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
        let joined = path.join(".");
        FakeHost::record(Call::Property(joined.clone()), |state| {
            Ok(match joined.as_str() {
                "source.address" => state.client_address.as_ref().map(|a| a.as_bytes().to_vec()),
                _ => None,
            })
        })
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> HostResult<()> {
        let call = Call::SetProperty(path.join("."), String::from_utf8_lossy(value).into_owned());
        FakeHost::record(call, |_| Ok(()))
    }

    fn define_counter(&self, name: &str) -> HostResult<u32> {
        FakeHost::record(Call::DefineCounter(name.to_owned()), |state| {
            let index = match state.counters.iter().position(|n| n == name) {
                Some(index) => index,
                None => {
                    state.counters.push(name.to_owned());
                    state.counters.len() - 1
                }
            };
            Ok(index as u32 + 1)
        })
    }

    fn increment_counter(&self, id: u32, count: u64) {
        FakeHost::record(Call::Increment(id, count), |_| ());
    }

    fn now_nanoseconds(&self) -> HostResult<u64> {
        FakeHost::record(Call::Now, |state| Ok(state.now_nanoseconds))
    }

    fn set_tick_period(&self, milliseconds: u32) -> HostResult<()> {
        FakeHost::record(Call::SetTickPeriod(milliseconds), |_| Ok(()))
    }

    fn random_bytes(&self, buf: &mut [u8]) -> bool {
        FakeHost::record(Call::Random(buf.len()), |state| {
            for byte in buf.iter_mut() {
                *byte = state.next_random;
                state.next_random = state.next_random.wrapping_add(1);
            }
            true
        })
    }
}
