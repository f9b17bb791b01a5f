//! Abuse of the real `verdict serve` binary, as an attacker would try it,
//! each case with small limits so that it runs in seconds: bundles that
//! wedge or exhaust a load, clients that hold streams or connections,
//! requests built to be large, malformed or costly. Each asserts what the
//! server does instead: a clear error, a later good bundle active, other
//! clients still served, memory bounded. Longer forms with the default
//! settings are `benches/abuse` (figures in BENCHMARKS.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;
use tonic::Code;
use verdict::proto::authorizer_client::AuthorizerClient;
use verdict::proto::{self, AuthorizeRequest, ContextValues};

const SECRET: &str = "TOP-SECRET-OUTSIDE-CONTENT";

/// The cases run one at a time: their timing assertions (p99, deadlines)
/// are about the server under attack, not about other cases' servers.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `verdict serve` child on a Unix socket, killed and reaped on drop.
struct Server {
    child: std::process::Child,
    sock: PathBuf,
    _dir: tempfile::TempDir,
    bundle: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn spawn(prepare: impl FnOnce(&Path), env: &[(&str, &str)]) -> Self {
        Self::spawn_with(prepare, env, None, false)
    }

    /// As [`Server::spawn`], with at most `nofile` open files when set, and
    /// serving the bundle packed as `bundle.tar.gz` when `archive` (then
    /// `bundle` is the archive's path).
    fn spawn_with(
        prepare: impl FnOnce(&Path),
        env: &[(&str, &str)],
        nofile: Option<u32>,
        archive: bool,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut bundle = dir.path().join("bundle");
        copy_dir(&root().join(KMS), &bundle);
        prepare(&bundle);
        if archive {
            let packed = dir.path().join("bundle.tar.gz");
            let gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&packed).unwrap(),
                flate2::Compression::default(),
            );
            let mut tar = tar::Builder::new(gz);
            tar.append_dir_all(".", &bundle).unwrap();
            tar.into_inner().unwrap().finish().unwrap();
            bundle = packed;
        }
        let sock = dir.path().join("verdict.sock");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_verdict"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_verdict")),
        };
        cmd.current_dir(root())
            .env_remove("RUST_LOG")
            .args(["serve", "--bundle", bundle.to_str().unwrap()])
            .args(["--uds", sock.to_str().unwrap()])
            .env("VERDICT_RELOAD_DEBOUNCE_MS", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Self {
            child,
            sock,
            _dir: dir,
            bundle,
        }
    }

    /// Wait until the socket exists and a bundle is active.
    async fn ready(&self) -> AuthorizerClient<tonic::transport::Channel> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.sock.exists() {
            assert!(Instant::now() < deadline, "the socket never appeared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut c = AuthorizerClient::new(uds_channel(&self.sock).await);
        loop {
            let s = c.get_bundle_status(proto::GetBundleStatusRequest {}).await;
            if s.is_ok_and(|s| !s.into_inner().revision.is_empty()) {
                return c;
            }
            assert!(Instant::now() < deadline, "no bundle became active");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            / 1024
    }
}

fn frank() -> AuthorizeRequest {
    AuthorizeRequest {
        principal: "arn:aws:iam::111122223333:user/frank".into(),
        action: "kms:Encrypt".into(),
        resource: KEY.into(),
        ..Default::default()
    }
}

/// Every way a file in a bundle directory can wedge or exhaust a load.
fn poison(bundle: &Path, outside: &Path) {
    symlink(".", bundle.join("policies/l1")).unwrap();
    symlink(".", bundle.join("policies/l2")).unwrap();
    let fifo = bundle.join("policies/fifo.json");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    symlink("/dev/zero", bundle.join("policies/zero.json")).unwrap();
    std::fs::write(outside, format!("\"{SECRET}\"")).unwrap();
    std::fs::remove_file(bundle.join("principals.json")).unwrap();
    symlink(outside, bundle.join("principals.json")).unwrap();
}

fn unpoison(bundle: &Path) {
    for f in [
        "policies/l1",
        "policies/l2",
        "policies/fifo.json",
        "policies/zero.json",
        "principals.json",
    ] {
        std::fs::remove_file(bundle.join(f)).unwrap();
    }
    copy_dir(&root().join(KMS).join("policies"), &bundle.join("policies"));
    std::fs::copy(
        root().join(KMS).join("principals.json"),
        bundle.join("principals.json"),
    )
    .unwrap();
}

#[test]
fn a_poisoned_first_bundle_exits_2_at_once_without_echoing_files() {
    let _serial = SERIAL.blocking_lock();
    let outside = tempfile::NamedTempFile::new().unwrap();
    let outside_path = outside.path().to_path_buf();
    let mut server = Server::spawn(|b| poison(b, &outside_path), &[]);
    let started = Instant::now();
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut stderr = String::new();
    std::io::Read::read_to_string(server.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    for needle in [
        "symlink loop",
        "not a regular file",
        "leads outside the bundle",
    ] {
        assert!(stderr.contains(needle), "{needle} not in {stderr}");
    }
    assert!(!stderr.contains(SECRET), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_reload_is_reported_and_a_later_good_bundle_is_active() {
    let _serial = SERIAL.lock().await;
    let server = Server::spawn(
        |_| {},
        &[
            ("VERDICT_POLL_INTERVAL_MS", "300"),
            ("VERDICT_WATCH", "false"),
        ],
    );
    let mut c = server.ready().await;
    let before = server.rss_mib();
    let outside = tempfile::NamedTempFile::new().unwrap();
    poison(&server.bundle, outside.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let s = c
            .get_bundle_status(proto::GetBundleStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if s.reloads_failed > 0 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the poisoned bundle was never reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = failed.last_error.unwrap();
    let all = format!("{} {}", error.message, error.errors.join(" "));
    assert!(all.contains("symlink loop"), "{all}");
    assert!(!all.contains(SECRET), "{all}");
    assert_eq!(failed.revision, "2026-11-28.1");
    // The old bundle still answers; memory did not grow.
    let r = c.authorize(frank()).await.unwrap().into_inner();
    assert_eq!(r.decision(), proto::Decision::Allow);
    assert!(
        server.rss_mib() < before + 64,
        "{} MiB after {before}",
        server.rss_mib()
    );
    // A good bundle put in place afterwards is active within the poll
    // interval and a second.
    unpoison(&server.bundle);
    std::fs::write(
        server.bundle.join("manifest.json"),
        r#"{"revision": "fixed"}"#,
    )
    .unwrap();
    let fixed_at = Instant::now();
    loop {
        let s = c
            .get_bundle_status(proto::GetBundleStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if s.revision == "fixed" {
            assert!(s.last_error.is_none());
            break;
        }
        assert!(
            fixed_at.elapsed() < Duration::from_millis(1300 + 300),
            "not active in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_during_the_first_load_does_not_kill_the_server() {
    let _serial = SERIAL.lock().await;
    let mut server = Server::spawn(|_| {}, &[]);
    let stderr = server.child.stderr.take().unwrap();
    let pid = server.child.id();
    let seen = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref() {
            if line.unwrap().contains("loading the first bundle") {
                assert!(
                    Command::new("kill")
                        .args(["-HUP", &pid.to_string()])
                        .status()
                        .unwrap()
                        .success()
                );
                // Keep reading so that the server never blocks on stderr.
                std::thread::spawn(move || lines.for_each(drop));
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(seen);
    let mut c = server.ready().await;
    assert!(c.authorize(frank()).await.is_ok());
    assert!(server.child.try_wait().unwrap().is_none());
}

/// An HTTP/2 connection on the socket, driven in the background.
async fn h2_conn(sock: &Path) -> h2::client::SendRequest<Bytes> {
    let io = tokio::net::UnixStream::connect(sock).await.unwrap();
    let (client, conn) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn grpc_post(path: &str, content_type: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// The grpc-status of a response, from its headers (trailers-only) or trailers.
async fn grpc_status(response: h2::client::ResponseFuture) -> (http::StatusCode, Option<String>) {
    let response = match response.await {
        Ok(r) => r,
        // A stream over the connection's limit, sent before the client
        // knew it, is refused.
        Err(e) if e.reason() == Some(h2::Reason::REFUSED_STREAM) => {
            return (http::StatusCode::OK, Some("refused".into()));
        }
        Err(e) => panic!("{e}"),
    };
    let status = response.status();
    if let Some(s) = response.headers().get("grpc-status") {
        return (status, Some(s.to_str().unwrap().to_owned()));
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let _ = chunk;
    }
    let trailers = body.trailers().await.ok().flatten();
    (
        status,
        trailers.and_then(|t| t.get("grpc-status").map(|s| s.to_str().unwrap().to_owned())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_never_send_a_body_cannot_starve_other_clients() {
    let _serial = SERIAL.lock().await;
    let server = Server::spawn(
        |_| {},
        &[
            ("VERDICT_REQUEST_BODY_TIMEOUT_MS", "500"),
            ("VERDICT_CONCURRENCY_LIMIT", "64"),
            ("VERDICT_MAX_CONCURRENT_STREAMS", "50"),
        ],
    );
    let mut c = server.ready().await;
    // Four connections, each trying to open 100 streams that never send a
    // body: 200 streams held for half a second, more than the 64 calls that
    // may be decided at once; a call takes its place only once its body is
    // in, so they hold none of them.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = h2_conn(&server.sock).await;
        for _ in 0..100 {
            conn = conn.ready().await.unwrap();
            let Ok((response, send)) = conn.send_request(
                grpc_post("/verdict.v1.Authorizer/Authorize", "application/grpc"),
                false,
            ) else {
                break;
            };
            held.push((tokio::spawn(grpc_status(response)), send));
        }
    }
    let mut latencies = Vec::new();
    let mut ok = 0;
    for _ in 0..300 {
        let t = Instant::now();
        if c.authorize(frank()).await.is_ok() {
            ok += 1;
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(ok >= 297, "{ok} of 300 calls succeeded");
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    // Every held stream was ended for its missing body (DEADLINE_EXCEEDED),
    // or refused over the connection's stream limit.
    let mut timed_out = 0;
    for (response, _send) in held {
        let (_, status) = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .unwrap()
            .unwrap();
        match status.as_deref() {
            Some("4") => timed_out += 1,
            Some("refused") => {}
            other => panic!("{other:?}"),
        }
    }
    assert!((4 * 50..=4 * 100).contains(&timed_out), "{timed_out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_idle_and_excess_connections_are_closed() {
    let _serial = SERIAL.lock().await;
    use tokio::io::AsyncReadExt as _;
    let server = Server::spawn(
        |_| {},
        &[
            ("VERDICT_HANDSHAKE_TIMEOUT_MS", "400"),
            ("VERDICT_IDLE_TIMEOUT_MS", "800"),
            ("VERDICT_MAX_CONNECTIONS", "8"),
        ],
    );
    let mut c = server.ready().await;
    drop(c.authorize(frank()).await.unwrap());
    drop(c);
    // The client above may still hold its connection until it is idle.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::UnixStream::connect(&server.sock).await.unwrap());
    }
    // The ninth is closed as it is accepted.
    let mut extra = tokio::net::UnixStream::connect(&server.sock).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_millis(300), extra.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the ninth connection got {n:?}"
    );
    // The silent ones are closed at the handshake timeout.
    let started = Instant::now();
    for mut s in silent {
        // The server's own SETTINGS may come first; then the connection ends.
        let closed = tokio::time::timeout(Duration::from_secs(3), async {
            while let Ok(n) = s.read(&mut buf).await
                && n > 0
            {}
        })
        .await;
        assert!(closed.is_ok(), "a silent connection stayed open");
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // A connection that made a call and then went quiet is closed too.
    let mut conn = h2_conn(&server.sock).await;
    conn = conn.ready().await.unwrap();
    let (response, _send) = conn
        .send_request(
            grpc_post("/grpc.health.v1.Health/Check", "application/grpc"),
            true,
        )
        .unwrap();
    let (http_status, _) = grpc_status(response).await;
    assert_eq!(http_status, http::StatusCode::OK);
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if conn.clone().ready().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection stayed open");
    // New clients are served again.
    let mut c = AuthorizerClient::new(uds_channel(&server.sock).await);
    assert!(c.authorize(frank()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_malformed_and_costly_requests_are_refused_clearly() {
    let _serial = SERIAL.lock().await;
    let server = Server::spawn(|_| {}, &[]);
    let mut c = server.ready().await;
    // Over max_request_bytes (64 KiB) in all, though every part is within its own limit.
    let mut big = frank();
    for i in 0..20 {
        big.context.insert(
            format!("k{i}"),
            ContextValues {
                values: vec!["v".repeat(4000)],
            },
        );
    }
    let e = c.authorize(big).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("max_request_bytes"), "{}", e.message());
    // Control characters.
    for (field, mut r) in [
        (
            "principal",
            AuthorizeRequest {
                principal: "arn:aws:iam::111122223333:user/fr\0ank".into(),
                ..frank()
            },
        ),
        (
            "action",
            AuthorizeRequest {
                action: "kms:Encr\0ypt".into(),
                ..frank()
            },
        ),
    ] {
        let e = c.authorize(r.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with(field), "{}", e.message());
        r.principal.clear();
    }
    // A long key is echoed cut, so the status stays small.
    let mut long_key = frank();
    long_key.context.insert(
        format!("{}\u{1}", "k".repeat(4000)),
        ContextValues { values: vec![] },
    );
    let e = c.authorize(long_key).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().len() < 400, "{} bytes", e.message().len());
    assert!(
        e.details().len() < 1024,
        "{} bytes of details",
        e.details().len()
    );
    // A body that is not a protobuf message, and a body that is not gRPC.
    let mut conn = h2_conn(&server.sock).await;
    conn = conn.ready().await.unwrap();
    let (response, mut send) = conn
        .send_request(
            grpc_post("/verdict.v1.Authorizer/Authorize", "application/grpc"),
            false,
        )
        .unwrap();
    send.send_data(
        Bytes::from_static(&[0, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]),
        true,
    )
    .unwrap();
    assert_eq!(grpc_status(response).await.1.as_deref(), Some("3"));
    conn = conn.ready().await.unwrap();
    let (response, _send) = conn
        .send_request(
            grpc_post("/verdict.v1.Authorizer/Authorize", "application/json"),
            true,
        )
        .unwrap();
    let (http_status, grpc) = grpc_status(response).await;
    assert_eq!(http_status, http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(grpc.as_deref(), Some("3"));
    // A session policy built to make wildcard matching backtrack: answered
    // at once, decided or refused, never a stall.
    let statement = serde_json::json!({
        "Effect": "Deny", "Action": "kms:*", "Resource": "*",
        "Condition": {"ForAnyValue:StringLike": {"app:tag": [format!("*{}b*", "a".repeat(2000))]}}
    });
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [statement.clone(), statement.clone(), statement.clone(), statement]});
    let costly = AuthorizeRequest {
        principal: "arn:aws:sts::111122223333:assumed-role/KeyAdmin/ops".into(),
        action: "kms:DescribeKey".into(),
        resource: KEY.into(),
        session_policy: policy.to_string(),
        context: [(
            "app:tag".to_owned(),
            ContextValues {
                values: vec!["a".repeat(4096); 12],
            },
        )]
        .into(),
        explain: false,
        min_serial: 0,
    };
    let t = Instant::now();
    let r = c.authorize(costly).await;
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    match r {
        Ok(_) => {}
        Err(e) => assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_past_reload_timeout_fails_and_stops_a_first_start() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    copy_dir(&root().join(KMS), &bundle);
    // Enough policies that a load takes well over a millisecond.
    let statement = serde_json::json!({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
        "Condition": {"StringLike": {"kms:EncryptionContext:app": ["a*", "b*", "c*"]}}});
    let doc =
        serde_json::json!({"Version": "2012-10-17", "Statement": vec![statement; 200]}).to_string();
    std::fs::create_dir_all(bundle.join("policies/bulk")).unwrap();
    for i in 0..200 {
        std::fs::write(bundle.join(format!("policies/bulk/p{i}.json")), &doc).unwrap();
    }
    let config = config(&bundle, None, &[("VERDICT_RELOAD_TIMEOUT_MS", "1")]);
    match verdict::app::start(&config, verdict::app::Hooks::default()).await {
        Err(verdict::app::AppError::FirstBundle(failure)) => {
            assert!(
                failure.message.contains("reload_timeout_ms"),
                "{}",
                failure.message
            );
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a load of 40,000 statements finished within 1 ms"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_batch_bodies_hold_bounded_memory_and_time() {
    let _serial = SERIAL.lock().await;
    let server = Server::spawn(|_| {}, &[]);
    let mut c = server.ready().await;
    let before = server.rss_mib();
    // Three connections, 30 batches each, declaring 4 MiB but sending one
    // and never the rest.
    let mut held = Vec::new();
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&(4u32 * 1024 * 1024 - 6).to_be_bytes());
    let chunk = Bytes::from(vec![0x0a; 1024 * 1024]);
    for _ in 0..3 {
        let mut conn = h2_conn(&server.sock).await;
        for _ in 0..30 {
            conn = conn.ready().await.unwrap();
            let (response, mut send) = conn
                .send_request(
                    grpc_post("/verdict.v1.Authorizer/BatchAuthorize", "application/grpc"),
                    false,
                )
                .unwrap();
            send.send_data(Bytes::from(prefix.clone()), false).unwrap();
            send.send_data(chunk.clone(), false).unwrap();
            held.push((tokio::spawn(grpc_status(response)), send));
        }
    }
    let mut ok = 0;
    let mut peak = 0;
    for i in 0..200 {
        if c.authorize(frank()).await.is_ok() {
            ok += 1;
        }
        if i % 20 == 0 {
            peak = peak.max(server.rss_mib());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(ok >= 198, "{ok} of 200");
    assert!(peak < before + 256, "RSS {peak} MiB from {before} MiB");
    for (response, _send) in held {
        let (_, status) = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .unwrap()
            .unwrap();
        // Body deadline, or its turn never came.
        assert!(matches!(status.as_deref(), Some("4" | "8")), "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_distinct_requests_with_a_stalled_decision_log_hold_bounded_memory() {
    let _serial = SERIAL.lock().await;
    // The decision log goes to stdout, which nobody reads: the pipe fills
    // and the writer stalls, so every record stays queued until the
    // queue's byte bound. Each request is distinct and near the request
    // limit, so none is cached (over cache_max_entry_bytes) either.
    let server = Server::spawn(|_| {}, &[("VERDICT_DECISION_LOG", "stdout")]);
    let mut c = server.ready().await;
    let before = server.rss_mib();
    let value = "v".repeat(4000);
    for i in 0..2000 {
        let mut r = frank();
        for k in 0..15 {
            r.context.insert(
                format!("app:k{k}"),
                ContextValues {
                    values: vec![format!("{i}-{value}")],
                },
            );
        }
        let answer = tokio::time::timeout(Duration::from_secs(5), c.authorize(r))
            .await
            .expect("a decision waited on the stalled log");
        assert!(answer.is_ok());
    }
    let after = server.rss_mib();
    // 2,000 requests of 60 KiB are 117 MiB as sent, fewer than the 8,192
    // records the queue may hold; its 16 MiB byte bound is what holds.
    assert!(after < before + 64, "RSS {after} MiB from {before} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_at_the_fd_limit_cannot_stop_a_revocation() {
    let _serial = SERIAL.lock().await;
    // 200 files: max_connections is lowered to 100, leaving the rest for
    // bundle reads.
    let mut server = Server::spawn_with(
        |_| {},
        &[
            ("VERDICT_HANDSHAKE_TIMEOUT_MS", "3000"),
            ("VERDICT_POLL_INTERVAL_MS", "200"),
            ("VERDICT_WATCH", "false"),
        ],
        Some(200),
        false,
    );
    let stderr = server.child.stderr.take().unwrap();
    let log = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let mut c = server.ready().await;
    let r = c.authorize(frank()).await.unwrap().into_inner();
    assert_eq!(r.decision(), proto::Decision::Allow);
    // 300 connections that never speak: the server's files would run out
    // at 200.
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(tokio::net::UnixStream::connect(&server.sock).await.unwrap());
    }
    // Frank's policy is taken away while they are open.
    let principals = server.bundle.join("principals.json");
    let text = std::fs::read_to_string(&principals).unwrap();
    let revoked = text.replace(
        r#""policies": ["kms/encrypt-decrypt-specific-keys"]"#,
        r#""policies": []"#,
    );
    assert_ne!(text, revoked);
    std::fs::write(&principals, revoked).unwrap();
    let started = Instant::now();
    loop {
        let r = c.authorize(frank()).await.unwrap().into_inner();
        if r.decision() == proto::Decision::ImplicitDeny {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "the revocation never took effect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = c
        .get_bundle_status(proto::GetBundleStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.last_error.is_none(), "{:?}", status.last_error);
    // Once the silent ones are closed at the handshake timeout, new
    // clients are served.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    drop(silent);
    let mut fresh = AuthorizerClient::new(uds_channel(&server.sock).await);
    assert!(fresh.authorize(frank()).await.is_ok());
    drop((c, fresh));
    let _ = server.child.kill();
    let _ = server.child.wait();
    let log = log.await.unwrap();
    assert!(
        log.iter().any(|l| l.contains("max_connections lowered")),
        "{log:?}"
    );
    // Refusals are logged, but not once per connection.
    let refusals = log.iter().filter(|l| l.contains("refused")).count();
    assert!(
        (1..=3).contains(&refusals),
        "{refusals} refusal lines: {log:?}"
    );
}

/// Waits until the server reports a failed reload, and returns its status.
async fn failed_reload(
    c: &mut AuthorizerClient<tonic::transport::Channel>,
    within: Duration,
) -> proto::BundleStatus {
    let deadline = Instant::now() + within;
    loop {
        let s = c
            .get_bundle_status(proto::GetBundleStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if s.reloads_failed > 0 {
            return s;
        }
        assert!(Instant::now() < deadline, "no failed reload was reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_of_many_symlink_entries_stops_at_the_file_limit() {
    let _serial = SERIAL.lock().await;
    let server = Server::spawn_with(
        |_| {},
        &[
            ("VERDICT_POLL_INTERVAL_MS", "200"),
            ("VERDICT_WATCH", "false"),
        ],
        None,
        true,
    );
    let mut c = server.ready().await;
    let before = server.rss_mib();
    // 200,000 entries that are not files (each also named `..`-free and
    // distinct), twice max_bundle_files: a 100 MB tar in a small archive.
    let evil = server.bundle.with_extension("new");
    {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&evil).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        for i in 0..200_000 {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            tar.append_link(&mut header, format!("policies/l{i}"), "/etc/passwd")
                .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
    std::fs::rename(&evil, &server.bundle).unwrap();
    let started = Instant::now();
    let failed = failed_reload(&mut c, Duration::from_secs(10)).await;
    let error = failed.last_error.unwrap();
    let all = format!("{} {}", error.message, error.errors.join(" "));
    assert!(all.contains("max_bundle_files"), "{all}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        server.rss_mib() < before + 64,
        "{} MiB after {before}",
        server.rss_mib()
    );
    let r = c.authorize(frank()).await.unwrap().into_inner();
    assert_eq!(r.decision(), proto::Decision::Allow);
}

/// A request for `principal` whose context takes about `bytes` in memory.
fn padded(principal: &str, n: usize, bytes: usize) -> AuthorizeRequest {
    let mut r = frank();
    r.principal = principal.into();
    r.context.insert(
        "app:pad".into(),
        ContextValues {
            values: vec![
                format!("{n}-{}", "p".repeat(bytes / 2)),
                "p".repeat(bytes / 2),
            ],
        },
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_requests_and_wide_batches_hold_the_cache_to_its_byte_bound() {
    let _serial = SERIAL.lock().await;
    let server = Server::spawn(|_| {}, &[]);
    let c = server.ready().await;
    let before = server.rss_mib();
    // 30,000 distinct requests of 7 KiB, each small enough to be cached:
    // 210 MiB if entries were bounded only in number (100,000).
    let mut tasks = Vec::new();
    for t in 0..4 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..7_500 {
                let r = padded("arn:aws:iam::111122223333:user/frank", t * 10_000 + i, 7000);
                c.authorize(r).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after_cache = server.rss_mib();
    // Batches of 900 items with 64 keys of 26 empty values each: 4 KiB
    // per item on the wire, ten times that decoded. They are measured
    // before they are decoded and refused; a batch of the same items with
    // one value per key is decided.
    let item = |n: usize, values: usize| {
        let mut r = frank();
        for k in 0..64 {
            r.context.insert(
                format!("app:k{n}-{k}"),
                ContextValues {
                    values: vec![String::new(); values],
                },
            );
        }
        r
    };
    let mut tasks = Vec::new();
    for t in 0..4 {
        let mut c = c.clone();
        let wide = proto::BatchAuthorizeRequest {
            requests: (0..900).map(|n| item(t * 1000 + n, 26)).collect(),
            ..Default::default()
        };
        let narrow = proto::BatchAuthorizeRequest {
            requests: (0..100).map(|n| item(t * 1000 + n, 1)).collect(),
            ..Default::default()
        };
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let e = c.batch_authorize(wide.clone()).await.unwrap_err();
                assert_eq!(e.code(), Code::ResourceExhausted);
                assert!(
                    e.message().contains("max_batch_decoded_bytes"),
                    "{}",
                    e.message()
                );
                let r = c
                    .batch_authorize(narrow.clone())
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(r.responses.len(), 100);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after_batches = server.rss_mib();
    eprintln!("RSS {before} MiB, {after_cache} after the cache, {after_batches} after the batches");
    // The cache's 64 MiB, and what the allocator keeps around it.
    assert!(
        after_cache < before + 96,
        "RSS {after_cache} MiB from {before} MiB"
    );
    assert!(
        after_batches < before + 256,
        "RSS {after_batches} MiB from {before} MiB"
    );
}
