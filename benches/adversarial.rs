//! The costliest requests within the default limits: wildcard patterns in
//! a session policy built to make matching backtrack, against context
//! values built to feed them. Each shape is decided on the example bundle
//! through `evaluate_within` with the default `max_match_steps`, as the
//! server decides it; the report is the CPU time of one decision (or of
//! its refusal when the budget runs out), against the 2 ms goal.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench code"
)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use verdict::bundle::{LoadOptions, load};
use verdict::compile::Snapshot;
use verdict::eval::{EvalOptions, Request, RequestLimits, RequestParts, logic};

/// Largest `Authorize` message by default; every shape stays under it.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

struct Shape {
    name: &'static str,
    patterns: Vec<String>,
    statements: usize,
    values: Vec<String>,
}

fn session_policy(shape: &Shape) -> String {
    let statement = |effect: &str| {
        serde_json::json!({
            "Effect": effect, "Action": "kms:*", "Resource": "*",
            "Condition": {"ForAnyValue:StringLike": {"app:tag": shape.patterns}}
        })
    };
    let statements: Vec<_> = (0..shape.statements)
        .map(|i| statement(if i % 2 == 0 { "Deny" } else { "Allow" }))
        .collect();
    serde_json::json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

/// Values of `len` bytes of `a`, as many as fit beside the policy.
fn values(len: usize, policy_bytes: usize) -> Vec<String> {
    let room = MAX_REQUEST_BYTES - policy_bytes - 512;
    vec!["a".repeat(len); (room / (len + 3)).min(64)]
}

fn shapes() -> Vec<Shape> {
    let limits = RequestLimits::default();
    let mut out = Vec::new();
    // The shape first reported: a long piece ending in `b?` after a star.
    let mut s = Shape {
        name: "tail piece a{2048}b?",
        patterns: vec![format!("*{}b?", "a".repeat(2048))],
        statements: 4,
        values: Vec::new(),
    };
    s.values = values(4096, session_policy(&s).len());
    out.push(s);
    // A long piece between two stars: every place in the text is tried.
    let mut s = Shape {
        name: "middle piece a{2000}b",
        patterns: vec![format!("*{}b*", "a".repeat(2000))],
        statements: 4,
        values: Vec::new(),
    };
    s.values = values(4096, session_policy(&s).len());
    out.push(s);
    // Many short middle pieces that almost match everywhere.
    let mut s = Shape {
        name: "1,200 patterns *aab*",
        patterns: vec!["*aab*".to_owned(); 1200],
        statements: 1,
        values: Vec::new(),
    };
    s.values = values(4096, session_policy(&s).len());
    out.push(s);
    // Many stars: each piece is one character.
    let mut s = Shape {
        name: "pattern (*a){1500}*b",
        patterns: vec![format!("{}*b", "*a".repeat(1500))],
        statements: 2,
        values: Vec::new(),
    };
    s.values = values(4096, session_policy(&s).len());
    out.push(s);
    // The same in characters outside ASCII: the character-wise matcher.
    let mut s = Shape {
        name: "middle piece é{1000}b, non-ASCII",
        patterns: vec![format!("*{}b*", "é".repeat(1000))],
        statements: 4,
        values: Vec::new(),
    };
    let policy = session_policy(&s).len();
    s.values = values(4096, policy)
        .into_iter()
        .map(|_| "é".repeat(2048))
        .collect();
    out.push(s);
    let mut s = Shape {
        name: "1,000 patterns *ééb*, non-ASCII",
        patterns: vec!["*ééb*".to_owned(); 1000],
        statements: 1,
        values: Vec::new(),
    };
    let policy = session_policy(&s).len();
    s.values = values(4096, policy)
        .into_iter()
        .map(|_| "é".repeat(2048))
        .collect();
    out.push(s);
    for s in &out {
        assert!(
            session_policy(s).len() <= limits.max_session_policy_bytes,
            "{}",
            s.name
        );
    }
    out
}

fn request(shape: &Shape) -> Request {
    let req = Request::new(
        RequestParts {
            principal: "arn:aws:sts::111122223333:assumed-role/KeyAdmin/ops".into(),
            action: "kms:DescribeKey".into(),
            resource: "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                .into(),
            context: vec![("app:tag".into(), shape.values.clone())],
            session_policy: Some(session_policy(shape)),
            explain: false,
        },
        &RequestLimits::default(),
    )
    .unwrap();
    let wire =
        session_policy(shape).len() + shape.values.iter().map(|v| v.len() + 3).sum::<usize>();
    assert!(wire < MAX_REQUEST_BYTES, "{}: {wire} bytes", shape.name);
    req
}

fn bench(c: &mut Criterion) {
    let bundle = load(Path::new("examples/bundles/kms"), &LoadOptions::default())
        .unwrap()
        .bundle;
    let snap = Snapshot::compile(&bundle, &EvalOptions::default(), 1);
    let steps = RequestLimits::default().max_match_steps;
    let now = SystemTime::now();
    let mut group = c.benchmark_group("adversarial");
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    for shape in shapes() {
        let req = request(&shape);
        let decided = logic::evaluate_within(&snap, &req, now, steps).is_some();
        eprintln!(
            "{}: {}",
            shape.name,
            if decided {
                "decided"
            } else {
                "refused (max_match_steps)"
            }
        );
        group.bench_function(shape.name, |b| {
            b.iter(|| black_box(logic::evaluate_within(&snap, black_box(&req), now, steps)));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
