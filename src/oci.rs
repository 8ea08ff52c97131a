//! `sticky-canary push`: ship the filter as an OCI image that Istio's wasm fetcher accepts,
//! and pin a WasmPlugin to it by manifest digest.
//!
//! ```
//! use sticky_canary::oci::{self, ImageReference};
//!
//! let wasm = b"\0asm\x01\0\0\0";
//! let reference = ImageReference::parse("oci://myacr.azurecr.io/filters/sticky-canary:1.0.0").unwrap();
//! // The image is built deterministically, so its digest is known before (and without) a push.
//! let image = oci::WasmImage::from_wasm(wasm).unwrap();
//! let pinned = oci::pin(&reference, &image.digest());
//! assert_eq!(pinned.url, "oci://myacr.azurecr.io/filters/sticky-canary:1.0.0");
//! assert_eq!(pinned.sha256, image.digest().hex());
//! ```
//!
//! The format is the "compat" variant of the Wasm image spec (see docs/oci.md for why): an OCI image
//! manifest whose single layer is `application/vnd.oci.image.layer.v1.tar+gzip` holding `plugin.wasm`.
//! What a WasmPlugin `sha256` must hold for an `oci://` url is the hex of that manifest's digest,
//! not the hash of the .wasm: Istio compares it with the manifest digest it resolves.

mod credentials;
mod image;

use std::fmt;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

pub use credentials::{CredentialSource, Credentials, PASSWORD_VARIABLE, USERNAME_VARIABLE};
pub use image::{extract_plugin_wasm, Digest, WasmImage, PLUGIN_FILE_NAME};

/// Registries on these hosts may be reached over plain HTTP with `--insecure`; nothing else may.
const LOOPBACK_HOSTS: [&str; 4] = ["localhost", "127.0.0.1", "[::1]", "::1"];

/// How long to wait for a TCP connection to the registry before calling it unreachable.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a single read from the registry may stall.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

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

    fn to_client_reference(&self) -> Reference {
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

/// What a WasmPlugin needs to pull the filter pinned: `spec.url` and `spec.sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedPlugin {
    /// `oci://REGISTRY/REPOSITORY:TAG` (or `@sha256:HEX` when the reference was given by digest).
    pub url: String,
    /// The manifest digest as bare lowercase hex, the form the WasmPlugin CRD accepts.
    pub sha256: String,
}

/// Pins `reference` to `digest`: the WasmPlugin keeps the readable url and Istio refuses any image
/// whose manifest digest differs (a re-pushed tag fails closed instead of silently changing code).
pub fn pin(reference: &ImageReference, digest: &Digest) -> PinnedPlugin {
    PinnedPlugin {
        url: reference.url(),
        sha256: digest.hex().to_owned(),
    }
}

/// Pins `reference` for `render`: a digest in the reference wins (an image pushed by another build);
/// otherwise the digest is that of the image `push` builds from `wasm`, computed offline. For the
/// embedded filter that is the digest `sticky-canary push` printed for the same build.
pub fn pin_for_wasm(reference: &str, wasm: &[u8]) -> Result<PinnedPlugin, OciError> {
    let reference = ImageReference::parse(reference)?;
    let digest = match reference.digest() {
        Some(digest) => digest.clone(),
        None => WasmImage::from_wasm(wasm)?.digest(),
    };
    Ok(pin(&reference, &digest))
}

/// How to talk to the registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransportOptions {
    /// Plain HTTP; only accepted for a registry on localhost, 127.0.0.1 or [::1].
    pub insecure: bool,
}

/// The result of a successful push.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The tagged reference that was pushed.
    pub reference: ImageReference,
    /// The manifest digest, as computed here and confirmed by the registry.
    pub digest: Digest,
    /// Size of the gzip layer holding `plugin.wasm`.
    pub layer_size: usize,
    /// Where the credentials came from.
    pub credentials: CredentialSource,
}

