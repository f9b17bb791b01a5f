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

use support::otlp;
use support::*;
use verdict::proto::{self, AuthorizeRequest};

fn verdict() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_verdict"));
    c.current_dir(root()).env_remove("RUST_LOG");
    c
}

/// A `verdict serve` child that is killed and reaped if the test fails
/// before it stops the server itself.
struct Serving(std::process::Child);

impl std::ops::Deref for Serving {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Serving {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // After a successful wait this sends nothing.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
            vec!["serve", "--listen", "127.0.0.1:0"],
            vec![("OTEL_TRACES_SAMPLER", "sometimes")],
            "OTEL_TRACES_SAMPLER",
        ),
        (
            vec!["serve", "--listen", "127.0.0.1:0"],
            vec![("VERDICT_DECISION_LOG", "/nonexistent/dir/decisions.jsonl")],
            "decision log",
        ),
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "256.0.0.1:9",
            ],
            vec![],
            "--metrics-listen",
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
        .map(Serving)
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
    // The server runs without transparent huge pages (a huge-page fault
    // zeroes 2 MiB on the request path).
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        // Older kernels do not report the flag; where it is reported, it is off.
        if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
            assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
        }
    }
    // The health check an orchestrator runs.
    let probe = verdict()
        .args(["health", "--uds", sock.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "SERVING");
    let probe = verdict()
        .args([
            "health",
            "--uds",
            dir.path().join("nothing.sock").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(2));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_is_exported_and_flushed_on_sigterm() {
    let (addr, received) = otlp::receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("verdict.sock");
    let log = dir.path().join("decisions.jsonl");
    // Export intervals far longer than the test: whatever arrives was
    // flushed by the graceful shutdown.
    let mut child = verdict()
        .args(["serve", "--uds", sock.to_str().unwrap()])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .env("OTEL_SERVICE_NAME", "verdict-sidecar")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "600000")
        .env("VERDICT_DECISION_LOG", log.to_str().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .map(Serving)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = loop {
        if sock.exists() {
            let mut c = proto::authorizer_client::AuthorizerClient::new(uds_channel(&sock).await);
            if c.get_bundle_status(proto::GetBundleStatusRequest {})
                .await
                .is_ok_and(|s| !s.into_inner().revision.is_empty())
            {
                break c;
            }
        }
        assert!(Instant::now() < deadline, "the server never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut request = tonic::Request::new(AuthorizeRequest {
        principal: "arn:aws:iam::111122223333:user/frank".into(),
        action: "kms:Encrypt".into(),
        resource: KEY.into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            .parse()
            .unwrap(),
    );
    let r = c.authorize(request).await.unwrap().into_inner();
    assert_eq!(r.decision(), proto::Decision::Allow);
    assert!(received.spans().is_empty(), "exported before shutdown");

    signal(child.id(), "-TERM");
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(code.code(), Some(0));

    let spans = received.spans();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.name, "verdict.v1.Authorizer/Authorize");
    assert_eq!(
        span.parent_span_id,
        [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]
    );
    assert_eq!(
        otlp::str_attr(&span.attributes, "verdict.decision"),
        Some("Allow")
    );
    assert_eq!(received.service_name().as_deref(), Some("verdict-sidecar"));
    assert!(received.metric("verdict.decision.duration").is_some());
    assert!(received.metric("verdict.decisions").is_some());

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(
        lines[0]["span_id"].as_str().unwrap(),
        span.span_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    assert_eq!(lines[0]["decision"], "Allow");
}

/// With `bundle_public_keys`, `serve` loads a signed archive (its status
/// names the key), keeps the last good bundle when a reload brings an
/// unsigned or tampered one (the failure names `.signatures.json`), and
/// refuses to start on a bundle that is not signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bundles_are_verified_on_every_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let o = verdict().args(args).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let (key, public) = (d.join("k.pem"), d.join("k.pub.pem"));
    let id = run(&[
        "bundle",
        "keygen",
        "--private",
        key.to_str().unwrap(),
        "--public",
        public.to_str().unwrap(),
    ]);
    let id = id.trim().strip_prefix("key id ").unwrap().to_owned();
    let kms = root().join(KMS);
    let (signed, unsigned) = (d.join("signed.tar.gz"), d.join("unsigned.tar.gz"));
    run(&[
        "bundle",
        "build",
        kms.to_str().unwrap(),
        "-o",
        signed.to_str().unwrap(),
        "--sign",
        key.to_str().unwrap(),
    ]);
    run(&[
        "bundle",
        "build",
        kms.to_str().unwrap(),
        "-o",
        unsigned.to_str().unwrap(),
    ]);

    // Not signed: the first load fails, and serve stops with status 2.
    let refused = verdict()
        .args([
            "serve",
            "--bundle",
            unsigned.to_str().unwrap(),
            "--uds",
            d.join("x.sock").to_str().unwrap(),
        ])
        .env("VERDICT_BUNDLE_PUBLIC_KEYS", public.to_str().unwrap())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(".signatures.json"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let active = d.join("bundle.tar.gz");
    std::fs::copy(&signed, &active).unwrap();
    let sock = d.join("verdict.sock");
    let mut child = verdict()
        .args([
            "serve",
            "--bundle",
            active.to_str().unwrap(),
            "--uds",
            sock.to_str().unwrap(),
        ])
        .env("VERDICT_BUNDLE_PUBLIC_KEYS", public.to_str().unwrap())
        .env("VERDICT_WATCH", "false")
        .env("VERDICT_POLL_INTERVAL_MS", "0")
        .env("VERDICT_RELOAD_DEBOUNCE_MS", "0")
        .stderr(Stdio::null())
        .spawn()
        .map(Serving)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the socket never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = proto::authorizer_client::AuthorizerClient::new(uds_channel(&sock).await);
    let mut status = c
        .get_bundle_status(proto::GetBundleStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    while status.revision.is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = c
            .get_bundle_status(proto::GetBundleStatusRequest {})
            .await
            .unwrap()
            .into_inner();
    }
    assert_eq!(status.signature, format!("verified by key {id}"));
    let generation = status.generation;

    // An unsigned bundle arrives: refused, the signed one keeps serving.
    std::fs::copy(&unsigned, &active).unwrap();
    signal(child.id(), "-HUP");
    while status.reloads_failed == 0 {
        assert!(Instant::now() < deadline, "the reload was never attempted");
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = c
            .get_bundle_status(proto::GetBundleStatusRequest {})
            .await
            .unwrap()
            .into_inner();
    }
    assert_eq!(status.generation, generation);
    let error = status.last_error.unwrap();
    assert!(
        error
            .errors
            .iter()
            .any(|e| e.contains(".signatures.json") && e.contains("missing")),
        "{error:?}"
    );
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
    signal(child.id(), "-TERM");
    let code = tokio::task::spawn_blocking(move || child.0.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(code.code(), Some(0));
}

/// `min_serial`: a call demanding a newer bundle than the active one fails
/// with FAILED_PRECONDITION naming the active serial, never answered from
/// the older bundle (not from the cache either); once the newer bundle is
/// active the same call is answered, and says which serial decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_serial_is_never_answered_from_an_older_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    copy_dir(&root().join(KMS), &bundle);
    let manifest = |serial: u64| format!(r#"{{"revision": "r{serial}", "serial": {serial}}}"#);
    std::fs::write(bundle.join("manifest.json"), manifest(2)).unwrap();
    let sock = dir.path().join("verdict.sock");
    let child = verdict()
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
        .map(Serving)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the socket never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = proto::authorizer_client::AuthorizerClient::new(uds_channel(&sock).await);
    let status = |c: &proto::authorizer_client::AuthorizerClient<_>| {
        let mut c = c.clone();
        async move {
            c.get_bundle_status(proto::GetBundleStatusRequest {})
                .await
                .unwrap()
                .into_inner()
        }
    };
    while status(&c).await.serial != 2 {
        assert!(Instant::now() < deadline, "the bundle never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let request = |min_serial: u64| AuthorizeRequest {
        principal: "arn:aws:iam::111122223333:user/frank".into(),
        action: "kms:Encrypt".into(),
        resource: KEY.into(),
        min_serial,
        ..Default::default()
    };
    // Answered (and cached) at serial 2.
    for _ in 0..2 {
        let r = c.authorize(request(2)).await.unwrap().into_inner();
        assert_eq!((r.decision(), r.bundle_serial), (proto::Decision::Allow, 2));
    }
    let e = c.authorize(request(3)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("serial 2 (revision r2)"),
        "{}",
        e.message()
    );
    let batch = |min_serial: u64, item: u64| proto::BatchAuthorizeRequest {
        requests: vec![request(0), request(item)],
        min_serial,
    };
    for (whole, item) in [(3, 0), (0, 3)] {
        let e = c.batch_authorize(batch(whole, item)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{whole} {item}");
    }

    std::fs::write(bundle.join("manifest.json"), manifest(3)).unwrap();
    signal(child.0.id(), "-HUP");
    while status(&c).await.serial != 3 {
        assert!(Instant::now() < deadline, "the new bundle never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = c.authorize(request(3)).await.unwrap().into_inner();
    assert_eq!(
        (r.decision(), r.bundle_serial, r.cached),
        (proto::Decision::Allow, 3, false)
    );
    let b = c.batch_authorize(batch(3, 3)).await.unwrap().into_inner();
    assert!(b.responses.iter().all(|r| r.bundle_serial == 3));
}

/// With `min_serial_wait_ms`, a call demanding a newer bundle waits for it
/// and is answered by it; one whose bundle never comes fails when the wait
/// ends, still never answered from the older bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_serial_waits_for_the_newer_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    copy_dir(&root().join(KMS), &bundle);
    let manifest = |serial: u64| format!(r#"{{"revision": "r{serial}", "serial": {serial}}}"#);
    std::fs::write(bundle.join("manifest.json"), manifest(2)).unwrap();
    let sock = dir.path().join("verdict.sock");
    let child = verdict()
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
        .env("VERDICT_MIN_SERIAL_WAIT_MS", "3000")
        .stderr(Stdio::null())
        .spawn()
        .map(Serving)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the socket never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = proto::authorizer_client::AuthorizerClient::new(uds_channel(&sock).await);
    let serial = |c: &proto::authorizer_client::AuthorizerClient<_>| {
        let mut c = c.clone();
        async move {
            c.get_bundle_status(proto::GetBundleStatusRequest {})
                .await
                .unwrap()
                .into_inner()
                .serial
        }
    };
    while serial(&c).await != 2 {
        assert!(Instant::now() < deadline, "the bundle never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let call = |min_serial: u64| {
        let mut c = c.clone();
        tokio::spawn(async move {
            c.authorize(AuthorizeRequest {
                principal: "arn:aws:iam::111122223333:user/frank".into(),
                action: "kms:Encrypt".into(),
                resource: KEY.into(),
                min_serial,
                ..Default::default()
            })
            .await
        })
    };
    let waiting = call(3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "answered before serial 3 existed");
    std::fs::write(bundle.join("manifest.json"), manifest(3)).unwrap();
    signal(child.0.id(), "-HUP");
    let r = waiting.await.unwrap().unwrap().into_inner();
    assert_eq!((r.decision(), r.bundle_serial), (proto::Decision::Allow, 3));
    let e = call(9).await.unwrap().unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("serial 3 (revision r3)"),
        "{}",
        e.message()
    );
}
