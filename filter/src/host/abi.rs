//! The proxy-wasm ABI (0.2.1), both ways, and the crate's only `unsafe` code: [`Abi`], the
//! [`Host`] whose calls are the imports, and the entry points Envoy calls (`proxy_on_*`), which
//! hand over to the one [`Callbacks`] of this VM.
//!
//! Why not the proxy-wasm SDK: its `hostcalls` `panic!` on any status they do not expect (a panic
//! inside the gateway takes traffic down), and its dispatcher exports every callback of the ABI,
//! so Envoy crosses into the VM for request bodies, trailers, `on_log` and `on_done` on every
//! request although a filter has nothing to do there: each crossing costs about as much as a
//! host call (docs/benchmarks.md). Here only the callbacks the filter uses are exported; the host
//! skips the rest. Memory the host hands back comes from our `proxy_on_memory_allocate` (a
//! `Vec<u8>` of exactly the size asked), so it is taken back as a Vec.

use std::cell::Cell;

use super::{Headers, Host, HostError, HostResult, Level};
use crate::logger::HostLogger;
use crate::Callbacks;

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;

const MAP_REQUEST_HEADERS: u32 = 0;
const MAP_RESPONSE_HEADERS: u32 = 2;
const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
const METRIC_COUNTER: u32 = 0;
/// What Envoy's `proxy_get_log_level` answers when the wasm logger is off (spdlog's `off`).
const LEVEL_OFF: u32 = 6;

