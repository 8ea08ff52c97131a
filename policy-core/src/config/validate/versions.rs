//! A route's versions: names, weights in basis points summing to 100%, and the bucket ranges
//! they take (docs/assignment.md §2).

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
        fields.finish(errors);
        match weight {
            Some(w) => sum += u32::from(w),
            None => all_weights = false,
        }
        if let (Some(name), Some(weight)) = (name, weight) {
            versions.push(Version {
                routing_value: name.clone(),
                name,
                weight,
                start: 0,
                end: 0,
            });
        }
    }
    if all_weights && sum != u32::from(TOTAL_BASIS_POINTS) {
        errors.add(path, format!("weights sum to {}, not 100", format_percent(sum)));
    }
    assign_buckets(&mut versions);
    versions
}

/// A version's required `weight`: a number, read exactly by [`parse_percent`].
fn weight_field(fields: &mut Fields<'_>, errors: &mut ConfigErrors) -> Option<u16> {
    let weight_path = fields.child("weight");
    match fields.take("weight") {
        None => {
            errors.add(
                &weight_path,
                "is required (a percentage, 0 to 100, at most two decimals)",
            );
            None
        }
        Some(Value::Number(text)) => match parse_percent(text) {
            Ok(basis_points) => Some(basis_points),
            Err(error) => {
                errors.add(&weight_path, error.to_string());
                None
            }
        },
        Some(other) => {
            errors.add(&weight_path, format!("must be a number, not {}", other.kind()));
            None
        }
    }
}

/// Canaries take consecutive ranges from bucket 0 in listed order; stable takes the rest.
fn assign_buckets(versions: &mut [Version]) {
    let mut next: u16 = 0;
    for version in versions.iter_mut().skip(1) {
        version.start = next;
        next = next.saturating_add(version.weight);
        version.end = next;
    }
    if let Some(stable) = versions.first_mut() {
        stable.start = next;
        stable.end = TOTAL_BASIS_POINTS;
    }
}
