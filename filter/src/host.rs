//! The proxy-wasm ABI, both ways: the few host calls the filter makes, each returning `Result`
//! and never panicking, and the entry points the host calls (`proxy_on_*`), which hand over to
//! the filter in `lib.rs`.
//!
//! Why not the proxy-wasm SDK: its `hostcalls` `panic!` on any status they do not expect (a panic
//! inside the gateway takes traffic down), and its dispatcher exports every callback of the ABI,
//! so Envoy crosses into the VM for request bodies, trailers, `on_log` and `on_done` on every
//! request although a filter has nothing to do there: each crossing costs about as much as a
//! host call (docs/benchmarks.md). Here only the callbacks the filter uses are exported; the host
//! skips the rest. Memory the host hands back comes from our `proxy_on_memory_allocate` (a
//! `Vec<u8>` of exactly the size asked), so it is taken back as a Vec.
//! Natively (unit tests) the imports are stubs that report `Unavailable` and nothing is exported.

use alloc::vec::Vec;

/// A non-OK status from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

pub type HostResult<T> = Result<T, HostError>;

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;

const MAP_REQUEST_HEADERS: u32 = 0;
const MAP_RESPONSE_HEADERS: u32 = 2;
const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
const METRIC_COUNTER: u32 = 0;

/// Proxy-wasm log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug = 1,
    Info = 2,
    Error = 4,
    Critical = 5,
}

/// Which header map a call addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    Request,
    Response,
}

impl Headers {
    fn map(self) -> u32 {
        match self {
            Headers::Request => MAP_REQUEST_HEADERS,
            Headers::Response => MAP_RESPONSE_HEADERS,
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod abi {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
        pub fn proxy_get_buffer_bytes(
            buffer: u32,
            start: usize,
            max_size: usize,
            out_data: *mut *mut u8,
            out_size: *mut usize,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(map: u32, out_data: *mut *mut u8, out_size: *mut usize) -> u32;
        pub fn proxy_get_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            out_data: *mut *mut u8,
            out_size: *mut usize,
        ) -> u32;
        pub fn proxy_replace_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_add_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
        pub fn proxy_get_property(
            path: *const u8,
            path_size: usize,
            out_data: *mut *mut u8,
            out_size: *mut usize,
        ) -> u32;
        pub fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, out_id: *mut u32) -> u32;
        pub fn proxy_increment_metric(id: u32, offset: i64) -> u32;
        pub fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
        pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    }

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        pub fn random_get(buf: i32, len: i32) -> i32;
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc, clippy::too_many_arguments)]
mod abi {
    //! Native stand-ins so the crate's pure parts can be unit tested off-wasm.
    const UNAVAILABLE: u32 = 12;
    pub unsafe fn proxy_log(_: u32, _: *const u8, _: usize) -> u32 {
        UNAVAILABLE
    }
    pub unsafe fn proxy_get_buffer_bytes(_: u32, _: usize, _: usize, _: *mut *mut u8, _: *mut usize) -> u32 {
        UNAVAILABLE
    }
    pub unsafe fn proxy_get_header_map_pairs(_: u32, _: *mut *mut u8, _: *mut usize) -> u32 {
        UNAVAILABLE
    }
    pub unsafe fn proxy_get_header_map_value(_: u32, _: *const u8, _: usize, _: *mut *mut u8, _: *mut usize) -> u32 {
        UNAVAILABLE
    }
    pub unsafe fn proxy_replace_header_map_value(_: u32, _: *const u8, _: usize, _: *const u8, _: usize) -> u32 {
        UNAVAILABLE
    }
    pub unsafe fn proxy_add_header_map_value(_: u32, _: *const u8, _: usize, _: *const u8, _: usize) -> u32 {
        UNAVAILABLE
    }
    pub unsafe fn proxy_remove_header_map_value(_: u32, _: *const u8, _: usize) -> u32 {
        UNAVAILABLE
    }
    pub unsafe fn proxy_get_property(_: *const u8, _: usize, _: *mut *mut u8, _: *mut usize) -> u32 {
        UNAVAILABLE
    }
    pub unsafe fn proxy_define_metric(_: u32, _: *const u8, _: usize, _: *mut u32) -> u32 {
        UNAVAILABLE
    }
    pub unsafe fn proxy_increment_metric(_: u32, _: i64) -> u32 {
        UNAVAILABLE
    }
    pub unsafe fn proxy_get_current_time_nanoseconds(_: *mut u64) -> u32 {
        UNAVAILABLE
    }
    pub unsafe fn proxy_set_tick_period_milliseconds(_: u32) -> u32 {
        UNAVAILABLE
    }
    pub unsafe fn random_get(_: i32, _: i32) -> i32 {
        52 // ENOSYS
    }
}

fn status(code: u32) -> HostResult<()> {
    if code == STATUS_OK {
        Ok(())
    } else {
        Err(HostError(code))
    }
}

/// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate`.
///
/// # Safety
/// `data` must be null, or point to `size` bytes allocated by [`allocate`] and not yet owned.
unsafe fn take_host_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    Vec::from_raw_parts(data, size, size)
}

