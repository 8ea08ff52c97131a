//! Upstream app versions: tiny HTTP/1.1 servers that say which version they are
//! and echo back every request header they received.
//!
//! Each response has `x-served-version: <version>` and a body like
//!
//! ```text
//! Host: app.example.com, Version: v2
//! seen x-canary-version: v2
//! seen host: app.example.com
//! ```
//!
//! one `seen` line per request header line as the upstream got it, so a test can
//! check that a spoofed routing header was replaced (see [`seen_headers`]).
//!
//! A backend started with [`Backend::start_recording`] also keeps every request's headers
//! ([`Backend::received`]): the only way to look at requests whose answer nobody reads, such as
//! the copies Envoy mirrors.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use super::client::header_value;
use super::client::{read_body, read_head, MessageHead};
use super::error::{io_error, LocalError};

/// One upstream version listening on a free loopback port; stopped on `Drop`.
pub struct Backend {
    version: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

struct Shared {
    version: String,
    stop: AtomicBool,
    requests: AtomicU64,
    /// Every request's headers (lowercase names), when recording.
    received: Option<Mutex<Vec<Headers>>>,
    /// Paths answered with a fixed HTML page instead of the echo (a browser test's page).
    pages: Vec<(String, String)>,
}

impl Backend {
    /// Starts the server for `version` (also the Envoy cluster name).
    pub fn start(version: &str) -> Result<Backend, LocalError> {
        Backend::start_with_pages(version, Vec::new())
    }

    /// Like [`Backend::start`], and answers each `(path, html)` page's exact path (without the
    /// query) with `200 text/html` and that body, `{{version}}` replaced by the version, for tests
    /// that drive a real browser.
    pub fn start_with_pages(version: &str, pages: Vec<(String, String)>) -> Result<Backend, LocalError> {
        Backend::spawn(version, pages, false, ([127, 0, 0, 1], 0).into())
    }

    /// Like [`Backend::start`], listening on `addr` (a pod's address inside a test's network
    /// namespace, where the endpoints a control plane computes point).
    pub fn start_on(version: &str, addr: SocketAddr) -> Result<Backend, LocalError> {
        Backend::spawn(version, Vec::new(), false, addr)
    }

    /// Like [`Backend::start`], and keeps the headers of every request it answers.
    pub fn start_recording(version: &str) -> Result<Backend, LocalError> {
        Backend::spawn(version, Vec::new(), true, ([127, 0, 0, 1], 0).into())
    }

