//! A route's `cutover`: blue/green with session drain (docs/assignment.md §6). The version to
//! end on, when the cut-over starts and must be over (Unix seconds), and how long a user must
//! be idle before they move.

use super::fields::Fields;
use crate::config::{ConfigErrors, Cutover, KeySpec, Version, MAX_COOKIE_AGE_SECONDS};
use crate::json::Value;

/// The route's `cutover` member, checked against its versions, key chain and position header.
pub(super) fn compile_cutover(
    path: &str,
    value: &Value,
    versions: &[Version],
    key_chain: &[KeySpec],
    tool_owns_weights: bool,
    errors: &mut ConfigErrors,
) -> Option<Cutover> {
    let before = errors.0.len();
    let mut fields = Fields::new(path, value, errors)?;
    let to_path = fields.child("to");
    let to = match fields.take("to") {
        None => {
            errors.add(&to_path, "is required: the version everyone ends on");
            None
        }
        Some(Value::String(name)) => {
            let index = versions.iter().position(|v| &v.name == name);
            if index.is_none() {
                errors.add(&to_path, format!("{name:?} is not one of this route's versions"));
            }
            index
        }
        Some(other) => {
            errors.add(&to_path, format!("must be a string, not {}", other.kind()));
            None
        }
    };
    let start = seconds(&mut fields, "start", "Unix seconds", errors);
    let deadline = seconds(&mut fields, "deadline", "Unix seconds", errors);
    let idle_path = fields.child("idle_seconds");
    let idle_seconds = seconds(&mut fields, "idle_seconds", "seconds", errors);
    fields.finish(errors);
    if let (Some(start), Some(deadline)) = (start, deadline) {
        if deadline <= start {
            errors.add(
                format!("{path}.deadline"),
                format!("{deadline} is not after start ({start})"),
            );
        }
    }
    match idle_seconds {
        Some(0) => errors.add(&idle_path, "must be at least 1"),
        Some(idle) if idle > MAX_COOKIE_AGE_SECONDS => errors.add(
            &idle_path,
            format!("{idle} is above {MAX_COOKIE_AGE_SECONDS} (400 days, the longest a cookie lives)"),
        ),
        _ => {}
    }
    if !matches!(key_chain.last(), Some(KeySpec::NewClientId(_))) {
        errors.add(
            path,
            "needs new_client_id in key_chain: only the id cookie tells an existing user from a new one",
        );
    }
    if tool_owns_weights {
        errors.add(
            path,
            "cannot be used with position_header: the progressive-delivery tool owns this route's weights",
        );
    }
    if errors.0.len() != before {
        return None;
    }
    Some(Cutover {
        to: to?,
        start: start?,
        deadline: deadline?,
        idle_seconds: idle_seconds?,
    })
}

/// A required whole number.
fn seconds(fields: &mut Fields<'_>, name: &str, what: &str, errors: &mut ConfigErrors) -> Option<u64> {
    let path = fields.child(name);
    match fields.take(name) {
        None => {
            errors.add(&path, format!("is required ({what})"));
            None
        }
        Some(Value::Number(text)) => match text.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.add(&path, format!("{text} is not a whole number of {what}"));
                None
            }
        },
        Some(other) => {
            errors.add(&path, format!("must be a number, not {}", other.kind()));
            None
        }
    }
}
