//! OTLP span export (gRPC or HTTP with protocol buffers) that writes the
//! protocol buffer encoding of the SDK's finished spans directly.
//!
//! opentelemetry-otlp's tonic exporter clones each batch (so that it can
//! retry), converts every span into opentelemetry-proto's message structs
//! (a string allocation for each attribute key and value), and prost then
//! walks those structs twice (lengths, then bytes). At full sampling that
//! cost more CPU per span on the export threads than the rest of the
//! tracing together; BENCHMARKS.md has the figures with and without this
//! exporter. This exporter encodes a batch once,
//! into one buffer, straight from `SpanData`, and sends the same bytes again
//! on a retry. It speaks the same service
//! (`opentelemetry.proto.collector.trace.v1.TraceService/Export`) and honours
//! the same variables (endpoint, headers, timeout, compression: see
//! [`super::settings`]). A property test checks that its bytes decode to
//! exactly what opentelemetry-proto's own conversion produces.
//!
//! Metrics stay with opentelemetry-otlp: they are exported once per
//! interval, not once per call.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut as _, Bytes};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;

use super::export::{ExportSettings, Protocol, RuntimeHttpClient};

/// The collector's trace export method.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Retries after a retryable failure (OTLP spec: UNAVAILABLE and the like),
/// within the export timeout.
const MAX_RETRIES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExporterError {
    /// The transport could not be set up (endpoint, TLS material).
    #[error("{0}")]
    Transport(String),
    /// A header is not valid gRPC metadata or HTTP header.
    #[error("header `{0}`: not a valid header name and ASCII value")]
    Header(String),
}

/// How the encoded requests travel.
enum Transport {
    /// OTLP/gRPC, as a unary call with the bytes as its message.
    Grpc {
        channel: Channel,
        metadata: MetadataMap,
        compression: Option<CompressionEncoding>,
    },
    /// OTLP/HTTP: a POST of the bytes (gzipped when configured).
    Http {
        client: RuntimeHttpClient,
        url: http::Uri,
        headers: http::HeaderMap,
        gzip: bool,
    },
}

/// A failed attempt: whether the OTLP specification allows a retry (and
/// after the delay the collector asked for), and what to report.
struct Failure {
    retry: Option<Option<Duration>>,
    detail: String,
}

/// A span exporter over OTLP (gRPC or HTTP). Build it inside the tokio
/// runtime that should carry its connections; `export` may then be driven
/// from any thread (the SDK's batch processor blocks on it from a thread of
/// its own).
pub(crate) struct OtlpSpanExporter {
    transport: Transport,
    timeout: Duration,
    resource: EncodedResource,
    stopped: AtomicBool,
}

impl fmt::Debug for OtlpSpanExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.transport {
            Transport::Grpc { .. } => "grpc",
            Transport::Http { .. } => "http/protobuf",
        };
        f.debug_struct("OtlpSpanExporter")
            .field("protocol", &protocol)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl OtlpSpanExporter {
    /// A lazily connecting exporter. Must be called inside a tokio runtime.
    pub(crate) fn new(target: &ExportSettings) -> Result<Self, ExporterError> {
        let transport = match target.protocol {
            Protocol::Grpc => {
                let mut metadata = MetadataMap::new();
                for (k, v) in &target.headers {
                    let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|_| ExporterError::Header(k.clone()))?;
                    let value = AsciiMetadataValue::try_from(v.as_str())
                        .map_err(|_| ExporterError::Header(k.clone()))?;
                    metadata.append(key, value);
                }
                Transport::Grpc {
                    channel: target.grpc_channel().map_err(ExporterError::Transport)?,
                    metadata,
                    compression: target.gzip.then_some(CompressionEncoding::Gzip),
                }
            }
            Protocol::HttpProtobuf => {
                let mut headers = http::HeaderMap::new();
                for (k, v) in &target.headers {
                    let name = http::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| ExporterError::Header(k.clone()))?;
                    let value = http::HeaderValue::from_str(v)
                        .map_err(|_| ExporterError::Header(k.clone()))?;
                    headers.append(name, value);
                }
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-protobuf"),
                );
                if target.gzip {
                    headers.insert(
                        http::header::CONTENT_ENCODING,
                        http::HeaderValue::from_static("gzip"),
                    );
                }
                let client = target.http_client().map_err(ExporterError::Transport)?;
                Transport::Http {
                    client: RuntimeHttpClient::new(client, tokio::runtime::Handle::current()),
                    url: target
                        .endpoint
                        .parse()
                        .map_err(|e| ExporterError::Transport(format!("endpoint: {e}")))?,
                    headers,
                    gzip: target.gzip,
                }
            }
        };
        Ok(Self {
            transport,
            timeout: target.timeout,
            resource: EncodedResource::new(&Resource::builder_empty().build()),
            stopped: AtomicBool::new(false),
        })
    }

    /// One attempt.
    async fn send(&self, body: Bytes, remaining: Duration) -> Result<(), Failure> {
        let partial = match &self.transport {
            Transport::Grpc {
                channel,
                metadata,
                compression,
            } => send_grpc(channel, metadata, *compression, body, remaining).await?,
            Transport::Http {
                client,
                url,
                headers,
                ..
            } => send_http(client, url, headers, body, remaining).await?,
        };
        if let Some(partial) = partial
            && (partial.rejected_spans > 0 || !partial.error_message.is_empty())
        {
            // OTLP: a partial success is logged and not retried.
            tracing::warn!(
                rejected_spans = partial.rejected_spans,
                "the collector rejected spans: {}",
                partial.error_message
            );
        }
        Ok(())
    }
}

