//! Talking to the registry: `push` the filter image and pull it back the way Istio reads it.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::credentials::Credentials;
use super::digest::Digest;
use super::error::OciError;
use super::image::{self, extract_plugin_wasm, WasmImage};
use super::reference::ImageReference;
use super::source::CredentialSource;

/// How long to wait for a TCP connection to the registry before calling it unreachable.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a single read from the registry may stall.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// How to talk to the registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransportOptions {
    /// Plain HTTP; only accepted for a registry on localhost, 127.0.0.1 or `[::1]`.
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
