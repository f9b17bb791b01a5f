//! Soak test of `verdict serve`: a mixed load for a long time while the
//! bundle is reloaded every few seconds and every seventh bundle is broken.
//!
//! `cargo run --release --example soak -- --minutes 30` builds nothing else:
//! it starts `target/release/verdict serve` (build it first) on a Unix
//! socket over a copy of the example bundle, then runs, on 8 client tasks,
//! a mix of `Authorize` cache hits and misses, `BatchAuthorize` of 100,
//! session-policy requests, invalid requests and `GetBundleStatus`. Every
//! 10 s the bundle gets a new revision and a SIGHUP; every seventh one has a
//! broken `principals.json` (the last good bundle must keep serving). It
//! samples the server's RSS every minute and prints a report in Markdown;
//! it exits 1 if any call other than the invalid ones failed, if an invalid
//! one was not refused, or if a broken bundle was not reported.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark tool: failing loudly is the point"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use verdict::proto::authorizer_client::AuthorizerClient;
use verdict::proto::{
    AuthorizeRequest, BatchAuthorizeRequest, ContextValues, Decision, GetBundleStatusRequest,
};

#[derive(Parser)]
struct Args {
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Seconds between reloads.
    #[arg(long, default_value_t = 10)]
    reload_every: u64,
    /// Seconds between RSS samples.
    #[arg(long, default_value_t = 60)]
    sample_every: u64,
    /// Concurrent client tasks.
    #[arg(long, default_value_t = 8)]
    clients: usize,
}

#[path = "../support/harness.rs"]
mod harness;

use harness::{channel, copy_dir, root, rss_mib};

const KEY: &str = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    failed: AtomicU64,
    invalid_refused: AtomicU64,
    invalid_accepted: AtomicU64,
}

fn request(principal: &str, action: &str, n: u64) -> AuthorizeRequest {
    AuthorizeRequest {
        principal: principal.into(),
        action: action.into(),
        resource: KEY.into(),
        context: [(
            "kms:EncryptionContext:n".to_owned(),
            ContextValues {
                values: vec![n.to_string()],
            },
        )]
        .into(),
        ..Default::default()
    }
}

