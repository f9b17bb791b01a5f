//! The reference pages stay true to the code: every setting the
//! configuration reads is documented, and every setting documented is read.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The names in backquotes in the first column of the page's settings table.
fn documented(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap();
        for (i, part) in first.split('`').enumerate() {
            // Odd pieces are inside backquotes; flags start with `--`.
            if i % 2 == 1 && !part.starts_with("--") {
                names.insert(part.to_owned());
            }
        }
    }
    names
}

#[test]
fn every_setting_is_documented_and_every_documented_setting_exists() {
    let page = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let documented = documented(&page);
    let read: BTreeSet<String> = verdict::config::SETTINGS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let missing: Vec<_> = read.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&read).collect();
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md: {missing:?}"
    );
    assert!(unknown.is_empty(), "documented but not read: {unknown:?}");
}
