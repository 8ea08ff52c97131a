use super::*;

#[test]
fn every_basis_point_reads_back_from_its_formatting() {
    for basis_points in 0..=TOTAL_BASIS_POINTS {
        let text = format_percent(u32::from(basis_points));
        assert_eq!(parse_percent(&text), Ok(basis_points), "{text}");
        let two_decimals = format!("{}.{:02}", basis_points / 100, basis_points % 100);
        assert_eq!(parse_percent(&two_decimals), Ok(basis_points), "{two_decimals}");
        let scientific = format!("{basis_points}e-2");
        assert_eq!(parse_percent(&scientific), Ok(basis_points), "{scientific}");
    }
}

#[test]
fn any_json_spelling_of_a_weight_is_read_exactly() {
    for (text, basis_points) in [
        ("0", 0),
        ("-0", 0),
        ("-0.0e5", 0),
        ("0e99999999999999999", 0),
        ("100", 10_000),
        ("100.00", 10_000),
        ("1e2", 10_000),
        ("1E+2", 10_000),
        ("1000000e-4", 10_000),
        ("0.01", 1),
        ("1e-2", 1),
        ("0.10", 10),
        ("12.500000", 1250),
        ("0.0001e2", 1),
    ] {
        assert_eq!(parse_percent(text), Ok(basis_points), "{text}");
    }
}

#[test]
fn what_is_not_a_weight_says_why_with_the_text() {
    for (text, message) in [
        ("-0.5", "-0.5 is negative"),
        ("-1e-9999", "-1e-9999 is negative"),
        ("100.5", "100.5 is above 100"),
        ("1e400", "1e400 is above 100"),
        ("1000100e-4", "1000100e-4 is above 100"),
        (
            "1.005",
            "1.005 has more than two decimals (weights have 0.01% resolution)",
        ),
        (
            "0.000000000000000000001",
            "0.000000000000000000001 has more than two decimals (weights have 0.01% resolution)",
        ),
        (
            "9999999e-5",
            "9999999e-5 has more than two decimals (weights have 0.01% resolution)",
        ),
        ("1e99999999999999999999", "1e99999999999999999999 is not a weight"),
    ] {
        assert_eq!(
            parse_percent(text).map_err(|e| e.to_string()),
            Err(message.to_owned()),
            "{text}"
        );
    }
}

#[test]
fn exponents_at_the_ends_of_i64_neither_overflow_nor_loop() {
    for text in [
        "1e9223372036854775807",
        "1e9223372036854775806",
        "9.99e9223372036854775807",
    ] {
        assert_eq!(parse_percent(text), Err(PercentError::AboveHundred(text.to_owned())));
    }
    for text in ["1e-9223372036854775808", "1.5e-9223372036854775807"] {
        assert_eq!(parse_percent(text), Err(PercentError::TooManyDecimals(text.to_owned())));
    }
}

#[test]
fn text_outside_json_number_syntax_is_not_a_number() {
    for text in [
        "", "-", "abc", "+5", "5.", ".5", "05", "1e", "1e+", "--1", "0x10", " 5", "5 ", "5%", "1.2.3", "1e5e5", "١",
    ] {
        assert_eq!(
            parse_percent(text),
            Err(PercentError::NotANumber(text.to_owned())),
            "{text:?}"
        );
    }
}

#[test]
fn format_percent_drops_trailing_zeros() {
    for (basis_points, text) in [
        (0, "0"),
        (1, "0.01"),
        (10, "0.1"),
        (1250, "12.5"),
        (1255, "12.55"),
        (10_000, "100"),
    ] {
        assert_eq!(format_percent(basis_points), text);
    }
}
