//! The two evaluators read side by side: the compiled one
//! (`src/eval/logic.rs`) and the reference interpreter
//! (`src/eval/reference.rs`) are written as the same named phases, no
//! function of `src/eval` is longer than a reader can hold, and the
//! reference shares no verbatim run of lines with the code it checks (an
//! oracle that copies the fast path is no oracle there).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::HashMap;
use std::path::Path;

/// The phases of a decision (docs/evaluation.md, "How a decision is
/// made"), as each evaluator names its functions.
const PHASES: &[&str] = &["participants", "statements", "gates", "explain", "decide"];

/// The longest function allowed in `src/eval`, in lines.
const MAX_FUNCTION_LINES: usize = 150;

/// Lines a shared run must have to count as copied.
const RUN: usize = 6;

fn source(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/eval")
        .join(name);
    std::fs::read_to_string(&path).unwrap()
}

/// Each function of a source text: its name and its length in lines
/// (from `fn` to the closing brace at the same indentation).
fn functions(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let rest = trimmed
            .strip_prefix("pub(crate) ")
            .or_else(|| trimmed.strip_prefix("pub "))
            .unwrap_or(trimmed);
        let Some(rest) = rest.strip_prefix("fn ") else {
            continue;
        };
        if line.trim_end().ends_with(';') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{indent}}}");
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.trim_end() == close)
            .map_or(lines.len(), |p| i + 1 + p);
        out.push((name, end - i + 1));
    }
    out
}

#[test]
fn both_evaluators_have_the_same_phases() {
    for file in ["logic.rs", "reference.rs"] {
        let names: Vec<String> = functions(&source(file))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for phase in PHASES {
            assert!(
                names.iter().any(|n| n == phase),
                "src/eval/{file} has no phase function `{phase}`"
            );
        }
    }
}

#[test]
fn no_function_of_eval_is_too_long() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/eval");
    let mut long = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        for (f, n) in functions(&source(&name)) {
            if n > MAX_FUNCTION_LINES {
                long.push(format!("src/eval/{name}: fn {f} has {n} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_FUNCTION_LINES} lines: {long:#?}"
    );
}

/// The lines that carry code: trimmed, without blank lines, comments and
/// lines of punctuation alone.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim().to_owned()))
        .filter(|(_, l)| {
            !l.is_empty() && !l.starts_with("//") && l.chars().any(|c| c.is_alphanumeric())
        })
        .collect()
}

/// Every run of `RUN` code lines of `b` that stands verbatim in `a`, as
/// `b-line = a-line`.
fn copied_runs(a: &str, b: &str) -> Vec<String> {
    let (a, b) = (code_lines(a), code_lines(b));
    let a_text: Vec<String> = a.iter().map(|(_, l)| l.clone()).collect();
    let mut at: HashMap<&[String], usize> = HashMap::new();
    for (i, window) in a_text.windows(RUN).enumerate() {
        at.entry(window).or_insert(a[i].0);
    }
    let b_text: Vec<String> = b.iter().map(|(_, l)| l.clone()).collect();
    b_text
        .windows(RUN)
        .enumerate()
        .filter_map(|(i, w)| at.get(w).map(|line| format!("{} = {line}", b[i].0)))
        .collect()
}

#[test]
fn the_reference_copies_no_run_of_the_fast_path() {
    let copied = copied_runs(&source("logic.rs"), &source("reference.rs"));
    assert!(
        copied.is_empty(),
        "verbatim runs of {RUN} lines (reference.rs line = logic.rs line): {copied:#?}"
    );
}

#[test]
fn the_checks_find_what_they_look_for() {
    let body = "    let x = 1;\n    let y = 2;\n    let z = x + y;\n    call(z);\n    other(z);\n    last(z);\n";
    let a = format!("fn a() {{\n{body}}}\n");
    let b = format!("// elsewhere\nfn b() {{\n    first();\n{body}}}\n");
    assert_eq!(copied_runs(&a, &b), vec!["4 = 2".to_owned()]);
    assert!(copied_runs(&a, "fn c() {\n    first();\n}\n").is_empty());
    assert_eq!(functions(&a), vec![("a".to_owned(), 8)]);
}
