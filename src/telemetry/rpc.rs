//! Server metrics per the OpenTelemetry semantic conventions for gRPC
//! servers: `rpc.server.call.duration` by method and status code, calls
//! shed, calls in flight, connections open, and the process's CPU time,
//! resident memory and open file descriptors.
//!
//! A call's duration histogram is bound to its (method, status) pair the
//! first time that pair is seen, so recording a call looks nothing up and
//! allocates nothing; the other counts are atomics and gauges read when the
//! meter is collected.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundHistogram, Histogram, Meter};
use tokio::sync::Semaphore;

/// Bucket boundaries of `rpc.server.call.duration`, in seconds: from 10 µs
/// (a cached Authorize with its transport) to 10 s (a large batch, or a
/// stream).
const CALL_BOUNDARIES: [f64; 20] = [
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
    250e-3, 500e-3, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The methods verdict serves: path, `rpc.service`, `rpc.method`, and
/// whether the call streams its response (its duration then ends with its
/// stream, not with its first response).
const METHODS: [(&str, &str, &str, bool); 10] = [
    (
        "/verdict.v1.Authorizer/Authorize",
        "verdict.v1.Authorizer",
        "Authorize",
        false,
    ),
    (
        "/verdict.v1.Authorizer/BatchAuthorize",
        "verdict.v1.Authorizer",
        "BatchAuthorize",
        false,
    ),
    (
        "/verdict.v1.Authorizer/GetBundleStatus",
        "verdict.v1.Authorizer",
        "GetBundleStatus",
        false,
    ),
    (
        "/verdict.v1.Authorizer/GetUsage",
        "verdict.v1.Authorizer",
        "GetUsage",
        false,
    ),
    (
        "/verdict.v1.Analyzer/WhoCan",
        "verdict.v1.Analyzer",
        "WhoCan",
        true,
    ),
    (
        "/verdict.v1.Analyzer/WhatCan",
        "verdict.v1.Analyzer",
        "WhatCan",
        true,
    ),
    (
        "/grpc.health.v1.Health/Check",
        "grpc.health.v1.Health",
        "Check",
        false,
    ),
    (
        "/grpc.health.v1.Health/Watch",
        "grpc.health.v1.Health",
        "Watch",
        true,
    ),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1.ServerReflection",
        "ServerReflectionInfo",
        true,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection",
        "ServerReflectionInfo",
        true,
    ),
];

/// The index of calls to a path no method of [`METHODS`] has: the
/// conventions' `_OTHER`, so that a client cannot make a series per path.
const OTHER: usize = METHODS.len();

/// gRPC status codes, 0 (OK) to 16 (UNAUTHENTICATED).
const CODES: usize = 17;

/// A method of the server, as an index into its instruments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RpcMethod(usize);

impl RpcMethod {
    /// The method a request path calls.
    pub(crate) fn of_path(path: &str) -> Self {
        Self(
            METHODS
                .iter()
                .position(|(p, ..)| *p == path)
                .unwrap_or(OTHER),
        )
    }

    /// Whether its response is a stream.
    pub(crate) fn streams(self) -> bool {
        METHODS.get(self.0).is_some_and(|m| m.3)
    }
}

/// Why a call was refused before its method ran, for `verdict.rpc.shed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shed {
    /// No place under `concurrency_limit`.
    ConcurrencyLimit,
    /// A `BatchAuthorize` waited past its body timeout for a place under
    /// `batch_concurrency_limit`.
    BatchConcurrencyLimit,
}

/// What the server exposes for its gauges: its concurrency limit's
/// semaphore and the connections it holds.
#[derive(Clone, Debug)]
pub(crate) struct ServerGauges {
    /// Places of the concurrency limit (available ones are free).
    pub(crate) in_flight: Arc<Semaphore>,
    /// The concurrency limit.
    pub(crate) limit: usize,
    /// Connections open now.
    pub(crate) connections: Arc<AtomicUsize>,
}

/// The server's call instruments.
pub(crate) struct RpcMetrics {
    duration: Histogram<f64>,
    /// `[method][code]`, bound at first use.
    bound: Box<[[OnceLock<BoundHistogram<f64>>; CODES]]>,
    shed: Arc<[AtomicU64; 2]>,
}

impl std::fmt::Debug for RpcMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcMetrics").finish_non_exhaustive()
    }
}

