//! Telemetry: OpenTelemetry traces continuing the caller's W3C trace
//! context, the metrics of the README's Telemetry section (over OTLP and on
//! `/metrics` from the same meter provider), and the decision log.
//!
//! Everything is optional and costs nothing when off: with no tracing
//! endpoint there is no tracer and no trace context is parsed; with neither
//! an OTLP metrics endpoint nor `/metrics` there are no instruments; with no
//! decision log nothing is queued.

pub(crate) mod decision_id;
pub(crate) mod decision_log;
pub(crate) mod export;
pub(crate) mod http;
pub(crate) mod log_format;
pub mod metrics;
pub(crate) mod otlp;
pub(crate) mod rpc;
pub(crate) mod settings;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{
    Span as _, SpanId, SpanKind, Status as SpanStatus, TraceContextExt as _, TraceId, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use tonic::metadata::{KeyRef, MetadataMap};

use crate::eval::{Decision, Request, RequestParts};
use crate::reload::ReloadEvent;
pub use decision_id::{DECISION_ID_LEN, DecisionId};
pub use decision_log::{DecisionLog, LogFilter, LogRecord, LogSettings, LogSink};
pub use export::{ExportSettings, Protocol};
pub(crate) use metrics::{ActiveBundle, Metrics};
pub(crate) use rpc::{RpcMethod, RpcMetrics, ServerGauges, Shed};
pub use settings::{SamplerSetting, TelemetryError, TelemetrySettings};

/// What to turn on.
#[derive(Debug)]
pub struct TelemetryOptions {
    /// OTLP endpoints, resource, sampler.
    pub settings: TelemetrySettings,
    /// Keep a Prometheus registry for `/metrics`.
    pub prometheus: bool,
    /// Where the decision log goes (none: no decision log).
    pub decision_log: Option<LogSink>,
    /// Decision log queue length.
    pub decision_log_queue: usize,
    /// Bytes the decision log queue may hold.
    pub decision_log_queue_bytes: usize,
    /// Which decisions are logged.
    pub decision_log_filter: LogFilter,
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryStartError {
    /// An exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// The Prometheus exporter could not be built.
    #[error("Prometheus exporter: {0}")]
    Prometheus(String),
    /// The decision log could not be opened.
    #[error("decision log: {0}")]
    DecisionLog(std::io::Error),
}

/// The telemetry of one server.
pub struct Telemetry {
    tracer: Option<SdkTracer>,
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    /// The meter the instruments are made on (none: no metrics).
    meter: Option<opentelemetry::metrics::Meter>,
    metrics: Option<Metrics>,
    registry: Option<prometheus::Registry>,
    log: Option<DecisionLog>,
    active: Arc<ArcSwapOption<ActiveBundle>>,
    /// Labels and recent bundles, for decision log records.
    origin: Arc<decision_log::Origin>,
    dropped: Arc<AtomicU64>,
    /// The runtime the OTLP exporters and the decision log writer run on.
    exporter_runtime: Option<ExporterRuntime>,
    /// Decision events per `BatchAuthorize` span.
    span_events: u32,
    /// Server-side call failures logged (one a second at most).
    failures: LogLimit,
}

/// At most one log line a second, counting the ones left out.
#[derive(Debug, Default)]
struct LogLimit {
    /// The second (since the Unix epoch) of the last line logged.
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimit {
    /// Whether a line may be logged now (else it is counted).
    fn admit(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
        if last != now
            && self
                .last
                .compare_exchange(
                    last,
                    now,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
        {
            return true;
        }
        self.suppressed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        false
    }

    /// Lines left out since the last one logged.
    fn take_suppressed(&self) -> u64 {
        self.suppressed
            .swap(0, std::sync::atomic::Ordering::Relaxed)
    }
}

/// The OTLP metric exporter `target` configures (opentelemetry-otlp's, on a
/// transport of ours: a gRPC channel or an HTTP client with the configured
/// TLS). Must be called inside the telemetry runtime.
fn metric_exporter(target: &ExportSettings) -> Result<opentelemetry_otlp::MetricExporter, String> {
    use opentelemetry_otlp::{WithHttpConfig as _, WithTonicConfig as _};
    let compression = target.gzip.then_some(opentelemetry_otlp::Compression::Gzip);
    match target.protocol {
        Protocol::Grpc => {
            let mut metadata = MetadataMap::new();
            for (k, v) in &target.headers {
                let key = tonic::metadata::AsciiMetadataKey::from_bytes(
                    k.to_ascii_lowercase().as_bytes(),
                )
                .map_err(|_| format!("header `{k}`: not a valid gRPC metadata key"))?;
                let value = tonic::metadata::AsciiMetadataValue::try_from(v.as_str())
                    .map_err(|_| format!("header `{k}`: not an ASCII value"))?;
                metadata.append(key, value);
            }
            let mut builder = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_channel(target.grpc_channel()?)
                .with_metadata(metadata)
                .with_timeout(target.timeout);
            if let Some(c) = compression {
                builder = builder.with_compression(c);
            }
            builder.build().map_err(|e| e.to_string())
        }
        Protocol::HttpProtobuf => {
            let client = export::RuntimeHttpClient::new(
                target.http_client()?,
                tokio::runtime::Handle::current(),
            );
            let mut builder = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(target.endpoint.clone())
                .with_http_client(client)
                .with_headers(target.headers.iter().cloned().collect())
                .with_timeout(target.timeout);
            if let Some(c) = compression {
                builder = builder.with_compression(c);
            }
            builder.build().map_err(|e| e.to_string())
        }
    }
}

/// A one-thread runtime of its own for the OTLP exporters and the decision
/// log writer: encoding, sending and writing telemetry never runs on the
/// threads that answer requests.
struct ExporterRuntime(Option<tokio::runtime::Runtime>);

impl ExporterRuntime {
    fn new() -> std::io::Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("verdict-telemetry")
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
    }
}

impl Drop for ExporterRuntime {
    fn drop(&mut self) {
        // Dropping may happen inside the server's runtime, where blocking on
        // the runtime's threads is not allowed.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("tracing", &self.tracer.is_some())
            .field("metrics", &self.metrics.is_some())
            .field("prometheus", &self.registry.is_some())
            .field("decision_log", &self.log)
            .finish_non_exhaustive()
    }
}

/// The request a decision answers, its principal and resource canonical
/// either way: validated (a cache miss, or the cache is off), or the parts
/// of a cache hit (found valid when its entry was stored).
pub enum Subject {
    /// Validated.
    Checked(Request),
    /// A cache hit's parts, made canonical ([`RequestParts::canonicalize`]).
    Received(RequestParts),
}

impl Subject {
    /// The principal.
    pub(crate) fn principal(&self) -> &str {
        match self {
            Self::Checked(r) => &r.principal,
            Self::Received(r) => &r.principal,
        }
    }

