//! The `log` facade over the host's log: `log::info!` and friends become `proxy_log` calls, and
//! the facade's maximum level follows the host's (`proxy_get_log_level`, read at configure and
//! on every tick).
//!
//! So while the gateway's wasm log level is above debug, a `log::debug!` is one comparison
//! against `log::max_level()`: no formatting, no host call. An operator turns the decision
//! trace on for one gateway pod by raising Envoy's `wasm` logger to debug
//! (docs/aks-runbook.md); the filter follows within a tick.

use log::{LevelFilter, Metadata, Record};

use crate::host::{Host, Level};

/// A [`log::Log`] writing through a [`Host`]. In wasm the one instance, over the ABI, is
/// registered at VM start.
pub struct HostLogger<H>(pub H);

impl<H: Host + Send + Sync> log::Log for HostLogger<H> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = host_level(record.level());
        match record.args().as_str() {
            // A message without arguments needs no formatting.
            Some(message) => self.0.log(level, message),
            None => self.0.log(level, &record.args().to_string()),
        }
    }

    fn flush(&self) {}
}

fn host_level(level: log::Level) -> Level {
    match level {
        log::Level::Error => Level::Error,
        log::Level::Warn => Level::Warn,
        log::Level::Info => Level::Info,
        log::Level::Debug => Level::Debug,
        log::Level::Trace => Level::Trace,
    }
}

/// The facade's filter for the host's level (`None`: the host writes nothing). `log` has no
/// critical level: at critical, only the panic hook (which calls the host directly) writes.
pub fn level_filter(level: Option<Level>) -> LevelFilter {
    match level {
        Some(Level::Trace) => LevelFilter::Trace,
        Some(Level::Debug) => LevelFilter::Debug,
        Some(Level::Info) => LevelFilter::Info,
        Some(Level::Warn) => LevelFilter::Warn,
        Some(Level::Error) => LevelFilter::Error,
        Some(Level::Critical) | None => LevelFilter::Off,
    }
}

/// Follows the host's log level; a host that cannot tell leaves the level as it was.
pub fn follow_host_level(host: &impl Host) {
    if let Ok(level) = host.log_level() {
        set_max_level(level_filter(level));
    }
}

/// In wasm (one thread per VM) the facade's global level. Natively, the unit tests run one
/// filter per thread, each with its own fake host and level: the global level stays at trace
/// and each thread's own level filters (`max_level`).
#[cfg(not(test))]
fn set_max_level(filter: LevelFilter) {
    log::set_max_level(filter);
}

#[cfg(not(test))]
fn max_level() -> LevelFilter {
    log::max_level()
}

#[cfg(test)]
std::thread_local! {
    static TEST_LEVEL: std::cell::Cell<LevelFilter> = const { std::cell::Cell::new(LevelFilter::Off) };
}

#[cfg(test)]
fn set_max_level(filter: LevelFilter) {
    log::set_max_level(LevelFilter::Trace);
    TEST_LEVEL.with(|level| level.set(filter));
}

#[cfg(test)]
fn max_level() -> LevelFilter {
    TEST_LEVEL.with(|level| level.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_levels_map_to_the_facade_and_back() {
        assert_eq!(level_filter(Some(Level::Info)), LevelFilter::Info);
        assert_eq!(level_filter(Some(Level::Debug)), LevelFilter::Debug);
        assert_eq!(level_filter(Some(Level::Critical)), LevelFilter::Off);
        assert_eq!(level_filter(None), LevelFilter::Off);
        for level in [log::Level::Error, log::Level::Warn, log::Level::Info, log::Level::Debug] {
            assert_eq!(level_filter(Some(host_level(level))), level.to_level_filter());
        }
        for abi in 0..6 {
            assert_eq!(Level::from_abi(abi).map(|l| l as u32), Some(abi));
        }
        assert_eq!(Level::from_abi(6), None);
    }
}
