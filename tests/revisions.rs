#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! The one revision table (`src/revisions.rs`) against what depends on it outside Rust: the
//! Istio builds of `tools/istio-xds` (one go.mod per tested revision, requiring exactly the
//! module the table names) and docs/testing.md's revision table.

use std::path::{Path, PathBuf};

use sticky_canary::revisions::{self, REVISIONS};

const BEGIN: &str = "<!-- BEGIN generated: revisions -->\n";
const END: &str = "<!-- END generated: revisions -->";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `istio.io/istio` requirement of a go.mod (`istio.io/istio v0.0.0-...`).
fn istio_requirement(go_mod: &Path) -> Option<String> {
    let text = std::fs::read_to_string(go_mod).unwrap_or_else(|e| panic!("{}: {e}", go_mod.display()));
    text.lines()
        .map(str::trim)
        .map(|l| l.strip_prefix("require ").unwrap_or(l))
        .find(|l| l.starts_with("istio.io/istio "))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
}

#[test]
fn every_tested_revision_has_its_own_istio_build() {
    let tool = root().join("tools/istio-xds");
    let mut modfiles = Vec::new();
    for (revision, tested) in revisions::tested() {
        let go_mod = tool.join(tested.modfile);
        assert_eq!(
            istio_requirement(&go_mod).as_deref(),
            Some(tested.istio_module),
            "{}: {} must require the Istio the table names",
            revision.name,
            go_mod.display()
        );
        let sum = go_mod.with_extension("sum");
        assert!(sum.is_file(), "{}: {} is missing", revision.name, sum.display());
        assert!(
            !modfiles.contains(&tested.modfile),
            "{}: two revisions share {}",
            revision.name,
            tested.modfile
        );
        modfiles.push(tested.modfile);
        assert!(
            tested.envoy.starts_with(&format!("{}.", tested.envoy_line)),
            "{}: Envoy {} is not on the {} line",
            revision.name,
            tested.envoy,
            tested.envoy_line
        );
    }
    // No stray Istio build that no revision uses.
    for entry in std::fs::read_dir(&tool).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("go") && name.ends_with(".mod") {
            assert!(
                modfiles.contains(&name.as_str()),
                "tools/istio-xds/{name} belongs to no tested revision in src/revisions.rs"
            );
        }
    }
}

#[test]
fn docs_testing_md_shows_the_table() {
    let path = root().join("docs/testing.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find(BEGIN)
        .expect("docs/testing.md has the generated revisions block")
        + BEGIN.len();
    let end = start + text[start..].find(END).expect("the block ends");
    let expected = revisions::markdown_table();
    if std::env::var_os("STICKY_CANARY_UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{expected}{}", &text[..start], &text[end..])).unwrap();
        return;
    }
    assert_eq!(
        &text[start..end],
        expected,
        "docs/testing.md's revision table differs from src/revisions.rs: run STICKY_CANARY_UPDATE_DOCS=1 cargo test --test revisions"
    );
    for revision in REVISIONS.iter().filter(|r| r.tested.is_some()) {
        assert!(text.contains(&format!("`{}`", revision.name)) || text.contains(revision.name));
    }
}