impl RpcMetrics {
    /// Create the instruments on `meter`; the gauges read `gauges`.
    pub(crate) fn new(meter: &Meter, gauges: ServerGauges) -> Self {
        let duration = meter
            .f64_histogram("rpc.server.call.duration")
            .with_description("Time from a call's request headers to its response (for a streaming response, to its end)")
            .with_unit("s")
            .with_boundaries(CALL_BOUNDARIES.to_vec())
            .build();
        let shed: Arc<[AtomicU64; 2]> = Arc::default();
        let counts = shed.clone();
        meter
            .u64_observable_counter("verdict.rpc.shed")
            .with_description(
                "Calls refused with RESOURCE_EXHAUSTED because a concurrency limit was reached",
            )
            .with_callback(move |observer| {
                for (n, limit) in counts
                    .iter()
                    .zip(["concurrency_limit", "batch_concurrency_limit"])
                {
                    observer.observe(n.load(Ordering::Relaxed), &[KeyValue::new("limit", limit)]);
                }
            })
            .build();
        let ServerGauges {
            in_flight,
            limit,
            connections,
        } = gauges;
        meter
            .u64_observable_gauge("verdict.rpc.in_flight")
            .with_description("Calls holding a place under the concurrency limit")
            .with_callback(move |observer| {
                let used = limit.saturating_sub(in_flight.available_permits());
                observer.observe(used as u64, &[]);
            })
            .build();
        meter
            .u64_observable_gauge("verdict.rpc.concurrency_limit")
            .with_description("Calls that may hold a place at once (concurrency_limit)")
            .with_callback(move |observer| observer.observe(limit as u64, &[]))
            .build();
        meter
            .u64_observable_gauge("verdict.connections.open")
            .with_description("Client connections open (TCP and Unix socket)")
            .with_callback(move |observer| {
                observer.observe(connections.load(Ordering::Relaxed) as u64, &[]);
            })
            .build();
        let bound = (0..=OTHER)
            .map(|_| std::array::from_fn(|_| OnceLock::new()))
            .collect();
        Self {
            duration,
            bound,
            shed,
        }
    }

    /// Record a call to `method` that ended with gRPC status `code` after
    /// `elapsed`.
    pub(crate) fn call(&self, method: RpcMethod, code: i32, elapsed: Duration) {
        let code = usize::try_from(code)
            .ok()
            .filter(|c| *c < CODES)
            .unwrap_or(2);
        let Some(slot) = self.bound.get(method.0).and_then(|m| m.get(code)) else {
            return;
        };
        let histogram = slot.get_or_init(|| {
            let (service, name) = METHODS
                .get(method.0)
                .map_or(("_OTHER", "_OTHER"), |m| (m.1, m.2));
            self.duration.bind(&[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service),
                KeyValue::new("rpc.method", name),
                KeyValue::new("rpc.grpc.status_code", code as i64),
            ])
        });
        histogram.record(elapsed.as_secs_f64());
    }

    /// Count a call refused at a concurrency limit.
    pub(crate) fn shed(&self, why: Shed) {
        let i = match why {
            Shed::ConcurrencyLimit => 0,
            Shed::BatchConcurrencyLimit => 1,
        };
        if let Some(n) = self.shed.get(i) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The process's CPU time, resident memory and open file descriptors, under
/// the conventions' `process.*` names, read from `/proc` when collected.
#[cfg(target_os = "linux")]
pub(crate) fn process_metrics(meter: &Meter) {
    use procfs::process::Process;
    let ticks = procfs::ticks_per_second() as f64;
    let page = procfs::page_size();
    meter
        .f64_observable_counter("process.cpu.time")
        .with_description("CPU time of the process, by mode")
        .with_unit("s")
        .with_callback(move |observer| {
            if let Ok(stat) = Process::myself().and_then(|p| p.stat()) {
                observer.observe(
                    stat.utime as f64 / ticks,
                    &[KeyValue::new("cpu.mode", "user")],
                );
                observer.observe(
                    stat.stime as f64 / ticks,
                    &[KeyValue::new("cpu.mode", "system")],
                );
            }
        })
        .build();
    meter
        .u64_observable_gauge("process.memory.usage")
        .with_description("Resident memory of the process")
        .with_unit("By")
        .with_callback(move |observer| {
            if let Ok(stat) = Process::myself().and_then(|p| p.stat()) {
                observer.observe(stat.rss.saturating_mul(page), &[]);
            }
        })
        .build();
    meter
        .u64_observable_gauge("process.unix.file_descriptor.count")
        .with_description("File descriptors the process has open")
        .with_callback(move |observer| {
            if let Ok(n) = Process::myself().and_then(|p| p.fd_count()) {
                observer.observe(n as u64, &[]);
            }
        })
        .build();
}

/// No process metrics where `/proc` is not there.
#[cfg(not(target_os = "linux"))]
pub(crate) fn process_metrics(_meter: &Meter) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_method_and_others_share_one() {
        let authorize = RpcMethod::of_path("/verdict.v1.Authorizer/Authorize");
        assert_eq!(authorize, RpcMethod(0));
        assert!(!authorize.streams());
        assert!(RpcMethod::of_path("/grpc.health.v1.Health/Watch").streams());
        assert_eq!(RpcMethod::of_path("/x.Y/Z"), RpcMethod(OTHER));
        assert_eq!(RpcMethod::of_path("/x.Y/W"), RpcMethod(OTHER));
        assert!(!RpcMethod::of_path("/x.Y/Z").streams());
    }
}