/// Packages `wasm` and pushes it to `reference` (which must carry a tag), with the credentials
/// found for its registry (see [`Credentials::for_registry`]).
pub fn push(reference: &ImageReference, wasm: &[u8], options: TransportOptions) -> Result<Pushed, OciError> {
    let credentials = Credentials::for_registry(reference.registry())?;
    push_with(reference, wasm, options, &credentials)
}

/// [`push`] with explicit credentials.
pub fn push_with(
    reference: &ImageReference,
    wasm: &[u8],
    options: TransportOptions,
    credentials: &Credentials,
) -> Result<Pushed, OciError> {
    if reference.tag().is_none() || reference.digest().is_some() {
        return Err(OciError::InvalidReference {
            reference: reference.url(),
            reason: "push needs a tag and no digest (the digest is computed and printed), e.g. oci://REGISTRY/REPOSITORY:1.0.0"
                .to_owned(),
        });
    }
    let image = WasmImage::from_wasm(wasm)?;
    let session = Session::new(reference, options, credentials)?;
    let target = reference.to_client_reference();
    session.runtime.block_on(async {
        session.authenticate(&target, RegistryOperation::Push).await?;
        for (blob, digest) in [
            (image.layer(), image.layer_digest()),
            (image.config(), image.config_digest()),
        ] {
            session
                .client
                .push_blob(&target, blob.to_vec(), &digest.to_string())
                .await
                .map_err(|e| session.classify(e))?;
        }
        let content_type = http_header(image::MANIFEST_MEDIA_TYPE)?;
        session
            .client
            .push_manifest_raw(&target, image.manifest().to_vec(), content_type)
            .await
            .map_err(|e| session.classify(e))?;
        let reported = session
            .client
            .fetch_manifest_digest(&target, &session.auth)
            .await
            .map_err(|e| session.classify(e))?;
        if reported != image.digest().to_string() {
            return Err(OciError::DigestMismatch {
                reference: reference.url(),
                pushed: image.digest(),
                reported,
            });
        }
        Ok(())
    })?;
    Ok(Pushed {
        reference: reference.clone(),
        digest: image.digest(),
        layer_size: image.layer().len(),
        credentials: credentials.source().clone(),
    })
}

/// A module pulled back from a registry.
#[derive(Debug, Clone)]
pub struct PulledWasm {
    /// The bytes of `plugin.wasm`.
    pub wasm: Vec<u8>,
    /// The manifest digest the registry served.
    pub digest: Digest,
}

/// Pulls `reference` the way Istio reads it (last layer, gzip tar, `plugin.wasm`), with the
/// credentials found for its registry.
pub fn pull_wasm(reference: &ImageReference, options: TransportOptions) -> Result<PulledWasm, OciError> {
    let credentials = Credentials::for_registry(reference.registry())?;
    pull_wasm_with(reference, options, &credentials)
}

/// [`pull_wasm`] with explicit credentials.
pub fn pull_wasm_with(
    reference: &ImageReference,
    options: TransportOptions,
    credentials: &Credentials,
) -> Result<PulledWasm, OciError> {
    let session = Session::new(reference, options, credentials)?;
    let target = reference.to_client_reference();
    let data = session.runtime.block_on(async {
        session.authenticate(&target, RegistryOperation::Pull).await?;
        session
            .client
            .pull(
                &target,
                &session.auth,
                vec![image::LAYER_MEDIA_TYPE, image::DOCKER_LAYER_MEDIA_TYPE],
            )
            .await
            .map_err(|e| session.classify(e))
    })?;
    let digest = data
        .digest
        .as_deref()
        .ok_or_else(|| OciError::NotAWasmImage {
            reference: reference.url(),
            reason: "the registry sent no digest".to_owned(),
        })
        .and_then(|d| {
            Digest::parse(d).map_err(|reason| OciError::NotAWasmImage {
                reference: reference.url(),
                reason: reason.to_owned(),
            })
        })?;
    let last = data.layers.last().ok_or_else(|| OciError::NotAWasmImage {
        reference: reference.url(),
        reason: "the image has no layers".to_owned(),
    })?;
    let wasm = extract_plugin_wasm(&last.data).map_err(|reason| OciError::NotAWasmImage {
        reference: reference.url(),
        reason,
    })?;
    Ok(PulledWasm { wasm, digest })
}

