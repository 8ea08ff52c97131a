//! `sticky-canary cutover`: start, roll back or finish a blue/green cut-over with session drain
//! (docs/assignment.md §6) by editing the spec's top-level `cutover:` block, every other line
//! kept. The new text is checked as a whole spec before anything is written.
//!
//! ```
//! use sticky_canary::render::cutover::replace_block;
//! let text = "app: shop\ncutover:\n  to: v2\n  idle: 5m\nplugin: {}\n";
//! assert_eq!(replace_block(text, None), "app: shop\nplugin: {}\n");
//! let commented = "cutover:\n  to: v2\n# the probes\nprobes: {}\n";
//! assert_eq!(replace_block(commented, None), "# the probes\nprobes: {}\n");
//! assert_eq!(replace_block("app: shop\n", Some("cutover:\n  to: v2\n")), "app: shop\ncutover:\n  to: v2\n");
//! ```

use std::path::Path;

use super::cli::load;
use super::error::RenderError;
use super::spec::App;
use super::weights::rewrite_weights;

/// What `cutover` does to the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CutoverChange {
    /// Start one now: new users on `to` at once, existing users when idle for `idle` (a
    /// duration such as `30m`), everyone `deadline` (a duration) from now.
    Start { to: String, idle: String, deadline: String },
    /// Remove the cut-over: everyone back on the weights' versions at once.
    Rollback,
    /// Make `to` the weights (100 %) and remove the cut-over: nobody moves.
    Finish,
}

/// The text without its top-level `cutover:` block (the line and the indented or blank lines
/// after it; a comment or key at the start of a line ends it), and with `block` appended when
/// given.
pub fn replace_block(text: &str, block: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len() + block.map_or(0, str::len));
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        let top_level = !line.starts_with([' ', '\t', '\n', '\r']);
        if top_level {
            inside = line.starts_with("cutover:");
        }
        if !inside {
            out.push_str(line);
        }
    }
    if let Some(block) = block {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(block);
    }
    out
}

/// A Unix time as the spec writes it (RFC 3339, UTC), or the number when out of range.
pub fn rfc3339(unix_seconds: u64) -> String {
    i64::try_from(unix_seconds)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| unix_seconds.to_string(), |t| t.to_string())
}

/// `cutover`'s edit, not yet written: the spec's new text and the app it describes, at `now`
/// (Unix seconds).
pub fn cutover_text(spec_path: &Path, change: &CutoverChange, now: u64) -> Result<(String, App), RenderError> {
    let (text, app) = load(spec_path)?;
    let refuse = |reason: String| RenderError::Cutover {
        spec: spec_path.to_owned(),
        reason,
    };
    if let Some(progressive) = &app.progressive {
        return Err(RenderError::ToolOwnsWeights {
            spec: spec_path.to_owned(),
            tool: progressive.tool,
        });
    }
    let new_text = match change {
        CutoverChange::Start { to, idle, deadline } => {
            if !app.versions.iter().any(|v| &v.name == to) {
                let names: Vec<&str> = app.versions.iter().map(|v| v.name.as_str()).collect();
                return Err(refuse(format!(
                    "--to {to:?} is not one of the spec's versions ({})",
                    names.join(", ")
                )));
            }
            let Some(after) = super::spec::duration_seconds(deadline) else {
                return Err(refuse(format!(
                    "--deadline {deadline:?} is not a duration (such as 2h or 90m)"
                )));
            };
            let block = format!(
                "cutover:\n  to: {to}\n  start: \"{}\"\n  deadline: \"{}\"\n  idle: {idle}\n",
                rfc3339(now),
                rfc3339(now.saturating_add(after))
            );
            replace_block(&text, Some(&block))
        }
        CutoverChange::Rollback => {
            if app.cutover.is_none() {
                return Err(refuse("the spec has no cutover to roll back".to_owned()));
            }
            replace_block(&text, None)
        }
        CutoverChange::Finish => {
            let Some(cutover) = &app.cutover else {
                return Err(refuse("the spec has no cutover to finish".to_owned()));
            };
            let weights: Vec<f64> = app
                .versions
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let on_to = v.name == cutover.to;
                    // Stable (listed first) takes what the canaries leave.
                    let stable_takes_all = i == 0 && app.versions.first().is_some_and(|s| s.name == cutover.to);
                    if on_to || stable_takes_all {
                        100.0
                    } else {
                        0.0
                    }
                })
                .collect();
            let rewritten = rewrite_weights(&text, &weights).map_err(|reason| RenderError::WeightsInText {
                spec: spec_path.to_owned(),
                reason,
            })?;
            replace_block(&rewritten, None)
        }
    };
    let new_app = App::from_yaml(&new_text).map_err(|errors| RenderError::InvalidAfterEdit {
        spec: spec_path.to_owned(),
        errors,
    })?;
    Ok((new_text, new_app))
}
