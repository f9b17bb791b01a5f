//! The instruments of the README's Telemetry section, created once on one meter
//! provider (which exports over OTLP, to `/metrics`, or both).
//!
//! Recording a decision looks nothing up and allocates nothing: the latency
//! histogram is bound once to each (decision, cached) attribute set, and the
//! counters are plain atomics read by observable instruments when the meter
//! is collected, so a decision pays for one bound histogram measurement and
//! two atomic additions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundHistogram, Counter, Histogram, Meter};

use crate::eval::Outcome;
use crate::reload::{PollResult, ReloadOutcome};

/// Bucket boundaries of `verdict.decision.duration`, in seconds: from 50 ns
/// to 100 ms, so that sub-microsecond decisions and millisecond outliers
/// both land in buckets of their own.
pub const DURATION_BOUNDARIES: [f64; 19] = [
    50e-9, 100e-9, 250e-9, 500e-9, 750e-9, 1e-6, 2.5e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6,
    500e-6, 1e-3, 2.5e-3, 10e-3, 25e-3, 100e-3,
];

/// The bundle that is active, for the age gauge.
#[derive(Debug)]
pub(crate) struct ActiveBundle {
    /// Its revision.
    pub revision: Arc<str>,
    /// Its manifest name, if it gives one.
    pub(crate) name: Option<Arc<str>>,
    /// When it was loaded.
    pub(crate) loaded_at: SystemTime,
    /// Its manifest serial (0 when it gives none).
    pub(crate) serial: u64,
}

const OUTCOMES: [Outcome; 3] = [Outcome::Allow, Outcome::ExplicitDeny, Outcome::ImplicitDeny];

/// The index of an outcome in `[outcome]` arrays (Allow, ExplicitDeny,
/// ImplicitDeny).
pub(crate) fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Allow => 0,
        Outcome::ExplicitDeny => 1,
        Outcome::ImplicitDeny => 2,
    }
}