    /// The action.
    pub(crate) fn action(&self) -> &str {
        match self {
            Self::Checked(r) => &r.action,
            Self::Received(r) => &r.action,
        }
    }

    /// The resource.
    pub(crate) fn resource(&self) -> &str {
        match self {
            Self::Checked(r) => &r.resource,
            Self::Received(r) => &r.resource,
        }
    }
}

/// The gRPC method a call span is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    /// `Authorize`: the decision's attributes go on the span.
    Authorize,
    /// `BatchAuthorize`: each decision is an event of the span.
    BatchAuthorize,
}

/// The gRPC service every traced method belongs to (`rpc.service`).
const RPC_SERVICE: &str = "verdict.v1.Authorizer";

impl Method {
    fn span_name(self) -> &'static str {
        match self {
            Self::Authorize => "verdict.v1.Authorizer/Authorize",
            Self::BatchAuthorize => "verdict.v1.Authorizer/BatchAuthorize",
        }
    }

    /// `rpc.method`.
    fn name(self) -> &'static str {
        match self {
            Self::Authorize => "Authorize",
            Self::BatchAuthorize => "BatchAuthorize",
        }
    }
}

/// Whether a server span ends in error for this gRPC status: per the
/// OpenTelemetry RPC conventions, only the codes that say the server failed
/// (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
/// DATA_LOSS). A malformed request, a refused caller or a shed call is the
/// caller's or the load's, and leaves the status unset.
fn is_server_error(code: tonic::Code) -> bool {
    use tonic::Code::{DataLoss, DeadlineExceeded, Internal, Unavailable, Unimplemented, Unknown};
    matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    )
}

/// How a decision was served.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Served {
    /// From the decision cache.
    pub(crate) cached: bool,
    /// Whether the cache is on (hits and misses are counted only then).
    pub(crate) cache_enabled: bool,
    /// Time to decide (for a hit, the lookup).
    pub(crate) elapsed: Duration,
}

