//! Helpers for the server tests: configure and start a real server on
//! 127.0.0.1:0 and a temporary Unix socket, and connect tonic clients.

#![allow(dead_code, reason = "each test binary uses part of these helpers")]

pub mod otlp;
pub mod remote;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use verdict::app::{self, Running};
use verdict::config::{self, Config, FlagValues, Sources};
use verdict::proto::authorizer_client::AuthorizerClient;

pub const KMS: &str = "examples/bundles/kms";
pub const KEY: &str = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A configuration as `verdict serve` would build it from these settings.
pub fn config(bundle: &Path, uds: Option<&Path>, env: &[(&str, &str)]) -> Config {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let lookup = move |k: &str| env.get(k).cloned();
    config::from_sources(&Sources {
        flags: FlagValues {
            bundle: Some(bundle.display().to_string()),
            listen: Some("127.0.0.1:0".into()),
            uds: uds.map(|p| p.display().to_string()),
            metrics_listen: None,
        },
        env: &lookup,
        file: None,
    })
    .unwrap()
}

pub async fn start(config: &Config) -> Running {
    app::start(config, app::Hooks::default()).await.unwrap()
}

/// Start with telemetry.
pub async fn start_with(
    config: &Config,
    telemetry: std::sync::Arc<verdict::telemetry::Telemetry>,
) -> Running {
    app::start(
        config,
        app::Hooks {
            telemetry: Some(telemetry),
        },
    )
    .await
    .unwrap()
}

/// `GET http://addr/path` over HTTP/1.1; the status line and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

pub async fn tcp_channel(running: &Running) -> Channel {
    Endpoint::try_from(format!("http://{}", running.tcp.unwrap()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A channel over the Unix socket at `path`. The socket's file appears when
/// it is bound, a moment before it listens, so a refused connection is
/// tried again for up to two seconds.
pub async fn uds_channel(path: &Path) -> Channel {
    let path = path.to_path_buf();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    Endpoint::try_from("http://localhost")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                loop {
                    match tokio::net::UnixStream::connect(&path).await {
                        Ok(s) => return Ok::<_, std::io::Error>(TokioIo::new(s)),
                        Err(e)
                            if e.kind() == std::io::ErrorKind::ConnectionRefused
                                && std::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }))
        .await
        .unwrap()
}

pub async fn client(running: &Running) -> AuthorizerClient<Channel> {
    AuthorizerClient::new(tcp_channel(running).await)
}

/// Copy a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Telemetry that writes the decision log of every decision to the
/// returned stream (no tracing, no Prometheus), for reading with
/// [`shutdown_and_read_log`].
pub fn log_telemetry() -> (
    std::sync::Arc<verdict::telemetry::Telemetry>,
    tokio::io::DuplexStream,
) {
    use verdict::telemetry::{LogFilter, LogSink, Telemetry, TelemetryOptions, TelemetrySettings};
    let (log_out, log_in) = tokio::io::duplex(4 << 20);
    let telemetry = Telemetry::start(TelemetryOptions {
        settings: TelemetrySettings::from_env(&|_| None).unwrap(),
        prometheus: false,
        decision_log: Some(LogSink::Writer(Box::new(log_out))),
        decision_log_queue: 4096,
        decision_log_queue_bytes: 16 << 20,
        decision_log_filter: LogFilter::All,
    })
    .unwrap();
    (std::sync::Arc::new(telemetry), log_in)
}

/// Stop the server (which drains and flushes the decision log) while
/// reading the log's other end; its JSON lines.
pub async fn shutdown_and_read_log(
    running: Running,
    mut log_in: tokio::io::DuplexStream,
) -> Vec<serde_json::Value> {
    use tokio::io::AsyncReadExt as _;
    let reader = tokio::spawn(async move {
        let mut s = String::new();
        log_in.read_to_string(&mut s).await.unwrap();
        s
    });
    running.shutdown().await;
    let text = reader.await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
