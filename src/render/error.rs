//! What can go wrong in `render` and `set-weight`: one enum, each message naming the file it is
//! about, printed by the CLI as it stands.
//!
//! ```
//! use sticky_canary::render::{self, RenderError};
//! let error = render::load(std::path::Path::new("no-such-spec.yaml")).unwrap_err();
//! assert!(matches!(error, RenderError::Io { .. }));
//! assert!(error.to_string().starts_with("no-such-spec.yaml: cannot read: "));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use super::spec::{SpecErrors, Tool};
use super::weights::WeightError;

/// What was being done to a file or directory when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    List,
    Create,
    Write,
    Remove,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Read => "read",
            Action::List => "list",
            Action::Create => "create",
            Action::Write => "write",
            Action::Remove => "remove",
        })
    }
}

/// Everything `render`, `write` and `set-weight` refuse or fail at.
#[derive(Debug)]
pub enum RenderError {
    /// A file or directory could not be read, listed, created, written or removed.
    Io {
        path: PathBuf,
        action: Action,
        source: std::io::Error,
    },
    /// A spec has problems: every one, with its field path.
    InvalidSpec { path: PathBuf, errors: SpecErrors },
    /// Several specs failed to load (each error names its file).
    Specs(Vec<RenderError>),
    /// A directory given as specs holds no `*.yaml` file.
    NoSpecIn { dir: PathBuf },
    /// No spec was given at all.
    NoSpec,
    /// Specs that cannot be rendered for one gateway together (the same host, different plugin
    /// settings, routes policy-core refuses side by side): each message names the spec files.
    Conflicts(Vec<String>),
    /// One app's plugin would be written over the shared gateway plugin rendered from several
    /// specs in `dir`, dropping the other apps' routes.
    SharedGatewayHere { dir: PathBuf },
    /// `set-weight` on an app whose weights Flagger or Argo Rollouts set.
    ToolOwnsWeights { spec: PathBuf, tool: Tool },
    /// `set-weight`: the weights asked for are not possible.
    Weights(WeightError),
    /// `set-weight`: the weights cannot be edited in the spec's text.
    WeightsInText { spec: PathBuf, reason: WeightError },
    /// `set-weight` or `cutover`: the spec would become invalid, so it was left as it was.
    InvalidAfterEdit { spec: PathBuf, errors: SpecErrors },
    /// `cutover`: the cut-over asked for is not possible (the reason names the flag or field).
    Cutover { spec: PathBuf, reason: String },
}

impl RenderError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, action: Action) -> impl FnOnce(std::io::Error) -> RenderError + '_ {
        move |source| RenderError::Io {
            path: path.to_owned(),
            action,
            source,
        }
    }
}

/// Every problem of a spec on its own line, each after the file's name.
fn spec_lines(f: &mut fmt::Formatter<'_>, path: &Path, errors: &SpecErrors) -> fmt::Result {
    for (i, e) in errors.0.iter().enumerate() {
        if i > 0 {
            f.write_str("\n")?;
        }
        write!(f, "{}: {e}", path.display())?;
    }
    Ok(())
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::Io { path, action, source } => write!(f, "{}: cannot {action}: {source}", path.display()),
            RenderError::InvalidSpec { path, errors } => spec_lines(f, path, errors),
            RenderError::Specs(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
            RenderError::NoSpecIn { dir } => write!(f, "{}: holds no *.yaml spec", dir.display()),
            RenderError::NoSpec => f.write_str("no app spec given"),
            RenderError::Conflicts(lines) => f.write_str(&lines.join("\n")),
            RenderError::SharedGatewayHere { dir } => {
                let dir = dir.display();
                write!(
                    f,
                    "{dir}: holds the shared gateway plugin rendered from several app specs ({gateway}/); rendering one spec \
                     there would replace it with a plugin for this app alone and drop the other apps' routes. Give every spec \
                     (`render apps/ --out {dir}`, `set-weight SPEC VERSION PERCENT --with apps/ --out {dir}`). Nothing was written.",
                    gateway = super::output::GATEWAY_DIR,
                )
            }
            RenderError::ToolOwnsWeights { spec, tool } => write!(
                f,
                "set-weight: {} sets this app's weights ({}: progressive.tool {}); change them through it (docs/progressive-delivery.md)",
                tool.title(),
                spec.display(),
                tool.as_str()
            ),
            RenderError::Weights(e) => write!(f, "set-weight: {e}"),
            RenderError::WeightsInText { spec, reason } => write!(f, "{}: {reason}", spec.display()),
            RenderError::InvalidAfterEdit { spec, errors } => {
                f.write_str("the spec would become invalid, so it was left as it was:\n")?;
                spec_lines(f, spec, errors)
            }
            RenderError::Cutover { spec, reason } => write!(f, "cutover: {}: {reason}", spec.display()),
        }
    }
}

impl std::error::Error for RenderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RenderError::Io { source, .. } => Some(source),
            RenderError::Weights(e) | RenderError::WeightsInText { reason: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// The CLI prints errors as text.
impl From<RenderError> for String {
    fn from(error: RenderError) -> String {
        error.to_string()
    }
}