type Partial = Option<opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess>;

async fn send_grpc(
    channel: &Channel,
    metadata: &MetadataMap,
    compression: Option<CompressionEncoding>,
    body: Bytes,
    remaining: Duration,
) -> Result<Partial, Failure> {
    let failed = |status: tonic::Status| Failure {
        retry: retry_after(&status),
        // A status the transport made up (connection refused, bad
        // address) explains itself; a collector's message may echo
        // credentials, so only its code is reported.
        detail: if std::error::Error::source(&status).is_some() {
            format!("{:?}: {}", status.code(), status.message())
        } else {
            format!("{:?}", status.code())
        },
    };
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if let Some(c) = compression {
        grpc = grpc.send_compressed(c).accept_compressed(c);
    }
    grpc.ready().await.map_err(|e| {
        failed(tonic::Status::unavailable(format!(
            "OTLP channel not ready: {e}"
        )))
    })?;
    let mut request = tonic::Request::new(body);
    *request.metadata_mut() = metadata.clone();
    request.set_timeout(remaining);
    let response = grpc
        .unary(
            request,
            http::uri::PathAndQuery::from_static(EXPORT_PATH),
            RawCodec,
        )
        .await
        .map_err(failed)?;
    Ok(response.into_inner().partial_success)
}

async fn send_http(
    client: &RuntimeHttpClient,
    url: &http::Uri,
    headers: &http::HeaderMap,
    body: Bytes,
    remaining: Duration,
) -> Result<Partial, Failure> {
    let mut request = http::Request::post(url.clone());
    if let Some(h) = request.headers_mut() {
        h.clone_from(headers);
    }
    let request = request.body(body).map_err(|e| Failure {
        retry: None,
        detail: e.to_string(),
    })?;
    let response = client
        .send(request, Some(remaining))
        .await
        .map_err(|detail| Failure {
            retry: Some(None),
            detail,
        })?;
    let status = response.status();
    if status.is_success() {
        let parsed: Option<ExportTraceServiceResponse> =
            prost::Message::decode(response.into_body()).ok();
        return Ok(parsed.and_then(|r| r.partial_success));
    }
    // OTLP/HTTP: 429, 502, 503 and 504 may be retried, after Retry-After
    // when the collector gives one; the body (which may echo credentials)
    // is not reported.
    let retry = matches!(status.as_u16(), 429 | 502 | 503 | 504).then(|| {
        response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    });
    Err(Failure {
        retry,
        detail: format!("HTTP {status}"),
    })
}

/// gzip `body` (for an HTTP collector that was asked for it).
fn gzipped(body: &[u8]) -> Bytes {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// Whether the OTLP specification allows a retry after this status, and
/// the delay the server asked for.
fn retry_after(status: &tonic::Status) -> Option<Option<Duration>> {
    use tonic::Code;
    use tonic_types::StatusExt as _;
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Some(status.get_details_retry_info().and_then(|r| r.retry_delay)),
        // Only when the server says when to come back.
        Code::ResourceExhausted => status
            .get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .map(Some),
        _ => None,
    }
}

/// Wait, in the runtime if there is one, else on this (the batch
/// processor's own) thread.
async fn pause(d: Duration) {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::time::sleep(d).await;
    } else {
        std::thread::sleep(d);
    }
}

impl SpanExporter for OtlpSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.stopped.load(Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let encoded = encode_request(&self.resource, &batch);
        // The spans' own strings are freed here, before waiting on the network.
        drop(batch);
        let body = match &self.transport {
            Transport::Http { gzip: true, .. } => gzipped(&encoded),
            _ => Bytes::from(encoded),
        };
        let start = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            let remaining = self.timeout.saturating_sub(start.elapsed());
            let failure = match self.send(body.clone(), remaining).await {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            let wait = failure
                .retry
                .filter(|_| attempt < MAX_RETRIES)
                .map(|asked| asked.unwrap_or(backoff).max(backoff));
            match wait {
                Some(wait) if start.elapsed() + wait < self.timeout => {
                    pause(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
                _ => {
                    return Err(OTelSdkError::InternalFailure(format!(
                        "OTLP span export failed after {} attempt(s): {}",
                        attempt + 1,
                        failure.detail
                    )));
                }
            }
        }
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        if self.stopped.swap(true, Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = EncodedResource::new(resource);
    }
}

/// Sends pre-encoded request bytes; decodes the collector's response.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        prost::Message::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("OTLP response: {e}")))
    }
}

