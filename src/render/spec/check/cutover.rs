//! `cutover`: a blue/green cut-over with session drain (docs/assignment.md §6). The spec holds
//! RFC 3339 times and a duration, as `sticky-canary cutover` writes them; the filter config
//! Unix seconds. policy-core checks the rest (the version exists, the deadline is after the
//! start, the chain has `new_client_id`, no tool owns the weights).

use serde_yaml_ng::Value as Yaml;

use super::fields::duration_ms;
use crate::render::spec::app::{Cutover, SpecErrors};
use crate::render::spec::raw::RawCutover;

/// The checked cut-over, or `None` with its problems in `errors`.
pub(super) fn check(raw: &RawCutover, errors: &mut SpecErrors) -> Option<Cutover> {
    let time = |field: &str, text: &str, errors: &mut SpecErrors| match text.parse::<jiff::Timestamp>() {
        Ok(t) if t.as_second() >= 0 => Some(t.as_second().unsigned_abs()),
        Ok(_) => {
            errors.add(format!("cutover.{field}"), format!("{text:?} is before 1970"));
            None
        }
        Err(_) => {
            errors.add(
                format!("cutover.{field}"),
                format!("{text:?} is not an RFC 3339 time (such as 2026-12-04T09:00:00Z)"),
            );
            None
        }
    };
    let start = time("start", &raw.start, errors);
    let deadline = time("deadline", &raw.deadline, errors);
    let idle_seconds = match duration_ms(&raw.idle) {
        Some(ms) if ms >= 1000 => Some(ms / 1000),
        _ => {
            errors.add(
                "cutover.idle",
                format!("{:?} is not a duration of at least 1s (such as 30m or 2h)", raw.idle),
            );
            None
        }
    };
    Some(Cutover {
        to: raw.to.clone(),
        start: start?,
        deadline: deadline?,
        idle_seconds: idle_seconds?,
    })
}

impl Cutover {
    /// The route's `cutover` in the filter config.
    pub fn filter_config(&self) -> Yaml {
        map! {
            "to" => self.to.clone(),
            "start" => self.start,
            "deadline" => self.deadline,
            "idle_seconds" => self.idle_seconds,
        }
    }
}

/// What is allowed but worth saying: a deadline already past (everyone is on the new version:
/// finish it), or a drain that cannot run its idle time before the deadline.
pub(super) fn warn(cutover: &Cutover, warnings: &mut Vec<String>) {
    let now = jiff::Timestamp::now().as_second().max(0).unsigned_abs();
    if cutover.deadline <= now {
        warnings.push(format!(
            "cutover: the deadline has passed, everyone is on {:?}: run `sticky-canary cutover SPEC --finish` to make it the weights",
            cutover.to
        ));
    }
    if cutover.deadline.saturating_sub(cutover.start) < cutover.idle_seconds {
        warnings.push(
            "cutover: the deadline comes before anyone can have been idle for `idle`: every existing user moves at the deadline"
                .to_owned(),
        );
    }
}
