//! `set-weight`'s edit of a spec file: one canary's new weight, the stable version taking the
//! rest, the new spec checked as a whole before anything is written.

use std::path::Path;

use super::cli::load;
use super::error::RenderError;
use super::spec::App;
use super::weights::{new_weights, rewrite_weights};

/// `set-weight`'s edit, not yet written: the spec's new text and the app it describes. The
/// stable version takes what the canaries leave; the new spec is checked as a whole.
pub fn set_weight_text(spec_path: &Path, version: &str, percent: f64) -> Result<(String, App), RenderError> {
    let (text, app) = load(spec_path)?;
    if let Some(progressive) = &app.progressive {
        return Err(RenderError::ToolOwnsWeights {
            spec: spec_path.to_owned(),
            tool: progressive.tool,
        });
    }
    let current: Vec<(String, f64)> = app.versions.iter().map(|v| (v.name.clone(), v.weight)).collect();
    let weights = new_weights(&current, version, percent).map_err(RenderError::Weights)?;
    let new_text = rewrite_weights(&text, &weights).map_err(|reason| RenderError::WeightsInText {
        spec: spec_path.to_owned(),
        reason,
    })?;
    let new_app = App::from_yaml(&new_text).map_err(|errors| RenderError::InvalidAfterEdit {
        spec: spec_path.to_owned(),
        errors,
    })?;
    Ok((new_text, new_app))
}