/// The `resource` field of `ResourceSpans`, encoded once, and its schema URL.
#[derive(Clone, Debug, Default)]
struct EncodedResource {
    /// Field 1 of `ResourceSpans`: tag, length and the `Resource` message.
    field: Vec<u8>,
    schema_url: String,
}

impl EncodedResource {
    fn new(resource: &Resource) -> Self {
        let attrs: Vec<KeyValue> = resource
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        let body: usize = attrs.iter().map(|kv| wire::msg_len(1, kv_len(kv))).sum();
        let mut field = Vec::with_capacity(wire::msg_len(1, body));
        wire::msg_header(&mut field, 1, body);
        for kv in &attrs {
            put_kv(&mut field, 1, kv);
        }
        Self {
            field,
            schema_url: resource.schema_url().unwrap_or_default().to_owned(),
        }
    }
}

/// Protocol buffer wire format primitives.
mod wire {
    pub(crate) const VARINT: u32 = 0;
    pub(crate) const FIXED64: u32 = 1;
    pub(crate) const LEN: u32 = 2;
    pub(crate) const FIXED32: u32 = 5;

    /// Bytes of `v` as a varint.
    pub(crate) fn varint_len(v: u64) -> usize {
        let bits = 64 - (v | 1).leading_zeros() as usize;
        bits.div_ceil(7)
    }

    pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    pub(crate) fn key_len(field: u32) -> usize {
        varint_len(u64::from(field) << 3)
    }

    pub(crate) fn put_key(buf: &mut Vec<u8>, field: u32, wire_type: u32) {
        put_varint(buf, u64::from((field << 3) | wire_type));
    }

    /// A length-delimited field whose content is `len` bytes.
    pub(crate) fn msg_len(field: u32, len: usize) -> usize {
        key_len(field) + varint_len(len as u64) + len
    }

    pub(crate) fn msg_header(buf: &mut Vec<u8>, field: u32, len: usize) {
        put_key(buf, field, LEN);
        put_varint(buf, len as u64);
    }

    /// A string or bytes field, left out when empty (proto3 default).
    pub(crate) fn bytes_len(field: u32, b: &[u8]) -> usize {
        if b.is_empty() {
            0
        } else {
            msg_len(field, b.len())
        }
    }

    pub(crate) fn put_bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
        if !b.is_empty() {
            msg_header(buf, field, b.len());
            buf.extend_from_slice(b);
        }
    }

    /// A varint field, left out when zero.
    pub(crate) fn uint_len(field: u32, v: u64) -> usize {
        if v == 0 {
            0
        } else {
            key_len(field) + varint_len(v)
        }
    }

    pub(crate) fn put_uint(buf: &mut Vec<u8>, field: u32, v: u64) {
        if v != 0 {
            put_key(buf, field, VARINT);
            put_varint(buf, v);
        }
    }

    /// A fixed64 field, left out when zero.
    pub(crate) fn fixed64_len(field: u32, v: u64) -> usize {
        if v == 0 { 0 } else { key_len(field) + 8 }
    }

    pub(crate) fn put_fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
        if v != 0 {
            put_key(buf, field, FIXED64);
            buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A fixed32 field, left out when zero.
    pub(crate) fn fixed32_len(field: u32, v: u32) -> usize {
        if v == 0 { 0 } else { key_len(field) + 4 }
    }

    pub(crate) fn put_fixed32(buf: &mut Vec<u8>, field: u32, v: u32) {
        if v != 0 {
            put_key(buf, field, FIXED32);
            buf.extend_from_slice(&v.to_le_bytes());
        }
    }
}

