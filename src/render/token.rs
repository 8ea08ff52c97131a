//! Routing tokens: unguessable, stable across renders, derived from a key that never enters a spec.
//!
//! The VirtualServices `render` writes route to a canary only when the request carries the
//! routing token the gateway filter sets, so a client that sends the routing header itself
//! (while the filter is skipped, FAIL_OPEN) lands on stable. A token is only as good as it is
//! secret, so it is an HMAC-SHA256 keyed by a 256-bit key from a CSPRNG (`sticky-canary
//! token-key --out FILE`), over the app name, the token's purpose and a rotation generation.
//! The key lives outside the spec (a file named by `--token-key` or
//! `STICKY_CANARY_TOKEN_KEY_FILE`): the same key and spec give byte-identical output (GitOps),
//! and nobody can derive a token from the spec or the app's public facts.
//!
//! ```
//! use sticky_canary::render::token::{TokenKey, Tokens, Purpose};
//! let key = TokenKey::parse(&"ab".repeat(32)).unwrap();
//! let tokens = Tokens::Key(key);
//! let a = tokens.token(Purpose::Gateway, "my-app", 1);
//! assert_eq!(a.len(), 32);
//! assert_eq!(a, tokens.token(Purpose::Gateway, "my-app", 1));  // stable across renders
//! assert_ne!(a, tokens.token(Purpose::Gateway, "my-app", 2));  // a new generation: a new token
//! assert_ne!(a, tokens.token(Purpose::Mesh, "my-app", 1));     // the mesh hop has its own
//! assert!(TokenKey::parse("abcd").unwrap_err().to_string().contains("64 hex digits"));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why there is no usable key.
#[derive(Debug)]
pub enum TokenError {
    /// The operating system gave no randomness for a new key.
    NoRandomness(String),
    /// The key text is not hex digits.
    NotHex,
    /// The key has fewer than 64 hex digits (this many).
    TooShort(usize),
    /// A key file could not be read.
    Read { path: PathBuf, source: std::io::Error },
    /// A key file holds no valid key.
    InFile { path: PathBuf, error: Box<TokenError> },
    /// `token-key --out` names a file that exists: a new key would change every token.
    Exists(PathBuf),
    /// A new key file could not be created.
    Create { path: PathBuf, source: std::io::Error },
    /// A new key file could not be written.
    Write { path: PathBuf, source: std::io::Error },
    /// Neither `--token-key` nor the environment variable names a key.
    NoKey,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let make_one = || {
            format!(
                "a token key is at least {} hex digits ({KEY_BYTES} bytes from a CSPRNG); create one with `sticky-canary token-key --out FILE`",
                KEY_BYTES * 2
            )
        };
        match self {
            TokenError::NoRandomness(e) => write!(f, "no randomness from the operating system: {e}"),
            TokenError::NotHex => write!(f, "not hex digits: {}", make_one()),
            TokenError::TooShort(digits) => write!(f, "{digits} hex digits is too short: {}", make_one()),
            TokenError::Read { path, source } => write!(f, "token key {}: cannot read: {source}", path.display()),
            TokenError::InFile { path, error } => write!(f, "token key {}: {error}", path.display()),
            TokenError::Exists(path) => write!(
                f,
                "{}: already exists; a new key changes every routing token, so it is never overwritten (remove it first if you mean it)",
                path.display()
            ),
            TokenError::Create { path, source } => write!(f, "{}: cannot create: {source}", path.display()),
            TokenError::Write { path, source } => write!(f, "{}: cannot write: {source}", path.display()),
            TokenError::NoKey => write!(
                f,
                "render needs the routing-token key, which never goes into a spec (a token derived from public facts can be guessed).\n\
                 Create one once:   sticky-canary token-key --out ~/.config/sticky-canary/token.key\n\
                 then pass it:      --token-key FILE   or   {KEY_FILE_ENV}=FILE\n\
                 Keep the file out of git (CI secret store, Kubernetes Secret); the same key gives the same manifests."
            ),
        }
    }
}