/// Logs a message; a failing log call is ignored (there is nowhere else to report it).
pub fn log(level: Level, message: &str) {
    // SAFETY: pointer and length come from a live &str.
    let _ = unsafe { abi::proxy_log(level as u32, message.as_ptr(), message.len()) };
}

/// The plugin configuration bytes (empty when none was given).
pub fn plugin_configuration(size: usize) -> HostResult<Vec<u8>> {
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut data: *mut u8 = core::ptr::null_mut();
    let mut len: usize = 0;
    // SAFETY: out-pointers are valid locals; the returned buffer is owned by us afterwards.
    let code = unsafe { abi::proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &mut data, &mut len) };
    match code {
        STATUS_OK => Ok(unsafe { take_host_bytes(data, len) }),
        STATUS_NOT_FOUND => Ok(Vec::new()),
        other => Err(HostError(other)),
    }
}

/// One header's value (the host joins repeated headers), `None` when absent.
pub fn header(map: Headers, name: &str) -> HostResult<Option<Vec<u8>>> {
    let mut data: *mut u8 = core::ptr::null_mut();
    let mut len: usize = 0;
    // SAFETY: as above.
    let code = unsafe { abi::proxy_get_header_map_value(map.map(), name.as_ptr(), name.len(), &mut data, &mut len) };
    match code {
        STATUS_OK => Ok(Some(unsafe { take_host_bytes(data, len) })),
        STATUS_NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Every header of a map in one call, in the ABI's serialised form ([`crate::headers::HeaderPairs`]
/// reads it without copying).
pub fn header_pairs(map: Headers) -> HostResult<Vec<u8>> {
    let mut data: *mut u8 = core::ptr::null_mut();
    let mut len: usize = 0;
    // SAFETY: as above.
    let code = unsafe { abi::proxy_get_header_map_pairs(map.map(), &mut data, &mut len) };
    match code {
        STATUS_OK => Ok(unsafe { take_host_bytes(data, len) }),
        other => Err(HostError(other)),
    }
}

/// Sets a header, replacing every existing value under that name (any casing, any count).
pub fn replace_header(map: Headers, name: &str, value: &[u8]) -> HostResult<()> {
    // SAFETY: pointers and lengths come from live slices.
    status(unsafe {
        abi::proxy_replace_header_map_value(map.map(), name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// Adds one more value under a header name (Set-Cookie must never replace the app's own).
pub fn add_header(map: Headers, name: &str, value: &[u8]) -> HostResult<()> {
    // SAFETY: pointers and lengths come from live slices.
    status(unsafe {
        abi::proxy_add_header_map_value(map.map(), name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// Removes every value of a header.
pub fn remove_header(map: Headers, name: &str) -> HostResult<()> {
    // SAFETY: pointer and length come from a live &str.
    status(unsafe { abi::proxy_remove_header_map_value(map.map(), name.as_ptr(), name.len()) })
}

/// A property such as `source.address`, given as its path segments.
pub fn property(path: &[&str]) -> HostResult<Option<Vec<u8>>> {
    // The ABI takes the path as NUL-separated segments.
    let mut encoded = Vec::with_capacity(path.iter().map(|s| s.len() + 1).sum());
    for segment in path {
        encoded.extend_from_slice(segment.as_bytes());
        encoded.push(0);
    }
    let mut data: *mut u8 = core::ptr::null_mut();
    let mut len: usize = 0;
    // SAFETY: as above.
    let code = unsafe { abi::proxy_get_property(encoded.as_ptr(), encoded.len(), &mut data, &mut len) };
    match code {
        STATUS_OK => Ok(Some(unsafe { take_host_bytes(data, len) })),
        STATUS_NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Defines a counter and returns its id.
pub fn define_counter(name: &str) -> HostResult<u32> {
    let mut id = 0u32;
    // SAFETY: pointer and length come from a live &str; id is a valid local.
    status(unsafe { abi::proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

/// Adds one to a counter; a failure is ignored (a lost count must not fail a request).
pub fn increment(id: u32) {
    increment_by(id, 1);
}

/// Adds `count` to a counter; a failure is ignored, as for [`increment`].
pub fn increment_by(id: u32, count: u64) {
    let offset = i64::try_from(count).unwrap_or(i64::MAX);
    // SAFETY: plain value call.
    let _ = unsafe { abi::proxy_increment_metric(id, offset) };
}

/// The host's wall clock, in nanoseconds since the Unix epoch.
pub fn now_nanoseconds() -> HostResult<u64> {
    let mut nanos = 0u64;
    // SAFETY: the out-pointer is a valid local.
    status(unsafe { abi::proxy_get_current_time_nanoseconds(&mut nanos) })?;
    Ok(nanos)
}

/// Asks the host to call `proxy_on_tick` on the current root context every `period_ms`.
pub fn set_tick_period(period_ms: u32) -> HostResult<()> {
    // SAFETY: plain value call.
    status(unsafe { abi::proxy_set_tick_period_milliseconds(period_ms) })
}

/// Fills `buf` from WASI `random_get` (the host's CSPRNG); false when the host cannot.
fn random_fill(buf: &mut [u8]) -> bool {
    let Ok(len) = i32::try_from(buf.len()) else {
        return false;
    };
    // SAFETY: the buffer is live and writable for the length given.
    let errno = unsafe { abi::random_get(buf.as_mut_ptr() as usize as i32, len) };
    errno == 0
}

/// Random bytes fetched from the host [`RANDOM_POOL_IDS`] ids at a time: a new client then costs
/// one `random_get` call in 64 instead of one each. The bytes stay in module memory until used
/// once, and are overwritten as they are handed out.
const RANDOM_POOL_IDS: usize = 64;

struct RandomPool {
    bytes: [u8; 16 * RANDOM_POOL_IDS],
    /// Ids already handed out of `bytes`; `RANDOM_POOL_IDS` means empty.
    used: usize,
}

crate::module_state! {
    static RANDOM_POOL: core::cell::RefCell<RandomPool> =
        core::cell::RefCell::new(RandomPool { bytes: [0; 16 * RANDOM_POOL_IDS], used: RANDOM_POOL_IDS });
}

/// 16 random bytes from the host's CSPRNG, or `None` when the host cannot supply them.
pub fn random16() -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if cfg!(feature = "random-per-request") {
        return random_fill(&mut out).then_some(out);
    }
    RANDOM_POOL.with(|pool| {
        let mut pool = pool.try_borrow_mut().ok()?;
        if pool.used >= RANDOM_POOL_IDS {
            if !random_fill(&mut pool.bytes) {
                return None;
            }
            pool.used = 0;
        }
        let start = pool.used * 16;
        let chunk = pool.bytes.get_mut(start..start + 16)?;
        out.copy_from_slice(chunk);
        chunk.fill(0);
        pool.used += 1;
        Some(out)
    })
}

/// A buffer of exactly `size` bytes for the host to fill; [`take_host_bytes`] takes it back.
pub fn allocate(size: usize) -> *mut u8 {
    let mut buffer = core::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(size));
    buffer.as_mut_ptr()
}

/// What the host calls. Each export only converts the ABI's integers and hands over to `lib.rs`;
/// a callback the filter does not export is skipped by the host (proxy-wasm-cpp-host checks
/// each one), which is the point: per request Envoy enters the VM four times (context create,
/// request headers, response headers, delete) instead of the SDK's seven.
#[cfg(target_arch = "wasm32")]
mod exports {
    use crate::Callbacks;

    #[no_mangle]
    pub extern "C" fn proxy_abi_version_0_2_1() {}

    #[no_mangle]
    pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
        super::allocate(size)
    }

    extern "C" {
        fn __wasm_call_ctors();
    }

    /// The reactor entry point: the host calls it once, before anything else.
    #[no_mangle]
    pub extern "C" fn _initialize() {
        // SAFETY: the linker's constructor list, run once as a WASI reactor must.
        unsafe { __wasm_call_ctors() };
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _vm_configuration_size: usize) -> bool {
        crate::on_vm_start()
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
        Callbacks::context_create(context_id, root_context_id);
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_configure(root_context_id: u32, plugin_configuration_size: usize) -> bool {
        Callbacks::configure(root_context_id, plugin_configuration_size)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_tick(root_context_id: u32) {
        Callbacks::tick(root_context_id);
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_headers(context_id: u32, _headers: usize, _end_of_stream: bool) -> u32 {
        Callbacks::request_headers(context_id);
        super::ACTION_CONTINUE
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_response_headers(context_id: u32, _headers: usize, _end_of_stream: bool) -> u32 {
        Callbacks::response_headers(context_id);
        super::ACTION_CONTINUE
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_delete(context_id: u32) {
        Callbacks::delete(context_id);
    }

    /// The `all-callbacks` build (the benchmark's ablation only): also export, as no-ops, the
    /// per-request callbacks the SDK's dispatcher exports, to price the crossings they cost.
    #[cfg(feature = "all-callbacks")]
    mod sdk_like {
        #[no_mangle]
        pub extern "C" fn proxy_on_request_body(_: u32, _: usize, _: bool) -> u32 {
            super::super::ACTION_CONTINUE
        }
        #[no_mangle]
        pub extern "C" fn proxy_on_request_trailers(_: u32, _: usize) -> u32 {
            super::super::ACTION_CONTINUE
        }
        #[no_mangle]
        pub extern "C" fn proxy_on_response_body(_: u32, _: usize, _: bool) -> u32 {
            super::super::ACTION_CONTINUE
        }
        #[no_mangle]
        pub extern "C" fn proxy_on_response_trailers(_: u32, _: usize) -> u32 {
            super::super::ACTION_CONTINUE
        }
        #[no_mangle]
        pub extern "C" fn proxy_on_log(_: u32) {}
        #[no_mangle]
        pub extern "C" fn proxy_on_done(_: u32) -> bool {
            true
        }
    }
}

/// The ABI's `Action::Continue`.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
const ACTION_CONTINUE: u32 = 0;
