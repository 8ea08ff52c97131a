//! Image references, `oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`, checked as registries
//! accept them.

use std::fmt;

use oci_client::Reference;

use super::digest::Digest;
use super::error::OciError;

/// Registries on these hosts may be reached over plain HTTP with `--insecure`; nothing else may.
const LOOPBACK_HOSTS: [&str; 4] = ["localhost", "127.0.0.1", "[::1]", "::1"];

/// An image reference, `oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`, with the registry spelled out.
///
/// The registry host is required (no implicit Docker Hub), so what is pushed is exactly what a
/// WasmPlugin `url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageReference {
    /// Parses `oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]` (the `oci://` prefix is optional).
    pub fn parse(text: &str) -> Result<Self, OciError> {
        let invalid = |reason: String| OciError::InvalidReference {
            reference: text.to_owned(),
            reason,
        };
        let rest = text.strip_prefix("oci://").unwrap_or(text);
        if rest.contains("://") {
            return Err(invalid("only oci:// references can be pushed".to_owned()));
        }
        let (name, digest) = match rest.split_once('@') {
            Some((name, digest)) => (
                name,
                Some(Digest::parse(digest).map_err(|reason| invalid(format!("digest {digest:?}: {reason}")))?),
            ),
            None => (rest, None),
        };
        let Some((registry, path)) = name.split_once('/') else {
            return Err(invalid(
                "expected REGISTRY/REPOSITORY:TAG, e.g. oci://myacr.azurecr.io/sticky-canary:1.0.0".to_owned(),
            ));
        };
        check_registry(registry).map_err(|reason| invalid(format!("registry {registry:?}: {reason}")))?;
        // A colon after the last slash starts the tag; one before it is not possible here since the
        // registry (which may carry a port) has already been split off.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
            _ => (path, None),
        };
        check_repository(repository).map_err(|reason| invalid(format!("repository {repository:?}: {reason}")))?;
        if let Some(tag) = tag {
            check_tag(tag).map_err(|reason| invalid(format!("tag {tag:?}: {reason}")))?;
        }
        Ok(Self {
            registry: registry.to_ascii_lowercase(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The registry host, with its port when one was given.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, when the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Whether the registry is on this machine (the only place `--insecure` is allowed).
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            // `[::1]:5000` and `localhost:5000` carry a port; a bare `::1` does not.
            Some((host, port)) if !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => &self.registry,
        };
        LOOPBACK_HOSTS.contains(&host)
    }

    /// The same image, addressed by digest (what a pull after a push uses).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `oci://REGISTRY/REPOSITORY:TAG`, or `oci://REGISTRY/REPOSITORY@sha256:HEX` when pinned by digest.
    pub fn url(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => format!("oci://{}/{}@{digest}", self.registry, self.repository),
            (None, Some(tag)) => format!("oci://{}/{}:{tag}", self.registry, self.repository),
            (None, None) => format!("oci://{}/{}", self.registry, self.repository),
        }
    }

    pub(super) fn to_client_reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => {
                Reference::with_digest(self.registry.clone(), self.repository.clone(), digest.to_string())
            }
            (None, tag) => Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone().unwrap_or_else(|| "latest".to_owned()),
            ),
        }
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

fn check_registry(registry: &str) -> Result<(), &'static str> {
    if registry.is_empty() {
        return Err("is empty");
    }
    let (host, port) = match registry.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((_, "")) => (registry, None),
            Some((_, rest)) => match rest.strip_prefix(':') {
                Some(port) => (&registry[..registry.len() - rest.len()], Some(port)),
                None => return Err("expected [IPv6]:PORT"),
            },
            None => return Err("unclosed [ in an IPv6 address"),
        },
        None => match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        },
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err("the port must be a number");
        }
    }
    if host.starts_with('[') {
        return Ok(());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        || host.starts_with(['.', '-'])
    {
        return Err("is not a host name");
    }
    // Without a dot or port the first component would be a Docker Hub namespace, not a registry.
    if !host.contains('.') && port.is_none() && host != "localhost" {
        return Err("is not a registry host (give one with a dot or a port, e.g. myacr.azurecr.io or localhost:5000)");
    }
    Ok(())
}

fn check_repository(repository: &str) -> Result<(), &'static str> {
    if repository.is_empty() {
        return Err("is empty");
    }
    if repository.len() > 255 {
        return Err("is longer than 255 characters");
    }
    for component in repository.split('/') {
        let bytes = component.as_bytes();
        let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
            return Err("has an empty path component");
        };
        if !bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err("may hold only lowercase letters, digits, '.', '_', '-' and '/'");
        }
        if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
            return Err("each path component must start and end with a letter or digit");
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), &'static str> {
    let bytes = tag.as_bytes();
    let Some(first) = bytes.first() else {
        return Err("is empty");
    };
    if bytes.len() > 128 {
        return Err("is longer than 128 characters");
    }
    if !(first.is_ascii_alphanumeric() || *first == b'_') {
        return Err("must start with a letter, digit or '_'");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may hold only letters, digits, '.', '_' and '-'");
    }
    Ok(())
}
