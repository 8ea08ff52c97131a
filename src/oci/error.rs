//! Everything that can go wrong while packaging, pushing or pulling the filter image.

use std::fmt;

use super::digest::Digest;
use super::source::{CredentialSource, PASSWORD_VARIABLE, USERNAME_VARIABLE};

/// Everything that can go wrong while packaging, pushing or pulling the filter image.
#[derive(Debug)]
pub enum OciError {
    /// The reference is not `oci://REGISTRY/REPOSITORY:TAG`.
    InvalidReference { reference: String, reason: String },
    /// `--insecure` for a registry that is not on this machine.
    InsecureNotLoopback { registry: String },
    /// The registry could not be reached at all.
    Unreachable { registry: String, detail: String },
    /// The registry wants credentials and none were found.
    CredentialsRequired { registry: String, detail: String },
    /// The registry refused the credentials that were found.
    AuthRefused {
        registry: String,
        source: CredentialSource,
        detail: String,
    },
    /// The credentials configuration (environment or Docker config) is unusable.
    Credentials(String),
    /// The registry has no such image (wrong repository, tag or digest).
    NotFound { reference: String, detail: String },
    /// The registry answered with an error.
    Registry { registry: String, detail: String },
    /// The registry reports another manifest digest than the one pushed.
    DigestMismatch {
        reference: String,
        pushed: Digest,
        reported: String,
    },
    /// The image pulled back is not a wasm image in the format Istio reads.
    NotAWasmImage { reference: String, reason: String },
    /// Packaging failed (in-memory tar/gzip) or the runtime could not start.
    Internal(String),
}

impl fmt::Display for OciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidReference { reference, reason } => write!(f, "{reference}: not a valid image reference: {reason}"),
            Self::InsecureNotLoopback { registry } => write!(
                f,
                "--insecure (plain HTTP) is allowed only for a registry on localhost, 127.0.0.1 or [::1], not {registry}; \
                 remote registries are always reached over HTTPS"
            ),
            Self::Unreachable { registry, detail } => write!(f, "cannot reach registry {registry}: {detail}"),
            Self::CredentialsRequired { registry, detail } => write!(
                f,
                "registry {registry} requires credentials and none were found: set {USERNAME_VARIABLE} and \
                 {PASSWORD_VARIABLE}, or log in with `docker login {registry}` (for ACR: `az acr login --name NAME`) ({detail})"
            ),
            Self::AuthRefused { registry, source, detail } => {
                write!(f, "registry {registry} refused the credentials from {source} ({detail})")
            }
            Self::Credentials(message) => f.write_str(message),
            Self::NotFound { reference, detail } => write!(f, "{reference}: not found in the registry ({detail})"),
            Self::Registry { registry, detail } => write!(f, "registry {registry}: {detail}"),
            Self::DigestMismatch { reference, pushed, reported } => write!(
                f,
                "{reference}: pushed manifest {pushed} but the registry reports {reported}; \
                 it may have rewritten the manifest, so do not pin either digest before checking the registry"
            ),
            Self::NotAWasmImage { reference, reason } => {
                write!(f, "{reference}: not a wasm image Istio can read: {reason}")
            }
            Self::Internal(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for OciError {}