/// One client's loop: a fixed mix of calls until `stop`.
async fn client(id: u64, sock: PathBuf, counts: Arc<Counts>, stop: Arc<AtomicBool>) {
    let mut c = AuthorizerClient::new(channel(&sock).await);
    let session = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "kms:*", "Resource": "*",
        "Condition": {"StringLike": {"kms:EncryptionContext:n": ["1*", "*2", "*3*"]}}}]})
    .to_string();
    let mut n = id << 40;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let ok = match n % 10 {
            // Cache hits: the same few requests again and again.
            0..=3 => c
                .authorize(request(
                    "arn:aws:iam::111122223333:user/frank",
                    "kms:Encrypt",
                    n % 4,
                ))
                .await
                .is_ok_and(|r| r.into_inner().decision() != Decision::Unspecified),
            // Misses: a new context value each time.
            4 | 5 => c
                .authorize(request(
                    "arn:aws:iam::111122223333:user/dave",
                    "kms:Decrypt",
                    n,
                ))
                .await
                .is_ok(),
            6 => {
                let requests = (0..100)
                    .map(|i| {
                        request(
                            "arn:aws:iam::111122223333:user/dave",
                            "kms:Encrypt",
                            n * 100 + i,
                        )
                    })
                    .collect();
                c.batch_authorize(BatchAuthorizeRequest {
                    requests,
                    ..Default::default()
                })
                .await
                .is_ok_and(|r| r.into_inner().responses.len() == 100)
            }
            7 => {
                let mut r = request(
                    "arn:aws:sts::111122223333:assumed-role/KeyAdmin/ops",
                    "kms:DescribeKey",
                    n,
                );
                r.session_policy = session.clone();
                c.authorize(r).await.is_ok()
            }
            8 => {
                counts.calls.fetch_add(1, Ordering::Relaxed);
                let invalid = request("user/frank", "kms:Encrypt", n);
                match c.authorize(invalid).await {
                    Err(s) if s.code() == tonic::Code::InvalidArgument => {
                        counts.invalid_refused.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        counts.invalid_accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                continue;
            }
            _ => c.get_bundle_status(GetBundleStatusRequest {}).await.is_ok(),
        };
        counts.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            counts.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    copy_dir(&root().join("examples/bundles/kms"), &bundle);
    let sock = dir.path().join("verdict.sock");
    let binary = root().join("target/release/verdict");
    assert!(
        binary.exists(),
        "build the server first: cargo build --release"
    );
    let mut server = std::process::Command::new(&binary)
        .args([
            "serve",
            "--bundle",
            bundle.to_str().unwrap(),
            "--uds",
            sock.to_str().unwrap(),
        ])
        .env("VERDICT_WATCH", "false")
        .env("VERDICT_POLL_INTERVAL_MS", "0")
        .env("VERDICT_RELOAD_DEBOUNCE_MS", "0")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = server.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut status = AuthorizerClient::new(channel(&sock).await);
    while status
        .get_bundle_status(GetBundleStatusRequest {})
        .await
        .map_or(true, |s| s.into_inner().revision.is_empty())
    {
        assert!(Instant::now() < deadline, "no bundle became active");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..args.clients as u64)
        .map(|id| tokio::spawn(client(id, sock.clone(), counts.clone(), stop.clone())))
        .collect();

    let started = Instant::now();
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let reload_every = Duration::from_secs(args.reload_every);
    let sample_every = Duration::from_secs(args.sample_every);
    let principals = std::fs::read(bundle.join("principals.json")).unwrap();
    let mut samples = vec![(0.0, rss_mib(pid))];
    let (mut reloads, mut broken, mut next_reload, mut next_sample) =
        (0u64, 0u64, reload_every, sample_every);
    let mut unreported = 0u64;
    while started.elapsed() < total {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() >= next_reload {
            next_reload += reload_every;
            reloads += 1;
            let bad = reloads % 7 == 0;
            let before = status
                .get_bundle_status(GetBundleStatusRequest {})
                .await
                .unwrap()
                .into_inner();
            if bad {
                broken += 1;
                std::fs::write(
                    bundle.join("principals.json"),
                    b"{\"arn:aws:iam::1:user/x\": 7}",
                )
                .unwrap();
            } else {
                std::fs::write(bundle.join("principals.json"), &principals).unwrap();
                std::fs::write(
                    bundle.join("manifest.json"),
                    format!("{{\"revision\": \"soak-{reloads}\"}}"),
                )
                .unwrap();
            }
            assert!(
                std::process::Command::new("kill")
                    .args(["-HUP", &pid.to_string()])
                    .status()
                    .unwrap()
                    .success()
            );
            // Each reload's outcome, as the server reports it.
            let wait = Instant::now();
            loop {
                let now = status
                    .get_bundle_status(GetBundleStatusRequest {})
                    .await
                    .unwrap()
                    .into_inner();
                let done = if bad {
                    now.reloads_failed > before.reloads_failed
                } else {
                    now.revision == format!("soak-{reloads}")
                };
                if done {
                    break;
                }
                if wait.elapsed() > Duration::from_secs(5) {
                    unreported += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if started.elapsed() >= next_sample {
            next_sample += sample_every;
            samples.push((started.elapsed().as_secs_f64() / 60.0, rss_mib(pid)));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    samples.push((started.elapsed().as_secs_f64() / 60.0, rss_mib(pid)));
    let end = status
        .get_bundle_status(GetBundleStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let _ = server.kill();
    let _ = server.wait();

    let calls = counts.calls.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);
    let refused = counts.invalid_refused.load(Ordering::Relaxed);
    let accepted = counts.invalid_accepted.load(Ordering::Relaxed);
    println!(
        "| minutes | calls | failed (valid calls) | invalid refused | invalid not refused | reloads ok / failed (server) | broken bundles written | outcomes not seen within 5 s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {:.1} | {calls} | {failed} | {refused} | {accepted} | {} / {} | {broken} | {unreported} |",
        args.minutes, end.reloads_ok, end.reloads_failed
    );
    println!();
    println!("| minute | RSS (MiB) |");
    println!("|---|---|");
    for (minute, rss) in &samples {
        println!("| {minute:.1} | {rss:.1} |");
    }
    let ok = failed == 0 && accepted == 0 && unreported == 0 && end.reloads_failed >= broken;
    if !ok {
        eprintln!("soak failed");
        std::process::exit(1);
    }
}
