//! The `verdict serve` binary: serves on a Unix socket, reloads on SIGHUP,
//! stops cleanly on SIGTERM (exit 0) and refuses bad configuration, a
//! plain-HTTP bundle URL not explicitly allowed, or a bundle that does not
//! load (exit 2) before serving.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::path::{Path, PathBuf};
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
            vec!["serve", "--bundle", "http://example.com/b.tar.gz"],
            vec![],
            "allow_insecure_bundle_source",
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
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
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

type Client = proto::authorizer_client::AuthorizerClient<tonic::transport::Channel>;

/// `verdict serve BUNDLE` on the Unix socket `sock`, reloading on SIGHUP
/// only, with `env`; returned once its first bundle is active.
async fn serve_loaded(bundle: &Path, sock: &Path, env: &[(&str, &str)]) -> (Serving, Client) {
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
        .envs(env.iter().copied())
        .stderr(Stdio::null())
        .spawn()
        .map(Serving)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the socket never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = Client::new(uds_channel(sock).await);
    status_until(&c, "the first bundle never loaded", |s| {
        !s.revision.is_empty()
    })
    .await;
    (child, c)
}

/// The bundle status once `ready` holds of it (within 20 s).
async fn status_until(
    c: &Client,
    what: &str,
    ready: impl Fn(&proto::BundleStatus) -> bool,
) -> proto::BundleStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = c
            .clone()
            .get_bundle_status(proto::GetBundleStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if ready(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// frank's `kms:Encrypt` on the example key (an Allow), demanding `min_serial`.
fn frank_encrypts(min_serial: u64) -> AuthorizeRequest {
    AuthorizeRequest {
        principal: "arn:aws:iam::111122223333:user/frank".into(),
        action: "kms:Encrypt".into(),
        resource: KEY.into(),
        min_serial,
        ..Default::default()
    }
}

/// A copy of the example bundle in `dir` whose manifest gives `serial`.
fn bundle_with_serial(dir: &Path, serial: u64) -> PathBuf {
    let bundle = dir.join("bundle");
    copy_dir(&root().join(KMS), &bundle);
    set_serial(&bundle, serial);
    bundle
}

fn set_serial(bundle: &Path, serial: u64) {
    let manifest = format!(r#"{{"revision": "r{serial}", "serial": {serial}}}"#);
    std::fs::write(bundle.join("manifest.json"), manifest).unwrap();
}

/// With `bundle_public_keys`, `serve` loads a signed archive (its status
/// names the key), keeps the last good bundle when a reload brings an
/// unsigned one (the failure names `.signatures.json`), and refuses to
/// start on a bundle that is not signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bundles_are_verified_on_every_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&Path]| {
        let o = verdict().args(args).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let p = Path::new;
    let (key, public) = (d.join("k.pem"), d.join("k.pub.pem"));
    let id = run(&[
        p("bundle"),
        p("keygen"),
        p("--private"),
        &key,
        p("--public"),
        &public,
    ]);
    let id = id.trim().strip_prefix("key id ").unwrap().to_owned();
    let kms = root().join(KMS);
    let (signed, unsigned) = (d.join("signed.tar.gz"), d.join("unsigned.tar.gz"));
    run(&[
        p("bundle"),
        p("build"),
        &kms,
        p("-o"),
        &signed,
        p("--sign"),
        &key,
    ]);
    run(&[p("bundle"), p("build"), &kms, p("-o"), &unsigned]);
    let keys = [("VERDICT_BUNDLE_PUBLIC_KEYS", public.to_str().unwrap())];

    // Not signed: the first load fails, and serve stops with status 2.
    let refused = verdict()
        .args([
            p("serve"),
            p("--bundle"),
            &unsigned,
            p("--uds"),
            &d.join("x.sock"),
        ])
        .envs(keys)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains(".signatures.json"), "{stderr}");

    let active = d.join("bundle.tar.gz");
    std::fs::copy(&signed, &active).unwrap();
    let (mut child, mut c) = serve_loaded(&active, &d.join("verdict.sock"), &keys).await;
    let status = status_until(&c, "no status", |_| true).await;
    assert_eq!(status.signature, format!("verified by key {id}"));

    // An unsigned bundle arrives: refused, the signed one keeps serving.
    std::fs::copy(&unsigned, &active).unwrap();
    signal(child.id(), "-HUP");
    let after = status_until(&c, "the reload was never attempted", |s| {
        s.reloads_failed > 0
    })
    .await;
    assert_eq!(after.generation, status.generation);
    let error = after.last_error.unwrap();
    assert!(
        error
            .errors
            .iter()
            .any(|e| e.contains(".signatures.json") && e.contains("missing")),
        "{error:?}"
    );
    let r = c.authorize(frank_encrypts(0)).await.unwrap().into_inner();
    assert_eq!(r.decision(), proto::Decision::Allow);
    signal(child.id(), "-TERM");
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap())
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
    let bundle = bundle_with_serial(dir.path(), 2);
    let (child, mut c) = serve_loaded(&bundle, &dir.path().join("verdict.sock"), &[]).await;
    assert_eq!(status_until(&c, "no status", |_| true).await.serial, 2);
    // Answered (and cached) at serial 2.
    for _ in 0..2 {
        let r = c.authorize(frank_encrypts(2)).await.unwrap().into_inner();
        assert_eq!((r.decision(), r.bundle_serial), (proto::Decision::Allow, 2));
    }
    let e = c.authorize(frank_encrypts(3)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("serial 2 (revision r2)"),
        "{}",
        e.message()
    );
    let batch = |min_serial: u64, item: u64| proto::BatchAuthorizeRequest {
        requests: vec![frank_encrypts(0), frank_encrypts(item)],
        min_serial,
    };
    for (whole, item) in [(3, 0), (0, 3)] {
        let e = c.batch_authorize(batch(whole, item)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{whole} {item}");
    }

    set_serial(&bundle, 3);
    signal(child.id(), "-HUP");
    status_until(&c, "the new bundle never loaded", |s| s.serial == 3).await;
    let r = c.authorize(frank_encrypts(3)).await.unwrap().into_inner();
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
    let bundle = bundle_with_serial(dir.path(), 2);
    let wait = [("VERDICT_MIN_SERIAL_WAIT_MS", "3000")];
    let (child, c) = serve_loaded(&bundle, &dir.path().join("verdict.sock"), &wait).await;
    let call = |min_serial: u64| {
        let mut c = c.clone();
        tokio::spawn(async move { c.authorize(frank_encrypts(min_serial)).await })
    };
    let waiting = call(3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "answered before serial 3 existed");
    set_serial(&bundle, 3);
    signal(child.id(), "-HUP");
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
