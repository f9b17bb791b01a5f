//! Telemetry against a real server: spans that continue the caller's W3C
//! trace and metrics, both received by an in-process OTLP receiver; the
//! same instruments on `/metrics`; and a decision log whose full queue drops
//! and counts records while decisions keep flowing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use support::otlp::{self, bool_attr, int_attr, list_attr, str_attr};
use support::*;
use verdict::config::LogFilter;
use verdict::proto::{AuthorizeRequest, BatchAuthorizeRequest, Decision};
use verdict::telemetry::metrics::DURATION_BOUNDARIES;
use verdict::telemetry::{LogSink, SamplerSetting, Telemetry, TelemetryOptions, TelemetrySettings};

const DAVE: &str = "arn:aws:iam::111122223333:user/dave";
const ADMIN: &str = "arn:aws:sts::111122223333:assumed-role/KeyAdmin/ops-session";
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";
const BATCH_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const BATCH_PARENT: &str = "00f067aa0ba902b7";

fn req(principal: &str, action: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        principal: principal.into(),
        action: action.into(),
        resource: KEY.into(),
        ..Default::default()
    }
}

/// Settings exporting over OTLP/gRPC to `endpoint`, when given.
fn settings(endpoint: Option<String>) -> TelemetrySettings {
    let mut s = TelemetrySettings::from_env(&|k| match k {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => endpoint.clone(),
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".to_owned()),
        _ => None,
    })
    .unwrap();
    s.sampler = SamplerSetting::ParentAlwaysOn;
    s.service_name = "verdict-under-test".into();
    // Fewer decision events per batch span than the batch below has.
    s.span_events = 2;
    s
}

fn options(settings: TelemetrySettings) -> TelemetryOptions {
    TelemetryOptions {
        settings,
        prometheus: true,
        decision_log: None,
        decision_log_queue: 1024,
        decision_log_queue_bytes: 16 << 20,
        decision_log_filter: LogFilter::All,
    }
}

