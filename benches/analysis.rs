//! Access analysis on a synthetic bundle of 10,000 statements: the
//! universe, `who_can` of one key over every KMS action, and `diff` of the
//! bundle against a copy with one more statement and against itself (each
//! `diff` figure includes building the two bundles' universe).

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
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use verdict::analysis::{self, Bounds, Universe};
use verdict::bundle::{LoadOptions, load_raw};
use verdict::compile::Snapshot;
use verdict::eval::EvalOptions;

fn bench(c: &mut Criterion) {
    let s = synth::generate(42, 10_000, 0);
    let bundle = load_raw(s.raw(), &LoadOptions::default()).unwrap().bundle;
    let snap = Snapshot::compile(&bundle, &EvalOptions::default(), 1);
    let u = Universe::of(&bundle, Bounds::default());
    let key = u
        .resources
        .iter()
        .find(|r| r.starts_with("arn:aws:kms:") && r.contains(":key/"))
        .unwrap()
        .clone();
    let kms: Vec<String> = u
        .actions
        .iter()
        .filter(|a| a.starts_with("kms:"))
        .cloned()
        .collect();
    eprintln!(
        "universe of {} statements: {} principals x {} actions ({} KMS) x {} resources x {} context classes",
        s.statements,
        u.principals.len(),
        u.actions.len(),
        kms.len(),
        u.resources.len(),
        u.contexts.len()
    );
    eprintln!(
        "who-can entries: {}",
        analysis::who_can(&snap, &u, &key, &kms).len()
    );
    let mut g = c.benchmark_group("analysis");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("universe-10000", |b| {
        b.iter(|| black_box(Universe::of(&bundle, Bounds::default())))
    });
    g.bench_function("who-can-one-key-all-kms-actions-10000", |b| {
        b.iter(|| black_box(analysis::who_can(&snap, &u, &key, &kms)))
    });
    // diff: the bundle against a copy in which one user gains one action
    // on one key (an inline identity statement), and against itself.
    let mut files = s.files.clone();
    let (_, principals) = files
        .iter_mut()
        .find(|(p, _)| p == "principals.json")
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(principals).unwrap();
    let user = format!("arn:aws:iam::{}:user/u-00001", synth::ACCOUNT);
    v["principals"][&user]["policies"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "kms:ScheduleKeyDeletion", "Resource": key}]}));
    *principals = v.to_string();
    let changed = synth::Synth { files, ..s };
    let new_bundle = load_raw(changed.raw(), &LoadOptions::default())
        .unwrap()
        .bundle;
    let new_snap = Snapshot::compile(&new_bundle, &EvalOptions::default(), 1);
    g.bench_function("diff-10000-one-identity-statement", |b| {
        b.iter(|| {
            let u = Universe::of_all(&[&bundle, &new_bundle], Bounds::default());
            black_box(analysis::diff(
                (&bundle, &snap),
                (&new_bundle, &new_snap),
                &u,
            ))
        })
    });
    g.bench_function("diff-10000-identical", |b| {
        b.iter(|| {
            let u = Universe::of_all(&[&bundle, &bundle], Bounds::default());
            black_box(analysis::diff((&bundle, &snap), (&bundle, &snap), &u))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
