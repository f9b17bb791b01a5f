//! Peak memory (and wall time) of loading and compiling synthetic bundles
//! of 1,000, 10,000 and 100,000 statements from disk, each in a fresh child
//! process so that nothing else counts: the child reads its own peak RSS
//! (`VmHWM` in /proc/self/status) after compiling.
//!
//! Writes `target/verdict-bench/compile-memory.json`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench code"
)]

#[path = "support/synth.rs"]
mod synth;

use std::path::Path;
use std::time::Instant;

use verdict::bundle::{LoadOptions, load};
use verdict::compile::Snapshot;
use verdict::eval::EvalOptions;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn child(dir: &Path) {
    let start = Instant::now();
    let loaded = load(dir, &LoadOptions::default()).unwrap();
    let loaded_at = start.elapsed();
    eprintln!(
        "after load: peak {} KiB, now {} KiB",
        peak_rss_kib(),
        rss_kib()
    );
    let snap = Snapshot::compile(&loaded.bundle, &EvalOptions::default(), 1);
    let total = start.elapsed();
    std::hint::black_box(&snap);
    println!(
        "{{\"load_ms\": {:.1}, \"load_compile_ms\": {:.1}, \"peak_rss_kib\": {}}}",
        loaded_at.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
        peak_rss_kib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(Path::new(&args[i + 1]));
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/verdict-bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut rows = Vec::new();
    for size in [1_000usize, 10_000, 100_000] {
        let s = synth::generate(42, size, 0);
        let dir = tempfile::tempdir().unwrap();
        for (p, t) in &s.files {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, t).unwrap();
        }
        let bytes: usize = s.files.iter().map(|(_, t)| t.len()).sum();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--child")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["size"] = size.into();
        v["statements"] = s.statements.into();
        v["bundle_bytes"] = bytes.into();
        println!("compile-memory/{size}: {v}");
        rows.push(v);
    }
    std::fs::write(
        out_dir.join("compile-memory.json"),
        serde_json::to_string_pretty(&rows).unwrap(),
    )
    .unwrap();
}
