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

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::SystemTime;

use verdict::analysis::{self, Bounds, Universe};
use verdict::bundle::{Bundle, LoadOptions, load};
use verdict::compile::Snapshot;
use verdict::eval::{EvalOptions, Outcome, Request, RequestLimits, RequestParts, logic, reference};

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

/// The request of the universe for (principal, action, resource) under a
/// class's context pairs; `None` when it is not valid.
fn request(p: &str, a: &str, r: &str, pairs: &[(String, Vec<String>)]) -> Option<Request> {
    let parts = RequestParts {
        principal: p.to_owned(),
        action: a.to_owned(),
        resource: r.to_owned(),
        context: pairs.to_vec(),
        session_policy: None,
        explain: false,
    };
    Request::new(parts, &RequestLimits::default()).ok()
}

/// Every valid request of the universe, with its tuple.
fn each_request(u: &Universe, mut f: impl FnMut(Tuple, &Request)) {
    for p in &u.principals {
        for a in &u.actions {
            for r in &u.resources {
                for c in &u.contexts {
                    if let Some(req) = request(p, a, r, &c.pairs) {
                        f((p.clone(), a.clone(), r.clone(), c.name.clone()), &req);
                    }
                }
            }
        }
    }
}

/// The Allow tuples of the universe, by the reference interpreter.
fn oracle(bundle: &Bundle, opts: &EvalOptions, u: &Universe) -> BTreeSet<Tuple> {
    let now = SystemTime::now();
    let mut allowed = BTreeSet::new();
    each_request(u, |t, req| {
        if reference::evaluate(bundle, req, opts, now).outcome == Outcome::Allow {
            allowed.insert(t);
        }
    });
    allowed
}