fn traced<T>(message: T, trace: &str, parent: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-{parent}-01").parse().unwrap(),
    );
    r.metadata_mut()
        .insert("tracestate", "vendor=opaque".parse().unwrap());
    r
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of a Prometheus sample whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            (series == &name || series.starts_with(&format!("{name}{{")))
                && labels.iter().all(|want| series.contains(want))
        })
        .map(|(_, v)| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_continue_the_callers_trace_and_metrics_arrive_over_otlp_and_on_metrics() {
    let (addr, received) = otlp::receiver().await;
    let telemetry =
        Arc::new(Telemetry::start(options(settings(Some(format!("http://{addr}"))))).unwrap());
    let cfg = config(
        &root().join(KMS),
        None,
        &[("VERDICT_METRICS_LISTEN", "127.0.0.1:0")],
    );
    let running = start_with(&cfg, telemetry.clone()).await;
    let mut c = client(&running).await;
    let revision = running.reloader.snapshot().unwrap().revision.to_string();

    // a: an Allow, in the caller's trace; b: the same, from the cache, no
    // trace context; c: an ExplicitDeny; d: a batch of three in another
    // trace (one cache hit); e: an invalid request.
    let a = c
        .authorize(traced(req(DAVE, "kms:Encrypt"), TRACE, PARENT))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.decision(), Decision::Allow);
    let b = c
        .authorize(req(DAVE, "kms:Encrypt"))
        .await
        .unwrap()
        .into_inner();
    assert!(b.cached);
    let d = c
        .authorize(req(ADMIN, "kms:DisableKey"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.decision(), Decision::ExplicitDeny);
    let batch = c
        .batch_authorize(traced(
            BatchAuthorizeRequest {
                requests: vec![
                    req(DAVE, "kms:Encrypt"),
                    req(DAVE, "kms:GenerateDataKey"),
                    req(ADMIN, "kms:EnableKey"),
                ],
                ..Default::default()
            },
            BATCH_TRACE,
            BATCH_PARENT,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.responses.len(), 3);
    let e = c.authorize(req("", "kms:Encrypt")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    // Flush from a blocking thread: the SDK's flush blocks until exported.
    let t = telemetry.clone();
    tokio::task::spawn_blocking(move || t.force_flush())
        .await
        .unwrap();
    received
        .wait_for("five spans", |r| r.spans().len() >= 5)
        .await;
    let spans = received.spans();
    assert_eq!(spans.len(), 5, "one span per call");
    assert_eq!(
        received.service_name().as_deref(),
        Some("verdict-under-test")
    );

    let authorize: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "verdict.v1.Authorizer/Authorize")
        .collect();
    assert_eq!(authorize.len(), 4);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for s in &spans {
        assert_eq!(s.kind(), SpanKind::Server);
        assert_eq!(str_attr(&s.attributes, "rpc.system"), Some("grpc"));
        // Timed by the wall clock, within this test's run.
        assert!(s.start_time_unix_nano <= s.end_time_unix_nano, "{s:?}");
        assert!(now - s.start_time_unix_nano < 60_000_000_000, "{s:?}");
    }

    // a: child of the caller's span, in the caller's trace.
    let sa = authorize
        .iter()
        .find(|s| hex(&s.trace_id) == TRACE)
        .expect("a span in the caller's trace");
    assert_eq!(hex(&sa.parent_span_id), PARENT);
    assert_eq!(sa.trace_state, "vendor=opaque");
    let at = &sa.attributes;
    assert_eq!(str_attr(at, "verdict.decision"), Some("Allow"));
    assert_eq!(bool_attr(at, "verdict.cached"), Some(false));
    assert_eq!(str_attr(at, "verdict.principal"), Some(DAVE));
    assert_eq!(str_attr(at, "verdict.action"), Some("kms:Encrypt"));
    assert_eq!(str_attr(at, "verdict.resource"), Some(KEY));
    assert_eq!(
        str_attr(at, "verdict.bundle.revision"),
        Some(revision.as_str())
    );
    assert_eq!(
        list_attr(at, "verdict.matched").unwrap(),
        [
            "keys/default-key-policy#0",
            "kms/encrypt-decrypt-any-key-in-account#0"
        ]
    );
    // Success leaves the status unset; the RPC attributes are there.
    assert_eq!(
        sa.status.as_ref().map_or(StatusCode::Unset, |s| s.code()),
        StatusCode::Unset
    );
    assert_eq!(str_attr(at, "rpc.service"), Some("verdict.v1.Authorizer"));
    assert_eq!(str_attr(at, "rpc.method"), Some("Authorize"));

    // b: a root span (no caller context), served from the cache.
    let sb = authorize
        .iter()
        .find(|s| bool_attr(&s.attributes, "verdict.cached") == Some(true))
        .unwrap();
    assert!(sb.parent_span_id.is_empty());
    assert_ne!(hex(&sb.trace_id), TRACE);

    // c: the deny and the statement that decided it.
    let sc = authorize
        .iter()
        .find(|s| str_attr(&s.attributes, "verdict.decision") == Some("ExplicitDeny"))
        .unwrap();
    assert_eq!(
        list_attr(&sc.attributes, "verdict.matched").unwrap(),
        ["kms/deny-disable-and-delete#0"]
    );

    // d: the batch's counts are attributes of its span, and its first
    // decisions (up to the event limit, 2 here) events of it, in order.
    let sd = spans
        .iter()
        .find(|s| s.name == "verdict.v1.Authorizer/BatchAuthorize")
        .unwrap();
    assert_eq!(hex(&sd.trace_id), BATCH_TRACE);
    assert_eq!(hex(&sd.parent_span_id), BATCH_PARENT);
    assert_eq!(int_attr(&sd.attributes, "verdict.batch.size"), Some(3));
    assert_eq!(int_attr(&sd.attributes, "verdict.batch.allow"), Some(2));
    assert_eq!(
        int_attr(&sd.attributes, "verdict.batch.explicit_deny"),
        Some(0)
    );
    assert_eq!(
        int_attr(&sd.attributes, "verdict.batch.implicit_deny"),
        Some(1)
    );
    let events: Vec<_> = sd
        .events
        .iter()
        .map(|e| {
            assert_eq!(e.name, "verdict.decision");
            (
                str_attr(&e.attributes, "verdict.decision")
                    .unwrap()
                    .to_owned(),
                bool_attr(&e.attributes, "verdict.cached").unwrap(),
                str_attr(&e.attributes, "verdict.action")
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("Allow".to_owned(), true, "kms:Encrypt".to_owned()),
            (
                "ImplicitDeny".to_owned(),
                false,
                "kms:GenerateDataKey".to_owned()
            ),
        ]
    );

    // e: the invalid call carries its gRPC status, and is not an error
    // span (INVALID_ARGUMENT is the caller's; the conventions leave the
    // server span's status unset).
    let se = authorize
        .iter()
        .find(|s| str_attr(&s.attributes, "verdict.decision").is_none())
        .unwrap();
    assert_eq!(int_attr(&se.attributes, "rpc.grpc.status_code"), Some(3));
    assert_eq!(
        se.status.as_ref().map_or(StatusCode::Unset, |s| s.code()),
        StatusCode::Unset
    );

    // Metrics: six decisions, by decision and cached. The histogram is bound
    // to every (decision, cached) set when the server starts, so each series
    // exists from the start, with a count of zero until it is used.
    received
        .wait_for("the decision histogram", |r| {
            r.metric("verdict.decision.duration").is_some()
        })
        .await;
    let Some(Data::Histogram(h)) = received.metric("verdict.decision.duration").unwrap().data
    else {
        panic!("verdict.decision.duration is not a histogram")
    };
    let mut counts: Vec<(String, bool, u64)> = h
        .data_points
        .iter()
        .map(|p| {
            assert_eq!(p.explicit_bounds, DURATION_BOUNDARIES);
            assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
            (
                str_attr(&p.attributes, "decision").unwrap().to_owned(),
                bool_attr(&p.attributes, "cached").unwrap(),
                p.count,
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("Allow".to_owned(), false, 2),
            ("Allow".to_owned(), true, 2),
            ("ExplicitDeny".to_owned(), false, 1),
            ("ExplicitDeny".to_owned(), true, 0),
            ("ImplicitDeny".to_owned(), false, 1),
            ("ImplicitDeny".to_owned(), true, 0),
        ]
    );
    let sum = |name: &str| match received.metric(name).and_then(|m| m.data) {
        Some(Data::Sum(s)) => s
            .data_points
            .iter()
            .map(|p| match p.value {
                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(
                    i,
                )) => i,
                _ => panic!("{name}: not an integer"),
            })
            .sum::<i64>(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(sum("verdict.decisions"), 6);
    assert_eq!(sum("verdict.cache.hits"), 2);
    assert_eq!(sum("verdict.cache.misses"), 4);
    assert_eq!(sum("verdict.bundle.reloads"), 1);
    match received.metric("verdict.bundle.age").and_then(|m| m.data) {
        Some(Data::Gauge(g)) => {
            assert_eq!(g.data_points.len(), 1);
            assert_eq!(
                str_attr(&g.data_points[0].attributes, "revision"),
                Some(revision.as_str())
            );
        }
        other => panic!("verdict.bundle.age: {other:?}"),
    }

    // /metrics: the same instruments, Prometheus-named.
    let (status, text) = http_get(running.metrics.unwrap(), "/metrics").await;
    assert!(status.contains("200"), "{status}");
    for (name, labels, want) in [
        (
            "verdict_decisions_total",
            &["decision=\"Allow\"", "cached=\"true\""][..],
            2.0,
        ),
        (
            "verdict_decisions_total",
            &["decision=\"ExplicitDeny\"", "cached=\"false\""],
            1.0,
        ),
        (
            "verdict_decision_duration_seconds_count",
            &["decision=\"Allow\"", "cached=\"false\""],
            2.0,
        ),
        ("verdict_cache_hits_total", &[], 2.0),
        ("verdict_cache_misses_total", &[], 4.0),
        ("verdict_bundle_reloads_total", &["result=\"ok\""], 1.0),
        ("verdict_decision_log_dropped_total", &[], 0.0),
    ] {
        assert_eq!(
            sample(&text, name, labels),
            Some(want),
            "{name} {labels:?}\n{text}"
        );
    }
    assert!(
        sample(
            &text,
            "verdict_decision_duration_seconds_bucket",
            &["le=\"0.0000005\""]
        )
        .is_some(),
        "sub-microsecond buckets"
    );
    assert!(
        sample(
            &text,
            "verdict_bundle_age_seconds",
            &[&format!("revision=\"{revision}\"")]
        )
        .is_some()
    );
    // The example bundle's manifest gives no serial: 0.
    assert_eq!(
        sample(
            &text,
            "verdict_bundle_serial",
            &[&format!("revision=\"{revision}\"")]
        ),
        Some(0.0),
        "{text}"
    );
    let (status, _) = http_get(running.metrics.unwrap(), "/nothing").await;
    assert!(status.contains("404"), "{status}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_exports_carry_the_configured_headers_and_can_be_gzipped() {
    let (addr, received) = otlp::receiver().await;
    let env = [
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("http://{addr}"),
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-tenant=key%20service, authorization=Bearer%20t0ken".to_owned(),
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip".to_owned()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_TRACES_SAMPLER", "always_on".to_owned()),
    ];
    let settings = TelemetrySettings::from_env(&|k| {
        env.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let telemetry = Arc::new(Telemetry::start(options(settings)).unwrap());
    let cfg = config(&root().join(KMS), None, &[]);
    let running = start_with(&cfg, telemetry.clone()).await;
    let mut c = client(&running).await;
    c.authorize(req(DAVE, "kms:Encrypt")).await.unwrap();
    running.shutdown().await;
    received
        .wait_for("the span", |r| !r.spans().is_empty())
        .await;
    let span = &received.spans()[0];
    assert_eq!(
        otlp::str_attr(&span.attributes, "verdict.principal"),
        Some(DAVE)
    );
    let metadata = &received.trace_metadata()[0];
    assert_eq!(metadata.get("x-tenant").unwrap(), "key service");
    assert_eq!(metadata.get("authorization").unwrap(), "Bearer t0ken");
    assert_eq!(metadata.get("grpc-encoding").unwrap(), "gzip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_decision_log_queue_drops_and_counts_while_decisions_flow() {
    // The writer's output is a pipe nobody reads until the end: the writer
    // blocks after a few records and the queue of 4 fills.
    let (log_out, log_in) = tokio::io::duplex(512);
    let mut opts = options(settings(None));
    opts.decision_log = Some(LogSink::Writer(Box::new(log_out)));
    opts.decision_log_queue = 4;
    let telemetry = Arc::new(Telemetry::start(opts).unwrap());
    let cfg = config(
        &root().join(KMS),
        None,
        &[
            ("VERDICT_METRICS_LISTEN", "127.0.0.1:0"),
            ("VERDICT_CACHE_MAX_ENTRIES", "0"),
        ],
    );
    let running = start_with(&cfg, telemetry.clone()).await;
    let mut c = client(&running).await;
    let calls = 300u64;
    let requests = [
        req(DAVE, "kms:Encrypt"),
        req(DAVE, "kms:GenerateDataKey"),
        req(ADMIN, "kms:DisableKey"),
    ];
    for i in 0..calls {
        let r = requests[usize::try_from(i % 3).unwrap()].clone();
        let answer = tokio::time::timeout(Duration::from_secs(5), c.authorize(r))
            .await
            .expect("a decision waited on the decision log")
            .unwrap();
        assert!(!answer.into_inner().bundle_revision.is_empty());
    }
    let log = telemetry.decision_log().unwrap();
    let dropped = log.dropped();
    assert!(dropped > 0, "the queue never filled");
    assert!(dropped < calls);
    let (_, text) = http_get(running.metrics.unwrap(), "/metrics").await;
    assert_eq!(
        sample(&text, "verdict_decision_log_dropped_total", &[]),
        Some(dropped as f64)
    );

    // Now read: shutdown drains the queue and flushes, then the writer ends.
    let lines = shutdown_and_read_log(running, log_in).await;
    assert_eq!(
        lines.len() as u64 + dropped,
        calls,
        "every record is written or counted"
    );
    let first = &lines[0];
    assert_eq!(first["request"]["principal"], DAVE);
    assert_eq!(first["request"]["action"], "kms:Encrypt");
    assert_eq!(first["request"]["resource"], KEY);
    assert_eq!(first["decision"], "Allow");
    assert_eq!(first["matched"][0]["policy_id"], "keys/default-key-policy");
    assert_eq!(first["cached"], false);
    assert!(first["latency_ns"].as_u64().unwrap() > 0);
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert!(first["bundle_revision"].as_str().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_log_records_trace_ids_and_can_keep_denies_only() {
    let (log_out, log_in) = tokio::io::duplex(1 << 20);
    let mut opts = options(settings(None));
    opts.prometheus = false;
    opts.decision_log = Some(LogSink::Writer(Box::new(log_out)));
    opts.decision_log_filter = LogFilter::Denies;
    let telemetry = Arc::new(Telemetry::start(opts).unwrap());
    let running = start_with(&config(&root().join(KMS), None, &[]), telemetry).await;
    let mut c = client(&running).await;
    c.authorize(traced(req(DAVE, "kms:Encrypt"), TRACE, PARENT))
        .await
        .unwrap();
    c.authorize(traced(req(ADMIN, "kms:DisableKey"), TRACE, PARENT))
        .await
        .unwrap();
    c.batch_authorize(BatchAuthorizeRequest {
        requests: vec![req(DAVE, "kms:GenerateDataKey"), req(DAVE, "kms:Decrypt")],
        ..Default::default()
    })
    .await
    .unwrap();
    let lines = shutdown_and_read_log(running, log_in).await;
    let decisions: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l["decision"].as_str().unwrap(),
                l["request"]["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("ExplicitDeny", "kms:DisableKey"),
            ("ImplicitDeny", "kms:GenerateDataKey")
        ]
    );
    // Tracing is off: the caller's trace id is kept, there is no server span.
    assert_eq!(lines[0]["trace_id"], TRACE);
    assert!(lines[0]["span_id"].is_null());
    assert!(lines[1]["trace_id"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_log_queue_is_bounded_in_bytes_and_cuts_large_fields() {
    // A stalled writer and a queue of many records but few bytes: large
    // requests fill the bytes first.
    let (log_out, log_in) = tokio::io::duplex(512);
    let mut opts = options(settings(None));
    opts.decision_log = Some(LogSink::Writer(Box::new(log_out)));
    opts.decision_log_queue = 8192;
    opts.decision_log_queue_bytes = 256 * 1024;
    let telemetry = Arc::new(Telemetry::start(opts).unwrap());
    let cfg = config(
        &root().join(KMS),
        None,
        &[("VERDICT_CACHE_MAX_ENTRIES", "0")],
    );
    let running = start_with(&cfg, telemetry.clone()).await;
    let mut c = client(&running).await;
    let calls = 100u64;
    for i in 0..calls {
        let mut r = req(DAVE, "kms:Encrypt");
        for k in 0..10 {
            r.context.insert(
                format!("app:k{k}"),
                verdict::proto::ContextValues {
                    values: vec![format!("{i}{}", "v".repeat(4000))],
                },
            );
        }
        c.authorize(r).await.unwrap();
    }
    let dropped = telemetry.decision_log().unwrap().dropped();
    // About 40 KiB a record: no more than seven fit in 256 KiB (and a
    // few in the writer's hands).
    assert!(dropped >= calls - 12, "{dropped} dropped");
    let lines = shutdown_and_read_log(running, log_in).await;
    assert_eq!(lines.len() as u64 + dropped, calls);
    let value = lines[0]["request"]["context"]["app:k0"][0]
        .as_str()
        .unwrap();
    assert!(
        value.ends_with("…[truncated: 4001 bytes]"),
        "{}",
        &value[value.len() - 40..]
    );
    assert!(value.len() < 1100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_hit_and_a_miss_log_the_same_canonical_request() {
    let (log_out, log_in) = tokio::io::duplex(1 << 20);
    let mut opts = options(settings(None));
    opts.prometheus = false;
    opts.decision_log = Some(LogSink::Writer(Box::new(log_out)));
    let telemetry = Arc::new(Telemetry::start(opts).unwrap());
    let running = start_with(&config(&root().join(KMS), None, &[]), telemetry).await;
    let mut c = client(&running).await;
    // An ARN's first five pieces compare ignoring case: the first call is
    // a miss, the second a hit, and both log the canonical form.
    let mut r = req("ARN:AWS:IAM::111122223333:user/Dave", "kms:Encrypt");
    r.resource = KEY.replacen("arn:aws:kms:us-west-2", "ARN:AWS:KMS:US-WEST-2", 1);
    r.context.insert(
        "App:Name".into(),
        verdict::proto::ContextValues {
            values: vec!["Payroll".into()],
        },
    );
    let first = c.authorize(r.clone()).await.unwrap().into_inner();
    let second = c.authorize(r).await.unwrap().into_inner();
    assert!(!first.cached && second.cached);
    let lines = shutdown_and_read_log(running, log_in).await;
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["cached"], false);
    assert_eq!(lines[1]["cached"], true);
    assert_eq!(lines[0]["decision_id"], first.decision_id.as_str());
    assert_eq!(lines[1]["decision_id"], second.decision_id.as_str());
    assert_eq!(lines[0]["request"], lines[1]["request"]);
    assert_eq!(
        lines[0]["request"]["principal"],
        "arn:aws:iam::111122223333:user/Dave"
    );
    assert_eq!(lines[0]["request"]["resource"], KEY);
    // Every field of a record is documented in docs/decision-log.md, and
    // every documented field but `explanation` (only when asked for) is in
    // it.
    let page = std::fs::read_to_string(root().join("docs/decision-log.md")).unwrap();
    let documented: std::collections::BTreeSet<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|f| *f != "explanation")
        .collect();
    let logged: std::collections::BTreeSet<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(logged, documented);
}

/// 100,000 Authorize calls (mostly cache hits, from eight clients at once)
/// and 100 batches of ten: every decision id is a UUIDv7, none repeats, and
/// the ids of the responses, of the decision log and of the spans (and a
/// batch's span events) are the same set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_ids_are_unique_and_the_same_in_response_log_and_span() {
    use std::collections::HashSet;
    let (addr, received) = otlp::receiver().await;
    let (log_out, log_in) = tokio::io::duplex(1 << 20);
    let env = |k: &str| match k {
        "OTEL_BSP_MAX_QUEUE_SIZE" => Some("250000".to_owned()),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => Some(format!("http://{addr}")),
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".to_owned()),
        _ => None,
    };
    let mut s = TelemetrySettings::from_env(&env).unwrap();
    s.sampler = SamplerSetting::ParentAlwaysOn;
    s.span_events = 10;
    let mut opts = options(s);
    opts.prometheus = false;
    opts.decision_log = Some(LogSink::Writer(Box::new(log_out)));
    opts.decision_log_queue = 250_000;
    opts.decision_log_queue_bytes = 1 << 30;
    let telemetry = Arc::new(Telemetry::start(opts).unwrap());
    let running = start_with(&config(&root().join(KMS), None, &[]), telemetry.clone()).await;
    let channel = tcp_channel(&running).await;
    let actions = [
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "kms:DisableKey",
    ];
    let mut tasks = Vec::new();
    for t in 0..8 {
        let mut c = verdict::proto::authorizer_client::AuthorizerClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(12_600);
            for i in 0..12_500 {
                let r = req(DAVE, actions[(i + t) % actions.len()]);
                ids.push(c.authorize(r).await.unwrap().into_inner().decision_id);
            }
            if t == 0 {
                for _ in 0..100 {
                    let batch = BatchAuthorizeRequest {
                        requests: (0..10).map(|i| req(ADMIN, actions[i % 4])).collect(),
                        ..Default::default()
                    };
                    let got = c.batch_authorize(batch).await.unwrap().into_inner();
                    ids.extend(got.responses.into_iter().map(|r| r.decision_id));
                }
            }
            ids
        }));
    }
    let mut responses = Vec::new();
    for t in tasks {
        responses.extend(t.await.unwrap());
    }
    assert_eq!(responses.len(), 101_000);
    let unique: HashSet<&str> = responses.iter().map(String::as_str).collect();
    assert_eq!(unique.len(), responses.len(), "a decision id repeats");
    for id in &unique {
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "7", "{id} is not a UUIDv7");
    }
    let log = shutdown_and_read_log(running, log_in).await;
    let logged: HashSet<String> = log
        .iter()
        .map(|r| r["decision_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(log.len(), responses.len());
    assert!(logged.iter().all(|id| unique.contains(id.as_str())));
    let flush = telemetry.clone();
    tokio::task::spawn_blocking(move || flush.force_flush())
        .await
        .unwrap();
    received
        .wait_for("every span", |r| r.spans().len() >= 100_100)
        .await;
    let mut traced = HashSet::new();
    for span in received.spans() {
        if let Some(id) = str_attr(&span.attributes, "verdict.decision_id") {
            traced.insert(id.to_owned());
        }
        for e in &span.events {
            if let Some(id) = str_attr(&e.attributes, "verdict.decision_id") {
                traced.insert(id.to_owned());
            }
        }
    }
    assert_eq!(traced.len(), responses.len());
    assert!(traced.iter().all(|id| unique.contains(id.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_log_records_name_their_schema_instance_and_bundle_across_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    copy_dir(&root().join(KMS), &bundle);
    let manifest = |revision: &str, serial: u64| {
        std::fs::write(
            bundle.join("manifest.json"),
            format!(r#"{{"revision": "{revision}", "name": "kms-examples", "serial": {serial}}}"#),
        )
        .unwrap();
    };
    manifest("r1", 7);
    let (log_out, log_in) = tokio::io::duplex(1 << 20);
    let settings = TelemetrySettings::from_env(&|k| match k {
        "OTEL_SERVICE_NAME" => Some("verdict-central".to_owned()),
        "OTEL_RESOURCE_ATTRIBUTES" => Some(
            "k8s.pod.name=verdict-0,service.instance.id=i-1,deployment.environment.name=prod"
                .to_owned(),
        ),
        _ => None,
    })
    .unwrap();
    let mut opts = options(settings);
    opts.prometheus = false;
    opts.decision_log = Some(LogSink::Writer(Box::new(log_out)));
    let telemetry = Arc::new(Telemetry::start(opts).unwrap());
    let running = start_with(&config(&bundle, None, &[]), telemetry).await;
    let mut c = client(&running).await;
    c.authorize(req(DAVE, "kms:Encrypt")).await.unwrap();
    manifest("r2", 8);
    running.reloader.reload().await.unwrap();
    c.authorize(req(DAVE, "kms:Decrypt")).await.unwrap();
    let lines = shutdown_and_read_log(running, log_in).await;
    assert_eq!(lines.len(), 2);
    for (line, (revision, serial)) in lines.iter().zip([("r1", 7), ("r2", 8)]) {
        assert_eq!(line["schema_version"], 1);
        assert_eq!(
            line["bundles"],
            serde_json::json!([{"name": "kms-examples", "revision": revision, "serial": serial}])
        );
        assert_eq!(line["bundle_revision"], revision);
        assert_eq!(
            line["labels"],
            serde_json::json!({
                "service.name": "verdict-central",
                "k8s.pod.name": "verdict-0",
                "service.instance.id": "i-1",
                "deployment.environment.name": "prod",
            })
        );
    }
}