    fn spawn(
        version: &str,
        pages: Vec<(String, String)>,
        record: bool,
        bind: SocketAddr,
    ) -> Result<Backend, LocalError> {
        let listener = TcpListener::bind(bind).map_err(io_error(format!("bind a backend port on {bind}")))?;
        let addr = listener.local_addr().map_err(io_error("read a backend port"))?;
        let shared = Arc::new(Shared {
            version: version.to_owned(),
            stop: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            received: record.then(|| Mutex::new(Vec::new())),
            pages,
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = std::thread::Builder::new()
            .name(format!("backend-{version}"))
            .spawn(move || accept_loop(listener, accept_shared))
            .map_err(io_error("start a backend thread"))?;
        Ok(Backend {
            version: version.to_owned(),
            addr,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The headers of every request answered so far, in arrival order (lowercase names);
    /// empty unless started with [`Backend::start_recording`].
    pub fn received(&self) -> Vec<Headers> {
        self.shared
            .received
            .as_ref()
            .and_then(|r| r.lock().ok().map(|r| r.clone()))
            .unwrap_or_default()
    }
}

/// One request's header lines: (lowercase name, value).
pub type Headers = Vec<(String, Vec<u8>)>;

impl Drop for Backend {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let name = format!("backend-{}-conn", shared.version);
    let stop = Arc::clone(&shared);
    accept_connections(&listener, &stop.stop, &name, move |stream| serve(stream, &shared));
}

/// Accepts connections until `stop` is set (whoever sets it connects once to wake the blocking
/// accept), each served by `serve` on a thread of its own named `name`. Connection threads stop
/// on their own: at the peer's close, or within a read timeout once `stop` is set
/// ([`serve_requests`]).
pub fn accept_connections(
    listener: &TcpListener,
    stop: &AtomicBool,
    name: &str,
    serve: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let serve = Arc::new(serve);
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let serve = Arc::clone(&serve);
        let _ = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || serve(stream));
    }
}

/// Serves the HTTP/1.1 requests of one keep-alive connection until the peer closes it, a read
/// fails, or `stop` is set (seen within a 500 ms read timeout): `answer` gets each request's
/// head and whether the client asked to close, and returns the whole response. The pod servers
/// of the test harness answer with the same loop.
pub fn serve_requests(stream: TcpStream, stop: &AtomicBool, mut answer: impl FnMut(&MessageHead, bool) -> Vec<u8>) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let head = match read_head(&mut reader) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(LocalError::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        if read_body(&mut reader, &head.headers, false).is_err() {
            return;
        }
        let close = head
            .headers
            .iter()
            .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case(b"close"));
        let response = answer(&head, close);
        if writer.write_all(&response).is_err() || close || stop.load(Ordering::SeqCst) {
            return;
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    serve_requests(stream, &shared.stop, |head, close| answer(head, close, shared));
}

/// A backend's answer to one request: its page for the path, else the echo.
fn answer(head: &MessageHead, close: bool, shared: &Shared) -> Vec<u8> {
    let MessageHead {
        start_line: request_line,
        headers,
    } = head;
    if let Some(Ok(mut received)) = shared.received.as_ref().map(Mutex::lock) {
        received.push(headers.clone());
    }
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let host = headers
        .iter()
        .find(|(n, _)| n == "host")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let path = request_line
        .split(|&b| b == b' ')
        .nth(1)
        .and_then(|target| target.split(|&b| b == b'?').next())
        .unwrap_or_default();
    let connection = if close { "connection: close\r\n" } else { "" };
    if let Some((_, html)) = shared.pages.iter().find(|(p, _)| p.as_bytes() == path) {
        let html = html.replace("{{version}}", &shared.version);
        return format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncache-control: no-store\r\nx-served-version: {}\r\ncontent-length: {}\r\n{connection}\r\n{html}",
            shared.version,
            html.len(),
        )
        .into_bytes();
    }
    let mut body = format!("Host: {host}, Version: {}\n", shared.version).into_bytes();
    body.extend_from_slice(b"request: ");
    body.extend_from_slice(request_line);
    body.push(b'\n');
    for (name, value) in headers {
        body.extend_from_slice(b"seen ");
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(b": ");
        body.extend_from_slice(value);
        body.push(b'\n');
    }
    let mut response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-served-version: {}\r\ncontent-length: {}\r\n{connection}\r\n",
        shared.version,
        body.len(),
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

/// The values the upstream saw for a request header (lowercase name), from a backend's body.
pub fn seen_headers(body: &[u8], name: &str) -> Vec<Vec<u8>> {
    let mut prefix = b"seen ".to_vec();
    prefix.extend_from_slice(name.to_ascii_lowercase().as_bytes());
    prefix.extend_from_slice(b": ");
    body.split(|b| *b == b'\n')
        .filter_map(|line| line.strip_prefix(prefix.as_slice()))
        .map(<[u8]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::{Client, Request};

    #[test]
    fn answers_with_its_version_and_echoes_headers() {
        let backend = Backend::start("v2").unwrap();
        let mut client = Client::connect(backend.addr()).unwrap();
        for _ in 0..3 {
            let reply = client
                .send(
                    &Request::get("/")
                        .host("app")
                        .header("X-Canary-Version", "v9")
                        .header("x-canary-version", "v8"),
                )
                .unwrap();
            assert_eq!(reply.header("x-served-version"), Some(&b"v2"[..]));
            assert_eq!(
                seen_headers(&reply.body, "x-canary-version"),
                vec![b"v9".to_vec(), b"v8".to_vec()]
            );
            assert!(reply.body_text().starts_with("Host: app, Version: v2\n"));
        }
        assert_eq!(client.connections_opened, 1, "keep-alive");
        assert_eq!(backend.requests(), 3);
        assert!(backend.received().is_empty(), "records only when asked");
    }

    #[test]
    fn a_recording_backend_keeps_every_requests_headers() {
        let backend = Backend::start_recording("v1").unwrap();
        let mut client = Client::connect(backend.addr()).unwrap();
        for i in 0..3 {
            client
                .send(&Request::get("/").host("app").header("x-test", format!("{i}")))
                .unwrap();
        }
        let received = backend.received();
        assert_eq!(received.len(), 3);
        assert_eq!(header_value(&received[2], "x-test"), Some(&b"2"[..]));
        assert_eq!(header_value(&received[0], "host"), Some(&b"app"[..]));
    }
}
