//! `set-weight`: change the weights in the spec text itself, keeping every comment and line.
//!
//! Each place a `versions[i].weight` value could sit is confirmed by parsing the spec again
//! with a marker there; only those bytes are replaced. The new text is then
//! checked as a whole spec before anything is written.
//!
//! ```
//! use sticky_canary::render::weights::{new_weights, rewrite_weights};
//! let text = "versions:\n  - name: v1   # stable\n    weight: 90\n  - name: v2\n    weight: 10\n";
//! let weights = new_weights(&[("v1".into(), 90.0), ("v2".into(), 10.0)], "v2", 25.0).unwrap();
//! let out = rewrite_weights(text, &weights).unwrap();
//! assert_eq!(out, "versions:\n  - name: v1   # stable\n    weight: 75\n  - name: v2\n    weight: 25\n");
//! ```

use std::fmt;

use serde_yaml_ng::Value as Yaml;

/// Why the weights cannot be set, or cannot be edited in the spec's text.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightError {
    /// Not 0 to 100 with at most two decimals.
    NotAWeight(f64),
    /// The version is not in the spec.
    UnknownVersion { version: String, versions: Vec<String> },
    /// The stable version takes what the canaries leave; it is not set.
    Stable(String),
    /// A canary's weight already in the spec is not a valid weight.
    InvalidInSpec(String),
    /// The canaries would take more than 100 % (in basis points).
    Over100(u32),
    /// The spec text is not YAML.
    NotYaml(String),
    /// `versions` is not a list.
    VersionsNotAList,
    /// `versions[i].weight` is not written as a plain number.
    NotPlain(usize),
    /// `versions[i].weight` stands in the text `found` times, not once.
    NotOnce { index: usize, found: usize },
}

impl fmt::Display for WeightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightError::NotAWeight(percent) => {
                write!(f, "{percent} is not a weight: 0 to 100 with at most two decimals")
            }
            WeightError::UnknownVersion { version, versions } => write!(
                f,
                "{version:?} is not one of the spec's versions ({})",
                versions.join(", ")
            ),
            WeightError::Stable(version) => write!(
                f,
                "{version:?} is the stable version: set the canaries' weights and it takes the rest (to promote a canary, make it the first version)"
            ),
            WeightError::InvalidInSpec(name) => write!(f, "the weight of {name:?} in the spec is not valid"),
            WeightError::Over100(basis_points) => write!(
                f,
                "the canaries would take {}%, more than 100",
                policy_core::format_percent(*basis_points)
            ),
            WeightError::NotYaml(e) => write!(f, "the spec is not valid YAML: {e}"),
            WeightError::VersionsNotAList => f.write_str("cannot edit the weights in place: versions is not a list"),
            WeightError::NotPlain(i) => write!(
                f,
                "versions[{i}].weight: write it as a plain number to let set-weight edit it"
            ),
            WeightError::NotOnce { index, found } => {
                write!(f, "versions[{index}].weight: expected exactly one, found {found}")
            }
        }
    }
}

impl std::error::Error for WeightError {}

/// Computes the weights after setting `version` to `percent`: the stable version
/// (listed first) takes whatever the canaries leave.
pub fn new_weights(current: &[(String, f64)], version: &str, percent: f64) -> Result<Vec<f64>, WeightError> {
    let basis_points = to_basis_points(percent).ok_or(WeightError::NotAWeight(percent))?;
    let index = current
        .iter()
        .position(|(name, _)| name == version)
        .ok_or_else(|| WeightError::UnknownVersion {
            version: version.to_owned(),
            versions: current.iter().map(|(n, _)| n.clone()).collect(),
        })?;
    if index == 0 {
        return Err(WeightError::Stable(version.to_owned()));
    }
    let mut canaries: u32 = 0;
    let mut weights = Vec::with_capacity(current.len());
    for (i, (name, weight)) in current.iter().enumerate().skip(1) {
        let bp = if i == index {
            basis_points
        } else {
            to_basis_points(*weight).ok_or_else(|| WeightError::InvalidInSpec(name.clone()))?
        };
        canaries += bp;
        weights.push(bp);
    }
    if canaries > 10_000 {
        return Err(WeightError::Over100(canaries));
    }
    let mut out = vec![f64::from(10_000 - canaries) / 100.0];
    out.extend(weights.into_iter().map(|bp| f64::from(bp) / 100.0));
    Ok(out)
}

