//! Every host call the filter makes, as one trait: the filter's logic ([`crate::Callbacks`])
//! reaches Envoy only through [`Host`].
//!
//! In wasm the implementation is `abi::Abi`, the proxy-wasm ABI itself (the only `unsafe`
//! code of the crate, with the exports Envoy calls); natively, the unit tests drive the same
//! logic through a fake host that records every call (`crate::fake`). `Callbacks` is generic
//! over its host and `Abi` has no fields, so in wasm each call compiles to the direct import
//! call it was before the trait: no indirection per host call.
//!
//! Every call returns its status as a `Result` and never panics: a lost log line or counter
//! must never fail a request.

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub mod abi;

/// A non-OK status from the host (proxy-wasm `WasmResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

pub type HostResult<T> = Result<T, HostError>;

/// Proxy-wasm log levels (ABI 0.2.1 `LogLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl Level {
    /// The level the host reports, `None` for a number the ABI does not define.
    pub fn from_abi(level: u32) -> Option<Level> {
        Some(match level {
            0 => Level::Trace,
            1 => Level::Debug,
            2 => Level::Info,
            3 => Level::Warn,
            4 => Level::Error,
            5 => Level::Critical,
            _ => return None,
        })
    }
}

/// Which header map a call addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    Request,
    Response,
}

/// The calls the filter makes into its host. Header names are lowercase.
pub trait Host {
    /// Writes a log line; a failure is ignored (there is nowhere else to report it).
    fn log(&self, level: Level, message: &str);
    /// The lowest level the host writes (`proxy_get_log_level`); `None` when it writes nothing
    /// (Envoy answers spdlog's `off`, 6, which is no level to write at: Envoy's `proxy_log`
    /// aborts on it).
    fn log_level(&self) -> HostResult<Option<Level>>;
    /// The plugin configuration, `size` bytes as `proxy_on_configure` announced (empty when none).
    fn plugin_configuration(&self, size: usize) -> HostResult<Vec<u8>>;
    /// Every header of a map in one call, in the ABI's serialised form
    /// ([`crate::headers::HeaderPairs`] reads it without copying).
    fn header_pairs(&self, map: Headers) -> HostResult<Vec<u8>>;
    /// One header's value (the host joins repeated headers), `None` when absent.
    fn header(&self, map: Headers, name: &str) -> HostResult<Option<Vec<u8>>>;
    /// Sets a header, replacing every existing value under that name.
    fn replace_header(&self, map: Headers, name: &str, value: &[u8]) -> HostResult<()>;
    /// Adds one more value under a header name (Set-Cookie must never replace the app's own).
    fn add_header(&self, map: Headers, name: &str, value: &[u8]) -> HostResult<()>;
    /// Removes every value of a header; removing an absent header is not an error.
    fn remove_header(&self, map: Headers, name: &str) -> HostResult<()>;
    /// A property such as `source.address`, given as its path segments.
    fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>>;
    /// Sets a property (Envoy: the request's filter state `wasm.<path joined by .>`, which the
    /// access log reads with `%FILTER_STATE(wasm.NAME:PLAIN)%`).
    fn set_property(&self, path: &[&str], value: &[u8]) -> HostResult<()>;
    /// Defines a counter and returns its id.
    fn define_counter(&self, name: &str) -> HostResult<u32>;
    /// Adds `count` to a counter; a failure is ignored (a lost count must not fail a request).
    fn increment_counter(&self, id: u32, count: u64);
    /// The host's wall clock, in nanoseconds since the Unix epoch.
    fn now_nanoseconds(&self) -> HostResult<u64>;
    /// Asks the host to call `proxy_on_tick` on the current root context every `milliseconds`.
    fn set_tick_period(&self, milliseconds: u32) -> HostResult<()>;
    /// Fills `buf` from the host's CSPRNG (WASI `random_get`); false when the host cannot.
    fn random_bytes(&self, buf: &mut [u8]) -> bool;
}
