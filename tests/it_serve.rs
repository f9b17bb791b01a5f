//! The `verdict serve` binary: serves on a Unix socket, reloads on SIGHUP,
//! stops cleanly on SIGTERM (exit 0) and refuses bad configuration, a URL
//! bundle or a bundle that does not load (exit 2) before serving.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use verdict::proto::{self, AuthorizeRequest};

fn verdict() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_verdict"));
    c.current_dir(root()).env_remove("RUST_LOG");
    c
}

fn signal(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn bad_configuration_and_bundles_exit_2_before_serving() {
    for (args, env, needle) in [
        (
            vec!["serve", "--listen", "not-an-address"],
            vec![],
            "--listen",
        ),
        (
            vec!["serve", "--bundle", "https://example.com/b.tar.gz"],
            vec![],
            "URL bundles",
        ),
        (
            vec!["serve", "--listen", "127.0.0.1:0"],
            vec![("VERDICT_MAX_BATCH", "many")],
            "VERDICT_MAX_BATCH",
        ),
        (
            vec!["serve", "--config", "/nonexistent/verdict.toml"],
            vec![],
            "--config",
        ),
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--bundle",
                "tests/fixtures/broken/effect-lowercase/bundle",
            ],
            vec![],
            "policies/p.json:4:5",
        ),
    ] {
        let out = verdict().args(&args).envs(env).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    copy_dir(&root().join(KMS), &bundle);
    let sock = dir.path().join("verdict.sock");
    let mut child = verdict()
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
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the socket never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = proto::authorizer_client::AuthorizerClient::new(uds_channel(&sock).await);
    let status = |c: &mut proto::authorizer_client::AuthorizerClient<_>| {
        let mut c = c.clone();
        async move {
            c.get_bundle_status(proto::GetBundleStatusRequest {})
                .await
                .map(|r| r.into_inner())
        }
    };
    // Health may still be NOT_SERVING while loading; wait for the bundle.
    let mut s = status(&mut c).await;
    while s.as_ref().map(|s| s.revision.is_empty()).unwrap_or(true) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
        s = status(&mut c).await;
    }
    assert_eq!(s.unwrap().revision, "2026-11-28.1");
    let r = c
        .authorize(AuthorizeRequest {
            principal: "arn:aws:iam::111122223333:user/frank".into(),
            action: "kms:Encrypt".into(),
            resource: KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.decision(), proto::Decision::Allow);

    // A new revision, picked up on SIGHUP.
    std::fs::write(
        bundle.join("manifest.json"),
        r#"{"revision": "2026-11-28.2"}"#,
    )
    .unwrap();
    signal(child.id(), "-HUP");
    let mut revision = String::new();
    while revision != "2026-11-28.2" {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
        revision = status(&mut c).await.unwrap().revision;
    }

    signal(child.id(), "-TERM");
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(code.code(), Some(0));
    assert!(!sock.exists());
}