/// One call's trace state.
#[derive(Debug, Default)]
pub(crate) struct Call {
    span: Option<opentelemetry_sdk::trace::Span>,
    trace_id: Option<TraceId>,
    span_id: Option<SpanId>,
    batch: bool,
    /// A batch's decisions so far: Allow, ExplicitDeny, ImplicitDeny.
    outcomes: [u32; 3],
    /// When the span started.
    start_time: Option<SystemTime>,
    /// Who called: the client certificate's SANs, or the peer's address.
    caller: Option<Arc<str>>,
}

impl Call {
    fn started(&mut self, span: opentelemetry_sdk::trace::Span) {
        let ctx = span.span_context();
        if ctx.is_valid() {
            self.trace_id = Some(ctx.trace_id());
            self.span_id = ctx.is_sampled().then(|| ctx.span_id());
        }
        self.span = Some(span);
    }

    /// The time the call's decisions are made at: its span's start when it
    /// has one (one clock read serves both), else the clock now.
    pub(crate) fn now(&self) -> SystemTime {
        self.start_time.unwrap_or_else(SystemTime::now)
    }
}

/// gRPC metadata as a W3C trace context carrier.
struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .map(|k| match k {
                KeyRef::Ascii(k) => k.as_str(),
                KeyRef::Binary(k) => k.as_str(),
            })
            .collect()
    }
}

fn matched_value(decision: &Decision) -> Value {
    let items = decision
        .matched
        .iter()
        .map(|m| match m.index {
            Some(i) => {
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(i);
                let mut label = String::with_capacity(m.policy_id.len() + 1 + digits.len());
                label.push_str(&m.policy_id);
                label.push('#');
                label.push_str(digits);
                StringValue::from(label)
            }
            None => StringValue::from(m.policy_id.clone()),
        })
        .collect();
    Value::Array(Array::String(items))
}

/// The decision's span attributes. The request's strings are copied when
/// the decision log still needs the request (`keep`), moved in otherwise.
fn decision_attributes(
    req: &mut Option<Subject>,
    keep: bool,
    id: DecisionId,
    decision: &Decision,
    cached: bool,
) -> [KeyValue; 7] {
    let (principal, action, resource) = match (keep, req.take()) {
        (true, Some(r)) => {
            let copy = (
                r.principal().to_owned(),
                r.action().to_owned(),
                r.resource().to_owned(),
            );
            *req = Some(r);
            copy
        }
        (false, Some(Subject::Checked(r))) => (r.principal, r.action, r.resource),
        (false, Some(Subject::Received(r))) => (r.principal, r.action, r.resource),
        (_, None) => Default::default(),
    };
    [
        KeyValue::new("verdict.decision_id", id.to_string()),
        KeyValue::new("verdict.decision", decision.outcome.as_str()),
        KeyValue::new("verdict.cached", cached),
        KeyValue::new("verdict.principal", principal),
        KeyValue::new("verdict.action", action),
        KeyValue::new("verdict.resource", resource),
        KeyValue::new("verdict.matched", matched_value(decision)),
    ]
}

impl Telemetry {
    /// Telemetry with everything off.
    pub fn disabled() -> Self {
        Self {
            tracer: None,
            tracer_provider: None,
            meter_provider: None,
            meter: None,
            metrics: None,
            registry: None,
            log: None,
            active: Arc::new(ArcSwapOption::empty()),
            origin: Arc::default(),
            dropped: Arc::new(AtomicU64::new(0)),
            exporter_runtime: None,
            span_events: 0,
            failures: LogLimit::default(),
        }
    }

