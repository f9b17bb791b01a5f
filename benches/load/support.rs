//! Helpers of the load test (`benches/load/run.py`):
//!
//! - `bodies DIR`: the pre-encoded gRPC request bodies h2load sends
//!   (length-prefixed protobuf, as on the wire);
//! - `check --target T --bodies DIR`: decodes the same bodies and sends them
//!   with a real gRPC client (tonic), since h2load sees HTTP status only;
//!   fails unless every call ends with grpc-status OK and the expected answer;
//! - `pace --target T --path P --body FILE --rate R`: an open-loop load at a
//!   steady rate (what is due released every 100 µs, not in the 1 ms bursts
//!   of h2load's `--rps`), over raw HTTP/2 with the same pre-encoded bodies
//!   (`pace.rs`); it reports latency percentiles and checks every
//!   grpc-status;
//! - `otlp-sink`: an OTLP/gRPC receiver that counts the exports it is sent
//!   (without decoding them), for the traced runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark tool: failing loudly is the point"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{Parser, Subcommand};

#[path = "pace.rs"]
mod pace;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use verdict::proto::authorizer_client::AuthorizerClient;
use verdict::proto::{AuthorizeRequest, BatchAuthorizeRequest, Decision};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write health.bin, authorize.bin and batch100.bin into DIR.
    Bodies { dir: PathBuf },
    /// Send the bodies with a gRPC client and check every status.
    Check {
        /// `127.0.0.1:PORT` or `unix:PATH`.
        #[arg(long)]
        target: String,
        /// Where `bodies` wrote.
        #[arg(long)]
        bodies: PathBuf,
        /// Calls of each kind.
        #[arg(long, default_value_t = 200)]
        count: usize,
    },
    /// Send one pre-encoded request at a steady rate and measure latency.
    Pace {
        /// `127.0.0.1:PORT` or `unix:PATH`.
        #[arg(long)]
        target: String,
        /// The gRPC method path (`/verdict.v1.Authorizer/Authorize`).
        #[arg(long)]
        path: String,
        /// A body file written by `bodies`.
        #[arg(long)]
        body: PathBuf,
        /// Requests per second.
        #[arg(long)]
        rate: f64,
        /// Seconds to send for.
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
        /// HTTP/2 connections (requests are spread over them).
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Microseconds between releases of what is due.
        #[arg(long, default_value_t = 100)]
        tick_us: u64,
        /// Closed loop: this many calls in flight per connection (each
        /// answer sends the next) instead of a steady rate.
        #[arg(long)]
        closed: Option<u64>,
        /// TLS: the CA verdict's certificate chains to.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// Mutual TLS: the client certificate and key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Receive OTLP traces and metrics; print counts on SIGTERM.
    OtlpSink {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

const ACCOUNT: &str = "111122223333";
const KEYS: [&str; 3] = [
    "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "arn:aws:kms:us-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321",
    "arn:aws:kms:us-east-1:111122223333:key/1111aaaa-22bb-33cc-44dd-555555eeeeee",
];

fn authorize(principal: &str, action: &str, resource: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        principal: principal.into(),
        action: action.into(),
        resource: resource.into(),
        ..Default::default()
    }
}

/// The repeated single request: dave encrypts with a key in his account.
fn single() -> AuthorizeRequest {
    authorize(
        &format!("arn:aws:iam::{ACCOUNT}:user/dave"),
        "kms:Encrypt",
        KEYS[0],
    )
}

/// 100 distinct requests over the example bundle's principals, actions and
/// keys: allows, explicit denies and implicit denies.
fn batch() -> BatchAuthorizeRequest {
    let principals = [
        format!("arn:aws:iam::{ACCOUNT}:user/dave"),
        format!("arn:aws:iam::{ACCOUNT}:user/frank"),
        format!("arn:aws:iam::{ACCOUNT}:user/bob"),
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/KeyAdmin/ops-session"),
        format!("arn:aws:iam::{ACCOUNT}:user/carol"),
    ];
    let actions = [
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "kms:DisableKey",
        "kms:DescribeKey",
        "kms:ReEncryptFrom",
        "kms:ScheduleKeyDeletion",
    ];
    let mut requests = Vec::new();
    'outer: for p in &principals {
        for a in actions {
            for k in KEYS {
                requests.push(authorize(p, a, k));
                if requests.len() == 100 {
                    break 'outer;
                }
            }
        }
    }
    assert_eq!(requests.len(), 100);
    BatchAuthorizeRequest {
        requests,
        ..Default::default()
    }
}

fn frame(msg: &impl prost::Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn unframe<M: prost::Message + Default>(path: &Path) -> M {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes[0], 0, "{}: compressed frame", path.display());
    let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
    assert_eq!(bytes.len(), 5 + len, "{}: one frame", path.display());
    M::decode(&bytes[5..]).unwrap()
}