/// A percentage from the spec or the command line (0 to 100, at most two decimals) in basis
/// points, by the filter's own exact rule ([`policy_core::parse_percent`]) applied to the
/// number's shortest decimal form, which for a number written with two decimals is that text.
pub(crate) fn to_basis_points(percent: f64) -> Option<u32> {
    policy_core::parse_percent(&percent.to_string()).ok().map(u32::from)
}

fn format_weight(weight: f64) -> String {
    policy_core::format_percent(to_basis_points(weight).unwrap_or(0))
}

/// The value under `versions[i].weight` for each version of a parsed spec (`None`: not there).
fn version_weights(text: &str) -> Result<Vec<Option<Yaml>>, WeightError> {
    let spec: Yaml = serde_yaml_ng::from_str(text).map_err(|e| WeightError::NotYaml(e.to_string()))?;
    match spec.get("versions") {
        Some(Yaml::Sequence(versions)) => Ok(versions.iter().map(|v| v.get("weight").cloned()).collect()),
        _ => Err(WeightError::VersionsNotAList),
    }
}

/// Byte ranges of every plain number written right after a `weight:` key: where a weight can sit.
/// A comment or another mapping's `weight` is a candidate too; probing tells them apart.
fn weight_candidates(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("weight") {
        let rest = &text[at + "weight".len()..];
        let after_colon = rest.trim_start_matches([' ', '\t']);
        let Some(value) = after_colon.strip_prefix(':') else {
            continue;
        };
        let trimmed = value.trim_start_matches([' ', '\t']);
        let length = trimmed
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E')))
            .unwrap_or(trimmed.len());
        if length > 0 {
            let start = text.len() - trimmed.len();
            out.push((start, start + length));
        }
    }
    out
}

/// Replaces the value of each `versions[i].weight` with `weights[i]`, leaving every other byte alone.
///
/// Each place a weight could be written is tried: the spec is parsed again with a marker number
/// there, and the version whose weight became the marker owns that place. So the YAML parser
/// itself decides what is a weight (not a comment, not another key's `weight`), and no second
/// YAML library with source positions is needed.
pub fn rewrite_weights(text: &str, weights: &[f64]) -> Result<String, WeightError> {
    let current = version_weights(text)?;
    const MARKER: f64 = 918_273_645.5;
    let marker = Yaml::from(MARKER);
    let mut owners: Vec<Vec<(usize, usize)>> = vec![Vec::new(); current.len()];
    for (start, end) in weight_candidates(text) {
        let probe = format!("{}{MARKER:?}{}", &text[..start], &text[end..]);
        let Ok(probed) = version_weights(&probe) else {
            continue;
        };
        for (i, weight) in probed.iter().enumerate() {
            if weight.as_ref() == Some(&marker) && current.get(i) != Some(&Some(marker.clone())) {
                if let Some(places) = owners.get_mut(i) {
                    places.push((start, end));
                }
            }
        }
    }
    let mut spans = Vec::new();
    for (i, weight) in weights.iter().enumerate() {
        match (owners.get(i).map(Vec::as_slice), current.get(i)) {
            (Some([(start, end)]), _) => spans.push((*start, *end, format_weight(*weight))),
            (Some([]), Some(Some(_))) => return Err(WeightError::NotPlain(i)),
            (Some(places), _) => {
                return Err(WeightError::NotOnce {
                    index: i,
                    found: places.len(),
                })
            }
            (None, _) => return Err(WeightError::NotOnce { index: i, found: 0 }),
        }
    }
    spans.sort_by_key(|(start, ..)| std::cmp::Reverse(*start));
    let mut out = text.to_owned();
    for (start, end, replacement) in spans {
        out.replace_range(start..end, &replacement);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