/// The ABI's `Action::Continue`.
const ACTION_CONTINUE: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_log_level(out_level: *mut u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max_size: usize,
        out_data: *mut *mut u8,
        out_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, out_data: *mut *mut u8, out_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        out_data: *mut *mut u8,
        out_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(path: *const u8, path_size: usize, out_data: *mut *mut u8, out_size: *mut usize) -> u32;
    fn proxy_set_property(path: *const u8, path_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, out_id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_get_current_time_nanoseconds(out_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> u32;
}

fn status(code: u32) -> HostResult<()> {
    if code == STATUS_OK {
        Ok(())
    } else {
        Err(HostError(code))
    }
}

fn map_type(map: Headers) -> u32 {
    match map {
        Headers::Request => MAP_REQUEST_HEADERS,
        Headers::Response => MAP_RESPONSE_HEADERS,
    }
}

/// Makes a call that hands back a buffer through its two out-pointers, and takes ownership of
/// the buffer: `Ok(None)` when the host answers NOT_FOUND.
fn host_buffer(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> HostResult<Option<Vec<u8>>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    match call(&mut data, &mut size) {
        STATUS_OK => {}
        STATUS_NOT_FOUND => return Ok(None),
        other => return Err(HostError(other)),
    }
    if data.is_null() || size == 0 {
        return Ok(Some(Vec::new()));
    }
    // SAFETY: on OK the host wrote to `data` a buffer it got from `proxy_on_memory_allocate(size)`
    // (`allocate` below: a `Vec<u8>` of capacity exactly `size`, given up by us), filled `size`
    // bytes of it and handed it over (proxy-wasm-cpp-host reports the size it allocated). No one
    // else owns it, so it becomes this Vec, freed by the same allocator.
    Ok(Some(unsafe { Vec::from_raw_parts(data, size, size) }))
}

/// A buffer of exactly `size` bytes for the host to fill; [`host_buffer`] takes it back.
fn allocate(size: usize) -> *mut u8 {
    std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(size)).as_mut_ptr()
}

/// The proxy-wasm ABI as a [`Host`]: each call is the import of the same name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Abi;

impl Host for Abi {
    fn log(&self, level: Level, message: &str) {
        // SAFETY: pointer and length come from a live &str, which the host only reads.
        let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
    }

    fn log_level(&self) -> HostResult<Option<Level>> {
        let mut level = 0u32;
        // SAFETY: the out-pointer is a live local.
        status(unsafe { proxy_get_log_level(&mut level) })?;
        match level {
            LEVEL_OFF => Ok(None),
            level => Level::from_abi(level).map(Some).ok_or(HostError(level)),
        }
    }

    fn plugin_configuration(&self, size: usize) -> HostResult<Vec<u8>> {
        if size == 0 {
            return Ok(Vec::new());
        }
        let bytes = host_buffer(|data, len| {
            // SAFETY: the out-pointers come from `host_buffer`, live for the call.
            unsafe { proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, data, len) }
        })?;
        Ok(bytes.unwrap_or_default())
    }

    fn header_pairs(&self, map: Headers) -> HostResult<Vec<u8>> {
        let bytes = host_buffer(|data, len| {
            // SAFETY: the out-pointers come from `host_buffer`, live for the call.
            unsafe { proxy_get_header_map_pairs(map_type(map), data, len) }
        })?;
        Ok(bytes.unwrap_or_default())
    }

    fn header(&self, map: Headers, name: &str) -> HostResult<Option<Vec<u8>>> {
        host_buffer(|data, len| {
            // SAFETY: `name` is a live &str; the out-pointers come from `host_buffer`.
            unsafe { proxy_get_header_map_value(map_type(map), name.as_ptr(), name.len(), data, len) }
        })
    }

    fn replace_header(&self, map: Headers, name: &str, value: &[u8]) -> HostResult<()> {
        // SAFETY: pointers and lengths come from live slices, which the host only reads.
        status(unsafe {
            proxy_replace_header_map_value(map_type(map), name.as_ptr(), name.len(), value.as_ptr(), value.len())
        })
    }

    fn add_header(&self, map: Headers, name: &str, value: &[u8]) -> HostResult<()> {
        // SAFETY: pointers and lengths come from live slices, which the host only reads.
        status(unsafe {
            proxy_add_header_map_value(map_type(map), name.as_ptr(), name.len(), value.as_ptr(), value.len())
        })
    }

    fn remove_header(&self, map: Headers, name: &str) -> HostResult<()> {
        // SAFETY: pointer and length come from a live &str, which the host only reads.
        status(unsafe { proxy_remove_header_map_value(map_type(map), name.as_ptr(), name.len()) })
    }

    fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
        let encoded = encode_path(path);
        host_buffer(|data, len| {
            // SAFETY: `encoded` is a live Vec; the out-pointers come from `host_buffer`.
            unsafe { proxy_get_property(encoded.as_ptr(), encoded.len(), data, len) }
        })
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> HostResult<()> {
        let encoded = encode_path(path);
        // SAFETY: both pointers and lengths come from live buffers (`encoded`, `value`).
        status(unsafe { proxy_set_property(encoded.as_ptr(), encoded.len(), value.as_ptr(), value.len()) })
    }

    fn define_counter(&self, name: &str) -> HostResult<u32> {
        let mut id = 0u32;
        // SAFETY: pointer and length come from a live &str; the out-pointer is a live local.
        status(unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) })?;
        Ok(id)
    }

    fn increment_counter(&self, id: u32, count: u64) {
        let offset = i64::try_from(count).unwrap_or(i64::MAX);
        // SAFETY: plain values, no memory shared.
        let _ = unsafe { proxy_increment_metric(id, offset) };
    }

    fn now_nanoseconds(&self) -> HostResult<u64> {
        let mut nanoseconds = 0u64;
        // SAFETY: the out-pointer is a live local.
        status(unsafe { proxy_get_current_time_nanoseconds(&mut nanoseconds) })?;
        Ok(nanoseconds)
    }

    fn set_tick_period(&self, milliseconds: u32) -> HostResult<()> {
        // SAFETY: a plain value, no memory shared.
        status(unsafe { proxy_set_tick_period_milliseconds(milliseconds) })
    }

    fn random_bytes(&self, buf: &mut [u8]) -> bool {
        // SAFETY: the buffer is live and writable for the length given.
        unsafe { random_get(buf.as_mut_ptr(), buf.len()) == 0 }
    }
}

/// The `log` facade's logger: every `log::info!` etc. of the filter becomes a `proxy_log` call.
static LOGGER: HostLogger<Abi> = HostLogger(Abi);

thread_local! {
    /// The filter's state: one per VM, that is per Envoy worker (wasm32-wasip1 runs one thread).
    static FILTER: Callbacks<Abi> = const { Callbacks::new(Abi) };
    /// Whether `proxy_on_vm_start` has installed the logger and the panic hook.
    static STARTED: Cell<bool> = const { Cell::new(false) };
}

/// Nothing on our paths panics (clippy denies it); should a dependency, the hook says so at
/// critical level through the host's log, then the module traps (`panic = "abort"`): the host
/// fails the VM and the plugin's `failure_policy` decides what requests see.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        Abi.log(
            Level::Critical,
            &format!("sticky-canary: panic inside the filter (a bug, please report it): {info}"),
        );
    }));
}

