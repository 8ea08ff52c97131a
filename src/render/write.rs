//! Writing a render into a directory: only the files that changed, each replaced whole, and
//! the generated files the specs no longer produce removed.

use std::path::Path;

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

fn is_generated(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.starts_with(GENERATED_MARKER))
}

/// Writes the files that differ from what `dir` holds (each through a temporary file and a
/// rename), and removes generated files that the specs no longer produce (a dropped version,
/// a dropped app). File names may hold one directory level (`my-app/istio.yaml`).
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
    // Generated files nobody produces any more, at the top and one directory down.
    let mut stale = Vec::new();
    let mut subdirs = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(RenderError::io(dir, Action::List))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            for inner in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                let inner_name = format!("{name}/{}", inner.file_name().to_string_lossy());
                if inner_name.ends_with(".yaml") && rendered.file(&inner_name).is_none() && is_generated(&inner.path())
                {
                    stale.push((inner_name, inner.path()));
                }
            }
            subdirs.push(path);
        } else if name.ends_with(".yaml") && rendered.file(&name).is_none() && is_generated(&path) {
            stale.push((name, path));
        }
    }
    stale.sort();
    for (name, path) in stale {
        std::fs::remove_file(&path).map_err(RenderError::io(&path, Action::Remove))?;
        report.removed.push(name);
    }
    for subdir in subdirs {
        // Only directories we emptied just now (remove_dir refuses a non-empty one).
        if std::fs::read_dir(&subdir).is_ok_and(|mut d| d.next().is_none()) {
            let _ = std::fs::remove_dir(&subdir);
        }
    }
    Ok(report)
}
