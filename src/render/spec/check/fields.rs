//! The small field rules several sections share: names, ports, quantities, durations,
//! placeholders.

use crate::render::spec::app::SpecErrors;

/// Milliseconds in a Prometheus duration (`90s`, `5m`, `1h30m`; units y w d h m s ms, each at
/// most once, largest first, as Prometheus parses them), or `None` when it is not one or is 0.
pub(crate) fn duration_ms(text: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = text;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return None;
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let position = UNITS.iter().skip(next_unit).position(|(u, _)| *u == unit)? + next_unit;
        let factor = UNITS.get(position).map(|(_, f)| *f)?;
        total = total.checked_add(number.parse::<u64>().ok()?.checked_mul(factor)?)?;
        next_unit = position + 1;
        rest = after;
    }
    (total > 0).then_some(total)
}

/// A number setting, when given: into `slot` if it is finite, above `low` and at most `high`;
/// otherwise an error at `path` saying it is not `what`.
pub(super) fn bounded_number(
    errors: &mut SpecErrors,
    path: &str,
    value: Option<f64>,
    (low, high): (f64, f64),
    what: &str,
    slot: &mut f64,
) {
    if let Some(v) = value {
        if v.is_finite() && v > low && v <= high {
            *slot = v;
        } else {
            errors.add(path, format!("{v} is not {what}"));
        }
    }
}

/// A Prometheus rate window or interval, when given: into `slot` if it is a duration of at
/// least 1s; otherwise an error at `path` with `examples` of one (`5m or 90s`).
pub(super) fn window_duration(
    errors: &mut SpecErrors,
    path: &str,
    value: Option<String>,
    examples: &str,
    slot: &mut String,
) {
    if let Some(text) = value {
        match duration_ms(&text) {
            Some(ms) if ms >= 1_000 => *slot = text,
            _ => errors.add(
                path,
                format!("{text:?} is not a Prometheus duration of at least 1s (such as {examples})"),
            ),
        }
    }
}

/// DNS-1035 label: a DNS-1123 label ([`policy_core::is_label`]) that starts with a letter, at
/// most `max` bytes.
pub(super) fn is_dns1035(name: &str, max: usize) -> bool {
    name.len() <= max && name.starts_with(|c: char| c.is_ascii_lowercase()) && policy_core::is_label(name)
}

/// A Kubernetes quantity such as `100m`, `0.5`, `128Mi`, `1G`.
pub(super) fn is_quantity(q: &str) -> bool {
    let number_end = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(number_end);
    !number.is_empty()
        && number.bytes().filter(|b| *b == b'.').count() <= 1
        && number != "."
        && [
            "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
        ]
        .contains(&suffix)
}

pub(super) fn port_ok(path: &str, port: u32, errors: &mut SpecErrors) {
    if !(1..=65535).contains(&port) {
        errors.add(path, format!("{port} is not a port (1 to 65535)"));
    }
}

/// A digest nobody pushed: one hex digit repeated (the examples' `000...`).
pub(super) fn is_placeholder_digest(hex: &str) -> bool {
    let mut bytes = hex.bytes();
    bytes.next().is_some_and(|first| bytes.all(|b| b == first))
}

/// A secret copied from an example rather than generated.
pub(super) fn is_placeholder_secret(secret: &str) -> bool {
    let lower = secret.to_ascii_lowercase();
    [
        "change-me",
        "changeme",
        "change_me",
        "example",
        "placeholder",
        "replace-me",
    ]
    .iter()
    .any(|word| lower.contains(word))
        || secret.bytes().all(|b| Some(b) == secret.bytes().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_prometheus_parses_them() {
        assert_eq!(duration_ms("5m"), Some(300_000));
        assert_eq!(duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(duration_ms("15s"), Some(15_000));
        assert_eq!(duration_ms("250ms"), Some(250));
        assert_eq!(duration_ms("1w2d"), Some(9 * 86_400_000));
        for bad in [
            "",
            "5",
            "m",
            "5 m",
            "30m1h",
            "5m5m",
            "-5m",
            "0s",
            "1.5m",
            "5M",
            "99999999999999999y",
        ] {
            assert_eq!(duration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn quantities() {
        for ok in ["100m", "0.5", "128Mi", "1", "2G"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "m", "1x", "1..2", "-1"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