    /// Build exporters, providers and the decision log writer. Must run
    /// inside a tokio runtime (the OTLP channel and the log writer are
    /// tasks of it).
    pub fn start(opts: TelemetryOptions) -> Result<Self, TelemetryStartError> {
        let s = &opts.settings;
        let mut telemetry = Self::disabled();
        if s.traces.is_some() || s.metrics.is_some() || opts.decision_log.is_some() {
            telemetry.exporter_runtime = Some(
                ExporterRuntime::new().map_err(|e| TelemetryStartError::Exporter(e.to_string()))?,
            );
        }
        // The exporters' channels and the decision log writer are created
        // (and spawn their tasks) on it.
        let _exporting = telemetry
            .exporter_runtime
            .as_ref()
            .and_then(|r| r.0.as_ref())
            .map(tokio::runtime::Runtime::enter);
        let resource = || {
            Resource::builder_empty()
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .with_attributes(
                    s.resource_attributes
                        .iter()
                        .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
                )
                .with_service_name(s.service_name.clone())
                .build()
        };
        if let Some(target) = &s.traces {
            let exporter = otlp::OtlpSpanExporter::new(target)
                .map_err(|e| TelemetryStartError::Exporter(format!("traces: {e}")))?;
            let processor = BatchSpanProcessor::builder(exporter)
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_max_queue_size(s.span_queue)
                        .with_max_export_batch_size(s.span_batch)
                        .with_scheduled_delay(s.span_delay)
                        .build(),
                )
                .build();
            let provider = SdkTracerProvider::builder()
                .with_span_processor(processor)
                .with_sampler(s.sampler.sampler())
                .with_max_events_per_span(s.span_events)
                .with_resource(resource())
                .build();
            telemetry.tracer = Some(provider.tracer("verdict"));
            telemetry.span_events = s.span_events;
            telemetry.tracer_provider = Some(provider);
        }
        if s.metrics.is_some() || opts.prometheus {
            let mut builder = SdkMeterProvider::builder().with_resource(resource());
            if let Some(target) = &s.metrics {
                let exporter = metric_exporter(target)
                    .map_err(|e| TelemetryStartError::Exporter(format!("metrics: {e}")))?;
                builder = builder.with_reader(
                    PeriodicReader::builder(exporter)
                        .with_interval(s.metric_interval)
                        .build(),
                );
            }
            if opts.prometheus {
                let registry = prometheus::Registry::new();
                let exporter = opentelemetry_prometheus::exporter()
                    .with_registry(registry.clone())
                    .build()
                    .map_err(|e| TelemetryStartError::Prometheus(e.to_string()))?;
                builder = builder.with_reader(exporter);
                telemetry.registry = Some(registry);
            }
            let provider = builder.build();
            let meter = opentelemetry::metrics::MeterProvider::meter(&provider, "verdict");
            telemetry.metrics = Some(Metrics::new(
                &meter,
                telemetry.active.clone(),
                telemetry.dropped.clone(),
            ));
            rpc::process_metrics(&meter);
            telemetry.meter = Some(meter);
            telemetry.meter_provider = Some(provider);
        }
        if let Some(sink) = opts.decision_log {
            telemetry.origin = Arc::new(decision_log::Origin::new(
                &s.service_name,
                &s.resource_attributes,
            ));
            telemetry.log = Some(
                DecisionLog::start(
                    sink,
                    opts.decision_log_queue,
                    opts.decision_log_queue_bytes,
                    opts.decision_log_filter,
                    telemetry.dropped.clone(),
                    telemetry.origin.clone(),
                )
                .map_err(TelemetryStartError::DecisionLog)?,
            );
        }
        Ok(telemetry)
    }

    /// Whether decisions are timed (for the latency histogram or the log).
    pub(crate) fn timing(&self) -> bool {
        self.metrics.is_some() || self.log.is_some()
    }

    /// The server's call instruments, reading `gauges` (none when no
    /// metrics are exported). Made once per server.
    pub(crate) fn rpc_metrics(&self, gauges: ServerGauges) -> Option<Arc<RpcMetrics>> {
        let meter = self.meter.as_ref()?;
        Some(Arc::new(RpcMetrics::new(meter, gauges)))
    }

    /// The Prometheus registry `/metrics` serves.
    pub(crate) fn registry(&self) -> Option<&prometheus::Registry> {
        self.registry.as_ref()
    }

    /// The decision log.
    pub fn decision_log(&self) -> Option<&DecisionLog> {
        self.log.as_ref()
    }

    /// Begin a call: continue the caller's trace (W3C `traceparent` and
    /// `tracestate` in the metadata) with a server span.
    /// `caller` is asked only when a span or the log will use it.
    pub(crate) fn call(
        &self,
        method: Method,
        metadata: &MetadataMap,
        caller: impl FnOnce() -> Option<Arc<str>>,
    ) -> Call {
        let batch = method == Method::BatchAuthorize;
        if self.tracer.is_none() && self.log.is_none() {
            return Call {
                batch,
                ..Call::default()
            };
        }
        let caller = caller();
        // W3C trace context has no effect without a `traceparent`.
        let parent = if metadata.contains_key("traceparent") {
            TraceContextPropagator::new()
                .extract_with_context(&opentelemetry::Context::new(), &MetadataExtractor(metadata))
        } else {
            opentelemetry::Context::new()
        };
        let parent_span = parent.span().span_context().clone();
        let mut call = Call {
            batch,
            trace_id: parent_span.is_valid().then(|| parent_span.trace_id()),
            caller,
            ..Call::default()
        };
        if let Some(tracer) = &self.tracer {
            // Room for every attribute the span gets, so that adding them
            // never grows the vector: rpc.system, .service and .method, the revision, the status
            // code, the caller, and the decision's seven (Authorize) or the batch's four
            // counts (BatchAuthorize).
            let mut attrs = Vec::with_capacity(if batch { 10 } else { 13 });
            attrs.push(KeyValue::new("rpc.system", "grpc"));
            attrs.push(KeyValue::new("rpc.service", RPC_SERVICE));
            attrs.push(KeyValue::new("rpc.method", method.name()));
            if let Some(caller) = &call.caller {
                attrs.push(KeyValue::new("verdict.caller", caller.to_string()));
            }
            let started = SystemTime::now();
            call.start_time = Some(started);
            let span = tracer
                .span_builder(method.span_name())
                .with_kind(SpanKind::Server)
                .with_start_time(started)
                .with_attributes(attrs)
                .start_with_context(tracer, &parent);
            call.started(span);
        }
        call
    }

    /// Record one decision: metrics, span attributes (or an event of a
    /// batch's span), and the decision log. Takes the request and decision
    /// by value so that the log can keep them without a copy.
    pub(crate) fn decided(
        &self,
        call: &mut Call,
        id: DecisionId,
        req: impl FnOnce() -> Subject,
        decision: impl std::ops::Deref<Target = Decision> + Send + 'static,
        served: Served,
    ) {
        let Served {
            cached,
            cache_enabled,
            elapsed,
        } = served;
        if let Some(m) = &self.metrics {
            m.decision(decision.outcome, cached, cache_enabled, elapsed);
        }
        let logged = self.log.as_ref().filter(|l| l.wants(decision.outcome));
        let recording = call.span.as_ref().is_some_and(|s| s.is_recording());
        // The request is made only when a span or the log takes it.
        let mut req = (recording || logged.is_some()).then(req);
        if let Some(span) = call.span.as_mut().filter(|s| s.is_recording()) {
            if call.batch {
                // A batch's counts go on its span when it ends; its first
                // decisions (up to the event limit) are events of it.
                let seen: u32 = call.outcomes.iter().sum();
                if let Some(n) = call
                    .outcomes
                    .get_mut(metrics::outcome_index(decision.outcome))
                {
                    *n = n.saturating_add(1);
                }
                if seen == 0 {
                    // One snapshot answers the whole batch.
                    span.set_attribute(KeyValue::new(
                        "verdict.bundle.revision",
                        decision.bundle_revision.clone(),
                    ));
                }
                if seen < self.span_events {
                    let attrs =
                        decision_attributes(&mut req, logged.is_some(), id, &decision, cached);
                    span.add_event("verdict.decision", attrs.to_vec());
                }
            } else {
                let attrs = decision_attributes(&mut req, logged.is_some(), id, &decision, cached);
                span.set_attribute(KeyValue::new(
                    "verdict.bundle.revision",
                    decision.bundle_revision.clone(),
                ));
                span.set_attributes(attrs);
            }
        }
        if let (Some(log), Some(req)) = (logged, req) {
            log.submit(LogRecord {
                time: SystemTime::now(),
                trace_id: call.trace_id,
                span_id: call.span_id,
                request: req,
                decision: Box::new(decision),
                cached,
                latency: elapsed,
                caller: call.caller.clone(),
                id,
            });
        }
    }

    /// End a call's span with its gRPC status (and a batch's counts).
    pub(crate) fn finish(&self, call: Call, status: Result<(), &tonic::Status>) {
        if let Some(mut span) = call.span {
            if call.batch && span.is_recording() {
                let [allow, explicit, implicit] = call.outcomes.map(i64::from);
                span.set_attributes([
                    KeyValue::new("verdict.batch.size", allow + explicit + implicit),
                    KeyValue::new("verdict.batch.allow", allow),
                    KeyValue::new("verdict.batch.explicit_deny", explicit),
                    KeyValue::new("verdict.batch.implicit_deny", implicit),
                ]);
            }
            let code = status.err().map_or(0, |s| s.code() as i64);
            span.set_attribute(KeyValue::new("rpc.grpc.status_code", code));
            // Success leaves the status unset, as instrumentation should.
            if let Err(s) = status
                && is_server_error(s.code())
            {
                span.set_status(SpanStatus::error(s.message().to_owned()));
            }
            span.end();
        }
        if let Err(s) = status
            && is_server_error(s.code())
            && self.failures.admit()
        {
            let method = if call.batch {
                Method::BatchAuthorize
            } else {
                Method::Authorize
            };
            let trace_id = call.trace_id.map(|t| t.to_string());
            let span_id = call.span_id.map(|t| t.to_string());
            tracing::warn!(
                rpc.method = method.name(),
                rpc.grpc.status_code = s.code() as i32,
                error = %crate::policy::err::cut(s.message(), 512),
                trace_id,
                span_id,
                suppressed = self.failures.take_suppressed(),
                "a call failed on the server's side"
            );
        }
    }

    /// Record a bundle load attempt and the active bundle, or a poll.
    pub(crate) fn reloaded(&self, event: ReloadEvent<'_>) {
        let (outcome, active) = match event {
            ReloadEvent::Load(outcome, took, active) => {
                if let Some(m) = &self.metrics {
                    m.load_duration(outcome, took);
                }
                (outcome, active)
            }
            ReloadEvent::Poll(result) => {
                if let Some(m) = &self.metrics {
                    m.poll(result);
                }
                return;
            }
        };
        if let Some(m) = &self.metrics {
            m.reload(outcome);
        }
        if let Some(snap) = active {
            let bundle = Arc::new(ActiveBundle {
                revision: snap.revision.clone(),
                name: snap.name.as_deref().map(Arc::from),
                loaded_at: snap.loaded_at,
                serial: snap.serial,
            });
            if self.log.is_some() {
                self.origin.activated(bundle.clone());
            }
            self.active.store(Some(bundle));
        }
    }

    /// Write out the decision log and flush and stop the exporters (the
    /// SDK's flush blocks, so it runs on a blocking thread, never on the
    /// runtime's workers).
    pub(crate) async fn shutdown(&self, grace: Duration) {
        if let Some(log) = &self.log {
            log.shutdown(grace).await;
        }
        let tracer = self.tracer_provider.clone();
        let meter = self.meter_provider.clone();
        if tracer.is_none() && meter.is_none() {
            return;
        }
        let flush = tokio::task::spawn_blocking(move || {
            if let Some(p) = tracer
                && let Err(e) = p.shutdown()
            {
                tracing::warn!("trace export at shutdown: {e}");
            }
            if let Some(p) = meter
                && let Err(e) = p.shutdown()
            {
                tracing::warn!("metric export at shutdown: {e}");
            }
        });
        if tokio::time::timeout(grace, flush).await.is_err() {
            tracing::warn!("telemetry did not flush within {grace:?}");
        }
    }

    /// Flush spans and metrics now (blocking; call off the runtime's workers).
    pub fn force_flush(&self) {
        if let Some(p) = &self.tracer_provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!("trace flush: {e}");
        }
        if let Some(p) = &self.meter_provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!("metric flush: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_lines_are_limited_to_one_a_second_and_count_the_rest() {
        let limit = LogLimit::default();
        assert!(limit.admit());
        assert!(!limit.admit());
        assert!(!limit.admit());
        assert_eq!(limit.take_suppressed(), 2);
        assert_eq!(limit.take_suppressed(), 0);
        // A new second admits a line again.
        limit.last.store(0, std::sync::atomic::Ordering::Relaxed);
        assert!(limit.admit());
    }

    #[test]
    fn only_server_failures_are_error_spans() {
        use tonic::Code::*;
        let errors: Vec<_> = [
            Ok,
            Cancelled,
            Unknown,
            InvalidArgument,
            DeadlineExceeded,
            NotFound,
            AlreadyExists,
            PermissionDenied,
            ResourceExhausted,
            FailedPrecondition,
            Aborted,
            OutOfRange,
            Unimplemented,
            Internal,
            Unavailable,
            DataLoss,
            Unauthenticated,
        ]
        .into_iter()
        .filter(|c| is_server_error(*c))
        .collect();
        assert_eq!(
            errors,
            [
                Unknown,
                DeadlineExceeded,
                Unimplemented,
                Internal,
                Unavailable,
                DataLoss
            ]
        );
    }
}
