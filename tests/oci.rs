#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! `sticky-canary push` against a real registry on loopback: Debian's `docker-registry` (the CNCF
//! distribution registry), started per test with its own storage dir and port, killed on drop.
//!
//! Each push is checked the way Istio reads it: the printed digest is the one the registry serves
//! (`Docker-Content-Digest`), and the manifest fetched by that digest has a last layer of type
//! `application/vnd.oci.image.layer.v1.tar+gzip` whose `plugin.wasm` is byte-for-byte the embedded filter.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine;
use sticky_canary::oci::{self, CredentialSource, Credentials, ImageReference, TransportOptions};
use sticky_canary_harness as harness;

const USER: &str = "canary";
const PASSWORD: &str = "s3cret-Passw0rd";

/// The shared harness registry (Debian's `docker-registry` on loopback), optionally with htpasswd auth.
struct Registry {
    inner: harness::Registry,
    port: u16,
    /// Holds the htpasswd file while the registry runs.
    _auth: Option<tempfile::TempDir>,
}

impl Registry {
    fn start() -> Self {
        let inner = harness::Registry::start().unwrap_or_else(|e| panic!("{e}"));
        let port = inner.port();
        Self {
            inner,
            port,
            _auth: None,
        }
    }

    fn start_with_htpasswd() -> Self {
        // The registry reads bcrypt entries only.
        let hash = bcrypt::hash_with_result(PASSWORD, 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let auth = tempfile::tempdir().unwrap();
        let htpasswd = auth.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{USER}:{hash}\n")).unwrap();
        let inner = harness::Registry::start_with_config(&format!(
            "auth:\n  htpasswd:\n    realm: sticky-canary-test\n    path: {}\n",
            htpasswd.display()
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let port = inner.port();
        Self {
            inner,
            port,
            _auth: Some(auth),
        }
    }

    fn host(&self) -> String {
        self.inner.host()
    }

    fn log_tail(&self) -> String {
        self.inner.log_tail()
    }
}

/// One request to the registry through the harness's raw HTTP client, not the OCI code under test.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
) -> Result<harness::Response, harness::HarnessError> {
    let mut request = harness::Request::get(path)
        .method(method)
        .host(&format!("127.0.0.1:{port}"));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    harness::Client::connect(SocketAddr::from(([127, 0, 0, 1], port)))?.send(&request)
}

fn basic(user: &str, password: &str) -> (&'static str, String) {
    (
        "Authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ),
    )
}

const ACCEPT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Runs the built CLI with no ambient credentials: an empty Docker config dir unless given one.
fn cli(args: &[&str], docker_config: Option<&Path>, env: &[(&str, &str)]) -> Output {
    let empty = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sticky-canary"));
    command
        .args(args)
        .env("DOCKER_CONFIG", docker_config.unwrap_or(empty.path()))
        .env_remove(oci::USERNAME_VARIABLE)
        .env_remove(oci::PASSWORD_VARIABLE)
        .env("NO_PROXY", "127.0.0.1,localhost,::1")
        .env("no_proxy", "127.0.0.1,localhost,::1");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the push succeeded and returns the digest it printed.
fn pushed_digest(output: &Output, registry: &Registry) -> String {
    assert!(
        output.status.success(),
        "push failed: {}\nregistry log:\n{}",
        text(&output.stderr),
        registry.log_tail()
    );
    let stdout = text(&output.stdout);
    let digest = stdout.trim().to_owned();
    assert!(
        oci::Digest::parse(&digest).is_ok(),
        "stdout should be just the digest, got {stdout:?}"
    );
    digest
}

fn assert_fails_with(output: &Output, needles: &[&str]) {
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success(),
        "expected a failure, got success; stderr: {stderr}"
    );
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "stderr should mention {needle:?}: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.contains(PASSWORD),
        "the password leaked into the message: {stderr}"
    );
}

/// Checks, with plain HTTP and no OCI crate, what Istio's fetcher checks: the served digest, the
/// manifest bytes behind it, the last layer's media type, and `plugin.wasm` in that layer.
fn assert_istio_can_read(registry: &Registry, repository: &str, tag: &str, digest: &str, auth: &[(&str, String)]) {
    let mut headers = vec![("Accept", ACCEPT_OCI_MANIFEST.to_owned())];
    headers.extend(auth.iter().cloned());
    let head = http(
        registry.port,
        "HEAD",
        &format!("/v2/{repository}/manifests/{tag}"),
        &headers,
    )
    .unwrap();
    assert_eq!(head.status, 200, "HEAD manifest by tag:\n{}", registry.log_tail());
    assert_eq!(
        head.header("Docker-Content-Digest"),
        Some(digest.as_bytes()),
        "the printed digest is the registry's"
    );

    let get = http(
        registry.port,
        "GET",
        &format!("/v2/{repository}/manifests/{digest}"),
        &headers,
    )
    .unwrap();
    assert_eq!(get.status, 200, "GET manifest by digest:\n{}", registry.log_tail());
    assert_eq!(format!("sha256:{}", sticky_canary::sha256_hex(&get.body)), digest);
    let manifest: serde_json::Value = serde_json::from_slice(&get.body).unwrap();
    assert_eq!(
        manifest["mediaType"], ACCEPT_OCI_MANIFEST,
        "not a Docker manifest: Istio takes the OCI path"
    );
    let layers = manifest["layers"].as_array().unwrap();
    let last = layers.last().unwrap();
    assert_eq!(last["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    let layer_digest = last["digest"].as_str().unwrap();
    let blob = http(
        registry.port,
        "GET",
        &format!("/v2/{repository}/blobs/{layer_digest}"),
        auth,
    )
    .unwrap();
    // The registry may redirect blob downloads; the filesystem driver serves them directly.
    assert_eq!(blob.status, 200, "GET layer blob:\n{}", registry.log_tail());
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob.body.as_slice()));
    let mut found = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().file_name().is_some_and(|n| n == "plugin.wasm") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            found = Some(bytes);
        }
    }
    assert!(
        found.as_deref() == Some(sticky_canary::FILTER_WASM),
        "plugin.wasm in the last layer is the embedded filter"
    );
}