/// Decision counts by `[outcome][cached]`, and cache hits and misses.
#[derive(Default)]
struct Counts {
    decisions: [[AtomicU64; 2]; 3],
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The instruments.
pub(crate) struct Metrics {
    /// `verdict.decision.duration`, bound to each `[outcome][cached]`
    /// attribute set.
    duration: [[BoundHistogram<f64>; 2]; 3],
    counts: Arc<Counts>,
    reloads: Counter<u64>,
    reload_ok: [KeyValue; 1],
    reload_error: [KeyValue; 1],
    load_duration: Histogram<f64>,
    polls: Counter<u64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Create the instruments on `meter`; the gauges read `active` and
    /// `dropped` when the meter is collected.
    pub(crate) fn new(
        meter: &Meter,
        active: Arc<ArcSwapOption<ActiveBundle>>,
        dropped: Arc<AtomicU64>,
    ) -> Self {
        let duration = meter
            .f64_histogram("verdict.decision.duration")
            .with_description("Time to decide one request (cache lookup and evaluation)")
            .with_unit("s")
            .with_boundaries(DURATION_BOUNDARIES.to_vec())
            .build();
        let attrs = OUTCOMES.map(|o| {
            [false, true].map(|cached| {
                [
                    KeyValue::new("decision", o.as_str()),
                    KeyValue::new("cached", cached),
                ]
            })
        });
        let duration = attrs
            .each_ref()
            .map(|by_cached| by_cached.each_ref().map(|set| duration.bind(set)));
        let counts = Arc::new(Counts::default());
        let (c, sets) = (counts.clone(), attrs);
        meter
            .u64_observable_counter("verdict.decisions")
            .with_description("Decisions made")
            .with_callback(move |observer| {
                for (by_cached, sets) in c.decisions.iter().zip(&sets) {
                    for (n, set) in by_cached.iter().zip(sets) {
                        let n = n.load(Ordering::Relaxed);
                        if n > 0 {
                            observer.observe(n, set);
                        }
                    }
                }
            })
            .build();
        let c = counts.clone();
        meter
            .u64_observable_counter("verdict.cache.hits")
            .with_description("Decisions served from the decision cache")
            .with_callback(move |observer| observer.observe(c.hits.load(Ordering::Relaxed), &[]))
            .build();
        let c = counts.clone();
        meter
            .u64_observable_counter("verdict.cache.misses")
            .with_description("Decisions evaluated because the cache had no answer")
            .with_callback(move |observer| observer.observe(c.misses.load(Ordering::Relaxed), &[]))
            .build();
        let reloads = meter
            .u64_counter("verdict.bundle.reloads")
            .with_description("Bundle load attempts by result")
            .build();
        let load_duration = meter
            .f64_histogram("verdict.bundle.load.duration")
            .with_description(
                "Time of one bundle load attempt, from reading the bundle to its swap or failure",
            )
            .with_unit("s")
            .with_boundaries(vec![
                1e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ])
            .build();
        let polls = meter
            .u64_counter("verdict.bundle.polls")
            .with_description(
                "Polls of a remote bundle source by result (not_modified, loaded, failed)",
            )
            .build();
        let active_serial = active.clone();
        meter
            .u64_observable_gauge("verdict.bundle.serial")
            .with_description("The active bundle's manifest serial (0 when it gives none)")
            .with_callback(move |observer| {
                if let Some(active) = active_serial.load_full() {
                    observer.observe(
                        active.serial,
                        &[KeyValue::new("revision", active.revision.to_string())],
                    );
                }
            })
            .build();
        meter
            .f64_observable_gauge("verdict.bundle.age")
            .with_description("Seconds since the active bundle was loaded")
            .with_unit("s")
            .with_callback(move |observer| {
                if let Some(active) = active.load_full() {
                    let age = SystemTime::now()
                        .duration_since(active.loaded_at)
                        .unwrap_or(Duration::ZERO);
                    observer.observe(
                        age.as_secs_f64(),
                        &[KeyValue::new("revision", active.revision.to_string())],
                    );
                }
            })
            .build();
        meter
            .u64_observable_counter("verdict.decision_log.dropped")
            .with_description("Decision log records dropped because the queue was full")
            .with_callback(move |observer| observer.observe(dropped.load(Ordering::Relaxed), &[]))
            .build();
        Self {
            duration,
            counts,
            reloads,
            reload_ok: [KeyValue::new("result", "ok")],
            reload_error: [KeyValue::new("result", "error")],
            load_duration,
            polls,
        }
    }

    /// Record one decision. `cache_enabled` says whether hits and misses
    /// are counted (with the cache off there is nothing to hit or miss).
    pub(crate) fn decision(
        &self,
        outcome: Outcome,
        cached: bool,
        cache_enabled: bool,
        elapsed: Duration,
    ) {
        let (o, c) = (outcome_index(outcome), usize::from(cached));
        if let Some(h) = self.duration.get(o).and_then(|a| a.get(c)) {
            h.record(elapsed.as_secs_f64());
        }
        if let Some(n) = self.counts.decisions.get(o).and_then(|a| a.get(c)) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        if cache_enabled {
            let n = if cached {
                &self.counts.hits
            } else {
                &self.counts.misses
            };
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Record a poll of a remote source.
    pub(crate) fn poll(&self, result: PollResult) {
        self.polls
            .add(1, &[KeyValue::new("result", result.as_str())]);
    }

    /// Record how long a bundle load attempt took.
    pub(crate) fn load_duration(&self, outcome: ReloadOutcome, took: Duration) {
        let result = match outcome {
            ReloadOutcome::Ok => &self.reload_ok,
            ReloadOutcome::Error => &self.reload_error,
        };
        self.load_duration.record(took.as_secs_f64(), result);
    }

    /// Record a bundle load attempt.
    pub(crate) fn reload(&self, outcome: ReloadOutcome) {
        match outcome {
            ReloadOutcome::Ok => self.reloads.add(1, &self.reload_ok),
            ReloadOutcome::Error => self.reloads.add(1, &self.reload_error),
        }
    }
}