/// The allowed (principal, action, resource, class) tuples of answers: an
/// unconditional answer stands for every class whose request is valid.
fn tuples(access: &[analysis::Access], u: &Universe) -> BTreeSet<Tuple> {
    let valid = |a: &analysis::Access, pairs: &[(String, Vec<String>)]| {
        request(&a.principal, &a.action, &a.resource, pairs).is_some()
    };
    access
        .iter()
        .flat_map(|a| {
            let classes: Vec<String> = if a.unconditional {
                assert!(a.allowed_when.is_empty(), "unconditional lists no class");
                u.contexts
                    .iter()
                    .filter(|c| valid(a, &c.pairs))
                    .map(|c| c.name.clone())
                    .collect()
            } else {
                a.allowed_when.clone()
            };
            classes
                .into_iter()
                .map(|c| (a.principal.clone(), a.action.clone(), a.resource.clone(), c))
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
        .flat_map(|r| tuples(&analysis::who_can(&snap, &u, r, &[]), &u))
        .collect();
    let what: BTreeSet<Tuple> = u
        .principals
        .iter()
        .flat_map(|p| tuples(&analysis::what_can(&snap, &u, p, None), &u))
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

/// A copy of the example bundle in `dir`, with `change` applied.
fn planted(dir: &Path, change: impl FnOnce(&Path)) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bundles/kms");
    let out = dir.to_path_buf();
    support::copy_dir(&root, &out);
    std::fs::remove_dir_all(out.join("tests")).unwrap();
    change(&out);
    out
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Add a statement to a policy file (whether `Statement` is a list or one
/// object).
fn add_statement(path: &Path, statement: serde_json::Value) {
    edit_json(path, |v| {
        let list = match v["Statement"].take() {
            serde_json::Value::Array(a) => a,
            one => vec![one],
        };
        v["Statement"] = serde_json::Value::Array(list);
        v["Statement"].as_array_mut().unwrap().push(statement);
    });
}

const KEY1: &str = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// `verdict eval` of the witnesses on a bundle: whether each is allowed.
fn eval_allowed(bundle: &Path, witnesses: &[serde_json::Value]) -> Vec<bool> {
    let file = bundle.with_extension("witnesses.jsonl");
    let lines: Vec<String> = witnesses.iter().map(ToString::to_string).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(["eval", "--requests"])
        .arg(&file)
        .arg(bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["decision"] == "Allow")
        .collect()
}

/// A reported change as (change, principal, action, resource, class)
/// tuples: one per class it lists, or per valid class of the universe when
/// it holds under every one.
fn change_tuples(
    c: &analysis::Change,
    u: &Universe,
) -> Vec<(String, String, String, String, String)> {
    let w = |k: &str| c.witness[k].as_str().unwrap().to_owned();
    let valid = |pairs: &[(String, Vec<String>)]| {
        request(&w("principal"), &w("action"), &w("resource"), pairs).is_some()
    };
    let classes: Vec<String> = if c.every_context {
        assert!(c.contexts.is_empty());
        u.contexts
            .iter()
            .filter(|k| valid(&k.pairs))
            .map(|k| k.name.clone())
            .collect()
    } else {
        assert!(
            c.contexts.contains(&c.context),
            "the witness's class is listed"
        );
        c.contexts.clone()
    };
    classes
        .into_iter()
        .map(|class| {
            (
                c.change.to_owned(),
                w("principal"),
                w("action"),
                w("resource"),
                class,
            )
        })
        .collect()
}

/// Every request of the universe whose Allow differs, found by deciding
/// each on both sides.
fn full_diff(
    old: &Snapshot,
    new: &Snapshot,
    u: &Universe,
) -> BTreeSet<(String, String, String, String, String)> {
    let now = SystemTime::now();
    let mut out = BTreeSet::new();
    each_request(u, |(p, a, r, c), req| {
        let was = logic::evaluate(old, req, now).outcome == Outcome::Allow;
        let is = logic::evaluate(new, req, now).outcome == Outcome::Allow;
        if was != is {
            let change = if is { "gained" } else { "lost" };
            out.insert((change.into(), p, a, r, c));
        }
    });
    out
}

#[test]
fn diff_reports_every_planted_change_with_witnesses_that_flip_under_eval() {
    type Plant = (
        &'static str,
        &'static str,
        (&'static str, &'static str),
        Box<dyn FnOnce(&Path)>,
    );
    let plants: Vec<Plant> = vec![
        (
            "identity statement",
            "gained",
            ("arn:aws:iam::111122223333:user/bob", "kms:Decrypt"),
            Box::new(|b: &Path| {
                add_statement(
                    &b.join("policies/kms/create-keys.json"),
                    serde_json::json!({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY1}),
                );
            }),
        ),
        (
            "key policy statement",
            "lost",
            ("arn:aws:iam::111122223333:user/frank", "kms:Encrypt"),
            Box::new(|b: &Path| {
                add_statement(
                    &b.join("policies/keys/default-key-policy.json"),
                    serde_json::json!({
                        "Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::111122223333:user/frank"},
                        "Action": "kms:Encrypt", "Resource": "*"
                    }),
                );
            }),
        ),
        (
            "SCP",
            "lost",
            ("arn:aws:iam::111122223333:user/erin", "kms:Decrypt"),
            Box::new(|b: &Path| {
                std::fs::create_dir_all(b.join("policies/scp")).unwrap();
                std::fs::write(
                    b.join("policies/scp/no-decrypt.json"),
                    serde_json::json!({
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Effect": "Allow", "Action": "*", "Resource": "*"},
                            {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}
                        ]
                    })
                    .to_string(),
                )
                .unwrap();
                std::fs::write(
                    b.join("accounts.json"),
                    serde_json::json!({
                        "111122223333": {"scps": ["scp/no-decrypt"]}
                    })
                    .to_string(),
                )
                .unwrap();
            }),
        ),
        (
            "permissions boundary",
            "lost",
            ("arn:aws:iam::111122223333:user/frank", "kms:Decrypt"),
            Box::new(|b: &Path| {
                edit_json(&b.join("principals.json"), |v| {
                    v["principals"]["arn:aws:iam::111122223333:user/frank"]["boundary"] =
                        "kms/view-keys".into();
                });
            }),
        ),
        (
            "grant",
            "gained",
            (
                "arn:aws:iam::111122223333:role/PaymentsWorker",
                "kms:Encrypt",
            ),
            Box::new(|b: &Path| {
                edit_json(&b.join("grants.json"), |v| {
                    v[0]["operations"]
                        .as_array_mut()
                        .unwrap()
                        .push("Encrypt".into());
                });
            }),
        ),
        (
            "condition value",
            "lost",
            (
                "arn:aws:iam::111122223333:role/PaymentsWorker",
                "kms:Decrypt",
            ),
            Box::new(|b: &Path| {
                edit_json(&b.join("grants.json"), |v| {
                    v[0]["constraints"]["encryption_context_subset"]["dept"] = "finance".into();
                });
            }),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let old = planted(&dir.path().join("old"), |_| {});
    let load_snap = |p: &Path| {
        let b = load(p, &LoadOptions::default()).unwrap().bundle;
        let s = Snapshot::compile(&b, &EvalOptions::default(), 1);
        (b, s)
    };
    let (old_bundle, old_snap) = load_snap(&old);
    // Identical bundles: nothing.
    let same = analysis::diff(
        (&old_bundle, &old_snap),
        (&old_bundle, &old_snap),
        &Universe::of_all(&[&old_bundle, &old_bundle], Bounds::default()),
    );
    assert!(same.gained.is_empty() && same.lost.is_empty());
    assert_eq!(same.compared, 0, "nothing differs, so nothing is decided");
    for (i, (kind, want, (principal, action), change)) in plants.into_iter().enumerate() {
        let new = planted(&dir.path().join(format!("new{i}")), change);
        let (new_bundle, new_snap) = load_snap(&new);
        let u = Universe::of_all(&[&old_bundle, &new_bundle], Bounds::default());
        let d = analysis::diff((&old_bundle, &old_snap), (&new_bundle, &new_snap), &u);
        // Exactly what deciding every request of the universe on both
        // sides finds (recall and precision over the whole universe).
        let listed: Vec<_> = d
            .gained
            .iter()
            .chain(&d.lost)
            .flat_map(|c| change_tuples(c, &u))
            .collect();
        let reported: BTreeSet<_> = listed.iter().cloned().collect();
        let every = full_diff(&old_snap, &new_snap, &u);
        assert_eq!(
            reported.len(),
            listed.len(),
            "{kind}: a change reported twice"
        );
        assert!(
            reported == every,
            "{kind}: diff differs from deciding every request:\n  missing {:?}\n  extra {:?}",
            every.difference(&reported).take(5).collect::<Vec<_>>(),
            reported.difference(&every).take(5).collect::<Vec<_>>()
        );
        let changes = if want == "gained" { &d.gained } else { &d.lost };
        assert!(
            changes.iter().any(|c| c.witness["principal"] == principal
                && c.witness["action"] == action
                && c.witness["resource"] == KEY1),
            "{kind}: {principal} {action} not reported {want}; got {} gained, {} lost",
            d.gained.len(),
            d.lost.len()
        );
        // Every witness flips under `verdict eval` (precision).
        let all: Vec<_> = d.gained.iter().chain(&d.lost).collect();
        let witnesses: Vec<serde_json::Value> = all.iter().map(|c| c.witness.clone()).collect();
        let (before, after) = (
            eval_allowed(&old, &witnesses),
            eval_allowed(&new, &witnesses),
        );
        for ((c, b), a) in all.iter().zip(&before).zip(&after) {
            assert_eq!(
                (*b, *a),
                (c.change == "lost", c.change == "gained"),
                "{kind}: {}",
                c.witness
            );
        }
        eprintln!(
            "{kind}: {} gained, {} lost; every witness flips under verdict eval",
            d.gained.len(),
            d.lost.len()
        );
    }
}

#[test]
fn the_commands_print_their_answers_and_diff_fails_on_what_it_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let old = planted(&dir.path().join("old"), |_| {});
    let new = planted(&dir.path().join("new"), |b| {
        add_statement(
            &b.join("policies/kms/create-keys.json"),
            serde_json::json!({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY1}),
        );
    });
    let verdict = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_verdict"))
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (old_s, new_s) = (old.to_str().unwrap(), new.to_str().unwrap());
    let (code, text) = verdict(&["diff", old_s, old_s, "--fail-on", "any"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("0 gained, 0 lost"), "{text}");
    assert_eq!(
        verdict(&["diff", old_s, new_s, "--fail-on", "gained"]).0,
        Some(1)
    );
    assert_eq!(
        verdict(&["diff", old_s, new_s, "--fail-on", "lost"]).0,
        Some(0)
    );
    assert_eq!(verdict(&["diff", old_s, new_s]).0, Some(0));
    assert_eq!(verdict(&["diff", old_s, "/nonexistent"]).0, Some(2));
    let (code, json) = verdict(&["diff", old_s, new_s, "--format", "json"]);
    assert_eq!(code, Some(0));
    let d: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        d["diff"]["gained"][0]["witness"]["principal"],
        "arn:aws:iam::111122223333:user/bob"
    );
    let (code, json) = verdict(&[
        "who-can",
        new_s,
        "--resource",
        KEY1,
        "--action",
        "kms:Decrypt",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0));
    let w: serde_json::Value = serde_json::from_str(&json).unwrap();
    let who: Vec<&str> = w["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["principal"].as_str().unwrap())
        .collect();
    assert!(
        who.contains(&"arn:aws:iam::111122223333:user/bob"),
        "{who:?}"
    );
    assert!(w["universe"]["cut"].as_array().unwrap().is_empty());
    let (code, text) = verdict(&[
        "what-can",
        new_s,
        "--principal",
        "arn:aws:iam::111122223333:user/bob",
        "--resource",
        "arn:aws:kms:us-west-2:*",
    ]);
    assert_eq!(code, Some(0));
    assert!(
        text.contains("kms:Decrypt") && text.contains("kms:CreateKey"),
        "{text}"
    );
}
