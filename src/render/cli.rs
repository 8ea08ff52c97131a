//! What `render` and `set-weight` share on the command line: which spec files, loading them, which layout.

use std::path::{Path, PathBuf};

use super::error::{Action, RenderError};
use super::output::Rendered;
use super::shared::{render_shared, Input};
use super::single::render_with_form;
use super::spec::{App, PluginForm};
use super::token::Tokens;

/// Reads and checks a spec file: its text and the app. The error lists every problem, one per
/// line, with the file name.
pub fn load(path: &Path) -> Result<(String, App), RenderError> {
    let text = std::fs::read_to_string(path).map_err(RenderError::io(path, Action::Read))?;
    let app = App::from_yaml(&text).map_err(|errors| RenderError::InvalidSpec {
        path: path.to_owned(),
        errors,
    })?;
    Ok((text, app))
}

/// The spec files named by the arguments: files as given, directories as their `*.yaml` and
/// `*.yml` files (not recursive), in name order.
pub fn spec_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, RenderError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(RenderError::io(path, Action::List))?;
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            if found.is_empty() {
                return Err(RenderError::NoSpecIn { dir: path.clone() });
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
pub fn load_inputs(paths: &[PathBuf]) -> Result<Vec<Input>, RenderError> {
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
        Err(RenderError::Specs(errors))
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
) -> Result<Rendered, RenderError> {
    if let Some(form) = form {
        let refused: Vec<String> = inputs
            .iter()
            .filter_map(|(source, app)| {
                let why = crate::revisions::minor_of(&app.revision).and_then(|m| form.unsupported_on(m))?;
                Some(format!(
                    "{source}: --plugin-form {}: revision {}: {why}",
                    form.as_str(),
                    app.revision
                ))
            })
            .collect();
        if !refused.is_empty() {
            return Err(RenderError::Conflicts(refused));
        }
    }
    match inputs {
        [(source, app)] if !shared => Ok(render_with_form(app, form.unwrap_or(app.plugin.form), source, tokens)),
        [] => Err(RenderError::NoSpec),
        _ => render_shared(inputs, form, tokens),
    }
}