#[test]
fn push_prints_the_manifest_digest_and_the_image_pulls_back_byte_for_byte() {
    let registry = Registry::start();
    let url = format!("oci://{}/filters/sticky-canary:0.1.0", registry.host());
    let output = cli(&["push", &url, "--insecure"], None, &[]);
    let digest = pushed_digest(&output, &registry);
    let stderr = text(&output.stderr);
    let hex = digest.trim_start_matches("sha256:");
    assert!(
        stderr.contains(&format!("sha256: {hex}")),
        "the WasmPlugin hint holds the bare hex: {stderr}"
    );
    assert_ne!(
        hex,
        sticky_canary::sha256_hex(sticky_canary::FILTER_WASM),
        "manifest digest, not the module hash"
    );

    assert_istio_can_read(&registry, "filters/sticky-canary", "0.1.0", &digest, &[]);

    // Pull back by digest with the OCI client crate.
    let by_digest = ImageReference::parse(&url)
        .unwrap()
        .with_digest(oci::Digest::parse(&digest).unwrap());
    let pulled = oci::pull_wasm_with(
        &by_digest,
        TransportOptions { insecure: true },
        &Credentials::anonymous(),
    )
    .unwrap();
    assert_eq!(pulled.digest.to_string(), digest);
    assert!(
        pulled.wasm == sticky_canary::FILTER_WASM,
        "pulled wasm differs from the embedded filter"
    );

    // `render` can pin the same digest offline.
    let pinned = oci::pin_for_wasm(&url, sticky_canary::FILTER_WASM).unwrap();
    assert_eq!(pinned.sha256, hex);
    assert_eq!(pinned.url, url);

    // Pushing again gives the same digest (nothing time- or host-dependent in the image).
    let again = cli(
        &[
            "push",
            &format!("oci://localhost:{}/filters/sticky-canary:0.1.1", registry.port),
            "--insecure",
        ],
        None,
        &[],
    );
    assert_eq!(pushed_digest(&again, &registry), digest);
}