fn http_header(value: &str) -> Result<http::HeaderValue, OciError> {
    http::HeaderValue::from_str(value).map_err(|e| OciError::Internal(format!("header value {value:?}: {e}")))
}

/// One client, one runtime and the error context for one registry operation.
struct Session<'a> {
    client: Client,
    runtime: tokio::runtime::Runtime,
    auth: RegistryAuth,
    reference: &'a ImageReference,
    options: TransportOptions,
    credentials: &'a Credentials,
}

impl<'a> Session<'a> {
    fn new(
        reference: &'a ImageReference,
        options: TransportOptions,
        credentials: &'a Credentials,
    ) -> Result<Self, OciError> {
        if options.insecure && !reference.is_loopback() {
            return Err(OciError::InsecureNotLoopback {
                registry: reference.registry().to_owned(),
            });
        }
        // reqwest is built without a bundled crypto provider (rustls-tls-no-provider) so that
        // only ring is compiled; it has to be installed once per process. A second install fails
        // harmlessly when another part of the process got there first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| OciError::Internal(format!("cannot start the async runtime: {e}")))?;
        let config = ClientConfig {
            protocol: if options.insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: concat!("sticky-canary/", env!("CARGO_PKG_VERSION")),
            // An image index would mean someone else's multi-platform image, never ours.
            platform_resolver: None,
            ..ClientConfig::default()
        };
        // `Client::new` would fall back to a default client (HTTPS, no timeouts) on error: refuse instead.
        let client = Client::try_from(config)
            .map_err(|e| OciError::Internal(format!("cannot set up the registry client: {}", error_chain(&e))))?;
        Ok(Self {
            client,
            runtime,
            auth: credentials.registry_auth(),
            reference,
            options,
            credentials,
        })
    }

    async fn authenticate(&self, target: &Reference, operation: RegistryOperation) -> Result<(), OciError> {
        self.client
            .auth(target, &self.auth, operation)
            .await
            .map(|_| ())
            .map_err(|e| self.classify(e))
    }

    /// Turns a client error into one that says what went wrong with which registry, and what to try.
    fn classify(&self, error: OciDistributionError) -> OciError {
        let registry = self.reference.registry().to_owned();
        let denied = matches!(
            error,
            OciDistributionError::AuthenticationFailure(_) | OciDistributionError::UnauthorizedError { .. }
        ) || answered(&error, &[401, 403], &[OciErrorCode::Unauthorized, OciErrorCode::Denied]);
        if denied {
            return match self.credentials.source() {
                CredentialSource::Anonymous => OciError::CredentialsRequired {
                    registry,
                    detail: error_chain(&error),
                },
                source => OciError::AuthRefused {
                    registry,
                    source: source.clone(),
                    detail: error_chain(&error),
                },
            };
        }
        let missing = matches!(error, OciDistributionError::ImageManifestNotFoundError(_))
            || answered(
                &error,
                &[404],
                &[OciErrorCode::ManifestUnknown, OciErrorCode::NameUnknown],
            );
        if missing {
            return OciError::NotFound {
                reference: self.reference.url(),
                detail: error_chain(&error),
            };
        }
        if let OciDistributionError::RequestError(request) = &error {
            if request.is_connect() || request.is_timeout() {
                let hint = if self.reference.is_loopback() && !self.options.insecure {
                    "; a registry on localhost usually serves plain HTTP: add --insecure"
                } else if self.options.insecure {
                    "; is the registry running, and on that port?"
                } else {
                    "; check the host name, the network and that the registry speaks HTTPS"
                };
                return OciError::Unreachable {
                    registry,
                    detail: format!("{}{hint}", error_chain(&error)),
                };
            }
        }
        OciError::Registry {
            registry,
            detail: error_chain(&error),
        }
    }
}

/// Whether the registry answered with one of these HTTP statuses or OCI error codes.
fn answered(error: &OciDistributionError, statuses: &[u16], codes: &[OciErrorCode]) -> bool {
    match error {
        OciDistributionError::ServerError { code, .. } => statuses.contains(code),
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| codes.contains(&e.code)),
        _ => false,
    }
}

