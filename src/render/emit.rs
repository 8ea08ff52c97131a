//! A small block-style YAML writer whose output reads the same under YAML 1.1 and 1.2.
//! Hand-written because serde_yaml_ng quotes by YAML 1.2 rules and kubectl reads YAML 1.1.
//!
//! kubectl reads manifests as YAML 1.1, where an unquoted `on`, `yes`, `0777`
//! or `10:20` is not a string. General emitters quote by YAML 1.2 rules and
//! leave those bare, so a Deployment env value `on` would reach the API server
//! as a boolean. Here a string is left plain only when it is plainly a string
//! in both versions; everything else is quoted.
//!
//! ```
//! use sticky_canary::render::emit::to_yaml;
//! let value: serde_yaml_ng::Value = serde_yaml_ng::from_str("{a: 'on', b: [1, x], c: {}}").unwrap();
//! assert_eq!(to_yaml(&value), "a: 'on'\nb:\n- 1\n- x\nc: {}\n");
//! ```

use serde_yaml_ng::Value as Yaml;

/// Writes one document (no leading `---`).
pub fn to_yaml(value: &Yaml) -> String {
    let mut out = String::new();
    match value {
        Yaml::Mapping(m) if !m.is_empty() => mapping(m, 0, &mut out),
        Yaml::Sequence(s) if !s.is_empty() => sequence(s, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn pad(indent: usize, out: &mut String) {
    for _ in 0..indent {
        out.push(' ');
    }
}

/// Writes `key: value` lines at `indent`; the first line's padding is assumed written when
/// `first_padded` (a mapping that starts after a sequence dash).
fn mapping_lines(m: &serde_yaml_ng::Mapping, indent: usize, mut first_padded: bool, out: &mut String) {
    for (key, value) in m {
        if !first_padded {
            pad(indent, out);
        }
        first_padded = false;
        out.push_str(&scalar(key));
        out.push(':');
        match value {
            Yaml::Mapping(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(inner, indent + 2, out);
            }
            Yaml::Sequence(items) if !items.is_empty() => {
                out.push('\n');
                sequence(items, indent, out);
            }
            Yaml::Tagged(tagged) => {
                out.push(' ');
                out.push_str(&scalar(&tagged.value));
                out.push('\n');
            }
            Yaml::String(text) if literal_block_ok(text) => {
                out.push_str(" |\n");
                for line in text.lines() {
                    if !line.is_empty() {
                        pad(indent + 2, out);
                        out.push_str(line);
                    }
                    out.push('\n');
                }
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

/// Whether a literal block (`|`) carries `text` exactly, the same in YAML 1.1 and 1.2: several
/// lines ending in one newline (what `|` keeps), only printable characters, and no line
/// starting with a space or tab (which would need an indentation indicator) or ending in one.
/// Multi-line values (a PromQL query) then read as they are meant, not as one escaped line.
fn literal_block_ok(text: &str) -> bool {
    text.contains('\n')
        && text.ends_with('\n')
        && !text.ends_with("\n\n")
        && text.chars().all(|c| c == '\n' || !c.is_control())
        && text
            .lines()
            .all(|l| !l.starts_with([' ', '\t']) && !l.ends_with([' ', '\t']))
}

fn mapping(m: &serde_yaml_ng::Mapping, indent: usize, out: &mut String) {
    mapping_lines(m, indent, false, out);
}

fn sequence(items: &[Yaml], indent: usize, out: &mut String) {
    for item in items {
        pad(indent, out);
        out.push_str("- ");
        match item {
            Yaml::Mapping(m) if !m.is_empty() => mapping_lines(m, indent + 2, true, out),
            Yaml::Sequence(inner) if !inner.is_empty() => {
                out.pop();
                out.push('\n');
                sequence(inner, indent + 2, out);
            }
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::Null => "null".to_owned(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        Yaml::String(s) => string(s),
        Yaml::Mapping(m) if m.is_empty() => "{}".to_owned(),
        Yaml::Sequence(s) if s.is_empty() => "[]".to_owned(),
        // Nested non-empty containers are handled by the callers; a tag keeps its value.
        Yaml::Tagged(tagged) => scalar(&tagged.value),
        Yaml::Mapping(_) | Yaml::Sequence(_) => "{}".to_owned(),
    }
}

/// Words that YAML 1.1 or 1.2 reads as booleans or null.
const SPECIAL_WORDS: &[&str] = &["y", "yes", "n", "no", "true", "false", "on", "off", "null", "~"];

fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    if !(first.is_ascii_alphanumeric() || first == '/') {
        return false;
    }
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || "._/-+:@=".contains(c)) {
        return false;
    }
    if s.ends_with(':') || s.contains(": ") {
        return false;
    }
    if SPECIAL_WORDS.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    // Anything that might be a number in either version (ints, octal, hex, floats,
    // sexagesimal `10:20`, `1_000`) is quoted.
    let numeric_looking = (first.is_ascii_digit() || first == '+' || first == '-' || first == '.')
        && s.chars().all(|c| c.is_ascii_hexdigit() || "xXoO._:+-".contains(c));
    !numeric_looking
}

fn string(s: &str) -> String {
    if plain_is_safe(s) {
        s.to_owned()
    } else if s.chars().all(|c| !c.is_control()) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        // A JSON string is a valid YAML double-quoted scalar.
        serde_json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_what_yaml_1_1_would_not_read_as_a_string() {
        for s in [
            "on", "Off", "yes", "y", "N", "null", "~", "true", "0777", "10:20", "1e3", "0x1F", "1_000", "-1", ".5", "",
            "@type", "a: b", "x:", "#c", "it's",
        ] {
            assert_ne!(string(s), s, "{s} must be quoted");
        }
        for s in [
            "v1.0.0",
            "100m",
            "128Mi",
            "30s",
            "oci://reg.example/repo:tag",
            "x-canary-version",
            "istio.io/rev",
            "asm-1-28",
            "/ready",
            "sha256:ab",
        ] {
            assert_eq!(string(s), s, "{s} can stay plain");
        }
        assert_eq!(string("it's"), "'it''s'");
        assert_eq!(string("a\nb"), "\"a\\nb\"");
    }

    #[test]
    fn multi_line_strings_are_literal_blocks_when_that_is_exact() {
        let value: Yaml = serde_yaml_ng::from_str("q: \"sum(a)\\n/\\nsum(b)\\n\"\nr: \"x\\n  y\\n\"\n").unwrap();
        let written = to_yaml(&value);
        assert!(written.starts_with("q: |\n  sum(a)\n  /\n  sum(b)\n"), "{written}");
        assert!(
            written.contains("r: \"x\\n  y\\n\""),
            "indented lines stay quoted: {written}"
        );
        assert_eq!(serde_yaml_ng::from_str::<Yaml>(&written).unwrap(), value);
        for text in [
            "one line",
            "no newline at the end\nsecond",
            "two\n\n",
            " lead\n",
            "trail \n",
            "tab\there\n",
        ] {
            assert!(!literal_block_ok(text), "{text:?}");
        }
    }

    #[test]
    fn round_trips() {
        let text =
            "a:\n  b:\n  - x: 1\n    y:\n    - 'on'\n    - {}\n  - []\n  c: '0777'\nd: \"tab\\there\"\ne: 12.5\n";
        let value: Yaml = serde_yaml_ng::from_str(text).unwrap();
        let written = to_yaml(&value);
        assert_eq!(serde_yaml_ng::from_str::<Yaml>(&written).unwrap(), value, "{written}");
    }
}
