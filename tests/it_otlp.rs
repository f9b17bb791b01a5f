//! OTLP export as users configure it, against in-process receivers: each
//! protocol (`grpc`, `http/protobuf`) in plaintext and over mutual TLS (the
//! collector's CA from `OTEL_EXPORTER_OTLP_CERTIFICATE`, a client
//! certificate and key), gzip on and off, delivers spans and metrics; the
//! system roots are used when no CA file is named (`SSL_CERT_FILE` stands in
//! for the system's store in a child process); a bad value stops
//! `verdict serve` at start with the variable named.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::otlp::{self, Received, str_attr};
use support::remote::TestCa;
use support::*;
use verdict::config::LogFilter;
use verdict::proto::AuthorizeRequest;
use verdict::telemetry::{Telemetry, TelemetryOptions, TelemetrySettings};

const DAVE: &str = "arn:aws:iam::111122223333:user/dave";

fn req() -> AuthorizeRequest {
    AuthorizeRequest {
        principal: DAVE.into(),
        action: "kms:Encrypt".into(),
        resource: KEY.into(),
        ..Default::default()
    }
}

#[derive(Clone, Copy, Debug)]
enum Proto {
    Grpc,
    Http,
}

/// Start the receiver for `proto`, over mutual TLS with `tls`.
async fn receiver(proto: Proto, tls: Option<&TestCa>) -> (SocketAddr, Received) {
    match (proto, tls) {
        (Proto::Grpc, None) => otlp::receiver().await,
        (Proto::Grpc, Some(ca)) => otlp::receiver_tls(ca).await,
        (Proto::Http, tls) => otlp::http_receiver(tls).await,
    }
}

/// The variables for `proto` to `addr`, with the CA file and a client
/// certificate when `tls`.
fn env(
    proto: Proto,
    addr: SocketAddr,
    tls: Option<&TestCa>,
    gzip: bool,
) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=keys"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let scheme = if tls.is_some() { "https" } else { "http" };
    env.insert(
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        format!("{scheme}://localhost:{}", addr.port()),
    );
    env.insert(
        "OTEL_EXPORTER_OTLP_PROTOCOL".into(),
        match proto {
            Proto::Grpc => "grpc",
            Proto::Http => "http/protobuf",
        }
        .into(),
    );
    if gzip {
        env.insert("OTEL_EXPORTER_OTLP_COMPRESSION".into(), "gzip".into());
    }
    if let Some(ca) = tls {
        let (cert, key) = ca.client("exporter", &["dns:verdict.local"]);
        env.insert(
            "OTEL_EXPORTER_OTLP_CERTIFICATE".into(),
            ca.ca.display().to_string(),
        );
        env.insert(
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE".into(),
            cert.display().to_string(),
        );
        env.insert(
            "OTEL_EXPORTER_OTLP_CLIENT_KEY".into(),
            key.display().to_string(),
        );
    }
    env
}

/// Wait until `received` has Dave's span and the decision counter.
async fn delivered(received: &Received, what: &str) {
    received
        .wait_for(&format!("{what}: the span"), |r| {
            r.spans()
                .iter()
                .any(|s| str_attr(&s.attributes, "verdict.principal") == Some(DAVE))
        })
        .await;
    received
        .wait_for(&format!("{what}: the metrics"), |r| {
            r.metric("verdict.decisions").is_some()
                && r.metric("rpc.server.call.duration").is_some()
        })
        .await;
    let metadata = received.trace_metadata();
    assert_eq!(
        metadata[0].get("x-tenant").map(|v| v.to_str().unwrap()),
        Some("keys"),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_and_tls_combination_delivers_spans_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&dir.path().join("ca"));
    for proto in [Proto::Grpc, Proto::Http] {
        for (tls, gzip) in [(None, false), (Some(&ca), true), (Some(&ca), false)] {
            let what = format!("{proto:?} tls={} gzip={gzip}", tls.is_some());
            let (addr, received) = receiver(proto, tls).await;
            let env = env(proto, addr, tls, gzip);
            let settings = TelemetrySettings::from_env(&|k| env.get(k).cloned()).unwrap();
            let telemetry = Arc::new(
                Telemetry::start(TelemetryOptions {
                    settings,
                    prometheus: false,
                    decision_log: None,
                    decision_log_queue: 16,
                    decision_log_queue_bytes: 1 << 16,
                    decision_log_filter: LogFilter::All,
                })
                .unwrap(),
            );
            let running = start_with(&config(&root().join(KMS), None, &[]), telemetry).await;
            let mut c = client(&running).await;
            c.authorize(req()).await.unwrap();
            delivered(&received, &what).await;
            running.shutdown().await;
        }
    }
}

/// `verdict serve` with these variables, on a socket in `dir`.
fn serve(dir: &std::path::Path, env: &HashMap<String, String>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_verdict"));
    c.current_dir(root())
        .env_remove("RUST_LOG")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .args(["serve", "--bundle", KMS, "--uds"])
        .arg(dir.join("v.sock"))
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_roots_verify_the_collector_when_no_ca_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&dir.path().join("ca"));
    for proto in [Proto::Grpc, Proto::Http] {
        let (addr, received) = receiver(proto, Some(&ca)).await;
        let mut env = env(proto, addr, Some(&ca), false);
        env.remove("OTEL_EXPORTER_OTLP_CERTIFICATE");
        // rustls-native-certs reads the system store from here when set.
        env.insert("SSL_CERT_FILE".into(), ca.ca.display().to_string());
        let mut child = serve(dir.path(), &env).spawn().unwrap();
        let sock = dir.path().join("v.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "the server never made its socket"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut c =
            verdict::proto::authorizer_client::AuthorizerClient::new(uds_channel(&sock).await);
        // The socket is there before the first bundle is loaded.
        while let Err(e) = c.authorize(req()).await {
            assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
            assert!(Instant::now() < deadline, "no bundle loaded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        delivered(&received, &format!("{proto:?} with the system roots")).await;
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&sock);
    }
}

#[test]
fn a_bad_value_stops_the_server_at_start_with_the_variable_named() {
    let dir = tempfile::tempdir().unwrap();
    let key_only = dir.path().join("k.pem");
    std::fs::write(&key_only, "not a key").unwrap();
    for (var, value, says) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "not supported"),
        (
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "udp",
            "not an OTLP protocol",
        ),
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        ),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            key_only.to_str().unwrap(),
            "no PEM private key",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "ftp://collector",
            "scheme",
        ),
    ] {
        let env: HashMap<String, String> = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://localhost:4318"),
            (var, value),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let out = serve(dir.path(), &env).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert!(
            stderr.contains(var) && stderr.contains(says),
            "{var}={value}: {stderr}"
        );
        assert!(!dir.path().join("v.sock").exists(), "{var}: it served");
    }
}