// Field numbers, from opentelemetry/proto/{common,trace,resource}/v1/*.proto.
mod field {
    // AnyValue (a oneof: always written, even when it holds a default).
    pub(crate) const STRING_VALUE: u32 = 1;
    pub(crate) const BOOL_VALUE: u32 = 2;
    pub(crate) const INT_VALUE: u32 = 3;
    pub(crate) const DOUBLE_VALUE: u32 = 4;
    pub(crate) const ARRAY_VALUE: u32 = 5;
    // ArrayValue
    pub(crate) const ARRAY_VALUES: u32 = 1;
    // KeyValue
    pub(crate) const KV_KEY: u32 = 1;
    pub(crate) const KV_VALUE: u32 = 2;
    // InstrumentationScope
    pub(crate) const SCOPE_NAME: u32 = 1;
    pub(crate) const SCOPE_VERSION: u32 = 2;
    pub(crate) const SCOPE_ATTRIBUTES: u32 = 3;
    // ExportTraceServiceRequest, ResourceSpans, ScopeSpans
    pub(crate) const REQUEST_RESOURCE_SPANS: u32 = 1;
    pub(crate) const RS_SCOPE_SPANS: u32 = 2;
    pub(crate) const RS_SCHEMA_URL: u32 = 3;
    pub(crate) const SS_SCOPE: u32 = 1;
    pub(crate) const SS_SPANS: u32 = 2;
    pub(crate) const SS_SCHEMA_URL: u32 = 3;
    // Span
    pub(crate) const TRACE_ID: u32 = 1;
    pub(crate) const SPAN_ID: u32 = 2;
    pub(crate) const TRACE_STATE: u32 = 3;
    pub(crate) const PARENT_SPAN_ID: u32 = 4;
    pub(crate) const NAME: u32 = 5;
    pub(crate) const KIND: u32 = 6;
    pub(crate) const START: u32 = 7;
    pub(crate) const END: u32 = 8;
    pub(crate) const ATTRIBUTES: u32 = 9;
    pub(crate) const DROPPED_ATTRIBUTES: u32 = 10;
    pub(crate) const EVENTS: u32 = 11;
    pub(crate) const DROPPED_EVENTS: u32 = 12;
    pub(crate) const LINKS: u32 = 13;
    pub(crate) const DROPPED_LINKS: u32 = 14;
    pub(crate) const STATUS: u32 = 15;
    pub(crate) const FLAGS: u32 = 16;
    // Span.Event
    pub(crate) const EVENT_TIME: u32 = 1;
    pub(crate) const EVENT_NAME: u32 = 2;
    pub(crate) const EVENT_ATTRIBUTES: u32 = 3;
    pub(crate) const EVENT_DROPPED: u32 = 4;
    // Span.Link
    pub(crate) const LINK_TRACE_ID: u32 = 1;
    pub(crate) const LINK_SPAN_ID: u32 = 2;
    pub(crate) const LINK_TRACE_STATE: u32 = 3;
    pub(crate) const LINK_ATTRIBUTES: u32 = 4;
    pub(crate) const LINK_DROPPED: u32 = 5;
    pub(crate) const LINK_FLAGS: u32 = 6;
    // Status
    pub(crate) const STATUS_MESSAGE: u32 = 2;
    pub(crate) const STATUS_CODE: u32 = 3;
}

use field as f;

/// `SpanFlags`: the parent's remoteness is known, and whether it is remote.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

