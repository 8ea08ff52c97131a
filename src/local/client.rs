//! A raw HTTP/1.1 client over one keep-alive TCP connection.
//! Hand-written because the tests send bytes an HTTP library refuses to (hostile headers).
//!
//! Requests are bytes, not a typed model, so tests can send what real clients
//! and attackers send: duplicated headers, odd casing, non-UTF-8 values, huge
//! cookies. Responses are read with `Content-Length`, chunked, or close-delimited
//! bodies. [`CookieJar`] plays the browser: it keeps `Set-Cookie` values and
//! sends them back.
//!
//! ```no_run
//! use sticky_canary::local::{Client, CookieJar, Request};
//! # fn main() -> Result<(), sticky_canary::local::LocalError> {
//! let mut client = Client::connect("127.0.0.1:8080".parse().unwrap())?;
//! let mut jar = CookieJar::default();
//! let reply = client.send(&jar.apply(Request::get("/").host("app.example.com")))?;
//! jar.store(&reply);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::error::{io_error, LocalError};

/// Longest response head (status line and headers) accepted.
const MAX_HEAD_BYTES: usize = 256 * 1024;
/// Largest body accepted.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// One request: method, target, and header lines sent exactly as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Sent as the `Host` header (first line after the request line).
    pub host: String,
    /// Header lines in order, names and values as raw bytes.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Request {
    /// `GET path` for host `localhost`.
    pub fn get(path: &str) -> Request {
        Request {
            method: "GET".to_owned(),
            path: path.to_owned(),
            host: "localhost".to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Another method than `GET` (`HEAD`: the response is read without a body).
    pub fn method(mut self, method: &str) -> Request {
        self.method = method.to_owned();
        self
    }

    pub fn host(mut self, host: &str) -> Request {
        self.host = host.to_owned();
        self
    }

    /// Adds a header line; a name given twice is sent twice.
    pub fn header(self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.raw_header(name.as_bytes(), value.as_ref())
    }

    /// Adds a header line from raw bytes (any casing, any value bytes).
    pub fn raw_header(mut self, name: &[u8], value: &[u8]) -> Request {
        self.headers.push((name.to_vec(), value.to_vec()));
        self
    }

    /// A body, sent with `Content-Length`.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// The request as it goes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A parsed response (or request head, for the backends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header lines in order; names lowercased.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of a header as text (lossy), or `""` when absent.
    pub fn header_str(&self, name: &str) -> String {
        self.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the peer will close the connection after this response.
    pub fn closes_connection(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"close"))
    }
}

/// One keep-alive connection. After a response that says `Connection: close`
/// the next [`Client::send`] reconnects; any other broken connection is an error
/// (so a test sees every dropped request) and the next send reconnects.
pub struct Client {
    addr: SocketAddr,
    connection: Option<BufReader<TcpStream>>,
    timeout: Duration,
    /// How many TCP connections this client has opened.
    pub connections_opened: u64,
}

impl Client {
    /// Connects to `addr` (10 s read/write timeout).
    pub fn connect(addr: SocketAddr) -> Result<Client, LocalError> {
        let mut client = Client {
            addr,
            connection: None,
            timeout: Duration::from_secs(10),
            connections_opened: 0,
        };
        client.reconnect()?;
        Ok(client)
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn reconnect(&mut self) -> Result<&mut BufReader<TcpStream>, LocalError> {
        let what = format!("connect to {}", self.addr);
        let stream = TcpStream::connect_timeout(&self.addr, self.timeout).map_err(io_error(what.clone()))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(io_error(what.clone()))?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(io_error(what.clone()))?;
        stream.set_nodelay(true).map_err(io_error(what))?;
        self.connections_opened += 1;
        Ok(self.connection.insert(BufReader::new(stream)))
    }

    /// Sends one request and reads its response.
    pub fn send(&mut self, request: &Request) -> Result<Response, LocalError> {
        self.send_raw(&request.to_bytes())
    }

    /// Sends raw bytes (one complete request) and reads one response.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<Response, LocalError> {
        let result = self.exchange(bytes);
        match &result {
            Ok(response) if !response.closes_connection() => {}
            _ => self.connection = None,
        }
        result
    }

