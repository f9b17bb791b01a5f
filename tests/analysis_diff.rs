//! `diff` on generated bundle pairs: a synthetic bundle of about 10,000
//! statements and copies of it with 1, 5 and 50 planted changes of one kind
//! each (identity statement, key policy statement, SCP, permissions
//! boundary, grant, condition value). Every planted change must be reported
//! (recall), every reported witness must flip between the two bundles'
//! Authorize evaluator (precision), and identical bundles give nothing.
//!
//! Each plant is chosen so that it must flip one known request: a gained
//! plant's request is an ImplicitDeny (so no deny applies to it) that the
//! planted `Allow` reaches; a lost plant's request is allowed without
//! context and the plant denies or bounds it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr,
    reason = "test code"
)]

#[path = "../benches/support/synth.rs"]
mod synth;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};
use verdict::analysis::{self, Bounds, Universe};
use verdict::bundle::source::{RawBundle, RawFile};
use verdict::bundle::{Bundle, LoadOptions, load_raw};
use verdict::compile::Snapshot;
use verdict::eval::{EvalOptions, Outcome, Request, RequestLimits, RequestParts, logic};

const ACCOUNT: &str = synth::ACCOUNT;

/// A bundle's files, JSON parsed.
type Files = BTreeMap<String, Value>;

fn compile(files: &Files) -> (Bundle, Snapshot) {
    let raw = RawBundle {
        source: "generated".into(),
        files: files
            .iter()
            .map(|(path, v)| RawFile {
                path: path.clone(),
                bytes: v.to_string().into_bytes(),
            })
            .collect(),
        diagnostics: Vec::new(),
    };
    let bundle = load_raw(raw, &LoadOptions::default()).unwrap().bundle;
    let snap = Snapshot::compile(&bundle, &EvalOptions::default(), 1);
    (bundle, snap)
}

fn outcome(snap: &Snapshot, request: (&str, &str, &str), context: &[(&str, &str)]) -> Outcome {
    let pairs = context
        .iter()
        .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
        .collect();
    outcome_with(snap, request, pairs)
}

fn outcome_with(
    snap: &Snapshot,
    (p, a, r): (&str, &str, &str),
    context: Vec<(String, Vec<String>)>,
) -> Outcome {
    let parts = RequestParts {
        principal: p.into(),
        action: a.into(),
        resource: r.into(),
        context,
        ..RequestParts::default()
    };
    let req = Request::new(parts, &RequestLimits::default()).unwrap();
    logic::evaluate(snap, &req, SystemTime::now()).outcome
}

/// A request a plant must flip, as the diff reports it.
#[derive(Debug)]
struct Target {
    change: &'static str,
    principal: String,
    action: String,
    /// The resource (`None`: any; a boundary bounds its action on every
    /// resource, and the target's may not be in the universe).
    resource: Option<String>,
    /// The context class's name.
    class: String,
}

fn user(i: usize) -> String {
    format!("arn:aws:iam::{ACCOUNT}:user/u-{i:05}")
}

fn key(i: usize) -> String {
    format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{i:08x}-0000-4000-8000-{i:012x}")
}

const USERS: usize = 500;
const KEYS: usize = 500;

/// Requests allowed without context in the old bundle, one per user, each
/// with a distinct action and resource: targets for plants that take
/// access away.
fn allowed_pool(s: &synth::Synth, old: &Snapshot) -> Vec<(String, String, String)> {
    let mut seen_users = BTreeSet::new();
    let mut seen = BTreeSet::new();
    s.requests
        .iter()
        .filter(|r| r.principal.contains(":user/"))
        .filter(|r| outcome(old, (&r.principal, &r.action, &r.resource), &[]) == Outcome::Allow)
        .filter(|r| seen_users.insert(r.principal.clone()))
        .filter(|r| seen.insert((r.action.clone(), r.resource.clone())))
        .map(|r| (r.principal.clone(), r.action.clone(), r.resource.clone()))
        .collect()
}

