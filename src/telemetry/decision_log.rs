//! The decision log: one JSON line per decision, written by its own task.
//!
//! The decision path hands over the request and decision it already owns
//! (moved, not copied) with a non-blocking `try_send` into a bounded queue;
//! when the queue is full the record is dropped and counted, so a slow disk
//! or a blocked stdout never slows a decision. The writer encodes records in
//! batches, flushes whenever the queue runs empty, and on shutdown drains
//! what was queued and flushes before it returns.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{SpanId, TraceId};
use serde::Serialize;
use serde::ser::SerializeMap as _;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::Subject;

/// Which decisions the decision log writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFilter {
    /// Every decision.
    All,
    /// Only ExplicitDeny and ImplicitDeny.
    Denies,
}
use crate::eval::json::DecisionJson;
use crate::eval::{Decision, Outcome, Request};

/// The decision log settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// `-` for standard output, a file path, or none (no log).
    pub path: Option<String>,
    /// Records the queue may hold.
    pub queue: usize,
    /// Bytes the queue may hold.
    pub queue_bytes: usize,
    /// Which decisions are logged.
    pub filter: LogFilter,
}

impl LogSettings {
    /// Where the log goes, if anywhere.
    pub(crate) fn sink(&self) -> Option<LogSink> {
        self.path.as_deref().map(LogSink::from_setting)
    }
}

/// Where the log goes.
pub enum LogSink {
    /// The process's standard output.
    Stdout,
    /// A file, appended to (created if missing).
    File(PathBuf),
    /// Any writer (tests).
    Writer(Box<dyn AsyncWrite + Send + Unpin>),
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdout => f.write_str("Stdout"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Writer(_) => f.write_str("Writer"),
        }
    }
}

impl LogSink {
    /// The sink a `decision_log` setting names: `stdout` (or `-`) or a path.
    pub(crate) fn from_setting(value: &str) -> Self {
        match value {
            "stdout" | "-" => Self::Stdout,
            path => Self::File(PathBuf::from(path)),
        }
    }
}

/// One decision, as handed to the writer.
pub struct LogRecord {
    /// When it was decided.
    pub(crate) time: SystemTime,
    /// The trace it belongs to (the caller's, or the server span's).
    pub(crate) trace_id: Option<TraceId>,
    /// The server span, when one was recorded.
    pub(crate) span_id: Option<SpanId>,
    /// The request.
    pub request: Subject,
    /// The decision (the cache's, or one made for this request).
    pub decision: Box<dyn std::ops::Deref<Target = Decision> + Send>,
    /// Served from the cache.
    pub(crate) cached: bool,
    /// Time to decide.
    pub(crate) latency: Duration,
    /// Who called: the client certificate's SANs (mutual TLS), else the
    /// peer's address (TCP); none on the Unix socket.
    pub(crate) caller: Option<std::sync::Arc<str>>,
    /// The decision's id (as in the response and the span).
    pub(crate) id: super::DecisionId,
}

/// The version of the record's schema (`docs/decision-log.schema.json`),
/// raised when a field changes meaning or is removed.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Bundles remembered for naming the bundle of a record: the active one
/// and the few before it (a record decided just before a reload is written
/// just after it).
pub(crate) const RECENT_BUNDLES: usize = 4;

/// What every record of one server says about where it comes from.
#[derive(Debug, Default)]
pub(crate) struct Origin {
    /// `service.name` and the `OTEL_RESOURCE_ATTRIBUTES` of the instance.
    pub(crate) labels: serde_json::Map<String, serde_json::Value>,
    /// The active bundle first, then the ones before it.
    pub(crate) bundles: arc_swap::ArcSwap<Vec<Arc<super::ActiveBundle>>>,
}

impl Origin {
    /// Labels from the service name and resource attributes.
    pub(crate) fn new(service_name: &str, attributes: &[(String, String)]) -> Self {
        let mut labels = serde_json::Map::new();
        labels.insert("service.name".into(), service_name.into());
        for (k, v) in attributes {
            labels.insert(k.clone(), v.as_str().into());
        }
        Self {
            labels,
            bundles: arc_swap::ArcSwap::default(),
        }
    }

    /// A bundle became active.
    pub(crate) fn activated(&self, bundle: Arc<super::ActiveBundle>) {
        self.bundles.rcu(|recent| {
            let mut next = Vec::with_capacity(RECENT_BUNDLES);
            next.push(bundle.clone());
            next.extend(
                recent
                    .iter()
                    .filter(|b| b.revision != bundle.revision)
                    .take(RECENT_BUNDLES - 1)
                    .cloned(),
            );
            next
        });
    }
}

