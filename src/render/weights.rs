//! `set-weight`: change the weights in the spec text itself, keeping every comment and line.
//!
//! The YAML is read event by event to find where each `versions[i].weight`
//! value sits in the text; only those bytes are replaced. The new text is then
//! checked as a whole spec before anything is written.
//!
//! ```
//! use sticky_canary::render::weights::{new_weights, rewrite_weights};
//! let text = "versions:\n  - name: v1   # stable\n    weight: 90\n  - name: v2\n    weight: 10\n";
//! let weights = new_weights(&[("v1".into(), 90.0), ("v2".into(), 10.0)], "v2", 25.0).unwrap();
//! let out = rewrite_weights(text, &weights).unwrap();
//! assert_eq!(out, "versions:\n  - name: v1   # stable\n    weight: 75\n  - name: v2\n    weight: 25\n");
//! ```

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Computes the weights after setting `version` to `percent`: the stable version
/// (listed first) takes whatever the canaries leave.
pub fn new_weights(current: &[(String, f64)], version: &str, percent: f64) -> Result<Vec<f64>, String> {
    let basis_points = to_basis_points(percent)
        .ok_or_else(|| format!("{percent} is not a weight: 0 to 100 with at most two decimals"))?;
    let index = current.iter().position(|(name, _)| name == version).ok_or_else(|| {
        let names: Vec<&str> = current.iter().map(|(n, _)| n.as_str()).collect();
        format!("{version:?} is not one of the spec's versions ({})", names.join(", "))
    })?;
    if index == 0 {
        return Err(format!(
            "{version:?} is the stable version: set the canaries' weights and it takes the rest (to promote a canary, make it the first version)"
        ));
    }
    let mut canaries: u32 = 0;
    let mut weights = Vec::with_capacity(current.len());
    for (i, (name, weight)) in current.iter().enumerate().skip(1) {
        let bp = if i == index {
            basis_points
        } else {
            to_basis_points(*weight).ok_or_else(|| format!("the weight of {name:?} in the spec is not valid"))?
        };
        canaries += bp;
        weights.push(bp);
    }
    if canaries > 10_000 {
        return Err(format!(
            "the canaries would take {}%, more than 100",
            policy_core::format_percent(canaries)
        ));
    }
    let mut out = vec![f64::from(10_000 - canaries) / 100.0];
    out.extend(weights.into_iter().map(|bp| f64::from(bp) / 100.0));
    Ok(out)
}

fn to_basis_points(percent: f64) -> Option<u32> {
    let scaled = percent * 100.0;
    let rounded = scaled.round();
    if !(0.0..=10_000.0).contains(&rounded) || (scaled - rounded).abs() > 1e-6 {
        return None;
    }
    Some(rounded as u32)
}

fn format_weight(weight: f64) -> String {
    policy_core::format_percent(to_basis_points(weight).unwrap_or(0))
}

/// Where each `versions[i].weight` value is, as byte ranges in the text.
#[derive(Default)]
struct Finder {
    /// The path of containers above the current event: (is_mapping, key or index).
    stack: Vec<Frame>,
    /// (version index, character index of the value, the value, its style).
    found: Vec<(usize, usize, String, TScalarStyle)>,
    error: Option<String>,
}

enum Frame {
    Mapping { key: Option<String>, expecting_key: bool },
    Sequence { index: usize },
}

impl Finder {
    /// Called when a value (scalar or container) begins at the current position.
    fn path_here(&self) -> Vec<String> {
        self.stack
            .iter()
            .map(|f| match f {
                Frame::Mapping { key, .. } => key.clone().unwrap_or_default(),
                Frame::Sequence { index } => index.to_string(),
            })
            .collect()
    }

    /// After a complete value, move the parent on to its next key or item.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Mapping { expecting_key, key }) => {
                *expecting_key = true;
                *key = None;
            }
            Some(Frame::Sequence { index }) => *index += 1,
            None => {}
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Mapping {
                expecting_key: true,
                ..
            })
        )
    }
}

