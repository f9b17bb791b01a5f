//! Decision time, all in one run: the compiled evaluator on the KMS example
//! bundle and on synthetic bundles of 1,000, 10,000 and 100,000 statements;
//! cedar-policy on the same rules and requests; and the reference
//! interpreter, for the compiled/reference ratio.
//!
//! Every iteration decides the next request of a fixed list (round robin),
//! so a measurement is the mean over a mix of outcomes. Requests, snapshots,
//! Cedar policy sets and entities are built before timing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench code"
)]

#[path = "support/synth.rs"]
mod synth;

use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use verdict::bundle::source::{RawBundle, RawFile};
use verdict::bundle::{Bundle, LoadOptions, load, load_raw};
use verdict::compile::Snapshot;
use verdict::eval::{EvalOptions, Request, RequestLimits, RequestParts, logic, reference};

const SIZES: &[usize] = &[1_000, 10_000, 100_000];
const REQUESTS: usize = 1_000;

fn load_synth(s: &synth::Synth) -> Bundle {
    let raw = RawBundle {
        source: "synth".into(),
        files: s
            .files
            .iter()
            .map(|(p, t)| RawFile {
                path: p.clone(),
                bytes: t.clone().into_bytes(),
            })
            .collect(),
        diagnostics: Vec::new(),
    };
    load_raw(raw, &LoadOptions::default()).unwrap().bundle
}

fn requests(s: &synth::Synth) -> Vec<Request> {
    s.requests
        .iter()
        .map(|r| {
            Request::new(
                RequestParts {
                    principal: r.principal.clone(),
                    action: r.action.clone(),
                    resource: r.resource.clone(),
                    context: r
                        .context
                        .iter()
                        .map(|(k, v)| (k.clone(), vec![v.clone()]))
                        .collect(),
                    session_policy: None,
                    explain: false,
                },
                &RequestLimits::default(),
            )
            .unwrap()
        })
        .collect()
}

fn kms_example_requests() -> Vec<Request> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bundles/kms");
    let loaded = load(
        &dir,
        &LoadOptions {
            with_tests: true,
            ..Default::default()
        },
    )
    .unwrap();
    let (cases, errors) = verdict::suite::parse_tests(&loaded.bundle, &RequestLimits::default());
    assert!(errors.is_empty());
    cases.into_iter().filter_map(|c| c.request.ok()).collect()
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now();
    let opts = EvalOptions::default();

    // The KMS example bundle, requests of its own tests.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bundles/kms");
    let kms = load(&dir, &LoadOptions::default()).unwrap().bundle;
    let kms_snap = Snapshot::compile(&kms, &opts, 1);
    let kms_reqs = kms_example_requests();
    let mut g = c.benchmark_group("kms-example");
    let mut i = 0usize;
    g.bench_function("verdict", |b| {
        b.iter(|| {
            i = (i + 1) % kms_reqs.len();
            black_box(logic::evaluate(&kms_snap, black_box(&kms_reqs[i]), now))
        })
    });
    // The same with the statement-usage ledger counting each decision, as
    // the server does.
    let usage = verdict::eval::usage::Usage::new(&kms_snap);
    g.bench_function("verdict+ledger", |b| {
        b.iter(|| {
            i = (i + 1) % kms_reqs.len();
            let d = logic::evaluate(&kms_snap, black_box(&kms_reqs[i]), now);
            usage.record(&d);
            black_box(d)
        })
    });
    g.bench_function("reference", |b| {
        b.iter(|| {
            i = (i + 1) % kms_reqs.len();
            black_box(reference::evaluate(
                &kms,
                black_box(&kms_reqs[i]),
                &opts,
                now,
            ))
        })
    });
    g.finish();

    // Synthetic bundles, verdict against cedar-policy on the same rules.
    for &size in SIZES {
        let s = synth::generate(42, size, REQUESTS);
        let bundle = load_synth(&s);
        let snap = Snapshot::compile(&bundle, &opts, 1);
        let reqs = requests(&s);
        let policies = cedar_policy::PolicySet::from_str(&s.cedar_policies).unwrap();
        let entities =
            cedar_policy::Entities::from_json_value(s.cedar_entities.clone(), None).unwrap();
        let uid = |t: &str, id: &str| {
            cedar_policy::EntityUid::from_type_name_and_id(
                cedar_policy::EntityTypeName::from_str(t).unwrap(),
                cedar_policy::EntityId::new(id),
            )
        };
        let cedar_reqs: Vec<cedar_policy::Request> = s
            .requests
            .iter()
            .map(|r| {
                cedar_policy::Request::new(
                    uid("Principal", &r.cedar_principal),
                    uid("Action", &r.action),
                    uid("Resource", &r.resource),
                    cedar_policy::Context::from_json_value(r.cedar_context.clone(), None).unwrap(),
                    None,
                )
                .unwrap()
            })
            .collect();
        let authorizer = cedar_policy::Authorizer::new();
        eprintln!(
            "synth {size}: {} statements, {} Cedar policies, {} requests",
            s.statements,
            policies.policies().count(),
            reqs.len()
        );
        let mut g = c.benchmark_group(format!("synth-{size}"));
        if size >= 100_000 {
            g.sample_size(20).measurement_time(Duration::from_secs(10));
        }
        let mut i = 0usize;
        g.bench_function("verdict", |b| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                black_box(logic::evaluate(&snap, black_box(&reqs[i]), now))
            })
        });
        g.bench_function("cedar", |b| {
            b.iter(|| {
                i = (i + 1) % cedar_reqs.len();
                black_box(authorizer.is_authorized(black_box(&cedar_reqs[i]), &policies, &entities))
            })
        });
        if size == 1_000 {
            g.bench_function("reference", |b| {
                b.iter(|| {
                    i = (i + 1) % reqs.len();
                    black_box(reference::evaluate(
                        &bundle,
                        black_box(&reqs[i]),
                        &opts,
                        now,
                    ))
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
