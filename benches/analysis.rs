//! Access analysis on a synthetic bundle of 10,000 statements: the
//! universe, `who_can` of one key over every KMS action, and `diff` of the
//! bundle against a copy with one more statement.

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
    let mut g = c.benchmark_group("analysis");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("universe-10000", |b| {
        b.iter(|| black_box(Universe::of(&bundle, Bounds::default())))
    });
    g.bench_function("who-can-one-key-all-kms-actions-10000", |b| {
        b.iter(|| black_box(analysis::who_can(&snap, &u, &key, &kms)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