#[derive(Serialize)]
struct BundleJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    revision: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<u64>,
}

/// Request strings longer than this are cut in a record, and marked.
pub(crate) const MAX_FIELD_BYTES: usize = 1024;

/// A request string as a record holds it: at most [`MAX_FIELD_BYTES`],
/// with a marker saying how long it was when cut.
struct Capped<'a>(&'a str);

impl Serialize for Capped<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.len() <= MAX_FIELD_BYTES {
            return s.serialize_str(self.0);
        }
        let mut end = MAX_FIELD_BYTES;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        s.serialize_str(&format!(
            "{}…[truncated: {} bytes]",
            self.0.get(..end).unwrap_or(""),
            self.0.len()
        ))
    }
}

/// Values of a context key, each [`Capped`].
struct CappedList<'a>(&'a [String]);

impl Serialize for CappedList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|v| Capped(v)))
    }
}

/// What a queued record holds, roughly: its request's strings and a fixed
/// part for the rest.
fn record_bytes(record: &LogRecord) -> usize {
    const FIXED: usize = 512;
    let r = &record.request;
    let mut bytes = FIXED
        + r.principal().len()
        + r.action().len()
        + r.resource().len()
        + record.caller.as_ref().map_or(0, |c| c.len());
    match r {
        Subject::Checked(req) => {
            for e in req.context.entries() {
                bytes += 2 * e.key.len() + e.values.iter().map(|v| 24 + v.len()).sum::<usize>();
            }
            bytes += req.session_policy.as_ref().map_or(0, |p| 2 * p.text.len());
        }
        Subject::Received(req) => {
            for (k, v) in &req.context {
                bytes += k.len() + v.iter().map(|v| 24 + v.len()).sum::<usize>();
            }
            bytes += req.session_policy.as_ref().map_or(0, String::len);
        }
    }
    bytes
}

struct RequestJson<'a>(&'a Subject);

impl Serialize for RequestJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("principal", &Capped(r.principal()))?;
        m.serialize_entry("action", &Capped(r.action()))?;
        m.serialize_entry("resource", &Capped(r.resource()))?;
        match r {
            Subject::Checked(r) => {
                m.serialize_entry("context", &ContextJson(r))?;
                if let Some(sp) = &r.session_policy {
                    m.serialize_entry("session_policy", &Capped(&sp.text))?;
                }
            }
            Subject::Received(r) => {
                let mut context: Vec<(&String, &Vec<String>)> =
                    r.context.iter().map(|(k, v)| (k, v)).collect();
                context.sort_unstable_by_key(|(k, _)| k.to_lowercase());
                m.serialize_entry("context", &PairsJson(&context))?;
                if let Some(sp) = &r.session_policy {
                    m.serialize_entry("session_policy", &Capped(sp))?;
                }
            }
        }
        m.end()
    }
}

struct PairsJson<'a>(&'a [(&'a String, &'a Vec<String>)]);

impl Serialize for PairsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(&Capped(k), &CappedList(v))?;
        }
        m.end()
    }
}

struct ContextJson<'a>(&'a Request);

