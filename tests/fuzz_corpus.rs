//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and every
//! input that once failed (`fuzz/regressions/<target>/`) through the fuzz
//! targets' own bodies (`fuzz/targets.rs`): what the fuzzer found stays
//! found, on stable Rust, in the test command. Fuzzing itself is
//! `cargo fuzz run -s none -O TARGET` (see BENCHMARKS.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, bytes));
        }
    }
    out.sort();
    out
}

fn replay(target: &str, run: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no corpus for {target}");
    for (path, bytes) in inputs {
        let started = std::time::Instant::now();
        if std::panic::catch_unwind(|| run(&bytes)).is_err() {
            panic!("{target} fails on {}", path.display());
        }
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(5),
            "{target} took {took:?} on {}",
            path.display()
        );
    }
}

#[test]
fn policy_parse_corpus() {
    replay("policy_parse", targets::policy_parse);
}

#[test]
fn bundle_targz_corpus() {
    replay("bundle_targz", targets::bundle_targz);
}

#[test]
fn request_proto_corpus() {
    replay("request_proto", targets::request_proto);
}
