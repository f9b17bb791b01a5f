//! Telemetry settings from the standard OpenTelemetry environment variables
//! (read through the same injectable lookup as the rest of the
//! configuration, so tests pass a map): exporting is on only when an OTLP
//! endpoint is set and `OTEL_SDK_DISABLED` is not `true`.

use std::time::Duration;

use opentelemetry_sdk::trace::Sampler;

use super::export::{self, ExportSettings, Signal};

/// What to export, and how.
#[derive(Clone, Debug)]
pub struct TelemetrySettings {
    /// Where and how spans are exported (none: no tracing at all).
    pub traces: Option<ExportSettings>,
    /// Where and how metrics are exported over OTLP (none: not exported,
    /// though `/metrics` may still serve them).
    pub metrics: Option<ExportSettings>,
    /// `service.name`: `OTEL_SERVICE_NAME`, else `service.name` of
    /// `OTEL_RESOURCE_ATTRIBUTES`, else `verdict`.
    pub service_name: String,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub(crate) resource_attributes: Vec<(String, String)>,
    /// Sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
    pub sampler: SamplerSetting,
    /// Metric export interval (`OTEL_METRIC_EXPORT_INTERVAL`, milliseconds).
    pub(crate) metric_interval: Duration,
    /// Spans queued for export before new ones are dropped
    /// (`OTEL_BSP_MAX_QUEUE_SIZE`; default 65,536, so that a burst at full
    /// sampling is not lost).
    pub(crate) span_queue: usize,
    /// Delay between span exports (`OTEL_BSP_SCHEDULE_DELAY`, ms; default 1,000).
    pub(crate) span_delay: Duration,
    /// Spans per export (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`; default 512, the
    /// OpenTelemetry default).
    pub(crate) span_batch: usize,
    /// Events kept per span (`OTEL_SPAN_EVENT_COUNT_LIMIT`; default 16). A
    /// `BatchAuthorize` span carries one event per decision up to this many,
    /// and its outcome counts. Exports must stay under the collector's
    /// message limit (4 MiB by default in gRPC and the OpenTelemetry
    /// Collector): a decision event is about 330 bytes, so 512 spans of 16
    /// events stay near 3 MB; raising one of the two means lowering the
    /// other, or raising the collector's `max_recv_msg_size_mib`.
    pub span_events: u32,
}

/// A sampler, as configured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerSetting {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio`.
    Ratio(f64),
    /// `parentbased_always_on` (the default).
    ParentAlwaysOn,
    /// `parentbased_always_off`.
    ParentAlwaysOff,
    /// `parentbased_traceidratio`.
    ParentRatio(f64),
}

impl SamplerSetting {
    /// The SDK sampler.
    pub(crate) fn sampler(self) -> Sampler {
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::Ratio(r) => Sampler::TraceIdRatioBased(r),
            Self::ParentAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Self::ParentAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Self::ParentRatio(r) => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r))),
        }
    }
}

/// A bad telemetry variable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {message}")]
pub struct TelemetryError {
    /// The variable.
    pub(crate) var: String,
    /// What is wrong.
    pub message: String,
}

