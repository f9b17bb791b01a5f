//! The instruments of api.md's Telemetry table, created once on one meter
//! provider (which exports over OTLP, to `/metrics`, or both).
//!
//! Recording a decision touches pre-built attribute sets only: no string is
//! built and nothing is allocated per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

use crate::eval::Outcome;
use crate::reload::ReloadOutcome;

/// Bucket boundaries of `verdict.decision.duration`, in seconds: from 50 ns
/// to 100 ms, so that sub-microsecond decisions and millisecond outliers
/// both land in buckets of their own.
pub const DURATION_BOUNDARIES: [f64; 19] = [
    50e-9, 100e-9, 250e-9, 500e-9, 750e-9, 1e-6, 2.5e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6,
    500e-6, 1e-3, 2.5e-3, 10e-3, 25e-3, 100e-3,
];

/// The bundle that is active, for the age gauge.
#[derive(Debug)]
pub struct ActiveBundle {
    /// Its revision.
    pub revision: Arc<str>,
    /// When it was loaded.
    pub loaded_at: SystemTime,
}

const OUTCOMES: [Outcome; 3] = [Outcome::Allow, Outcome::ExplicitDeny, Outcome::ImplicitDeny];

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Allow => 0,
        Outcome::ExplicitDeny => 1,
        Outcome::ImplicitDeny => 2,
    }
}

/// The instruments.
pub struct Metrics {
    duration: Histogram<f64>,
    decisions: Counter<u64>,
    cache_hits: Counter<u64>,
    cache_misses: Counter<u64>,
    reloads: Counter<u64>,
    /// `[outcome][cached]` attribute sets.
    attrs: [[[KeyValue; 2]; 2]; 3],
    reload_ok: [KeyValue; 1],
    reload_error: [KeyValue; 1],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Create the instruments on `meter`; the gauges read `active` and
    /// `dropped` when the meter is collected.
    pub fn new(
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
        let decisions = meter
            .u64_counter("verdict.decisions")
            .with_description("Decisions made")
            .build();
        let cache_hits = meter
            .u64_counter("verdict.cache.hits")
            .with_description("Decisions served from the decision cache")
            .build();
        let cache_misses = meter
            .u64_counter("verdict.cache.misses")
            .with_description("Decisions evaluated because the cache had no answer")
            .build();
        let reloads = meter
            .u64_counter("verdict.bundle.reloads")
            .with_description("Bundle load attempts by result")
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
        let attrs = OUTCOMES.map(|o| {
            [false, true].map(|cached| {
                [
                    KeyValue::new("decision", o.as_str()),
                    KeyValue::new("cached", cached),
                ]
            })
        });
        Self {
            duration,
            decisions,
            cache_hits,
            cache_misses,
            reloads,
            attrs,
            reload_ok: [KeyValue::new("result", "ok")],
            reload_error: [KeyValue::new("result", "error")],
        }
    }

    /// Record one decision. `cache_enabled` says whether hits and misses
    /// are counted (with the cache off there is nothing to hit or miss).
    pub fn decision(&self, outcome: Outcome, cached: bool, cache_enabled: bool, elapsed: Duration) {
        let attrs = self
            .attrs
            .get(outcome_index(outcome))
            .and_then(|a| a.get(usize::from(cached)));
        if let Some(attrs) = attrs {
            self.duration.record(elapsed.as_secs_f64(), attrs);
            self.decisions.add(1, attrs);
        }
        if cache_enabled {
            if cached {
                self.cache_hits.add(1, &[]);
            } else {
                self.cache_misses.add(1, &[]);
            }
        }
    }

    /// Record a bundle load attempt.
    pub fn reload(&self, outcome: ReloadOutcome) {
        match outcome {
            ReloadOutcome::Ok => self.reloads.add(1, &self.reload_ok),
            ReloadOutcome::Error => self.reloads.add(1, &self.reload_error),
        }
    }
}
