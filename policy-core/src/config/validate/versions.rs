//! A route's versions: names, weights in basis points summing to 100%, the optional
//! `max_weight` of each canary, and the bucket ranges they take (docs/assignment.md §2).

use super::fields::Fields;
use crate::config::{ConfigErrors, Version, TOTAL_BASIS_POINTS};
use crate::json::Value;
use crate::percent::{format_percent, parse_percent};

/// The route's required `versions` member.
pub(super) fn versions_field(fields: &mut Fields<'_>, errors: &mut ConfigErrors) -> Vec<Version> {
    let versions_path = fields.child("versions");
    match fields.required_array("versions", "is required", errors) {
        None => Vec::new(),
        Some(items) => compile_versions(&versions_path, items, errors),
    }
}

fn compile_versions(path: &str, items: &[Value], errors: &mut ConfigErrors) -> Vec<Version> {
    if items.is_empty() {
        errors.add(path, "is empty: give at least the stable version");
        return Vec::new();
    }
    let mut versions = Vec::new();
    let mut seen_names: Vec<String> = Vec::new();
    let mut sum: u32 = 0;
    let mut all_weights = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Some(mut fields) = Fields::new(&item_path, item, errors) else {
            all_weights = false;
            continue;
        };
        let name_path = fields.child("name");
        let mut name = fields.label(
            "version name (lowercase letters, digits and '-', at most 63, as Istio subset names)",
            errors,
        );
        if let Some(n) = &name {
            if seen_names.contains(n) {
                errors.add(&name_path, format!("{n:?} is listed twice"));
                name = None;
            } else {
                seen_names.push(n.clone());
            }
        }
        let weight = weight_field(&mut fields, errors);
        let max_path = fields.child("max_weight");
        let max_weight = max_weight_field(&mut fields, errors);
        fields.finish(errors);
        if let Some(max) = max_weight {
            if i == 0 {
                errors.add(
                    &max_path,
                    "is for canaries: the stable version (listed first) takes the buckets the canaries leave",
                );
            } else if let Some(w) = weight.filter(|&w| w > max) {
                errors.add(
                    &max_path,
                    format!(
                        "{}% is below the weight, {}%: raise max_weight (before any canary is listed after this one) or lower the weight",
                        format_percent(u32::from(max)),
                        format_percent(u32::from(w))
                    ),
                );
            }
        }
        match weight {
            Some(w) => sum += u32::from(w),
            None => all_weights = false,
        }
        if let (Some(name), Some(weight)) = (name, weight) {
            versions.push(Version {
                routing_value: name.clone(),
                name,
                weight,
                max_weight,
                start: 0,
                end: 0,
            });
        }
    }
    if all_weights && sum != u32::from(TOTAL_BASIS_POINTS) {
        errors.add(path, format!("weights sum to {}, not 100", format_percent(sum)));
    }
    let slots: u32 = versions.iter().skip(1).map(|v| u32::from(v.slot())).sum();
    if slots > u32::from(TOTAL_BASIS_POINTS) {
        errors.add(
            path,
            format!(
                "the canaries' slots (max_weight where given, else weight) take {}%, more than 100",
                format_percent(slots)
            ),
        );
    }
    assign_buckets(&mut versions);
    versions
}

/// A version's required `weight`: a number, read exactly by [`parse_percent`].
fn weight_field(fields: &mut Fields<'_>, errors: &mut ConfigErrors) -> Option<u16> {
    percent_field(fields, "weight", errors).unwrap_or_else(|| {
        errors.add(
            fields.child("weight"),
            "is required (a percentage, 0 to 100, at most two decimals)",
        );
        None
    })
}

/// A canary's optional `max_weight`: the most it may ever be given, which reserves its slot.
fn max_weight_field(fields: &mut Fields<'_>, errors: &mut ConfigErrors) -> Option<u16> {
    percent_field(fields, "max_weight", errors).flatten()
}

/// The member `name` as basis points: `None` when absent, `Some(None)` when it is not a
/// percentage (the error names the field).
fn percent_field(fields: &mut Fields<'_>, name: &str, errors: &mut ConfigErrors) -> Option<Option<u16>> {
    let path = fields.child(name);
    Some(match fields.take(name)? {
        Value::Number(text) => match parse_percent(text) {
            Ok(basis_points) => Some(basis_points),
            Err(error) => {
                errors.add(&path, error.to_string());
                None
            }
        },
        other => {
            errors.add(&path, format!("must be a number, not {}", other.kind()));
            None
        }
    })
}

/// Each canary has a slot of `max_weight` buckets (its weight when it declares none), slots
/// consecutive from bucket 0 in listed order; the canary serves the first `weight` buckets of
/// its slot, and stable every bucket no canary serves. Without any `max_weight` the slots are
/// the weights, the packed layout of earlier releases.
fn assign_buckets(versions: &mut [Version]) {
    let mut next: u16 = 0;
    for version in versions.iter_mut().skip(1) {
        version.start = next;
        version.end = next.saturating_add(version.weight).min(TOTAL_BASIS_POINTS);
        next = next.saturating_add(version.slot()).min(TOTAL_BASIS_POINTS);
    }
    if let Some(stable) = versions.first_mut() {
        stable.start = next;
        stable.end = TOTAL_BASIS_POINTS;
    }
}
