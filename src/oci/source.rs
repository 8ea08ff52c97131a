//! Where registry credentials can come from: our environment variables, a Docker config, a
//! credential helper, or nowhere; named in messages and errors.

use std::fmt;
use std::path::PathBuf;

/// Environment variable holding the registry user name (wins over the Docker config).
pub const USERNAME_VARIABLE: &str = "STICKY_CANARY_REGISTRY_USERNAME";
/// Environment variable holding the registry password or token.
pub const PASSWORD_VARIABLE: &str = "STICKY_CANARY_REGISTRY_PASSWORD";

/// Where a set of credentials came from, for messages ("refused the credentials from ...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `STICKY_CANARY_REGISTRY_USERNAME` / `STICKY_CANARY_REGISTRY_PASSWORD`.
    Environment,
    /// An `auths` entry of this Docker config file.
    DockerConfig(PathBuf),
    /// `docker-credential-NAME get`, named by the Docker config.
    CredentialHelper(String),
    /// Nothing found: anonymous access.
    Anonymous,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => write!(f, "the environment ({USERNAME_VARIABLE}/{PASSWORD_VARIABLE})"),
            Self::DockerConfig(path) => write!(f, "the Docker config {}", path.display()),
            Self::CredentialHelper(name) => write!(f, "the credential helper docker-credential-{name}"),
            Self::Anonymous => f.write_str("nowhere (anonymous)"),
        }
    }
}