    fn exchange(&mut self, bytes: &[u8]) -> Result<Response, LocalError> {
        let addr = self.addr;
        let connection = match self.connection.as_mut() {
            Some(connection) => connection,
            None => self.reconnect()?,
        };
        connection
            .get_mut()
            .write_all(bytes)
            .map_err(io_error(format!("send a request to {addr}")))?;
        // A response to HEAD announces a body it does not send.
        let head = bytes.starts_with(b"HEAD ");
        read_response(connection, head).map_err(|e| match e {
            LocalError::Io { what, source } => LocalError::Io {
                what: format!("{what} from {addr}"),
                source,
            },
            other => other,
        })
    }
}

/// The start line and header lines of a request or response.
pub struct MessageHead {
    pub start_line: Vec<u8>,
    /// Names lowercased, values trimmed.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Reads a message head: the start line and the header lines, up to the empty line.
/// `Ok(None)` when the peer closed before sending anything.
pub fn read_head(reader: &mut impl BufRead) -> Result<Option<MessageHead>, LocalError> {
    let mut start_line = Vec::new();
    let mut headers = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(io_error("read a response head"))?;
        if n == 0 {
            if start_line.is_empty() && total == 0 {
                return Ok(None);
            }
            return Err(LocalError::Protocol(
                "connection closed in the middle of a message head".to_owned(),
            ));
        }
        total += n;
        if total > MAX_HEAD_BYTES {
            return Err(LocalError::Protocol(format!(
                "message head longer than {MAX_HEAD_BYTES} bytes"
            )));
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if start_line.is_empty() {
            if line.is_empty() {
                continue; // tolerate stray CRLF between messages
            }
            start_line = line;
            continue;
        }
        if line.is_empty() {
            return Ok(Some(MessageHead { start_line, headers }));
        }
        let colon = line.iter().position(|b| *b == b':').ok_or_else(|| {
            LocalError::Protocol(format!(
                "header line without a colon: {:?}",
                String::from_utf8_lossy(&line)
            ))
        })?;
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default();
        let value = value.trim_ascii();
        headers.push((
            String::from_utf8_lossy(name).trim().to_ascii_lowercase(),
            value.to_vec(),
        ));
    }
}

/// The first value of header `name` (lowercase) among header lines (lowercase name, value).
pub fn header_value<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
}

/// Reads a body framed by `headers`: chunked, `Content-Length`, or (responses only) until close.
pub fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, Vec<u8>)],
    until_close: bool,
) -> Result<Vec<u8>, LocalError> {
    let chunked = header_value(headers, "transfer-encoding")
        .is_some_and(|v| String::from_utf8_lossy(v).to_ascii_lowercase().contains("chunked"));
    if chunked {
        return read_chunked(reader);
    }
    if let Some(length) = header_value(headers, "content-length") {
        let length: usize = std::str::from_utf8(length)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| LocalError::Protocol(format!("bad Content-Length {:?}", String::from_utf8_lossy(length))))?;
        if length > MAX_BODY_BYTES {
            return Err(LocalError::Protocol(format!("body of {length} bytes is too large")));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).map_err(io_error("read a body"))?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if until_close {
        reader
            .take(MAX_BODY_BYTES as u64)
            .read_to_end(&mut body)
            .map_err(io_error("read a body"))?;
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, LocalError> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        reader
            .read_until(b'\n', &mut line)
            .map_err(io_error("read a chunk size"))?;
        let text = String::from_utf8_lossy(&line);
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| LocalError::Protocol(format!("bad chunk size line {text:?}")))?;
        if body.len() + size > MAX_BODY_BYTES {
            return Err(LocalError::Protocol("chunked body too large".to_owned()));
        }
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let mut trailer = Vec::new();
                let n = reader
                    .read_until(b'\n', &mut trailer)
                    .map_err(io_error("read chunk trailers"))?;
                if n == 0 || trailer.trim_ascii().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(body.get_mut(start..).unwrap_or_default())
            .map_err(io_error("read a chunk"))?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).map_err(io_error("read a chunk end"))?;
    }
}