/// Users × keys for which `action` is an ImplicitDeny without context in
/// the old bundle, one per user: targets for plants that give access.
fn denied_pool(old: &Snapshot, action: &str, salt: usize) -> Vec<(String, String)> {
    (0..USERS)
        .map(|i| (user(i), key((i * 7 + salt) % KEYS)))
        .filter(|(u, k)| outcome(old, (u, action, k), &[]) == Outcome::ImplicitDeny)
        .collect()
}

fn gained(principal: &str, action: &str, resource: &str, class: &str) -> Target {
    Target {
        change: "gained",
        principal: principal.into(),
        action: action.into(),
        resource: Some(resource.into()),
        class: class.into(),
    }
}

/// Plant `n` changes of `kind` into `files`; the requests they must flip.
fn plant(kind: &str, n: usize, files: &mut Files, s: &synth::Synth, old: &Snapshot) -> Vec<Target> {
    let mut targets = Vec::new();
    match kind {
        "identity statement" => {
            let action = "kms:ScheduleKeyDeletion";
            for (u, k) in denied_pool(old, action, 1).into_iter().take(n) {
                let doc = json!({"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": action, "Resource": k}]});
                files.get_mut("principals.json").unwrap()["principals"][&u]["policies"]
                    .as_array_mut()
                    .unwrap()
                    .push(doc);
                targets.push(gained(&u, action, &k, "no context"));
            }
        }
        "key policy statement" => {
            let action = "kms:GetKeyPolicy";
            for (u, k) in denied_pool(old, action, 2).into_iter().take(n) {
                files.get_mut("resources.json").unwrap()[&k]["policy"]["Statement"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"Effect": "Allow", "Principal": {"AWS": u},
                        "Action": action, "Resource": "*"}));
                targets.push(gained(&u, action, &k, "no context"));
            }
        }
        "grant" => {
            let action = "kms:Decrypt";
            let mut grants = Vec::new();
            for (i, (u, k)) in denied_pool(old, action, 3).into_iter().take(n).enumerate() {
                grants.push(json!({"grant_id": format!("{i:064x}"), "key": k,
                    "grantee": u, "operations": ["Decrypt"]}));
                targets.push(gained(&u, action, &k, "no context"));
            }
            files.insert("grants.json".into(), Value::Array(grants));
        }
        "SCP" => {
            for (p, a, r) in allowed_pool(s, old).into_iter().take(n) {
                files.get_mut("policies/scp/guardrails.json").unwrap()["Statement"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"Effect": "Deny", "Action": a, "Resource": r}));
                targets.push(Target {
                    change: "lost",
                    principal: p,
                    action: a,
                    resource: Some(r),
                    class: "no context".into(),
                });
            }
        }
        "permissions boundary" => {
            // Each boundary allows everything but the target's action.
            for (i, (p, a, _)) in allowed_pool(s, old).into_iter().take(n).enumerate() {
                files.insert(
                    format!("policies/boundaries/b{i}.json"),
                    json!({"Version": "2012-10-17", "Statement": [
                        {"Effect": "Allow", "NotAction": a, "Resource": "*"}]}),
                );
                files.get_mut("principals.json").unwrap()["principals"][&p]["boundary"] =
                    format!("boundaries/b{i}").into();
                targets.push(Target {
                    change: "lost",
                    principal: p,
                    action: a,
                    resource: None,
                    class: "no context".into(),
                });
            }
        }
        "condition value" => {
            let resources = files.get_mut("resources.json").unwrap();
            let keys: Vec<String> = resources.as_object().unwrap().keys().cloned().collect();
            for k in keys {
                if targets.len() == n {
                    break;
                }
                let statements = resources[&k]["policy"]["Statement"].as_array_mut().unwrap();
                let Some(st) = statements
                    .get_mut(1)
                    .filter(|st| st["Sid"] == "AllowUseByApp")
                else {
                    continue;
                };
                let role = st["Principal"]["AWS"].as_str().unwrap().to_owned();
                let name = role.rsplit('/').next().unwrap();
                let session =
                    format!("arn:aws:sts::{ACCOUNT}:assumed-role/{name}/verdict-analysis");
                let value = format!("dept-planted-{}", targets.len());
                let ctx = [("kms:EncryptionContext:dept", value.as_str())];
                if outcome(old, (&session, "kms:Decrypt", &k), &ctx) != Outcome::ImplicitDeny {
                    continue;
                }
                st["Condition"]["StringEquals"]["kms:EncryptionContext:dept"] =
                    value.clone().into();
                targets.push(gained(
                    &session,
                    "kms:Decrypt",
                    &k,
                    &format!("kms:EncryptionContext:dept={value}"),
                ));
            }
        }
        other => panic!("unknown plant {other}"),
    }
    assert_eq!(
        targets.len(),
        n,
        "{kind}: only {} targets found",
        targets.len()
    );
    targets
}

