//! Scratch resources of one run: free loopback ports, temporary directories, atomic writes.

use std::path::Path;

pub use tempfile::TempDir;

use super::error::{io_error, LocalError};

/// A loopback port that was free a moment ago (bound to port 0, then released).
///
/// Envoy binds its own sockets, so its ports are picked this way; a collision
/// in the short gap is possible but shows up as a clear start error.
pub fn free_port() -> Result<u16, LocalError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_error("bind 127.0.0.1:0"))?;
    let port = listener.local_addr().map_err(io_error("read a bound port"))?.port();
    Ok(port)
}

/// Two distinct free loopback ports (a listener and an admin port for one Envoy).
pub fn two_free_ports() -> Result<(u16, u16), LocalError> {
    let first = free_port()?;
    let mut second = free_port()?;
    while second == first {
        second = free_port()?;
    }
    Ok((first, second))
}

/// A new directory `$TMPDIR/sticky-canary-<purpose>-XXXXXX`, removed with its contents when the
/// [`TempDir`] is dropped (`TempDir::keep` keeps it, for looking at a failed run).
pub fn temp_dir(purpose: &str) -> Result<TempDir, LocalError> {
    tempfile::Builder::new()
        .prefix(&format!("sticky-canary-{purpose}-"))
        .tempdir()
        .map_err(io_error(format!("create a temp dir for {purpose}")))
}

/// [`crate::files::write_atomically`], with the local runner's error.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), LocalError> {
    crate::files::write_atomically(path, contents).map_err(io_error(format!("write {}", path.display())))
}
