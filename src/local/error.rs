//! The local runner's error: what went wrong starting or talking to Envoy and the backends.

use std::fmt;

/// What went wrong while setting up or talking to Envoy and the backends.
#[derive(Debug)]
pub enum LocalError {
    /// No Envoy binary, and installing one failed: says how to install it by hand.
    EnvoyMissing(String),
    /// Envoy exited or never became ready; carries the end of its log.
    EnvoyStart { reason: String, log_tail: String },
    /// A file or socket operation failed; `what` says which.
    Io { what: String, source: std::io::Error },
    /// A peer (Envoy or a backend) sent something that is not valid HTTP/1.1.
    Protocol(String),
    /// Waited too long for something (readiness, a config update, a response).
    Timeout(String),
    /// A helper program (the Istio tool, the registry) is missing or failed; says which and why.
    Tool(String),
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalError::EnvoyMissing(how) => write!(f, "Envoy not found: {how}"),
            LocalError::EnvoyStart { reason, log_tail } => {
                write!(
                    f,
                    "Envoy did not start: {reason}\n--- Envoy log (last lines) ---\n{log_tail}"
                )
            }
            LocalError::Io { what, source } => write!(f, "{what}: {source}"),
            LocalError::Protocol(message) => write!(f, "HTTP protocol error: {message}"),
            LocalError::Timeout(message) => write!(f, "timed out: {message}"),
            LocalError::Tool(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for LocalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LocalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Wraps an I/O error with what was being done.
pub fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalError {
    let what = what.into();
    move |source| LocalError::Io { what, source }
}
