//! What `render` and `set-weight` share on the command line: which spec files, which layout.

use std::path::{Path, PathBuf};

use super::shared::Input;
use super::token::Tokens;
use super::{load, render_shared, render_with_form, PluginForm, Rendered};

/// The spec files named by the arguments: files as given, directories as their `*.yaml` and
/// `*.yml` files (not recursive), in name order.
pub fn spec_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| format!("{}: cannot list: {e}", path.display()))?;
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            if found.is_empty() {
                return Err(format!("{}: holds no *.yaml spec", path.display()));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Loads every spec; the error lists every problem of every spec, each line naming its file.
pub fn load_inputs(paths: &[PathBuf]) -> Result<Vec<Input>, String> {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    for file in spec_files(paths)? {
        match load(&file) {
            Ok((_, app)) => inputs.push((file.to_string_lossy().into_owned(), app)),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(inputs)
    } else {
        Err(errors.join("\n"))
    }
}

/// The shared-gateway layout is chosen by the arguments (several specs, or a directory), not by
/// how many specs a directory happens to hold, so adding a second app does not move files.
pub fn is_shared(paths: &[PathBuf]) -> bool {
    paths.len() > 1 || paths.iter().any(|p| Path::new(p).is_dir())
}

/// Renders one app alone, or every app for a shared gateway.
pub fn render_inputs(
    inputs: &[Input],
    shared: bool,
    form: Option<PluginForm>,
    tokens: &Tokens,
) -> Result<Rendered, String> {
    match inputs {
        [(source, app)] if !shared => Ok(render_with_form(app, form.unwrap_or(app.plugin.form), source, tokens)),
        [] => Err("no app spec given".to_owned()),
        _ => render_shared(inputs, form, tokens),
    }
}
