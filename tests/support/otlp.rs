//! An in-process OTLP/gRPC receiver (the collector's trace and metrics
//! services, from opentelemetry-proto's generated tonic servers) that keeps
//! every export it is sent, and helpers to read spans and metrics out of them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;

/// What the receiver was sent.
#[derive(Clone, Default)]
pub struct Received {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    /// The gRPC metadata of each trace export.
    trace_metadata: Arc<Mutex<Vec<tonic::metadata::MetadataMap>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.trace_metadata
            .lock()
            .unwrap()
            .push(request.metadata().clone());
        self.traces.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// Start an OTLP/gRPC receiver with mutual TLS on 127.0.0.1:0: it presents
/// `ca`'s server certificate and requires a client certificate `ca` issued.
pub async fn receiver_tls(ca: &super::remote::TestCa) -> (SocketAddr, Received) {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            std::fs::read(&ca.cert).unwrap(),
            std::fs::read(&ca.key).unwrap(),
        ))
        .client_ca_root(Certificate::from_pem(std::fs::read(&ca.ca).unwrap()));
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(
            TraceServiceServer::new(received.clone())
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        )
        .add_service(
            MetricsServiceServer::new(received.clone())
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        );
    tokio::spawn(
        server.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, received)
}

/// Start an OTLP/HTTP receiver (`POST /v1/traces`, `POST /v1/metrics`,
/// protocol buffers, gzip or not) on 127.0.0.1:0; with `tls`, over mutual
/// TLS as [`receiver_tls`]. Each request's headers are kept as its metadata.
pub async fn http_receiver(tls: Option<&super::remote::TestCa>) -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let acceptor = tls.map(|ca| tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(ca))));
    let keep = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (keep, acceptor) = (keep.clone(), acceptor.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |r| {
                    let keep = keep.clone();
                    async move { Ok::<_, std::convert::Infallible>(keep.http(r).await) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(stream).await {
                            let _ = http
                                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                .await;
                        }
                    }
                    None => {
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    (addr, received)
}

/// A rustls server configuration presenting `ca`'s server certificate and
/// requiring a client certificate it issued.
fn server_tls(ca: &super::remote::TestCa) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain = CertificateDer::pem_file_iter(&ca.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&ca.key).unwrap();
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap()
}

impl Received {
    /// Answer one OTLP/HTTP request, keeping what it carried.
    async fn http(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
        use http_body_util::BodyExt as _;
        use std::io::Read as _;
        let (parts, body) = request.into_parts();
        let mut bytes = body.collect().await.unwrap().to_bytes().to_vec();
        if parts
            .headers
            .get("content-encoding")
            .is_some_and(|v| v == "gzip")
        {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut plain)
                .unwrap();
            bytes = plain;
        }
        let ok = |body: Vec<u8>| {
            hyper::Response::builder()
                .header("content-type", "application/x-protobuf")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap()
        };
        assert_eq!(
            parts.headers.get("content-type").unwrap(),
            "application/x-protobuf"
        );
        match parts.uri.path() {
            "/v1/traces" => {
                self.trace_metadata
                    .lock()
                    .unwrap()
                    .push(tonic::metadata::MetadataMap::from_headers(parts.headers));
                let r: ExportTraceServiceRequest = prost::Message::decode(&bytes[..]).unwrap();
                self.traces.lock().unwrap().push(r);
                ok(prost::Message::encode_to_vec(&ExportTraceServiceResponse {
                    partial_success: None,
                }))
            }
            "/v1/metrics" => {
                let r: ExportMetricsServiceRequest = prost::Message::decode(&bytes[..]).unwrap();
                self.metrics.lock().unwrap().push(r);
                ok(prost::Message::encode_to_vec(
                    &ExportMetricsServiceResponse {
                        partial_success: None,
                    },
                ))
            }
            _ => hyper::Response::builder()
                .status(404)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        }
    }
}

/// Start a receiver on 127.0.0.1:0.
pub async fn receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let server = tonic::transport::Server::builder()
        .add_service(
            TraceServiceServer::new(received.clone())
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        )
        .add_service(
            MetricsServiceServer::new(received.clone())
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        );
    tokio::spawn(
        server.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, received)
}

impl Received {
    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.traces
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| ss.spans.clone())
            .collect()
    }

    /// The metadata of every trace export so far.
    pub fn trace_metadata(&self) -> Vec<tonic::metadata::MetadataMap> {
        self.trace_metadata.lock().unwrap().clone()
    }

    /// The service name of the first exported resource, if any.
    pub fn service_name(&self) -> Option<String> {
        let traces = self.traces.lock().unwrap();
        let resource = traces.first()?.resource_spans.first()?.resource.as_ref()?;
        str_attr(&resource.attributes, "service.name").map(str::to_owned)
    }

    /// The named metric as of the latest export that has it (exports are
    /// cumulative, so the latest holds the totals).
    pub fn metric(&self, name: &str) -> Option<Metric> {
        self.metrics
            .lock()
            .unwrap()
            .iter()
            .rev()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .find(|m| m.name == name)
            .cloned()
    }

    /// Wait until `ready` holds (the exporters send from their own threads).
    pub async fn wait_for(&self, what: &str, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready(self) {
            assert!(Instant::now() < deadline, "the receiver never got {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An attribute's value.
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// A string attribute.
pub fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// An integer attribute.
pub fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key) {
        Some(Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

/// A boolean attribute.
pub fn bool_attr(attrs: &[KeyValue], key: &str) -> Option<bool> {
    match attr(attrs, key) {
        Some(Value::BoolValue(b)) => Some(*b),
        _ => None,
    }
}

/// A list-of-strings attribute.
pub fn list_attr(attrs: &[KeyValue], key: &str) -> Option<Vec<String>> {
    match attr(attrs, key) {
        Some(Value::ArrayValue(a)) => Some(
            a.values
                .iter()
                .filter_map(|v| match &v.value {
                    Some(Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}
