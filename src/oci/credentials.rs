//! Registry credentials for `push`: from our environment variables, else from the Docker config
//! (credential helpers, then inline `auths`), else anonymous.
//!
//! ```
//! use sticky_canary::oci::{CredentialSource, Credentials};
//!
//! let config = br#"{"auths": {"myacr.azurecr.io": {"auth": "dXNlcjpzZWNyZXQ="}}}"#;
//! let found = Credentials::from_docker_config(config, "config.json".as_ref(), "myacr.azurecr.io").unwrap();
//! assert!(matches!(found.source(), CredentialSource::DockerConfig(_)));
//! assert_eq!(found.username(), Some("user"));
//! ```
//!
//! Secrets are never part of an error message or of `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::error::OciError;
use super::source::{CredentialSource, PASSWORD_VARIABLE, USERNAME_VARIABLE};

/// The user name ACR (and Docker) pair with an identity (refresh) token.
const TOKEN_USERNAME: &str = "00000000-0000-0000-0000-000000000000";

/// Credentials for one registry.
#[derive(Clone)]
pub struct Credentials {
    login: Option<(String, String)>,
    source: CredentialSource,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username())
            .field("password", &self.login.as_ref().map(|_| "<redacted>"))
            .field("source", &self.source)
            .finish()
    }
}

impl Credentials {
    /// No credentials.
    pub fn anonymous() -> Self {
        Self {
            login: None,
            source: CredentialSource::Anonymous,
        }
    }

    /// A user name and password (or token) given directly.
    pub fn basic(username: impl Into<String>, password: impl Into<String>, source: CredentialSource) -> Self {
        Self {
            login: Some((username.into(), password.into())),
            source,
        }
    }

    /// The credentials for `registry` (`host[:port]`): the environment variables when set, else the
    /// Docker config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), else anonymous.
    pub fn for_registry(registry: &str) -> Result<Self, OciError> {
        let username = std::env::var(USERNAME_VARIABLE).ok().filter(|v| !v.is_empty());
        let password = std::env::var(PASSWORD_VARIABLE).ok().filter(|v| !v.is_empty());
        match (username, password) {
            (Some(username), Some(password)) => {
                return Ok(Self::basic(username, password, CredentialSource::Environment))
            }
            (Some(_), None) => {
                return Err(OciError::Credentials(format!(
                    "{USERNAME_VARIABLE} is set but {PASSWORD_VARIABLE} is not"
                )))
            }
            (None, Some(_)) => {
                return Err(OciError::Credentials(format!(
                    "{PASSWORD_VARIABLE} is set but {USERNAME_VARIABLE} is not"
                )))
            }
            (None, None) => {}
        }
        let Some(path) = docker_config_path() else {
            return Ok(Self::anonymous());
        };
        match std::fs::read(&path) {
            Ok(bytes) => Self::from_docker_config(&bytes, &path, registry),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::anonymous()),
            Err(e) => Err(OciError::Credentials(format!(
                "{}: cannot read the Docker config: {e}",
                path.display()
            ))),
        }
    }

    /// The credentials a Docker config (`config.json` bytes, read from `path`) holds for `registry`:
    /// `credHelpers[registry]`, else `credsStore`, else `auths[registry]`, else anonymous.
    pub fn from_docker_config(bytes: &[u8], path: &Path, registry: &str) -> Result<Self, OciError> {
        let config: DockerConfig = serde_json::from_slice(bytes)
            .map_err(|e| OciError::Credentials(format!("{}: not a valid Docker config: {e}", path.display())))?;
        let helper = config
            .cred_helpers
            .iter()
            .find(|(key, _)| registry_key_matches(key, registry))
            .map(|(_, helper)| helper)
            .or(config.creds_store.as_ref())
            .filter(|helper| !helper.is_empty());
        if let Some(helper) = helper {
            if let Some(found) = run_helper(helper, registry)? {
                return Ok(found);
            }
        }
        let Some(entry) = config
            .auths
            .iter()
            .find(|(key, _)| registry_key_matches(key, registry))
            .map(|(_, e)| e)
        else {
            return Ok(Self::anonymous());
        };
        let source = CredentialSource::DockerConfig(path.to_owned());
        let bad = |what: &str| {
            OciError::Credentials(format!("{}: the auths entry for {registry} has {what}", path.display()))
        };
        let (mut username, mut password) = match (&entry.username, &entry.password, &entry.auth) {
            (Some(username), Some(password), _) if !username.is_empty() => (username.clone(), password.clone()),
            (_, _, Some(auth)) if !auth.is_empty() => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| bad("an `auth` that is not base64"))?;
                let decoded = String::from_utf8(decoded).map_err(|_| bad("an `auth` that is not UTF-8"))?;
                let (username, password) = decoded
                    .split_once(':')
                    .ok_or_else(|| bad("an `auth` without user:password"))?;
                (username.to_owned(), password.to_owned())
            }
            _ => (String::new(), String::new()),
        };
        // `az acr login` leaves an identity token beside an empty password; ACR's token endpoint
        // accepts it as the password of the all-zero user.
        if let Some(token) = entry.identity_token.as_ref().filter(|t| !t.is_empty()) {
            if username.is_empty() {
                username = TOKEN_USERNAME.to_owned();
            }
            password.clone_from(token);
        }
        if username.is_empty() && password.is_empty() {
            return Ok(Self::anonymous());
        }
        Ok(Self::basic(username, password, source))
    }

    /// The user name, when there is one.
    pub fn username(&self) -> Option<&str> {
        self.login.as_ref().map(|(username, _)| username.as_str())
    }

    /// Where these credentials came from.
    pub fn source(&self) -> &CredentialSource {
        &self.source
    }

    pub(crate) fn registry_auth(&self) -> RegistryAuth {
        match &self.login {
            Some((username, password)) => RegistryAuth::Basic(username.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

/// Docker keys `auths` by host, sometimes written as a URL (`https://host/v1/`).
fn registry_key_matches(key: &str, registry: &str) -> bool {
    let host = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = host.split('/').next().unwrap_or(host);
    host.eq_ignore_ascii_case(registry)
}

/// Runs `docker-credential-HELPER get` (the Docker credential helper protocol). `Ok(None)` when
/// the helper has nothing for this registry.
fn run_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, OciError> {
    let program = format!("docker-credential-{helper}");
    let failed = |what: String| {
        OciError::Credentials(format!(
            "the Docker config names the credential helper {program}, which {what}; \
             set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} to bypass it"
        ))
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("could not be run: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .map_err(|e| failed(format!("could not be given the registry: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(format!("did not finish: {e}")))?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        // The protocol's answer for "nothing stored" (docker-credential-helpers' ErrCredentialsNotFound).
        if message.contains("credentials not found") {
            return Ok(None);
        }
        return Err(failed(format!("failed ({}): {message}", output.status)));
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&output.stdout).map_err(|e| failed(format!("gave an answer that is not JSON: {e}")))?;
    let source = CredentialSource::CredentialHelper(helper.to_owned());
    if answer.username == "<token>" {
        return Ok(Some(Credentials::basic(TOKEN_USERNAME, answer.secret, source)));
    }
    Ok(Some(Credentials::basic(answer.username, answer.secret, source)))
}

#[cfg(test)]
mod tests;