impl std::error::Error for TokenError {}

/// The CLI prints errors as text.
impl From<TokenError> for String {
    fn from(error: TokenError) -> String {
        error.to_string()
    }
}

/// Bytes of key material: 256 bits, the HMAC-SHA256 block's natural key size.
pub const KEY_BYTES: usize = 32;
/// The environment variable naming the key file when `--token-key` is not given.
pub const KEY_FILE_ENV: &str = "STICKY_CANARY_TOKEN_KEY_FILE";

/// What a token protects; each purpose gets an independent token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Set by the gateway filter, required by the gateway VirtualService, removed there.
    Gateway,
    /// Set by the gateway VirtualService on canary routes, required by dependent services' mesh routes.
    Mesh,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Gateway => "gateway",
            Purpose::Mesh => "mesh",
        }
    }
}

/// A routing-token key: at least 256 bits.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<TokenKey, TokenError> {
        let mut bytes = vec![0u8; KEY_BYTES];
        getrandom::getrandom(&mut bytes).map_err(|e| TokenError::NoRandomness(e.to_string()))?;
        Ok(TokenKey(bytes))
    }

    /// Reads a key file: hex digits (at least 64), `#` comment lines and white space ignored.
    pub fn parse(text: &str) -> Result<TokenKey, TokenError> {
        let digits: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(str::chars)
            .filter(|c| !c.is_whitespace())
            .collect();
        if !digits.len().is_multiple_of(2) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::NotHex);
        }
        if digits.len() < KEY_BYTES * 2 {
            return Err(TokenError::TooShort(digits.len()));
        }
        let bytes = (0..digits.len())
            .step_by(2)
            .filter_map(|i| digits.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        Ok(TokenKey(bytes))
    }

    /// Reads a key file (see [`TokenKey::parse`]).
    pub fn from_file(path: &Path) -> Result<TokenKey, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        TokenKey::parse(&text).map_err(|error| TokenError::InFile {
            path: path.to_owned(),
            error: Box::new(error),
        })
    }

    /// The key file's text: a comment saying what it is, then the key in hex.
    pub fn file_text(&self) -> String {
        let hex = hex::encode(&self.0);
        format!(
            "# sticky-canary routing-token key (created by `sticky-canary token-key`).\n\
             # Whoever holds it can compute every app's routing tokens: keep it out of git, in your\n\
             # CI's secret store or a Kubernetes Secret. Losing it changes every token at the next render.\n\
             {hex}\n"
        )
    }
}

/// Where tokens come from: a key, or visibly fake example values (the committed golden manifests).
#[derive(Debug, Clone)]
pub enum Tokens {
    Key(TokenKey),
    /// A key replacement in progress: the filter sends the first key's tokens, the
    /// VirtualServices also accept the others' (`render --also-accept-key`).
    Rotating(TokenKey, Vec<TokenKey>),
    /// `EXAMPLE-NOT-SECRET-...`: what the repository's own `manifests/` carries, since any token
    /// committed to a public repository is public. Never produced by the CLI.
    Example,
}

impl Tokens {
    /// The token for `app`'s `purpose` at rotation `generation`: 32 hex digits (128 bits).
    pub fn token(&self, purpose: Purpose, app: &str, generation: u32) -> String {
        match self {
            Tokens::Example => format!("EXAMPLE-NOT-SECRET-{}-{app}-{generation}", purpose.label()),
            Tokens::Key(key) | Tokens::Rotating(key, _) => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key.0) else {
                    // HMAC takes keys of any length; this branch cannot run.
                    return String::new();
                };
                // NUL-separated: no app name or label can run into the next field.
                mac.update(b"sticky-canary routing token v1\0");
                mac.update(purpose.label().as_bytes());
                mac.update(b"\0");
                mac.update(app.as_bytes());
                mac.update(b"\0");
                mac.update(generation.to_string().as_bytes());
                let digest: [u8; 32] = mac.finalize().into_bytes().into();
                // The first 16 bytes of the HMAC-SHA256.
                let (half, _) = digest.split_at(16);
                hex::encode(half)
            }
        }
    }
}