impl TelemetrySettings {
    /// Read the settings; every bad value is reported.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, Vec<TelemetryError>> {
        let mut errors = Vec::new();
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let (traces, metrics) = if disabled {
            (None, None)
        } else {
            (
                export::read(&get, Signal::Traces, &mut errors),
                export::read(&get, Signal::Metrics, &mut errors),
            )
        };
        let mut resource_attributes = Vec::new();
        if let Some(attrs) = get("OTEL_RESOURCE_ATTRIBUTES") {
            for pair in attrs.split(',').filter(|p| !p.trim().is_empty()) {
                match pair.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() => {
                        resource_attributes.push((k.trim().to_owned(), v.trim().to_owned()));
                    }
                    _ => errors.push(TelemetryError {
                        var: "OTEL_RESOURCE_ATTRIBUTES".into(),
                        message: format!("`{pair}` is not key=value"),
                    }),
                }
            }
        }
        let ratio = |errors: &mut Vec<TelemetryError>| match get("OTEL_TRACES_SAMPLER_ARG") {
            None => 1.0,
            Some(a) => match a.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    errors.push(TelemetryError {
                        var: "OTEL_TRACES_SAMPLER_ARG".into(),
                        message: format!("`{a}` is not a ratio between 0 and 1"),
                    });
                    1.0
                }
            },
        };
        let sampler = match get("OTEL_TRACES_SAMPLER").as_deref() {
            None | Some("parentbased_always_on") => SamplerSetting::ParentAlwaysOn,
            Some("always_on") => SamplerSetting::AlwaysOn,
            Some("always_off") => SamplerSetting::AlwaysOff,
            Some("parentbased_always_off") => SamplerSetting::ParentAlwaysOff,
            Some("traceidratio") => SamplerSetting::Ratio(ratio(&mut errors)),
            Some("parentbased_traceidratio") => SamplerSetting::ParentRatio(ratio(&mut errors)),
            Some(other) => {
                errors.push(TelemetryError {
                    var: "OTEL_TRACES_SAMPLER".into(),
                    message: format!("unsupported sampler `{other}`"),
                });
                SamplerSetting::ParentAlwaysOn
            }
        };
        let mut positive = |var: &str, default: u64| match get(var) {
            None => default,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    errors.push(TelemetryError {
                        var: var.into(),
                        message: format!("`{v}` is not a positive whole number"),
                    });
                    default
                }
            },
        };
        let metric_interval =
            Duration::from_millis(positive("OTEL_METRIC_EXPORT_INTERVAL", 60_000));
        let span_queue =
            usize::try_from(positive("OTEL_BSP_MAX_QUEUE_SIZE", 65_536)).unwrap_or(65_536);
        let span_delay = Duration::from_millis(positive("OTEL_BSP_SCHEDULE_DELAY", 1_000));
        let span_batch = usize::try_from(positive("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512))
            .unwrap_or(512)
            .min(span_queue);
        let span_events = match get("OTEL_SPAN_EVENT_COUNT_LIMIT") {
            None => 16,
            Some(v) => v.parse::<u32>().unwrap_or_else(|_| {
                errors.push(TelemetryError {
                    var: "OTEL_SPAN_EVENT_COUNT_LIMIT".into(),
                    message: format!("`{v}` is not a whole number"),
                });
                16
            }),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            traces,
            metrics,
            service_name: get("OTEL_SERVICE_NAME")
                .or_else(|| {
                    resource_attributes
                        .iter()
                        .find(|(k, _)| k == "service.name")
                        .map(|(_, v)| v.clone())
                })
                .unwrap_or_else(|| "verdict".to_owned()),
            resource_attributes,
            sampler,
            metric_interval,
            span_queue,
            span_delay,
            span_batch,
            span_events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<TelemetrySettings, Vec<TelemetryError>> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        TelemetrySettings::from_env(&|k| m.get(k).cloned())
    }

    #[test]
    fn off_without_an_endpoint() {
        let s = read(&[]).unwrap();
        assert!(s.traces.is_none() && s.metrics.is_none());
        assert_eq!(s.service_name, "verdict");
    }

    #[test]
    fn span_export_batches_and_event_limit() {
        let s = read(&[]).unwrap();
        assert_eq!((s.span_batch, s.span_events), (512, 16));
        let s = read(&[
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64"),
            ("OTEL_SPAN_EVENT_COUNT_LIMIT", "0"),
        ])
        .unwrap();
        assert_eq!((s.span_batch, s.span_events), (64, 0));
        let e = read(&[("OTEL_SPAN_EVENT_COUNT_LIMIT", "-1")]).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].var, "OTEL_SPAN_EVENT_COUNT_LIMIT");
    }

    #[test]
    fn endpoints_and_disabling() {
        let s = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://m:4318/v1/metrics",
            ),
        ])
        .unwrap();
        let endpoint = |e: &Option<ExportSettings>| e.as_ref().map(|e| e.endpoint.clone());
        assert_eq!(
            endpoint(&s.traces).as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            endpoint(&s.metrics).as_deref(),
            Some("http://m:4318/v1/metrics")
        );
        let s = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ])
        .unwrap();
        assert!(s.traces.is_none() && s.metrics.is_none());
    }

    #[test]
    fn export_headers_timeout_and_compression() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        let s = read(&[base]).unwrap();
        let t = s.traces.unwrap();
        assert!(t.headers.is_empty());
        assert_eq!(t.timeout, Duration::from_secs(10));
        assert!(!t.gzip);
        let s = read(&[
            base,
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "api-key=s%3Dcr%2Cet , x-team = keys,",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP"),
        ])
        .unwrap();
        let (t, m) = (s.traces.unwrap(), s.metrics.unwrap());
        assert_eq!(
            t.headers,
            [
                ("api-key".to_owned(), "s=cr,et".to_owned()),
                ("x-team".to_owned(), "keys".to_owned())
            ]
        );
        assert_eq!(m.headers, [("a".to_owned(), "1".to_owned())]);
        assert_eq!(t.timeout, Duration::from_millis(2500));
        assert!(t.gzip && m.gzip);
        let s = read(&[
            base,
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "100"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "200"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "nonsense"),
        ])
        .unwrap();
        let t = s.traces.unwrap();
        assert!(!t.gzip);
        assert_eq!(t.timeout, Duration::from_millis(100));
        let e = read(&[
            base,
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue,k=%FF"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
        ])
        .unwrap_err();
        let vars: Vec<&str> = e.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(
            vars,
            [
                "OTEL_EXPORTER_OTLP_HEADERS",
                "OTEL_EXPORTER_OTLP_HEADERS",
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                "OTEL_EXPORTER_OTLP_HEADERS",
                "OTEL_EXPORTER_OTLP_HEADERS",
                "OTEL_EXPORTER_OTLP_COMPRESSION"
            ]
        );
    }

    #[test]
    fn sampler_resource_and_errors() {
        let s = read(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod, team=keys",
            ),
            ("OTEL_SERVICE_NAME", "verdict-sidecar"),
        ])
        .unwrap();
        assert_eq!(s.sampler, SamplerSetting::ParentRatio(0.25));
        assert_eq!(s.resource_attributes.len(), 2);
        assert_eq!(s.service_name, "verdict-sidecar");
        let s = read(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=keys-authz")]).unwrap();
        assert_eq!(s.service_name, "keys-authz");
        let e = read(&[
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_RESOURCE_ATTRIBUTES", "nokey"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "0"),
        ])
        .unwrap_err();
        assert_eq!(e.len(), 3);
    }
}
