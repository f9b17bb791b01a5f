//! Access analysis cross-checked exhaustively: for every bundle of
//! `tests/cases/` and `examples/bundles/`, for every principal × action ×
//! resource × context class of its universe, the principal is in `who_can`
//! of the resource (and the resource in `what_can` of the principal) under
//! that class exactly when the reference interpreter (written from the
//! rules, apart from the compiled evaluator the analysis runs) decides the
//! request Allow. Zero mismatches.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::SystemTime;

use verdict::analysis::{self, Bounds, Universe};
use verdict::bundle::{Bundle, LoadOptions, load};
use verdict::compile::Snapshot;
use verdict::eval::{EvalOptions, Outcome, Request, RequestLimits, RequestParts, reference};

type Tuple = (String, String, String, String);

/// A decision table's bundle, written out and loaded, with its options.
fn table_bundle(path: &Path, dir: &Path) -> (Bundle, EvalOptions) {
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (name, value) in table["files"].as_object().unwrap() {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, serde_json::to_string(value).unwrap()).unwrap();
    }
    let options = &table["options"];
    let opts = EvalOptions {
        trust_session_tags: options["trust_session_tags"].as_bool().unwrap_or(false),
        default_context: options["default_context"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let values = v
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|s| s.as_str().unwrap().to_owned())
                            .collect();
                        (k.clone(), values)
                    })
                    .collect::<BTreeMap<String, Vec<String>>>()
                    .into_iter()
                    .collect()
            })
            .unwrap_or_default(),
    };
    (load(dir, &LoadOptions::default()).unwrap().bundle, opts)
}

/// The Allow tuples of the universe, by the reference interpreter.
fn oracle(bundle: &Bundle, opts: &EvalOptions, u: &Universe) -> BTreeSet<Tuple> {
    let now = SystemTime::now();
    let mut allowed = BTreeSet::new();
    for p in &u.principals {
        for a in &u.actions {
            for r in &u.resources {
                for c in &u.contexts {
                    let parts = RequestParts {
                        principal: p.clone(),
                        action: a.clone(),
                        resource: r.clone(),
                        context: c.pairs.clone(),
                        session_policy: None,
                        explain: false,
                    };
                    let Ok(req) = Request::new(parts, &RequestLimits::default()) else {
                        continue;
                    };
                    if reference::evaluate(bundle, &req, opts, now).outcome == Outcome::Allow {
                        allowed.insert((p.clone(), a.clone(), r.clone(), c.name.clone()));
                    }
                }
            }
        }
    }
    allowed
}

fn tuples(access: &[analysis::Access]) -> BTreeSet<Tuple> {
    access
        .iter()
        .flat_map(|a| {
            a.allowed_when.iter().map(|c| {
                (
                    a.principal.clone(),
                    a.action.clone(),
                    a.resource.clone(),
                    c.clone(),
                )
            })
        })
        .collect()
}

fn cross_check(name: &str, bundle: &Bundle, opts: &EvalOptions) {
    let snap = Snapshot::compile(bundle, opts, 1);
    let u = Universe::of(bundle, Bounds::default());
    assert!(
        u.cut.is_empty(),
        "{name}: the universe was cut: {:?}",
        u.cut
    );
    let want = oracle(bundle, opts, &u);
    let who: BTreeSet<Tuple> = u
        .resources
        .iter()
        .flat_map(|r| tuples(&analysis::who_can(&snap, &u, r, &[])))
        .collect();
    let what: BTreeSet<Tuple> = u
        .principals
        .iter()
        .flat_map(|p| tuples(&analysis::what_can(&snap, &u, p, None)))
        .collect();
    for (label, got) in [("who-can", &who), ("what-can", &what)] {
        let missing: Vec<_> = want.difference(got).take(5).collect();
        let extra: Vec<_> = got.difference(&want).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name}: {label} differs from Authorize (reference):\n  missing {missing:?}\n  extra {extra:?}"
        );
    }
    eprintln!(
        "{name}: {} requests ({} principals x {} actions x {} resources x {} contexts), {} allowed: who-can and what-can agree",
        u.size(),
        u.principals.len(),
        u.actions.len(),
        u.resources.len(),
        u.contexts.len(),
        want.len()
    );
}

#[test]
fn who_can_and_what_can_agree_with_authorize_on_every_request_of_the_universe() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut tables: Vec<_> = std::fs::read_dir(root.join("tests/cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    tables.sort();
    for path in tables {
        let dir = tempfile::tempdir().unwrap();
        let (bundle, opts) = table_bundle(&path, dir.path());
        cross_check(&path.file_name().unwrap().to_string_lossy(), &bundle, &opts);
    }
    for entry in std::fs::read_dir(root.join("examples/bundles")).unwrap() {
        let path = entry.unwrap().path();
        let bundle = load(&path, &LoadOptions::default()).unwrap().bundle;
        cross_check(
            &path.display().to_string(),
            &bundle,
            &EvalOptions::default(),
        );
    }
}
