//! Writing a render into a directory: only the files that changed, each replaced whole, and
//! the generated files the specs no longer produce removed.

use std::path::{Path, PathBuf};

use super::error::{Action, RenderError};
use super::output::{Rendered, GATEWAY_DIR, GENERATED_MARKER};

/// What `write` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub written: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
}

/// Refuses to write one app's plugin over a shared gateway plugin rendered from several specs
/// (see [`write()`]); `set-weight` asks before it edits the spec.
pub fn check_target(dir: &Path, rendered: &Rendered) -> Result<(), RenderError> {
    let shared_here = dir.join(GATEWAY_DIR).join("kustomization.yaml");
    let renders_shared = rendered.files.iter().any(|f| f.name.starts_with("gateway/"));
    if !renders_shared && is_generated(&shared_here) {
        return Err(RenderError::SharedGatewayHere { dir: dir.to_owned() });
    }
    Ok(())
}

/// A file `render` wrote: YAML opening with [`GENERATED_MARKER`].
fn is_generated(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml")
        && std::fs::read_to_string(path).is_ok_and(|t| t.starts_with(GENERATED_MARKER))
}

/// How deep `render` writes: `my-app/monitoring/prometheus-rule.yaml` is two directories down.
const DEPTH: usize = 2;

/// Generated files under `dir` (named from `prefix`, `depth` directories down) that `rendered`
/// no longer holds. No deeper than render writes, and not into hidden directories or symlinks.
fn stale_files(dir: &Path, prefix: &str, depth: usize, rendered: &Rendered, stale: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        // Not through symlinks: only what render itself wrote.
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            if depth < DEPTH && !name.rsplit('/').next().is_some_and(|n| n.starts_with('.')) {
                stale_files(&path, &format!("{name}/"), depth + 1, rendered, stale);
            }
        } else if kind.is_file() && rendered.file(&name).is_none() && is_generated(&path) {
            stale.push((name, path));
        }
    }
}

/// Writes the files that differ from what `dir` holds (each through a temporary file and a
/// rename), and removes generated files that the specs no longer produce (a dropped version,
/// a dropped app). File names may hold directories (`my-app/monitoring/prometheus-rule.yaml`).
///
/// Refuses to write one app's plugin into a directory that holds a shared gateway plugin
/// rendered from several specs: applying it would drop the other apps' routes.
pub fn write(dir: &Path, rendered: &Rendered) -> Result<WriteReport, RenderError> {
    check_target(dir, rendered)?;
    std::fs::create_dir_all(dir).map_err(RenderError::io(dir, Action::Create))?;
    let mut report = WriteReport::default();
    for file in &rendered.files {
        let path = dir.join(&file.name);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(file.text.as_str()) {
            report.unchanged.push(file.name.clone());
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(RenderError::io(parent, Action::Create))?;
        }
        crate::files::write_atomically(&path, file.text.as_bytes()).map_err(RenderError::io(&path, Action::Write))?;
        report.written.push(file.name.clone());
    }
    // Generated files nobody produces any more, at any depth.
    std::fs::read_dir(dir).map_err(RenderError::io(dir, Action::List))?;
    let mut stale = Vec::new();
    stale_files(dir, "", 0, rendered, &mut stale);
    stale.sort();
    let mut emptied: Vec<PathBuf> = Vec::new();
    for (name, path) in stale {
        std::fs::remove_file(&path).map_err(RenderError::io(&path, Action::Remove))?;
        report.removed.push(name);
        // Its directories up to `dir`, to remove if this left them empty.
        for parent in path.ancestors().skip(1).take_while(|p| *p != dir) {
            if !emptied.iter().any(|e| e == parent) {
                emptied.push(parent.to_owned());
            }
        }
    }
    // Deepest first; remove_dir refuses a directory that still holds anything.
    emptied.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for subdir in emptied {
        let _ = std::fs::remove_dir(&subdir);
    }
    Ok(report)
}