impl Serialize for ContextJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let entries = self.0.context.entries();
        let mut m = s.serialize_map(Some(entries.len()))?;
        for e in entries {
            m.serialize_entry(&Capped(&e.key), &CappedList(&e.values))?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct RecordJson<'a> {
    schema_version: u32,
    decision_id: &'a str,
    time: String,
    trace_id: Option<String>,
    span_id: Option<String>,
    request: RequestJson<'a>,
    #[serde(flatten)]
    decision: DecisionJson<'a>,
    cached: bool,
    latency_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller: Option<&'a str>,
    bundles: [BundleJson<'a>; 1],
    labels: &'a serde_json::Map<String, serde_json::Value>,
}

/// Append `record` to `buf` as one JSON line.
pub(crate) fn encode(
    record: &LogRecord,
    origin: &Origin,
    buf: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let mut id = [0u8; super::DECISION_ID_LEN];
    let revision: &str = &record.decision.bundle_revision;
    let recent = origin.bundles.load();
    let known = recent.iter().find(|b| &*b.revision == revision);
    let json = RecordJson {
        schema_version: SCHEMA_VERSION,
        decision_id: record.id.encode(&mut id),
        time: chrono::DateTime::<chrono::Utc>::from(record.time)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        trace_id: record.trace_id.map(|t| t.to_string()),
        span_id: record.span_id.map(|s| s.to_string()),
        request: RequestJson(&record.request),
        decision: DecisionJson::new(&record.decision),
        cached: record.cached,
        latency_ns: u64::try_from(record.latency.as_nanos()).unwrap_or(u64::MAX),
        caller: record.caller.as_deref(),
        bundles: [BundleJson {
            name: known.and_then(|b| b.name.as_deref()),
            revision,
            serial: known.map(|b| b.serial).filter(|s| *s > 0),
        }],
        labels: &origin.labels,
    };
    serde_json::to_writer(&mut *buf, &json)?;
    buf.push(b'\n');
    Ok(())
}

/// The sending side, held by the service.
pub struct DecisionLog {
    tx: mpsc::Sender<LogRecord>,
    /// Bytes of the records queued now ([`record_bytes`]), and the bound.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    filter: LogFilter,
    dropped: Arc<AtomicU64>,
    stop: Arc<Notify>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog")
            .field("filter", &self.filter)
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Bytes encoded before the writer writes them out.
const BATCH_BYTES: usize = 64 * 1024;

impl DecisionLog {
    /// Open the sink and start the writer task (inside a tokio runtime).
    pub(crate) fn start(
        sink: LogSink,
        queue: usize,
        queue_bytes: usize,
        filter: LogFilter,
        dropped: Arc<AtomicU64>,
        origin: Arc<Origin>,
    ) -> io::Result<Self> {
        let out: Box<dyn AsyncWrite + Send + Unpin> = match sink {
            LogSink::Stdout => Box::new(tokio::io::stdout()),
            LogSink::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                Box::new(tokio::fs::File::from_std(file))
            }
            LogSink::Writer(w) => w,
        };
        let (tx, rx) = mpsc::channel(queue.max(1));
        let stop = Arc::new(Notify::new());
        let queued = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(write_loop(
            rx,
            out,
            dropped.clone(),
            queued.clone(),
            stop.clone(),
            origin,
        ));
        Ok(Self {
            tx,
            queued,
            max_queued: queue_bytes,
            filter,
            dropped,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        })
    }

    /// Whether a decision with `outcome` is logged at all.
    pub(crate) fn wants(&self, outcome: Outcome) -> bool {
        match self.filter {
            LogFilter::All => true,
            LogFilter::Denies => outcome != Outcome::Allow,
        }
    }

    /// Queue a record without waiting; a full queue (in records or in
    /// bytes) drops it and counts it.
    pub(crate) fn submit(&self, record: LogRecord) {
        let bytes = record_bytes(&record);
        let before = self.queued.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.max_queued || self.tx.try_send(record).is_err() {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stop taking records, write out what is queued, flush, and wait for
    /// the writer (at most `grace`).
    pub(crate) async fn shutdown(&self, grace: Duration) {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            self.stop.notify_one();
            if tokio::time::timeout(grace, task).await.is_err() {
                tracing::warn!("the decision log did not finish writing within {grace:?}");
            }
        }
    }
}

async fn write_loop(
    mut rx: mpsc::Receiver<LogRecord>,
    mut out: Box<dyn AsyncWrite + Send + Unpin>,
    dropped: Arc<AtomicU64>,
    queued: Arc<AtomicUsize>,
    stop: Arc<Notify>,
    origin: Arc<Origin>,
) {
    let mut buf = Vec::with_capacity(BATCH_BYTES * 2);
    let mut reported_drops = 0u64;
    let mut last_report: Option<Instant> = None;
    let mut last_write_error: Option<Instant> = None;
    let mut stopping = false;
    loop {
        let first = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                r = rx.recv() => r,
                () = stop.notified() => {
                    stopping = true;
                    rx.close();
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        let mut next = Some(first);
        while let Some(record) = next.take() {
            if let Err(e) = encode(&record, &origin, &mut buf) {
                tracing::warn!("decision log: cannot encode a record: {e}");
            }
            queued.fetch_sub(record_bytes(&record), Ordering::AcqRel);
            drop(record);
            if buf.len() >= BATCH_BYTES {
                break;
            }
            next = rx.try_recv().ok();
        }
        let written = async {
            out.write_all(&buf).await?;
            if rx.is_empty() {
                out.flush().await?;
            }
            io::Result::Ok(())
        }
        .await;
        buf.clear();
        if let Err(e) = written
            && last_write_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!("decision log: write failed: {e}");
            last_write_error = Some(Instant::now());
        }
        let now_dropped = dropped.load(Ordering::Relaxed);
        if now_dropped > reported_drops
            && last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(
                dropped = now_dropped,
                "decision log queue full: records dropped (see verdict.decision_log.dropped)"
            );
            reported_drops = now_dropped;
            last_report = Some(Instant::now());
        }
    }
    if let Err(e) = out.flush().await {
        tracing::warn!("decision log: final flush failed: {e}");
    }
}