/// What the host calls. Each export only converts the ABI's integers and hands over to
/// [`Callbacks`]; a callback the filter does not export is skipped by the host
/// (proxy-wasm-cpp-host checks each one), which is the point: per request Envoy enters the VM
/// four times (context create, request headers, response headers, delete) instead of the SDK's
/// seven.
mod exports {
    use super::{install_panic_hook, ACTION_CONTINUE, FILTER, LOGGER, STARTED};

    #[no_mangle]
    pub extern "C" fn proxy_abi_version_0_2_1() {}

    extern "C" {
        /// The constructors the linker collected (wasi-libc's and any of Rust's).
        fn __wasm_call_ctors();
    }

    /// The WASI reactor's entry point, which Envoy calls once before anything else (and
    /// `_start` only when a module has no `_initialize`). A `cdylib` gets neither from std or
    /// wasi-libc (their reactor start file is linked only into executables), so it is defined
    /// here. Calling `__wasm_call_ctors` ourselves also tells the linker that constructors and
    /// destructors are taken care of: without that call, wasm-ld wraps every export in a
    /// `.command_export` that runs the constructors before each callback and wasi-libc's
    /// destructors after it.
    #[no_mangle]
    pub extern "C" fn _initialize() {
        // SAFETY: the linker's constructor list, run once, first, as a WASI reactor must.
        unsafe { __wasm_call_ctors() };
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
        super::allocate(size)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _vm_configuration_size: usize) -> bool {
        if !STARTED.replace(true) {
            install_panic_hook();
            // Only fails when a logger is already set: ours, then.
            let _ = log::set_logger(&LOGGER);
        }
        FILTER.with(|filter| filter.vm_start())
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
        FILTER.with(|filter| filter.context_create(context_id, root_context_id));
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_configure(root_context_id: u32, plugin_configuration_size: usize) -> bool {
        FILTER.with(|filter| filter.configure(root_context_id, plugin_configuration_size))
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_tick(root_context_id: u32) {
        FILTER.with(|filter| filter.tick(root_context_id));
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_headers(context_id: u32, _headers: usize, _end_of_stream: bool) -> u32 {
        FILTER.with(|filter| filter.request_headers(context_id));
        ACTION_CONTINUE
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_response_headers(context_id: u32, _headers: usize, _end_of_stream: bool) -> u32 {
        FILTER.with(|filter| filter.response_headers(context_id));
        ACTION_CONTINUE
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_delete(context_id: u32) {
        FILTER.with(|filter| filter.delete(context_id));
    }

    /// The `all-callbacks` build (the benchmark's ablation only): also export, as no-ops, the
    /// per-request callbacks the SDK's dispatcher exports, to price the crossings they cost.
    #[cfg(feature = "all-callbacks")]
    mod sdk_like {
        use super::ACTION_CONTINUE;

        #[no_mangle]
        pub extern "C" fn proxy_on_request_body(_: u32, _: usize, _: bool) -> u32 {
            ACTION_CONTINUE
        }
        #[no_mangle]
        pub extern "C" fn proxy_on_request_trailers(_: u32, _: usize) -> u32 {
            ACTION_CONTINUE
        }
        #[no_mangle]
        pub extern "C" fn proxy_on_response_body(_: u32, _: usize, _: bool) -> u32 {
            ACTION_CONTINUE
        }
        #[no_mangle]
        pub extern "C" fn proxy_on_response_trailers(_: u32, _: usize) -> u32 {
            ACTION_CONTINUE
        }
        #[no_mangle]
        pub extern "C" fn proxy_on_log(_: u32) {}
        #[no_mangle]
        pub extern "C" fn proxy_on_done(_: u32) -> bool {
            true
        }
    }
}

/// A property path as the ABI takes it: segments separated by NUL, none after the last (Envoy
/// uses a set property's path as it stands for the filter state key: a trailing NUL would be part
/// of the name).
fn encode_path(path: &[&str]) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(path.iter().map(|s| s.len() + 1).sum());
    for (i, segment) in path.iter().enumerate() {
        if i > 0 {
            encoded.push(0);
        }
        encoded.extend_from_slice(segment.as_bytes());
    }
    encoded
}