fn span_flags(remote: bool, trace_flags: u8) -> u32 {
    let mut flags = u32::from(trace_flags) | FLAG_HAS_IS_REMOTE;
    if remote {
        flags |= FLAG_IS_REMOTE;
    }
    flags
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn kind_number(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn trace_state_header(state: &TraceState) -> String {
    // `header` allocates nothing for an empty state.
    state.header()
}

// --- AnyValue and KeyValue -------------------------------------------------

/// A scalar `AnyValue`, borrowed.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Bool(bool),
    I64(i64),
    F64(f64),
    Str(&'a str),
}

impl Scalar<'_> {
    /// The content length of an `AnyValue` holding it.
    fn len(self) -> usize {
        match self {
            Self::Bool(_) => wire::key_len(f::BOOL_VALUE) + 1,
            Self::I64(i) => wire::key_len(f::INT_VALUE) + wire::varint_len(i as u64),
            Self::F64(_) => wire::key_len(f::DOUBLE_VALUE) + 8,
            Self::Str(s) => wire::msg_len(f::STRING_VALUE, s.len()),
        }
    }

    fn put(self, buf: &mut Vec<u8>) {
        match self {
            Self::Bool(b) => {
                wire::put_key(buf, f::BOOL_VALUE, wire::VARINT);
                buf.push(u8::from(b));
            }
            Self::I64(i) => {
                wire::put_key(buf, f::INT_VALUE, wire::VARINT);
                wire::put_varint(buf, i as u64);
            }
            Self::F64(x) => {
                wire::put_key(buf, f::DOUBLE_VALUE, wire::FIXED64);
                buf.extend_from_slice(&x.to_bits().to_le_bytes());
            }
            Self::Str(s) => {
                wire::msg_header(buf, f::STRING_VALUE, s.len());
                buf.extend_from_slice(s.as_bytes());
            }
        }
    }
}

/// Each element of an array, an `AnyValue` of the array's type.
fn for_each_element(a: &Array, mut f: impl FnMut(Scalar<'_>)) {
    match a {
        Array::Bool(v) => v.iter().for_each(|b| f(Scalar::Bool(*b))),
        Array::I64(v) => v.iter().for_each(|i| f(Scalar::I64(*i))),
        Array::F64(v) => v.iter().for_each(|x| f(Scalar::F64(*x))),
        Array::String(v) => v.iter().for_each(|s| f(Scalar::Str(s.as_str()))),
        _ => {}
    }
}

fn array_len(a: &Array) -> usize {
    let mut len = 0;
    for_each_element(a, |v| len += wire::msg_len(f::ARRAY_VALUES, v.len()));
    len
}

fn put_array(buf: &mut Vec<u8>, a: &Array) {
    for_each_element(a, |v| {
        wire::msg_header(buf, f::ARRAY_VALUES, v.len());
        v.put(buf);
    });
}

/// The content length of an `AnyValue` holding `v`.
fn any_len(v: &Value) -> usize {
    match v {
        Value::Bool(b) => Scalar::Bool(*b).len(),
        Value::I64(i) => Scalar::I64(*i).len(),
        Value::F64(x) => Scalar::F64(*x).len(),
        Value::String(s) => Scalar::Str(s.as_str()).len(),
        Value::Array(a) => wire::msg_len(f::ARRAY_VALUE, array_len(a)),
        other => Scalar::Str(&other.as_str()).len(),
    }
}

fn put_any(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bool(b) => Scalar::Bool(*b).put(buf),
        Value::I64(i) => Scalar::I64(*i).put(buf),
        Value::F64(x) => Scalar::F64(*x).put(buf),
        Value::String(s) => Scalar::Str(s.as_str()).put(buf),
        Value::Array(a) => {
            wire::msg_header(buf, f::ARRAY_VALUE, array_len(a));
            put_array(buf, a);
        }
        other => Scalar::Str(&other.as_str()).put(buf),
    }
}

fn kv_len(kv: &KeyValue) -> usize {
    wire::bytes_len(f::KV_KEY, kv.key.as_str().as_bytes())
        + wire::msg_len(f::KV_VALUE, any_len(&kv.value))
}

/// A `KeyValue` as field `field` of its message.
fn put_kv(buf: &mut Vec<u8>, field: u32, kv: &KeyValue) {
    let key = kv.key.as_str().as_bytes();
    let value_len = any_len(&kv.value);
    wire::msg_header(
        buf,
        field,
        wire::bytes_len(f::KV_KEY, key) + wire::msg_len(f::KV_VALUE, value_len),
    );
    wire::put_bytes(buf, f::KV_KEY, key);
    wire::msg_header(buf, f::KV_VALUE, value_len);
    put_any(buf, &kv.value);
}

fn kvs_len(field: u32, kvs: &[KeyValue]) -> usize {
    kvs.iter().map(|kv| wire::msg_len(field, kv_len(kv))).sum()
}

// --- Spans -------------------------------------------------------------------

fn event_len(e: &opentelemetry::trace::Event) -> usize {
    wire::fixed64_len(f::EVENT_TIME, nanos(e.timestamp))
        + wire::bytes_len(f::EVENT_NAME, e.name.as_bytes())
        + kvs_len(f::EVENT_ATTRIBUTES, &e.attributes)
        + wire::uint_len(f::EVENT_DROPPED, u64::from(e.dropped_attributes_count))
}

fn put_event(buf: &mut Vec<u8>, e: &opentelemetry::trace::Event) {
    wire::msg_header(buf, f::EVENTS, event_len(e));
    wire::put_fixed64(buf, f::EVENT_TIME, nanos(e.timestamp));
    wire::put_bytes(buf, f::EVENT_NAME, e.name.as_bytes());
    for kv in &e.attributes {
        put_kv(buf, f::EVENT_ATTRIBUTES, kv);
    }
    wire::put_uint(buf, f::EVENT_DROPPED, u64::from(e.dropped_attributes_count));
}

fn link_len(l: &opentelemetry::trace::Link, state: &str) -> usize {
    let ctx = &l.span_context;
    wire::msg_len(f::LINK_TRACE_ID, 16)
        + wire::msg_len(f::LINK_SPAN_ID, 8)
        + wire::bytes_len(f::LINK_TRACE_STATE, state.as_bytes())
        + kvs_len(f::LINK_ATTRIBUTES, &l.attributes)
        + wire::uint_len(f::LINK_DROPPED, u64::from(l.dropped_attributes_count))
        + wire::fixed32_len(
            f::LINK_FLAGS,
            span_flags(ctx.is_remote(), ctx.trace_flags().to_u8()),
        )
}

fn put_link(buf: &mut Vec<u8>, l: &opentelemetry::trace::Link) {
    let ctx = &l.span_context;
    let state = trace_state_header(ctx.trace_state());
    wire::msg_header(buf, f::LINKS, link_len(l, &state));
    wire::put_bytes(buf, f::LINK_TRACE_ID, &ctx.trace_id().to_bytes());
    wire::put_bytes(buf, f::LINK_SPAN_ID, &ctx.span_id().to_bytes());
    wire::put_bytes(buf, f::LINK_TRACE_STATE, state.as_bytes());
    for kv in &l.attributes {
        put_kv(buf, f::LINK_ATTRIBUTES, kv);
    }
    wire::put_uint(buf, f::LINK_DROPPED, u64::from(l.dropped_attributes_count));
    wire::put_fixed32(
        buf,
        f::LINK_FLAGS,
        span_flags(ctx.is_remote(), ctx.trace_flags().to_u8()),
    );
}

fn status_parts(s: &Status) -> (&str, u64) {
    match s {
        Status::Unset => ("", 0),
        Status::Ok => ("", 1),
        Status::Error { description } => (description, 2),
    }
}

/// A span's message content, appended to `buf`.
fn put_span(buf: &mut Vec<u8>, s: &SpanData) {
    let ctx = &s.span_context;
    wire::put_bytes(buf, f::TRACE_ID, &ctx.trace_id().to_bytes());
    wire::put_bytes(buf, f::SPAN_ID, &ctx.span_id().to_bytes());
    wire::put_bytes(
        buf,
        f::TRACE_STATE,
        trace_state_header(ctx.trace_state()).as_bytes(),
    );
    if s.parent_span_id != SpanId::INVALID {
        wire::put_bytes(buf, f::PARENT_SPAN_ID, &s.parent_span_id.to_bytes());
    }
    wire::put_bytes(buf, f::NAME, s.name.as_bytes());
    wire::put_uint(buf, f::KIND, kind_number(&s.span_kind));
    wire::put_fixed64(buf, f::START, nanos(s.start_time));
    wire::put_fixed64(buf, f::END, nanos(s.end_time));
    for kv in &s.attributes {
        put_kv(buf, f::ATTRIBUTES, kv);
    }
    wire::put_uint(
        buf,
        f::DROPPED_ATTRIBUTES,
        u64::from(s.dropped_attributes_count),
    );
    for e in &s.events.events {
        put_event(buf, e);
    }
    wire::put_uint(buf, f::DROPPED_EVENTS, u64::from(s.events.dropped_count));
    for l in &s.links.links {
        put_link(buf, l);
    }
    wire::put_uint(buf, f::DROPPED_LINKS, u64::from(s.links.dropped_count));
    // The status is always present (opentelemetry-proto sets it).
    let (message, code) = status_parts(&s.status);
    let status_len = wire::bytes_len(f::STATUS_MESSAGE, message.as_bytes())
        + wire::uint_len(f::STATUS_CODE, code);
    wire::msg_header(buf, f::STATUS, status_len);
    wire::put_bytes(buf, f::STATUS_MESSAGE, message.as_bytes());
    wire::put_uint(buf, f::STATUS_CODE, code);
    wire::put_fixed32(
        buf,
        f::FLAGS,
        span_flags(s.parent_span_is_remote, ctx.trace_flags().to_u8()),
    );
}

fn scope_len(scope: &InstrumentationScope) -> usize {
    wire::bytes_len(f::SCOPE_NAME, scope.name().as_bytes())
        + wire::bytes_len(
            f::SCOPE_VERSION,
            scope.version().unwrap_or_default().as_bytes(),
        )
        + scope
            .attributes()
            .map(|kv| wire::msg_len(f::SCOPE_ATTRIBUTES, kv_len(kv)))
            .sum::<usize>()
}

fn put_scope(buf: &mut Vec<u8>, scope: &InstrumentationScope) {
    wire::msg_header(buf, f::SS_SCOPE, scope_len(scope));
    wire::put_bytes(buf, f::SCOPE_NAME, scope.name().as_bytes());
    wire::put_bytes(
        buf,
        f::SCOPE_VERSION,
        scope.version().unwrap_or_default().as_bytes(),
    );
    for kv in scope.attributes() {
        put_kv(buf, f::SCOPE_ATTRIBUTES, kv);
    }
}

/// An `ExportTraceServiceRequest` of one `ResourceSpans` holding `batch`,
/// with a `ScopeSpans` per instrumentation scope in order of first
/// appearance (as opentelemetry-proto groups them).
fn encode_request(resource: &EncodedResource, batch: &[SpanData]) -> Vec<u8> {
    // Each scope's spans, as `ScopeSpans.spans` fields.
    let mut scopes: Vec<(&InstrumentationScope, Vec<u8>)> = Vec::new();
    let mut span = Vec::with_capacity(1024);
    for s in batch {
        let group = match scopes
            .iter()
            .position(|(scope, _)| *scope == &s.instrumentation_scope)
        {
            Some(i) => i,
            None => {
                scopes.push((
                    &s.instrumentation_scope,
                    Vec::with_capacity(batch.len() * 600),
                ));
                scopes.len() - 1
            }
        };
        span.clear();
        put_span(&mut span, s);
        if let Some((_, spans)) = scopes.get_mut(group) {
            wire::msg_header(spans, f::SS_SPANS, span.len());
            spans.extend_from_slice(&span);
        }
    }
    let scope_spans_len = |scope: &InstrumentationScope, spans: &[u8]| {
        wire::msg_len(f::SS_SCOPE, scope_len(scope))
            + spans.len()
            + wire::bytes_len(
                f::SS_SCHEMA_URL,
                scope.schema_url().unwrap_or_default().as_bytes(),
            )
    };
    let resource_spans_len = resource.field.len()
        + scopes
            .iter()
            .map(|(scope, spans)| wire::msg_len(f::RS_SCOPE_SPANS, scope_spans_len(scope, spans)))
            .sum::<usize>()
        + wire::bytes_len(f::RS_SCHEMA_URL, resource.schema_url.as_bytes());
    let mut out = Vec::with_capacity(wire::msg_len(f::REQUEST_RESOURCE_SPANS, resource_spans_len));
    wire::msg_header(&mut out, f::REQUEST_RESOURCE_SPANS, resource_spans_len);
    out.extend_from_slice(&resource.field);
    for (scope, spans) in &scopes {
        wire::msg_header(&mut out, f::RS_SCOPE_SPANS, scope_spans_len(scope, spans));
        put_scope(&mut out, scope);
        out.extend_from_slice(spans);
        wire::put_bytes(
            &mut out,
            f::SS_SCHEMA_URL,
            scope.schema_url().unwrap_or_default().as_bytes(),
        );
    }
    wire::put_bytes(&mut out, f::RS_SCHEMA_URL, resource.schema_url.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use opentelemetry::trace::{Event, Link, SpanContext, TraceFlags, TraceId};
    use opentelemetry::{InstrumentationScope, StringValue};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use proptest::collection::vec;
    use proptest::prelude::*;
    use prost::Message as _;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z.]{1,12}", "\\PC{0,40}"]
    }

    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |x| x.is_finite()),
            Just(0.0)
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::I64),
            finite().prop_map(Value::F64),
            text().prop_map(|s| Value::String(s.into())),
            vec(any::<bool>(), 0..4).prop_map(|v| Value::Array(Array::Bool(v))),
            vec(any::<i64>(), 0..4).prop_map(|v| Value::Array(Array::I64(v))),
            vec(finite(), 0..4).prop_map(|v| Value::Array(Array::F64(v))),
            vec(text(), 0..4).prop_map(|v| Value::Array(Array::String(
                v.into_iter().map(StringValue::from).collect()
            ))),
        ]
    }

    fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
        vec(
            (text(), value()).prop_map(|(k, v)| KeyValue::new(k, v)),
            0..6,
        )
    }

    fn time() -> impl Strategy<Value = SystemTime> {
        prop_oneof![
            any::<u64>().prop_map(|n| UNIX_EPOCH + Duration::from_nanos(n)),
            Just(UNIX_EPOCH),
            Just(UNIX_EPOCH - Duration::from_secs(1)),
        ]
    }

    fn context() -> impl Strategy<Value = SpanContext> {
        (
            any::<[u8; 16]>(),
            any::<[u8; 8]>(),
            any::<u8>(),
            any::<bool>(),
            vec(("[a-z]{1,5}", "[a-z0-9]{1,5}"), 0..3),
        )
            .prop_map(|(t, s, flags, remote, state)| {
                SpanContext::new(
                    TraceId::from_bytes(t),
                    SpanId::from_bytes(s),
                    TraceFlags::new(flags),
                    remote,
                    TraceState::from_key_value(state).unwrap_or_default(),
                )
            })
    }

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Unset),
            Just(Status::Ok),
            text().prop_map(|d| Status::Error {
                description: d.into()
            }),
        ]
    }

    fn kind() -> impl Strategy<Value = SpanKind> {
        prop_oneof![
            Just(SpanKind::Internal),
            Just(SpanKind::Server),
            Just(SpanKind::Client),
            Just(SpanKind::Producer),
            Just(SpanKind::Consumer),
        ]
    }

    fn scope() -> impl Strategy<Value = InstrumentationScope> {
        // Few distinct scopes, so that batches mix and repeat them.
        (0..3usize, attributes()).prop_map(|(i, attrs)| {
            let b = InstrumentationScope::builder(["verdict", "other", ""][i % 3]);
            match i {
                0 => b.build(),
                1 => b
                    .with_version("1.2.3")
                    .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
                    .build(),
                _ => b.with_attributes(attrs.into_iter().take(2)).build(),
            }
        })
    }

    prop_compose! {
        fn span()(
            ctx in context(),
            parent in prop_oneof![Just([0u8; 8]), any::<[u8; 8]>()],
            parent_remote in any::<bool>(),
            kind in kind(),
            name in text(),
            start in time(),
            end in time(),
            attributes in attributes(),
            dropped in prop_oneof![Just(0u32), any::<u32>()],
            events in vec((text(), time(), attributes(), 0u32..3), 0..3),
            dropped_events in 0u32..3,
            links in vec((context(), attributes(), 0u32..3), 0..2),
            dropped_links in 0u32..3,
            status in status(),
            scope in scope(),
        ) -> SpanData {
            let mut span_events = SpanEvents::default();
            span_events.events = events
                .into_iter()
                .map(|(n, t, a, d)| Event::new(n, t, a, d))
                .collect();
            span_events.dropped_count = dropped_events;
            let mut span_links = SpanLinks::default();
            span_links.links = links
                .into_iter()
                .map(|(c, a, d)| Link::new(c, a, d))
                .collect();
            span_links.dropped_count = dropped_links;
            SpanData {
                span_context: ctx,
                parent_span_id: SpanId::from_bytes(parent),
                parent_span_is_remote: parent_remote,
                span_kind: kind,
                name: name.into(),
                start_time: start,
                end_time: end,
                attributes,
                dropped_attributes_count: dropped,
                events: span_events,
                links: span_links,
                status,
                instrumentation_scope: scope,
            }
        }
    }

    fn resource() -> impl Strategy<Value = Resource> {
        (
            attributes(),
            prop_oneof![
                Just(None),
                Just(Some("https://opentelemetry.io/schemas/1.30.0"))
            ],
        )
            .prop_map(|(attrs, schema)| match schema {
                Some(url) => Resource::builder_empty()
                    .with_schema_url(attrs, url)
                    .build(),
                None => Resource::builder_empty().with_attributes(attrs).build(),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// The bytes decode to exactly the request opentelemetry-proto
        /// builds from the same spans (the one opentelemetry-otlp sends).
        #[test]
        fn encodes_what_opentelemetry_proto_builds(
            resource in resource(),
            batch in vec(span(), 1..6),
        ) {
            let ours = ExportTraceServiceRequest::decode(
                encode_request(&EncodedResource::new(&resource), &batch).as_slice(),
            )
            .unwrap();
            let theirs = ExportTraceServiceRequest {
                resource_spans: group_spans_by_resource_and_scope(
                    batch,
                    &ResourceAttributesWithSchema::from(&resource),
                ),
            };
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn varint_lengths_match_the_encoding() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            wire::put_varint(&mut buf, v);
            assert_eq!(buf.len(), wire::varint_len(v), "{v}");
        }
    }

    #[test]
    fn retries_follow_the_otlp_rules() {
        use tonic::Code;
        for code in [
            Code::Unavailable,
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
        ] {
            assert_eq!(
                retry_after(&tonic::Status::new(code, "")),
                Some(None),
                "{code:?}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::Internal,
        ] {
            assert_eq!(retry_after(&tonic::Status::new(code, "")), None, "{code:?}");
        }
    }

    fn target(protocol: Protocol, endpoint: &str, headers: &[(&str, &str)]) -> ExportSettings {
        ExportSettings {
            protocol,
            endpoint: endpoint.into(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            timeout: Duration::from_millis(800),
            gzip: false,
            tls: Default::default(),
        }
    }

    #[test]
    fn bad_headers_are_refused() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _in = rt.enter();
        for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
            let err = |t: ExportSettings| OtlpSpanExporter::new(&t).unwrap_err().to_string();
            assert!(
                err(target(protocol, "http://c:4317", &[("bad key", "v")])).contains("`bad key`")
            );
            assert!(
                err(target(protocol, "http://c:4317", &[("k", "line\nbreak")])).contains("`k`")
            );
            assert!(
                OtlpSpanExporter::new(&target(protocol, "http://c:4317", &[("X-Tenant", "keys")]))
                    .is_ok()
            );
        }
    }

    #[test]
    fn an_unreachable_collector_fails_the_export_within_its_timeout() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
            let exporter = {
                let _in = rt.enter();
                OtlpSpanExporter::new(&target(protocol, &format!("http://127.0.0.1:{port}"), &[]))
                    .unwrap()
            };
            let span = SpanData {
                span_context: SpanContext::new(
                    TraceId::from_bytes([1; 16]),
                    SpanId::from_bytes([2; 8]),
                    TraceFlags::SAMPLED,
                    false,
                    TraceState::NONE,
                ),
                parent_span_id: SpanId::INVALID,
                parent_span_is_remote: false,
                span_kind: SpanKind::Server,
                name: "verdict.v1.Authorizer/Authorize".into(),
                start_time: SystemTime::now(),
                end_time: SystemTime::now(),
                attributes: vec![KeyValue::new("verdict.decision", "Allow")],
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status: Status::Ok,
                instrumentation_scope: InstrumentationScope::builder("verdict").build(),
            };
            // Driven from a plain thread, as the SDK's batch processor does.
            let started = Instant::now();
            let result =
                std::thread::spawn(move || futures_executor::block_on(exporter.export(vec![span])))
                    .join()
                    .unwrap();
            let err = result.unwrap_err().to_string();
            let why = match protocol {
                Protocol::Grpc => "Unavailable",
                Protocol::HttpProtobuf => "error sending request",
            };
            assert!(err.contains(why), "{err}");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{:?}",
                started.elapsed()
            );
        }
    }
}
