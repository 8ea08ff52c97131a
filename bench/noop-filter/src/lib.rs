//! A proxy-wasm HTTP filter that does nothing, or only the host calls it is told to: the floor
//! cost of any V8 wasm filter, and the price of each host call (bench/gateway.py).
//!
//! With no configuration (configuration (c) of the benchmark) every callback returns
//! `Continue` at once: what is left is what Envoy and V8 charge any wasm filter per request.
//! `bench/gateway.py --probe` gives it a list of host calls to make per request instead,
//! e.g. `get::authority get:cookie replace:x-canary-version=v1 inc`, to price the calls
//! sticky-canary makes one by one. Same shape as the real filter (a root context creating
//! one HTTP context per request), built with the same `wasm` profile and `wasm-opt`.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// One host call made per request.
enum Call {
    /// `get:NAME`: read a request header.
    Get(String),
    /// `replace:NAME=VALUE`: set a request header.
    Replace(String, String),
    /// `remove:NAME`: remove a request header.
    Remove(String),
    /// `inc`: add one to a counter.
    Increment(u32),
    /// `add-response:NAME=VALUE`: add a response header (as Set-Cookie is added).
    AddResponse(String, String),
    /// `pairs`: read every request header in one call.
    Pairs,
    /// `setpairs:NAME=VALUE`: read every request header, then write them all back with NAME set
    /// (the ABI's only way to make several header writes in one call).
    SetPairs(String, String),
}

#[derive(Default)]
struct Root {
    calls: Rc<Vec<Call>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        if plugin_configuration_size == 0 {
            return true;
        }
        let Ok(Some(bytes)) = hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        ) else {
            return false;
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut calls = Vec::new();
        for word in text.split_whitespace() {
            let (op, arg) = word.split_once(':').unwrap_or((word, ""));
            let (name, value) = arg.split_once('=').unwrap_or((arg, ""));
            calls.push(match op {
                "get" => Call::Get(name.to_owned()),
                "replace" => Call::Replace(name.to_owned(), value.to_owned()),
                "remove" => Call::Remove(name.to_owned()),
                "add-response" => Call::AddResponse(name.to_owned(), value.to_owned()),
                "pairs" => Call::Pairs,
                "setpairs" => Call::SetPairs(name.to_owned(), value.to_owned()),
                "inc" => match hostcalls::define_metric(MetricType::Counter, "bench_probe_total") {
                    Ok(id) => Call::Increment(id),
                    Err(_) => return false,
                },
                _ => return false,
            });
        }
        self.calls = Rc::new(calls);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            calls: self.calls.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    calls: Rc<Vec<Call>>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for call in self.calls.iter() {
            let _ = match call {
                Call::Get(name) => hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name).map(drop),
                Call::Replace(name, value) => {
                    hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(value.as_bytes()))
                }
                Call::Remove(name) => hostcalls::remove_map_value(MapType::HttpRequestHeaders, name),
                Call::Increment(id) => hostcalls::increment_metric(*id, 1),
                Call::Pairs => hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map(drop),
                Call::SetPairs(name, value) => hostcalls::get_map_bytes(MapType::HttpRequestHeaders).and_then(|map| {
                    let mut pairs: Vec<(&str, &[u8])> = map
                        .iter()
                        .filter(|(k, _)| k != name)
                        .map(|(k, v)| (k.as_str(), v.as_slice()))
                        .collect();
                    pairs.push((name, value.as_bytes()));
                    hostcalls::set_map_bytes(MapType::HttpRequestHeaders, pairs)
                }),
                Call::AddResponse(..) => Ok(()),
            };
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for call in self.calls.iter() {
            if let Call::AddResponse(name, value) = call {
                let _ = hostcalls::add_map_value_bytes(MapType::HttpResponseHeaders, name, value.as_bytes());
            }
        }
        Action::Continue
    }
}
