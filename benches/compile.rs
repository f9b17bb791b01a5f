//! Load and compile time of synthetic bundles of 1,000, 10,000 and 100,000
//! statements (from files already in memory: JSON parsing, validation,
//! reference resolution and compilation into a snapshot).

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

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use verdict::bundle::{LoadOptions, load_raw};
use verdict::compile::Snapshot;
use verdict::eval::EvalOptions;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for size in [1_000usize, 10_000, 100_000] {
        let s = synth::generate(42, size, 0);
        g.bench_function(format!("load+compile-{size}"), |b| {
            b.iter_batched(
                || s.raw(),
                |r| {
                    let loaded = load_raw(r, &LoadOptions::default()).unwrap();
                    black_box(Snapshot::compile(
                        &loaded.bundle,
                        &EvalOptions::default(),
                        1,
                    ))
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
