use super::*;

#[test]
fn stable_takes_the_rest() {
    let current = vec![("v1".to_owned(), 90.0), ("v2".to_owned(), 10.0), ("v3".to_owned(), 0.0)];
    assert_eq!(new_weights(&current, "v3", 5.0).unwrap(), vec![85.0, 10.0, 5.0]);
    assert_eq!(new_weights(&current, "v2", 100.0).unwrap(), vec![0.0, 100.0, 0.0]);
    let full = vec![("v1".to_owned(), 0.0), ("v2".to_owned(), 100.0), ("v3".to_owned(), 0.0)];
    assert_eq!(
        new_weights(&full, "v3", 5.0).unwrap_err().to_string(),
        "the canaries would take 105%, more than 100"
    );
}

#[test]
fn refuses_bad_input() {
    let current = vec![("v1".to_owned(), 90.0), ("v2".to_owned(), 10.0)];
    assert!(new_weights(&current, "v1", 50.0)
        .unwrap_err()
        .to_string()
        .contains("stable"));
    assert!(new_weights(&current, "v9", 50.0)
        .unwrap_err()
        .to_string()
        .contains("v1, v2"));
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
fn a_weight_in_a_comment_or_under_another_key_is_left_alone() {
    let text =
        "versions:\n  - name: v1 # was weight: 70\n    weight: 90\n  - {name: v2, weight: 10}\nnotes:\n  weight: 10\n";
    assert_eq!(
        rewrite_weights(text, &[75.0, 25.0]).unwrap(),
        "versions:\n  - name: v1 # was weight: 70\n    weight: 75\n  - {name: v2, weight: 25}\nnotes:\n  weight: 10\n"
    );
    let missing = "versions:\n  - name: v1\n  - name: v2\n    weight: 10\n";
    assert!(rewrite_weights(missing, &[90.0, 10.0])
        .unwrap_err()
        .to_string()
        .contains("versions[0].weight: expected exactly one, found 0"));
}

#[test]
fn quoted_weight_is_refused() {
    let text = "versions:\n  - name: v1\n    weight: \"90\"\n  - name: v2\n    weight: 10\n";
    assert!(rewrite_weights(text, &[80.0, 20.0])
        .unwrap_err()
        .to_string()
        .contains("plain number"));
}

#[test]
fn percentages_follow_the_filters_exact_rule() {
    for (percent, expected) in [
        (12.5, Some(1250)),
        (0.01, Some(1)),
        (0.0, Some(0)),
        (100.0, Some(10_000)),
        (33.33, Some(3333)),
        (0.001, None),
        (1e-7, None),
        (100.01, None),
        (-1.0, None),
        (0.1 + 0.2, None),
        (f64::NAN, None),
        (f64::INFINITY, None),
    ] {
        assert_eq!(super::to_basis_points(percent), expected, "{percent}");
    }
}
