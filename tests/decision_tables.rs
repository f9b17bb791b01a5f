//! Decision tables: every JSON file under `tests/cases/` is a bundle (its
//! files inline) and a list of cases, each naming the rule of
//! `evaluation.md` it checks. The harness writes the bundle to a temporary
//! directory, loads it with the real loader, runs every case, and checks that
//! the tables together cover every operator, every row of §9 and every open
//! point U1–U42.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::SystemTime;

use serde::Deserialize;
use verdict::bundle::{LoadOptions, load};
use verdict::compile::Snapshot;
use verdict::eval::{EvalOptions, RequestLimits, logic, reference};
use verdict::policy::{BaseOperator, Operator};
use verdict::suite;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    name: String,
    #[serde(default)]
    options: TableOptions,
    /// Kept as written, so that unquoted numbers keep their text.
    files: BTreeMap<String, Box<serde_json::value::RawValue>>,
    cases: Vec<serde_json::Value>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableOptions {
    #[serde(default)]
    trust_session_tags: bool,
    #[serde(default)]
    default_context: BTreeMap<String, Vec<String>>,
}

struct Coverage {
    rules: BTreeSet<String>,
    operators: BTreeSet<String>,
}

fn run_table(path: &Path, cov: &mut Coverage) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    let table: Table =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in &table.files {
        let p = dir.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, value.get()).unwrap();
    }
    for (i, c) in table.cases.iter().enumerate() {
        let rule = c.get("rule").and_then(|r| r.as_str());
        assert!(rule.is_some(), "{}: case {i} names no rule", path.display());
        cov.rules.insert(rule.unwrap_or_default().to_owned());
    }
    let tests = serde_json::json!({ "name": table.name, "cases": table.cases });
    fs::create_dir_all(dir.path().join("tests")).unwrap();
    fs::write(
        dir.path().join("tests/table.json"),
        serde_json::to_string_pretty(&tests).unwrap(),
    )
    .unwrap();

    let opts = LoadOptions {
        with_tests: true,
        ..Default::default()
    };
    let loaded = load(dir.path(), &opts).unwrap_or_else(|e| {
        let d: Vec<String> = e.diagnostics().iter().map(ToString::to_string).collect();
        panic!(
            "{}: bundle does not load: {e}\n{}",
            path.display(),
            d.join("\n")
        )
    });
    let bundle = &loaded.bundle;
    for p in bundle.policies.values() {
        for st in &p.document.statements {
            for c in &st.conditions {
                cov.operators.insert(c.op.to_string());
            }
        }
    }
    let (cases, errors) = suite::parse_tests(bundle, &RequestLimits::default());
    assert!(
        errors.is_empty(),
        "{}: invalid cases:\n{}",
        path.display(),
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let eval_opts = EvalOptions {
        trust_session_tags: table.options.trust_session_tags,
        default_context: table.options.default_context.clone().into_iter().collect(),
    };
    // Both evaluators decide every case; the compiled one must agree with the
    // reference to the last field, with and without explain.
    let snapshot = Snapshot::compile(bundle, &eval_opts, 1);
    let disagreements = std::cell::RefCell::new(Vec::new());
    let results = suite::run(&cases, &|req, now: SystemTime| {
        let want = reference::evaluate(bundle, req, &eval_opts, now);
        let got = logic::evaluate(&snapshot, req, now);
        let mut explained = req.clone();
        explained.explain = true;
        let want_explained = reference::evaluate(bundle, &explained, &eval_opts, now);
        let got_explained = logic::evaluate(&snapshot, &explained, now);
        if got != want || got_explained != want_explained {
            disagreements.borrow_mut().push(format!(
                "{}: {} {} {}: compiled and reference disagree:\n  compiled  {:?}\n  reference {:?}",
                path.file_name().unwrap().to_string_lossy(),
                req.principal,
                req.action,
                req.resource,
                got_explained,
                want_explained
            ));
        }
        want
    });
    let mut out = disagreements.into_inner();
    for r in results.iter().filter(|r| !r.failures.is_empty()) {
        let got = r
            .decision
            .as_ref()
            .map(|d| {
                format!(
                    " (got {} by {})",
                    d.outcome.as_str(),
                    suite::describe_matched(d)
                )
            })
            .unwrap_or_default();
        out.push(format!(
            "{} line {}: {}: {}{got}",
            path.file_name().unwrap().to_string_lossy(),
            r.case.position.line,
            r.case.label,
            r.failures.join("; ")
        ));
    }
    out
}

#[test]
fn decision_tables() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut paths: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty());
    let mut cov = Coverage {
        rules: BTreeSet::new(),
        operators: BTreeSet::new(),
    };
    let mut failures = Vec::new();
    for p in &paths {
        failures.extend(run_table(p, &mut cov));
    }
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Every row of §9 (48 is a load error, tested by the broken-bundle corpus).
    let rows: BTreeSet<u32> = cov
        .rules
        .iter()
        .filter_map(|r| r.strip_prefix("§9 #"))
        .filter_map(|n| n.parse().ok())
        .collect();
    let missing_rows: Vec<u32> = (1..=75).filter(|n| *n != 48 && !rows.contains(n)).collect();
    assert!(
        missing_rows.is_empty(),
        "§9 rows without a case: {missing_rows:?}"
    );
    // Every open point.
    let missing_u: Vec<u32> = (1..=42)
        .filter(|n| !cov.rules.contains(&format!("U{n}")))
        .collect();
    assert!(
        missing_u.is_empty(),
        "open points without a case: {missing_u:?}"
    );
    // The second edition's new points that are in force (docs/evaluation.md §9).
    let missing_second: Vec<&str> = ["U43", "U44", "U45", "U46", "U47"]
        .into_iter()
        .filter(|u| !cov.rules.contains(*u))
        .collect();
    assert!(
        missing_second.is_empty(),
        "second-edition points without a case: {missing_second:?}"
    );
    // Every operator, plain, with IfExists and with both set qualifiers.
    let mut missing_ops = Vec::new();
    for base in BaseOperator::ALL {
        let forms: Vec<Operator> = if *base == BaseOperator::Null {
            vec![Operator::parse("Null").unwrap()]
        } else {
            ["", "ForAllValues:", "ForAnyValue:"]
                .iter()
                .flat_map(|p| {
                    [
                        format!("{p}{}", base.name()),
                        format!("{p}{}IfExists", base.name()),
                    ]
                })
                .filter(|n| !n.contains(':') || !n.ends_with("IfExists"))
                .map(|n| Operator::parse(&n).unwrap())
                .collect()
        };
        for op in forms {
            let name = op.to_string();
            if !cov.operators.contains(&name) {
                missing_ops.push(name);
            }
        }
    }
    assert!(
        missing_ops.is_empty(),
        "operators no table exercises: {missing_ops:?}"
    );
}
