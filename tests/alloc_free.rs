//! The decision hot path allocates nothing: a counting global allocator
//! watches `eval::logic::evaluate` on the example bundle for requests of
//! every outcome (Allow by identity, key policy and grant; ExplicitDeny;
//! ImplicitDeny with and without missing keys), without `explain`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::time::SystemTime;

use verdict::bundle::{LoadOptions, load};
use verdict::compile::Snapshot;
use verdict::eval::usage::Usage;
use verdict::eval::{EvalOptions, Outcome, Request, RequestLimits, RequestParts, logic};

const KEY: &str = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn request(principal: &str, action: &str, resource: &str, context: &[(&str, &str)]) -> Request {
    Request::new(
        RequestParts {
            principal: principal.into(),
            action: action.into(),
            resource: resource.into(),
            context: context
                .iter()
                .map(|(k, v)| ((*k).into(), vec![(*v).into()]))
                .collect(),
            session_policy: None,
            explain: false,
        },
        &RequestLimits::default(),
    )
    .unwrap()
}

/// Decide and count the decision in the usage ledger, counting this
/// thread's allocations (building and dropping the decision count too).
fn decide_counting(
    snapshot: &Snapshot,
    usage: &Usage,
    req: &Request,
    now: SystemTime,
) -> (Outcome, u64) {
    let mut outcome = None;
    let info = allocation_counter::measure(|| {
        let d = logic::evaluate(snapshot, req, now);
        usage.record(&d);
        outcome = Some(d.outcome);
    });
    (outcome.unwrap(), info.count_total)
}

#[test]
fn decisions_do_not_allocate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bundles/kms");
    let loaded = load(&dir, &LoadOptions::default()).unwrap();
    let snapshot = Snapshot::compile(&loaded.bundle, &EvalOptions::default(), 1);
    let cases = [
        (
            request(
                "arn:aws:iam::111122223333:user/frank",
                "kms:Encrypt",
                KEY,
                &[],
            ),
            Outcome::Allow,
        ),
        (
            request(
                "arn:aws:iam::111122223333:user/alice",
                "kms:ListKeys",
                "*",
                &[],
            ),
            Outcome::Allow,
        ),
        (
            request(
                "arn:aws:sts::111122223333:assumed-role/PaymentsWorker/i-1",
                "kms:Decrypt",
                KEY,
                &[
                    ("kms:EncryptionContext:dept", "payments"),
                    ("aws:SourceIp", "10.0.0.1"),
                ],
            ),
            Outcome::Allow,
        ),
        (
            request(
                "arn:aws:sts::111122223333:assumed-role/KeyAdmin/x",
                "kms:DisableKey",
                KEY,
                &[],
            ),
            Outcome::ExplicitDeny,
        ),
        (
            request(
                "arn:aws:iam::111122223333:user/bob",
                "kms:Decrypt",
                KEY,
                &[],
            ),
            Outcome::ImplicitDeny,
        ),
        (
            request(
                "arn:aws:iam::444455556666:root",
                "kms:DescribeKey",
                KEY,
                &[],
            ),
            Outcome::ImplicitDeny,
        ),
        (
            request(
                "arn:aws:iam::111122223333:root",
                "kms:DescribeKey",
                KEY,
                &[],
            ),
            Outcome::Allow,
        ),
    ];
    let now = SystemTime::now();
    let usage = Usage::new(&snapshot);
    for (req, want) in &cases {
        let (outcome, n) = decide_counting(&snapshot, &usage, req, now);
        assert_eq!(outcome, *want, "{} {}", req.principal, req.action);
        assert_eq!(
            n, 0,
            "{} {} {}: {n} allocation(s)",
            req.principal, req.action, req.resource
        );
    }
    // The ledger counted what it saw: the allows' and the deny's statements.
    let report = usage.report(&snapshot);
    assert!(report.iter().any(|u| u.allow > 0) && report.iter().any(|u| u.deny > 0));
    assert_eq!(usage.decisions(), cases.len() as u64);
}

#[test]
fn a_large_policy_uses_its_index_without_allocating() {
    // One identity policy of 1,000 statements: the index narrows the
    // candidates; the decision still does not allocate.
    let dir = tempfile::tempdir().unwrap();
    let statements: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"Sid": "S{i}", "Effect": "Allow", "Action": ["s3:GetObject{i}", "s3:List*"], "Resource": "arn:aws:s3:::bucket-{i}/*",
                     "Condition": {{"StringEquals": {{"aws:PrincipalTag/team": "t{i}"}}}}}}"#
            )
        })
        .collect();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("manifest.json"), r#"{"revision": "big"}"#).unwrap();
    std::fs::write(
        dir.path().join("policies/big.json"),
        format!(
            r#"{{"Version": "2012-10-17", "Statement": [{}]}}"#,
            statements.join(",")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("principals.json"),
        r#"{"principals": {"arn:aws:iam::111122223333:user/u": {"policies": ["big"], "tags": {"team": "t700"}}}}"#,
    )
    .unwrap();
    let loaded = load(dir.path(), &LoadOptions::default()).unwrap();
    let snapshot = Snapshot::compile(&loaded.bundle, &EvalOptions::default(), 1);
    let req = request(
        "arn:aws:iam::111122223333:user/u",
        "s3:GetObject700",
        "arn:aws:s3:::bucket-700/k",
        &[],
    );
    let usage = Usage::new(&snapshot);
    let (outcome, n) = decide_counting(&snapshot, &usage, &req, SystemTime::now());
    assert_eq!(outcome, Outcome::Allow);
    assert_eq!(n, 0);
    assert_eq!(usage.decisions(), 1);
}

#[test]
fn the_counter_sees_allocations() {
    // With `explain` the decision carries a boxed explanation: the counter
    // must see it, or the zero counts above would prove nothing.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bundles/kms");
    let loaded = load(&dir, &LoadOptions::default()).unwrap();
    let snapshot = Snapshot::compile(&loaded.bundle, &EvalOptions::default(), 1);
    let mut req = request(
        "arn:aws:iam::111122223333:user/frank",
        "kms:Encrypt",
        KEY,
        &[],
    );
    req.explain = true;
    let usage = Usage::new(&snapshot);
    let (outcome, n) = decide_counting(&snapshot, &usage, &req, SystemTime::now());
    assert_eq!(outcome, Outcome::Allow);
    assert!(n > 0);
}
