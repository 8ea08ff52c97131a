//! `monitoring`: the window and thresholds of the rendered Prometheus rules, and the labels
//! of the PrometheusRule object.

use super::fields::{bounded_number, duration_ms, window_duration};
use crate::render::spec::app::{Monitoring, SpecErrors};
use crate::render::spec::raw::RawMonitoring;

/// A Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a name of 1 to 63
/// letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(policy_core::is_label));
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// A Kubernetes label value: empty, or up to 63 letters, digits, `-`, `_` and `.`, starting and
/// ending with a letter or digit.
fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_none_or(u8::is_ascii_alphanumeric)
        && bytes.last().is_none_or(u8::is_ascii_alphanumeric)
}

/// The monitoring settings after defaults; every problem goes to `errors`.
pub(super) fn check(raw: Option<RawMonitoring>, errors: &mut SpecErrors, warnings: &mut Vec<String>) -> Monitoring {
    let mut monitoring = Monitoring::default();
    let Some(raw) = raw else { return monitoring };
    window_duration(
        errors,
        "monitoring.window",
        raw.window,
        "5m or 90s",
        &mut monitoring.window,
    );
    if let Some(duration) = raw.for_duration {
        match duration_ms(&duration) {
            Some(_) => monitoring.for_duration = duration,
            None => errors.add(
                "monitoring.for",
                format!("{duration:?} is not a Prometheus duration (such as 10m or 1h)"),
            ),
        }
    }
    bounded_number(
        errors,
        "monitoring.share_tolerance",
        raw.share_tolerance,
        (0.0, 100.0),
        "a number of percentage points above 0 and at most 100",
        &mut monitoring.share_tolerance,
    );
    bounded_number(
        errors,
        "monitoring.error_margin",
        raw.error_margin,
        (0.0, 100.0),
        "a number of percentage points above 0 and at most 100",
        &mut monitoring.error_margin,
    );
    bounded_number(
        errors,
        "monitoring.min_rate",
        raw.min_rate,
        (0.0, 1e9),
        "a rate in requests per second above 0",
        &mut monitoring.min_rate,
    );
    for (key, value) in &raw.rule_labels {
        if !is_label_key(key) {
            errors.add(
                format!("monitoring.rule_labels.{key}"),
                "is not a Kubernetes label key (an optional DNS prefix and `/`, then up to 63 letters, digits, `-`, `_`, `.`)",
            );
        } else if !is_label_value(value) {
            errors.add(
                format!("monitoring.rule_labels.{key}"),
                format!("{value:?} is not a Kubernetes label value (up to 63 letters, digits, `-`, `_`, `.`)"),
            );
        }
    }
    monitoring.rule_labels = raw.rule_labels;
    if duration_ms(&monitoring.for_duration) < duration_ms(&monitoring.window) {
        warnings.push(format!(
            "monitoring.for: {} is shorter than monitoring.window ({}): after each ramp step the window still holds the \
             previous weight's traffic, so StickyCanaryShareOffWeight fires on every step; make `for` at least the window",
            monitoring.for_duration, monitoring.window
        ));
    }
    monitoring
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        assert!(is_label_key("release"));
        assert!(is_label_key("prometheus.io/rules"));
        assert!(!is_label_key("-release"));
        assert!(!is_label_key("a/b/c"));
        assert!(!is_label_key("Bad_Prefix/x"));
        assert!(is_label_value(""));
        assert!(is_label_value("kube-prometheus-stack"));
        assert!(!is_label_value("two words"));
        assert!(!is_label_value(&"x".repeat(64)));
    }
}