impl MarkedEventReceiver for Finder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(value, style, _, _) => {
                if self.expecting_key() {
                    if let Some(Frame::Mapping { key, expecting_key }) = self.stack.last_mut() {
                        *key = Some(value);
                        *expecting_key = false;
                    }
                    return;
                }
                let path = self.path_here();
                if path.len() == 3 && path[0] == "versions" && path[2] == "weight" {
                    match path[1].parse::<usize>() {
                        Ok(index) => self.found.push((index, mark.index(), value, style)),
                        Err(_) => self.error = Some("versions is not a list".to_owned()),
                    }
                }
                self.value_done();
            }
            Event::Alias(_) => {
                if self.expecting_key() {
                    self.error = Some("an alias used as a mapping key is not supported".to_owned());
                    return;
                }
                self.value_done();
            }
            Event::SequenceStart(..) => {
                if self.expecting_key() {
                    self.error = Some("a complex mapping key is not supported".to_owned());
                }
                self.stack.push(Frame::Sequence { index: 0 });
            }
            Event::MappingStart(..) => {
                if self.expecting_key() {
                    self.error = Some("a complex mapping key is not supported".to_owned());
                }
                self.stack.push(Frame::Mapping {
                    key: None,
                    expecting_key: true,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

/// Replaces the value of each `versions[i].weight` with `weights[i]`, leaving every other byte alone.
pub fn rewrite_weights(text: &str, weights: &[f64]) -> Result<String, String> {
    let mut finder = Finder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut finder, false)
        .map_err(|e| format!("the spec is not valid YAML: {e}"))?;
    if let Some(error) = finder.error {
        return Err(format!("cannot edit the weights in place: {error}"));
    }
    let mut spans = Vec::new();
    for (i, weight) in weights.iter().enumerate() {
        let hits: Vec<_> = finder.found.iter().filter(|(index, ..)| *index == i).collect();
        let [(_, char_index, value, style)] = hits.as_slice() else {
            return Err(format!(
                "versions[{i}].weight: expected exactly one, found {}",
                hits.len()
            ));
        };
        if *style != TScalarStyle::Plain {
            return Err(format!(
                "versions[{i}].weight: write it as a plain number to let set-weight edit it"
            ));
        }
        // The parser counts characters, not bytes: a comment in another script shifts them apart.
        let start = text.char_indices().nth(*char_index).map_or(text.len(), |(b, _)| b);
        let end = start + value.len();
        if text.get(start..end) != Some(value.as_str()) {
            return Err(format!("versions[{i}].weight: cannot locate it in the text"));
        }
        spans.push((start, end, format_weight(*weight)));
    }
    spans.sort_by_key(|(start, ..)| std::cmp::Reverse(*start));
    let mut out = text.to_owned();
    for (start, end, replacement) in spans {
        out.replace_range(start..end, &replacement);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_takes_the_rest() {
        let current = vec![("v1".to_owned(), 90.0), ("v2".to_owned(), 10.0), ("v3".to_owned(), 0.0)];
        assert_eq!(new_weights(&current, "v3", 5.0).unwrap(), vec![85.0, 10.0, 5.0]);
        assert_eq!(new_weights(&current, "v2", 100.0).unwrap(), vec![0.0, 100.0, 0.0]);
        let full = vec![("v1".to_owned(), 0.0), ("v2".to_owned(), 100.0), ("v3".to_owned(), 0.0)];
        assert_eq!(
            new_weights(&full, "v3", 5.0).unwrap_err(),
            "the canaries would take 105%, more than 100"
        );
    }

    #[test]
    fn refuses_bad_input() {
        let current = vec![("v1".to_owned(), 90.0), ("v2".to_owned(), 10.0)];
        assert!(new_weights(&current, "v1", 50.0).unwrap_err().contains("stable"));
        assert!(new_weights(&current, "v9", 50.0).unwrap_err().contains("v1, v2"));
        assert!(new_weights(&current, "v2", 10.001).is_err());
        assert!(new_weights(&current, "v2", 101.0).is_err());
        assert_eq!(new_weights(&current, "v2", 12.5).unwrap(), vec![87.5, 12.5]);
    }

    #[test]
    fn edits_flow_style_and_keeps_comments() {
        let text = "# top\nversions: [{name: v1, weight: 90}, {name: v2, weight: 10}] # end\nother: {weight: 3}\n";
        let out = rewrite_weights(text, &[50.0, 50.0]).unwrap();
        assert_eq!(
            out,
            "# top\nversions: [{name: v1, weight: 50}, {name: v2, weight: 50}] # end\nother: {weight: 3}\n"
        );
    }

    #[test]
    fn non_ascii_comments_do_not_shift_offsets() {
        let text =
            "# réglage — très sûr\nversions:\n  - name: v1 # ünïcode\n    weight: 100\n  - name: v2\n    weight: 0\n";
        let out = rewrite_weights(text, &[90.0, 10.0]).unwrap();
        assert!(out.contains("weight: 90\n") && out.contains("weight: 10\n") && out.contains("très sûr"));
    }

    #[test]
    fn quoted_weight_is_refused() {
        let text = "versions:\n  - name: v1\n    weight: \"90\"\n  - name: v2\n    weight: 10\n";
        assert!(rewrite_weights(text, &[80.0, 20.0])
            .unwrap_err()
            .contains("plain number"));
    }
}