#[test]
fn credentials_from_the_environment_the_docker_config_and_a_helper_are_used() {
    let registry = Registry::start_with_htpasswd();
    let auth = [basic(USER, PASSWORD)];

    // Environment variables.
    let url = format!("oci://{}/sticky-canary:env", registry.host());
    let output = cli(
        &["push", &url, "--insecure"],
        None,
        &[(oci::USERNAME_VARIABLE, USER), (oci::PASSWORD_VARIABLE, PASSWORD)],
    );
    let digest = pushed_digest(&output, &registry);
    assert!(
        text(&output.stderr).contains("credentials from the environment"),
        "{}",
        text(&output.stderr)
    );
    assert_istio_can_read(&registry, "sticky-canary", "env", &digest, &auth);

    // Docker config, base64 `auth`.
    let docker = tempfile::tempdir().unwrap();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(
        docker.path().join("config.json"),
        format!(
            r#"{{"auths": {{"http://{}": {{"auth": "{token}"}}, "other.example": {{"auth": "eDp5"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let url = format!("oci://{}/sticky-canary:docker-config", registry.host());
    let output = cli(&["push", &url, "--insecure"], Some(docker.path()), &[]);
    assert_eq!(pushed_digest(&output, &registry), digest);
    assert!(
        text(&output.stderr).contains("credentials from the Docker config"),
        "{}",
        text(&output.stderr)
    );

    // A credential helper named by `credsStore`.
    let helper_dir = tempfile::tempdir().unwrap();
    let helper = helper_dir.path().join("docker-credential-sticky-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread registry\n[ \"$1\" = get ] || exit 2\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$registry\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let docker = tempfile::tempdir().unwrap();
    std::fs::write(docker.path().join("config.json"), r#"{"credsStore": "sticky-test"}"#).unwrap();
    let path = format!(
        "{}:{}",
        helper_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let url = format!("oci://{}/sticky-canary:helper", registry.host());
    let output = cli(&["push", &url, "--insecure"], Some(docker.path()), &[("PATH", &path)]);
    assert_eq!(pushed_digest(&output, &registry), digest);
    assert!(
        text(&output.stderr).contains("docker-credential-sticky-test"),
        "{}",
        text(&output.stderr)
    );

    // Pull back by digest with credentials.
    let by_digest = ImageReference::parse(&url)
        .unwrap()
        .with_digest(oci::Digest::parse(&digest).unwrap());
    let login = Credentials::basic(USER, PASSWORD, CredentialSource::Environment);
    let pulled = oci::pull_wasm_with(&by_digest, TransportOptions { insecure: true }, &login).unwrap();
    assert!(pulled.wasm == sticky_canary::FILTER_WASM);
}

#[test]
fn refused_or_missing_credentials_fail_clearly() {
    let registry = Registry::start_with_htpasswd();
    let url = format!("oci://{}/sticky-canary:denied", registry.host());

    let wrong = cli(
        &["push", &url, "--insecure"],
        None,
        &[
            (oci::USERNAME_VARIABLE, USER),
            (oci::PASSWORD_VARIABLE, "not-the-password"),
        ],
    );
    assert_fails_with(
        &wrong,
        &[
            "refused the credentials",
            "STICKY_CANARY_REGISTRY_USERNAME",
            &registry.host(),
        ],
    );

    let anonymous = cli(&["push", &url, "--insecure"], None, &[]);
    assert_fails_with(&anonymous, &["requires credentials", "az acr login", &registry.host()]);

    let half = cli(&["push", &url, "--insecure"], None, &[(oci::USERNAME_VARIABLE, USER)]);
    assert_fails_with(
        &half,
        &["STICKY_CANARY_REGISTRY_USERNAME is set but STICKY_CANARY_REGISTRY_PASSWORD is not"],
    );

    // Nothing was stored.
    let tags = http(
        registry.port,
        "GET",
        "/v2/sticky-canary/tags/list",
        &[basic(USER, PASSWORD)],
    )
    .unwrap();
    assert_eq!(tags.status, 404, "{}", text(&tags.body));
}

#[test]
fn a_wrong_reference_fails_before_touching_the_registry() {
    let registry = Registry::start();
    let host = registry.host();
    for (reference, needles) in [
        (
            format!("oci://{host}/sticky-canary:bad!tag"),
            vec!["tag \"bad!tag\"", "may hold only"],
        ),
        (format!("oci://{host}/sticky-canary:-dash"), vec!["must start"]),
        (format!("oci://{host}/sticky-canary"), vec!["needs a tag"]),
        (format!("oci://{host}/Sticky-Canary:1"), vec!["lowercase"]),
        ("oci://sticky-canary:1".to_owned(), vec!["REGISTRY/REPOSITORY"]),
    ] {
        let output = cli(&["push", &reference, "--insecure"], None, &[]);
        assert_fails_with(&output, &needles);
    }
    let catalog = http(registry.port, "GET", "/v2/_catalog", &[]).unwrap();
    assert_eq!(text(&catalog.body).trim(), r#"{"repositories":[]}"#);

    // A tag that does not exist: pulling it says so.
    let missing = ImageReference::parse(&format!("oci://{host}/sticky-canary:no-such-tag")).unwrap();
    let error =
        oci::pull_wasm_with(&missing, TransportOptions { insecure: true }, &Credentials::anonymous()).unwrap_err();
    assert!(error.to_string().contains("not found"), "{error}");
}

#[test]
fn an_unreachable_registry_fails_clearly() {
    let port = harness::free_port().unwrap();
    let output = cli(
        &["push", &format!("oci://127.0.0.1:{port}/sticky-canary:1"), "--insecure"],
        None,
        &[],
    );
    assert_fails_with(&output, &["cannot reach registry 127.0.0.1:", "refused"]);
}

#[test]
fn plain_http_needs_insecure_and_insecure_needs_loopback() {
    let registry = Registry::start();
    let output = cli(
        &["push", &format!("oci://{}/sticky-canary:1", registry.host())],
        None,
        &[],
    );
    assert_fails_with(&output, &["cannot reach registry", "--insecure"]);

    let output = cli(
        &["push", "oci://registry.example.com/sticky-canary:1", "--insecure"],
        None,
        &[],
    );
    assert_fails_with(
        &output,
        &["--insecure", "only for a registry on localhost", "registry.example.com"],
    );
}
