//! The import graph of `src/`: a module may use only modules before it in
//! the order of docs/architecture.md (each layer knows the ones below it,
//! never the ones above). Every `crate::` path outside comments counts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The modules of `src/`, lowest first.
const ORDER: &[&str] = &[
    "policy",
    "bundle",
    "import",
    "compile",
    "eval",
    "suite",
    "analysis",
    "cache",
    "reload",
    "telemetry",
    "proto",
    "conn",
    "service",
    "runtime",
    "config",
    "app",
    "cli",
    "main",
];

/// Arrows against the order that are known and still to be removed (none
/// now). Each must still exist, so that this list only shrinks.
const KNOWN: &[(&str, &str)] = &[];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib").then_some(name)
}

/// The modules a source text names as `crate::name`, also inside
/// `use crate::{a::…, b::…}` groups, outside line comments.
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: after `{` or a comma at depth 0.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start => {
                        out.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

#[test]
fn no_module_uses_one_above_it() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    let mut against = BTreeSet::new();
    for file in &all {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let from = rank(&module).unwrap_or_else(|| panic!("{module} is not in ORDER"));
        for used in uses(&std::fs::read_to_string(file).unwrap()) {
            if used == module {
                continue;
            }
            let to =
                rank(&used).unwrap_or_else(|| panic!("{used} (used by {module}) is not in ORDER"));
            if to > from {
                against.insert((module.clone(), used, file.display().to_string()));
            }
        }
    }
    let arrows: BTreeSet<(&str, &str)> = against
        .iter()
        .map(|(a, b, _)| (a.as_str(), b.as_str()))
        .collect();
    let unknown: Vec<_> = against
        .iter()
        .filter(|(a, b, _)| !KNOWN.contains(&(a.as_str(), b.as_str())))
        .collect();
    assert!(
        unknown.is_empty(),
        "imports against the order: {unknown:#?}"
    );
    for known in KNOWN {
        assert!(
            arrows.contains(known),
            "{known:?} is gone: take it off KNOWN"
        );
    }
}

#[test]
fn uses_reads_paths_and_groups() {
    let text = "use crate::eval::Request;\n// crate::app in a comment\nuse crate::{bundle::{A, B}, policy::C};\nlet x = crate::cache::f();";
    let found: Vec<_> = uses(text).into_iter().collect();
    assert_eq!(found, ["bundle", "cache", "eval", "policy"]);
}