impl Tokens {
    /// Every token a VirtualService accepts for `app`'s `purpose`: the generations in order
    /// (the one the filter sends first), each under the current key and then under the keys
    /// of a replacement in progress.
    pub fn accepted(&self, purpose: Purpose, app: &str, generations: &[u32]) -> Vec<String> {
        let mut out = Vec::new();
        for generation in generations {
            let mut push = |token: String| {
                if !out.contains(&token) {
                    out.push(token);
                }
            };
            push(self.token(purpose, app, *generation));
            if let Tokens::Rotating(_, others) = self {
                for key in others {
                    push(Tokens::Key(key.clone()).token(purpose, app, *generation));
                }
            }
        }
        out
    }
}

/// Writes a new key file, refusing to replace an existing one (that would change every token).
/// The file is created readable by its owner only.
pub fn write_new_key(path: &Path) -> Result<(), TokenError> {
    use std::io::Write as _;
    let key = TokenKey::generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => TokenError::Exists(path.to_owned()),
        _ => TokenError::Create {
            path: path.to_owned(),
            source,
        },
    })?;
    file.write_all(key.file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| TokenError::Write {
            path: path.to_owned(),
            source,
        })
}

/// The tokens for the CLI: the key of [`key_from_cli`], and the keys `--also-accept-key` names
/// while a key is being replaced.
pub fn tokens_from_cli(flag: Option<&Path>, also_accept: &[PathBuf]) -> Result<Tokens, TokenError> {
    let key = key_from_cli(flag)?;
    if also_accept.is_empty() {
        return Ok(Tokens::Key(key));
    }
    let others = also_accept
        .iter()
        .map(|p| TokenKey::from_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Tokens::Rotating(key, others))
}

/// The key for the CLI: `--token-key FILE`, else `$STICKY_CANARY_TOKEN_KEY_FILE`, else an error
/// saying how to make one.
pub fn key_from_cli(flag: Option<&Path>) -> Result<TokenKey, TokenError> {
    let from_env = std::env::var_os(KEY_FILE_ENV).filter(|v| !v.is_empty());
    match (flag, from_env) {
        (Some(path), _) => TokenKey::from_file(path),
        (None, Some(path)) => TokenKey::from_file(Path::new(&path)),
        (None, None) => Err(TokenError::NoKey),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // HMAC-SHA256(key = 0x00..0x1f, "sticky-canary routing token v1\0gateway\0my-app\01"), first 16 bytes;
        // computed independently with Python's hmac module.
        let key = TokenKey((0u8..32).collect());
        assert_eq!(Tokens::Key(key).token(Purpose::Gateway, "my-app", 1), KNOWN_ANSWER);
    }

    const KNOWN_ANSWER: &str = "b6ee4308f1c06811b3e1ef65de47109d";

    #[test]
    fn key_files_round_trip_and_bad_ones_are_refused() {
        let key = TokenKey::generate().unwrap();
        assert_eq!(TokenKey::parse(&key.file_text()).unwrap(), key);
        assert_ne!(TokenKey::generate().unwrap(), key);
        assert!(TokenKey::parse(&"a".repeat(62))
            .unwrap_err()
            .to_string()
            .contains("too short"));
        assert!(TokenKey::parse(&"g".repeat(64))
            .unwrap_err()
            .to_string()
            .contains("not hex"));
        assert!(TokenKey::parse("").is_err());
    }

    #[test]
    fn apps_get_different_tokens() {
        let tokens = Tokens::Key(TokenKey(vec![7; 32]));
        assert_ne!(
            tokens.token(Purpose::Gateway, "a", 1),
            tokens.token(Purpose::Gateway, "b", 1)
        );
        // The separator keeps ("a-1", 1) and ("a", 11)-like collisions apart.
        assert_ne!(
            tokens.token(Purpose::Gateway, "a1", 1),
            tokens.token(Purpose::Gateway, "a", 11)
        );
    }
}