async fn channel(target: &str) -> Channel {
    if let Some(path) = target.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        Endpoint::try_from("http://localhost")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .unwrap()
    } else {
        Endpoint::try_from(format!("http://{target}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

async fn check(target: &str, dir: &Path, count: usize) {
    let ch = channel(target).await;
    let mut health = HealthClient::new(ch.clone());
    let mut authz = AuthorizerClient::new(ch);
    let h: HealthCheckRequest = unframe(&dir.join("health.bin"));
    let a: AuthorizeRequest = unframe(&dir.join("authorize.bin"));
    let b: BatchAuthorizeRequest = unframe(&dir.join("batch100.bin"));
    let mut batch_answers: Option<Vec<i32>> = None;
    let mut tally = [0usize; 3];
    for _ in 0..count {
        let r = health.check(h.clone()).await.expect("Health/Check");
        assert_eq!(r.into_inner().status(), ServingStatus::Serving);
        let r = authz.authorize(a.clone()).await.expect("Authorize");
        assert_eq!(r.into_inner().decision(), Decision::Allow, "Authorize");
        let r = authz
            .batch_authorize(b.clone())
            .await
            .expect("BatchAuthorize");
        let answers: Vec<i32> = r
            .into_inner()
            .responses
            .iter()
            .map(|r| r.decision)
            .collect();
        assert_eq!(answers.len(), 100, "BatchAuthorize answers every request");
        match &batch_answers {
            None => {
                for d in &answers {
                    match Decision::try_from(*d) {
                        Ok(Decision::Allow) => tally[0] += 1,
                        Ok(Decision::ExplicitDeny) => tally[1] += 1,
                        Ok(Decision::ImplicitDeny) => tally[2] += 1,
                        other => panic!("BatchAuthorize: decision {other:?}"),
                    }
                }
                batch_answers = Some(answers);
            }
            Some(first) => assert_eq!(first, &answers, "BatchAuthorize answers changed"),
        }
    }
    println!(
        "{{\"calls\": {}, \"grpc_status_ok\": {}, \"batch\": {{\"allow\": {}, \"explicit_deny\": {}, \"implicit_deny\": {}}}}}",
        count * 3,
        count * 3,
        tally[0],
        tally[1],
        tally[2]
    );
}

/// Counts what an OTLP exporter sends: requests, bytes and (for traces)
/// spans, read off the protobuf wire format without decoding the spans
/// (the collector runs elsewhere in production; here it shares the machine,
/// so it should cost as little as possible).
#[derive(Clone, Default)]
struct Counts {
    requests: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    spans: Arc<AtomicU64>,
}

/// The length-delimited fields numbered `want` of a protobuf message.
fn len_fields(mut b: &[u8], want: u64) -> Vec<&[u8]> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    while let Some(tag) = varint(&mut b) {
        let len = match tag & 7 {
            0 => {
                varint(&mut b);
                continue;
            }
            1 => 8,
            5 => 4,
            2 => match varint(&mut b) {
                Some(n) => n as usize,
                None => break,
            },
            _ => break,
        };
        if len > b.len() {
            break;
        }
        let (field, rest) = b.split_at(len);
        if tag & 7 == 2 && tag >> 3 == want {
            out.push(field);
        }
        b = rest;
    }
    out
}

/// Spans in an `ExportTraceServiceRequest`: resource_spans (1) →
/// scope_spans (2) → spans (2).
fn count_spans(b: &[u8]) -> usize {
    len_fields(b, 1)
        .into_iter()
        .flat_map(|rs| len_fields(rs, 2))
        .map(|ss| len_fields(ss, 2).len())
        .sum()
}

/// A gRPC codec that measures a request and skips it, and writes an empty
/// response (a valid `Export*ServiceResponse`).
#[derive(Clone, Copy, Default)]
struct Discard;

impl tonic::codec::Codec for Discard {
    type Encode = ();
    type Decode = bytes::Bytes;
    type Encoder = Discard;
    type Decoder = Discard;
    fn encoder(&mut self) -> Self::Encoder {
        Discard
    }
    fn decoder(&mut self) -> Self::Decoder {
        Discard
    }
}

impl tonic::codec::Encoder for Discard {
    type Item = ();
    type Error = tonic::Status;
    fn encode(
        &mut self,
        (): (),
        _dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        Ok(())
    }
}

impl tonic::codec::Decoder for Discard {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use bytes::Buf as _;
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// One collector service (`Export` only).
#[derive(Clone)]
struct Collector<const METRICS: bool>(Counts);

impl<const METRICS: bool> tonic::server::UnaryService<bytes::Bytes> for Collector<METRICS> {
    type Response = ();
    type Future = std::future::Ready<Result<tonic::Response<()>, tonic::Status>>;
    fn call(&mut self, request: tonic::Request<bytes::Bytes>) -> Self::Future {
        let body = request.get_ref();
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.0.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        if !METRICS {
            self.0
                .spans
                .fetch_add(count_spans(body) as u64, Ordering::Relaxed);
        }
        std::future::ready(Ok(tonic::Response::new(())))
    }
}

impl tonic::server::NamedService for Collector<false> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl tonic::server::NamedService for Collector<true> {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

impl<const METRICS: bool> tower::Service<http::Request<tonic::body::Body>> for Collector<METRICS> {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let svc = self.clone();
        Box::pin(async move {
            if !req.uri().path().ends_with("/Export") {
                return Ok(tonic::Status::unimplemented("only Export").into_http());
            }
            Ok(tonic::server::Grpc::new(Discard).unary(svc, req).await)
        })
    }
}

async fn otlp_sink(listen: &str) {
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    println!("listening {}", listener.local_addr().unwrap());
    let traces = Counts::default();
    let metrics = Counts::default();
    // Like a collector built on grpc-go: TCP_NODELAY on every connection and
    // flow-control windows that do not hold a large export back (without
    // them, h2 WINDOW_UPDATEs meet Nagle and delayed ACKs, and an export of
    // more than 64 KiB waits tens of milliseconds).
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |conn| {
            conn.inspect(|c| {
                let _ = c.set_nodelay(true);
            })
        },
    );
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(1 << 22)
        .initial_connection_window_size(1 << 24)
        .add_service(Collector::<false>(traces.clone()))
        .add_service(Collector::<true>(metrics.clone()))
        .serve_with_incoming_shutdown(incoming, async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            term.recv().await;
        });
    server.await.unwrap();
    println!(
        "{{\"spans\": {}, \"trace_exports\": {}, \"trace_bytes\": {}, \"metric_exports\": {}}}",
        traces.spans.load(Ordering::Relaxed),
        traces.requests.load(Ordering::Relaxed),
        traces.bytes.load(Ordering::Relaxed),
        metrics.requests.load(Ordering::Relaxed)
    );
}

/// A TLS client configuration (ALPN h2) trusting `ca`, with a client
/// certificate when given.
fn tls_client(ca: &Path, identity: Option<(PathBuf, PathBuf)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// `(rate, duration, closed)`: the load's shape.
type Shape = (f64, f64, Option<u64>);

fn pace(
    target: &str,
    path: &str,
    body: &Path,
    (rate, duration, closed): Shape,
    connections: usize,
    tick_us: u64,
    tls: Option<Arc<rustls::ClientConfig>>,
) {
    let body = std::fs::read(body).unwrap();
    // One thread releases, sends and receives.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut report = rt.block_on(pace::run(pace::Args {
        target,
        path,
        body: &body,
        rate,
        duration,
        connections,
        tick: std::time::Duration::from_micros(tick_us.max(10)),
        closed,
        tls,
    }));
    let latencies = &mut report.latencies;
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * p / 100.0).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{{\"sent\": {}, \"ok\": {}, \"shed\": {}, \"held\": {}, \"errors\": {}, \"first_error\": {:?}, \"rps\": {:.1}, \"p50_us\": {}, \"p90_us\": {}, \"p99_us\": {}, \"p999_us\": {}}}",
        report.sent,
        latencies.len(),
        report.shed,
        report.held,
        report.errors.len(),
        report.errors.first().map(String::as_str).unwrap_or(""),
        latencies.len() as f64 / report.elapsed.as_secs_f64(),
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(99.9)
    );
}

fn main() {
    let cli = Cli::parse();
    // `pace` builds its own single-threaded runtime.
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    };
    match cli.cmd {
        Cmd::Bodies { dir } => {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("health.bin"),
                frame(&HealthCheckRequest {
                    service: String::new(),
                }),
            )
            .unwrap();
            std::fs::write(dir.join("authorize.bin"), frame(&single())).unwrap();
            std::fs::write(dir.join("batch100.bin"), frame(&batch())).unwrap();
        }
        Cmd::Check {
            target,
            bodies,
            count,
        } => rt().block_on(check(&target, &bodies, count)),
        Cmd::OtlpSink { listen } => rt().block_on(otlp_sink(&listen)),
        Cmd::Pace {
            target,
            path,
            body,
            rate,
            duration,
            connections,
            tick_us,
            closed,
            tls_ca,
            tls_cert,
            tls_key,
        } => {
            let tls = tls_ca.map(|ca| tls_client(&ca, tls_cert.zip(tls_key)));
            pace(
                &target,
                &path,
                &body,
                (rate, duration, closed),
                connections,
                tick_us,
                tls,
            );
        }
    }
}