#[test]
fn diff_of_generated_pairs_reports_every_planted_change_and_only_changes() {
    let s = synth::generate(7, 10_000, 4_000);
    let old_files: Files = s
        .files
        .iter()
        .map(|(p, t)| (p.clone(), serde_json::from_str(t).unwrap()))
        .collect();
    let (old_bundle, old) = compile(&old_files);
    let t = Instant::now();
    let same = analysis::diff(
        (&old_bundle, &old),
        (&old_bundle, &old),
        &Universe::of_all(&[&old_bundle, &old_bundle], Bounds::default()),
    );
    assert!(same.gained.is_empty() && same.lost.is_empty() && same.compared == 0);
    eprintln!(
        "{} statements: identical bundles, nothing ({:?})",
        s.statements,
        t.elapsed()
    );
    for kind in [
        "identity statement",
        "key policy statement",
        "SCP",
        "permissions boundary",
        "grant",
        "condition value",
    ] {
        for n in [1, 5, 50] {
            let mut files = old_files.clone();
            let targets = plant(kind, n, &mut files, &s, &old);
            let (new_bundle, new) = compile(&files);
            let t = Instant::now();
            let u = Universe::of_all(&[&old_bundle, &new_bundle], Bounds::default());
            assert!(
                u.cut.is_empty(),
                "{kind}: the universe was cut: {:?}",
                u.cut
            );
            let d = analysis::diff((&old_bundle, &old), (&new_bundle, &new), &u);
            let took = t.elapsed();
            // Recall: every planted change is reported.
            for want in &targets {
                let found = d.gained.iter().chain(&d.lost).any(|c| {
                    c.change == want.change
                        && c.witness["principal"] == want.principal.as_str()
                        && c.witness["action"] == want.action.as_str()
                        && want
                            .resource
                            .as_ref()
                            .is_none_or(|r| c.witness["resource"] == r.as_str())
                        && (c.every_context || c.contexts.contains(&want.class))
                });
                assert!(found, "{kind} x{n}: {want:?} not reported");
            }
            // Precision: every witness flips.
            for c in d.gained.iter().chain(&d.lost) {
                let w = &c.witness;
                let ctx: Vec<(String, Vec<String>)> =
                    serde_json::from_value::<BTreeMap<String, Vec<String>>>(w["context"].clone())
                        .unwrap()
                        .into_iter()
                        .collect();
                let req = (
                    w["principal"].as_str().unwrap(),
                    w["action"].as_str().unwrap(),
                    w["resource"].as_str().unwrap(),
                );
                let (was, is) = (
                    outcome_with(&old, req, ctx.clone()) == Outcome::Allow,
                    outcome_with(&new, req, ctx) == Outcome::Allow,
                );
                assert_eq!(
                    (was, is),
                    (c.change == "lost", c.change == "gained"),
                    "{kind} x{n}: witness does not flip: {w}"
                );
            }
            eprintln!(
                "{kind} x{n}: {} gained, {} lost, {} requests compared, in {took:?}; every plant reported, every witness flips",
                d.gained.len(),
                d.lost.len(),
                d.compared
            );
        }
    }
}