/// Reads one HTTP/1.1 response (skipping `1xx` interim responses).
/// Reads one response; `to_head`: the request was `HEAD`, so no body follows whatever the
/// headers say.
pub(crate) fn read_response(reader: &mut impl BufRead, to_head: bool) -> Result<Response, LocalError> {
    loop {
        let MessageHead { start_line, headers } =
            read_head(reader)?.ok_or_else(|| LocalError::Protocol("connection closed before a response".to_owned()))?;
        let text = String::from_utf8_lossy(&start_line);
        let mut parts = text.split(' ');
        let version = parts.next().unwrap_or("");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| LocalError::Protocol(format!("bad status line {text:?}")))?;
        if (100..200).contains(&status) {
            continue;
        }
        let until_close = header_value(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
        let body = if to_head || status == 204 || status == 304 {
            Vec::new()
        } else {
            read_body(reader, &headers, until_close)?
        };
        return Ok(Response { status, headers, body });
    }
}

/// One `Set-Cookie` value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    /// Attributes in order: lowercased name, and value for `Name=Value` ones.
    pub attributes: Vec<(String, Option<String>)>,
}

impl SetCookie {
    /// Parses `name=value; Attr=x; Flag`. `None` when there is no `name=`.
    pub fn parse(header: &[u8]) -> Option<SetCookie> {
        let text = String::from_utf8_lossy(header);
        let mut parts = text.split(';');
        let (name, value) = parts.next()?.split_once('=')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let attributes = parts
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_owned())),
                None => (p.to_ascii_lowercase(), None),
            })
            .collect();
        Some(SetCookie {
            name: name.to_owned(),
            value: value.trim().to_owned(),
            attributes,
        })
    }

    /// `Some(Some(value))` for `Attr=value`, `Some(None)` for a flag, `None` when absent.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

/// The cookies a browser would keep for one site (no expiry, no path scoping).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CookieJar {
    pub cookies: BTreeMap<String, String>,
}

impl CookieJar {
    /// Keeps every cookie the response sets.
    pub fn store(&mut self, response: &Response) {
        for value in response.header_all("set-cookie") {
            if let Some(cookie) = SetCookie::parse(value) {
                self.cookies.insert(cookie.name, cookie.value);
            }
        }
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    /// The value of the cookie `name`, if the jar holds it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// The `Cookie` header value, or `None` when the jar is empty.
    pub fn header_value(&self) -> Option<String> {
        if self.cookies.is_empty() {
            return None;
        }
        let pairs: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Some(pairs.join("; "))
    }

    /// Adds the `Cookie` header to a request (when the jar holds any cookie).
    pub fn apply(&self, request: Request) -> Request {
        match self.header_value() {
            Some(value) => request.header("Cookie", value),
            None => request,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chunked_and_length_bodies() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno";
        let mut reader = BufReader::new(&wire[..]);
        let first = read_response(&mut reader, false).unwrap();
        assert_eq!(
            (first.status, first.body.as_slice(), first.header("x-a")),
            (200, &b"abcde"[..], Some(&b"1"[..]))
        );
        let second = read_response(&mut reader, false).unwrap();
        assert_eq!((second.status, second.body.as_slice()), (404, &b"no"[..]));
    }

    #[test]
    fn parses_set_cookie_and_replays_it() {
        let cookie = SetCookie::parse(b"sc-id=abc123; Path=/; Max-Age=60; HttpOnly; SameSite=Lax").unwrap();
        assert_eq!((cookie.name.as_str(), cookie.value.as_str()), ("sc-id", "abc123"));
        assert_eq!(cookie.attribute("max-age"), Some(Some("60")));
        assert_eq!(cookie.attribute("httponly"), Some(None));
        assert_eq!(cookie.attribute("secure"), None);
        let response = Response {
            status: 200,
            headers: vec![
                ("set-cookie".into(), b"a=1; Path=/".to_vec()),
                ("set-cookie".into(), b"b=2".to_vec()),
            ],
            body: Vec::new(),
        };
        let mut jar = CookieJar::default();
        jar.store(&response);
        assert_eq!(jar.header_value().as_deref(), Some("a=1; b=2"));
    }

    #[test]
    fn sends_headers_byte_for_byte() {
        let request = Request::get("/x")
            .host("h")
            .raw_header(b"X-Canary-VERSION", b"v2\xff")
            .header("x-canary-version", "v3");
        assert_eq!(
            request.to_bytes(),
            b"GET /x HTTP/1.1\r\nHost: h\r\nX-Canary-VERSION: v2\xff\r\nx-canary-version: v3\r\n\r\n".to_vec()
        );
    }
}