/// An error with all its causes, since reqwest's own message omits the one that matters
/// ("connection refused", "invalid certificate"...).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tagged_references() {
        let r = ImageReference::parse("oci://myacr.azurecr.io/filters/sticky-canary:1.2.3").unwrap();
        assert_eq!(r.registry(), "myacr.azurecr.io");
        assert_eq!(r.repository(), "filters/sticky-canary");
        assert_eq!(r.tag(), Some("1.2.3"));
        assert_eq!(r.url(), "oci://myacr.azurecr.io/filters/sticky-canary:1.2.3");
        assert!(!r.is_loopback());
    }

    #[test]
    fn parses_ports_and_loopback() {
        for (text, loopback) in [
            ("oci://localhost:5000/a:1", true),
            ("127.0.0.1:5000/a:1", true),
            ("oci://[::1]:5000/a:1", true),
            ("oci://localhost/a:1", true),
            ("oci://127.0.0.2:5000/a:1", false),
            ("oci://registry.example:443/a:1", false),
        ] {
            let r = ImageReference::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(r.is_loopback(), loopback, "{text}");
            assert_eq!(r.tag(), Some("1"), "{text}");
        }
    }

    #[test]
    fn parses_digests() {
        let hex = "a".repeat(64);
        let r = ImageReference::parse(&format!("oci://r.example/a@sha256:{hex}")).unwrap();
        assert_eq!(r.digest().map(Digest::hex), Some(hex.as_str()));
        assert_eq!(r.url(), format!("oci://r.example/a@sha256:{hex}"));
    }

    #[test]
    fn refuses_bad_references_with_the_reason() {
        for (text, needle) in [
            ("oci://sticky-canary:1.0", "REGISTRY/REPOSITORY"),
            ("oci://library/sticky-canary:1.0", "not a registry host"),
            ("oci://r.example/Sticky:1.0", "lowercase"),
            ("oci://r.example/a:-bad", "must start"),
            ("oci://r.example/a:bad!tag", "may hold only"),
            ("oci://r.example/a:", "is empty"),
            ("oci://r.example/a//b:1", "empty path component"),
            ("oci://r.example/a@sha256:abc", "digest"),
            ("oci://r.example:port/a:1", "port"),
            ("https://r.example/a:1", "only oci://"),
        ] {
            let error = ImageReference::parse(text).expect_err(text).to_string();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn insecure_is_refused_for_remote_registries() {
        let r = ImageReference::parse("oci://myacr.azurecr.io/a:1").unwrap();
        let credentials = Credentials::anonymous();
        let error = push_with(
            &r,
            b"\0asm\x01\0\0\0",
            TransportOptions { insecure: true },
            &credentials,
        )
        .unwrap_err();
        assert!(matches!(error, OciError::InsecureNotLoopback { .. }), "{error}");
        assert!(error.to_string().contains("localhost"), "{error}");
    }

    #[test]
    fn push_needs_a_tag() {
        let r = ImageReference::parse("oci://localhost:5000/a").unwrap();
        let error = push_with(
            &r,
            b"\0asm\x01\0\0\0",
            TransportOptions::default(),
            &Credentials::anonymous(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("needs a tag"), "{error}");
    }

    #[test]
    fn pin_uses_the_bare_hex_of_the_manifest_digest() {
        let wasm = b"\0asm\x01\0\0\0";
        let pinned = pin_for_wasm("oci://r.example/a:1", wasm).unwrap();
        let digest = WasmImage::from_wasm(wasm).unwrap().digest();
        assert_eq!(pinned.sha256, digest.hex());
        assert_eq!(pinned.sha256.len(), 64);
        assert_ne!(
            pinned.sha256,
            crate::sha256_hex(wasm),
            "the manifest digest, not the module's hash"
        );
        let hex = "b".repeat(64);
        let given = pin_for_wasm(&format!("oci://r.example/a@sha256:{hex}"), wasm).unwrap();
        assert_eq!(given.sha256, hex);
    }
}
