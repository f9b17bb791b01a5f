//! The server's RPC metrics against a real server: calls that succeed, are
//! shed at the concurrency limit and are invalid, each counted in
//! `rpc.server.call.duration` by method and status code, on `/metrics` and
//! over OTLP alike; shed calls, calls in flight, connections, bundle load
//! duration and the process's CPU, memory and descriptors; Health counted
//! but not traced; the invalid and shed calls' spans not errors.
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
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use support::otlp::{self, int_attr, str_attr};
use support::*;
use verdict::config::LogFilter;
use verdict::proto::AuthorizeRequest;
use verdict::telemetry::{SamplerSetting, Telemetry, TelemetryOptions, TelemetrySettings};

const DAVE: &str = "arn:aws:iam::111122223333:user/dave";

fn req(min_serial: u64) -> AuthorizeRequest {
    AuthorizeRequest {
        principal: DAVE.into(),
        action: "kms:Encrypt".into(),
        resource: KEY.into(),
        min_serial,
        ..Default::default()
    }
}

/// The value of a Prometheus sample whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            (*series == name || series.starts_with(&format!("{name}{{")))
                && labels.iter().all(|want| series.contains(want))
        })
        .map(|(_, v)| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_counted_by_method_and_status_and_shed_calls_are_seen() {
    let (addr, received) = otlp::receiver().await;
    let mut settings = TelemetrySettings::from_env(&|k| match k {
        "OTEL_METRIC_EXPORT_INTERVAL" => Some("200".to_owned()),
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(format!("http://{addr}")),
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".to_owned()),
        _ => None,
    })
    .unwrap();
    settings.sampler = SamplerSetting::AlwaysOn;
    let telemetry = Arc::new(
        Telemetry::start(TelemetryOptions {
            settings,
            prometheus: true,
            decision_log: None,
            decision_log_queue: 1024,
            decision_log_queue_bytes: 1 << 20,
            decision_log_filter: LogFilter::All,
        })
        .unwrap(),
    );
    // One call at a time; a call asking for a serial the bundle does not
    // have holds its place while it waits for one.
    let cfg = config(
        &root().join(KMS),
        None,
        &[
            ("VERDICT_METRICS_LISTEN", "127.0.0.1:0"),
            ("VERDICT_CONCURRENCY_LIMIT", "1"),
            ("VERDICT_MIN_SERIAL_WAIT_MS", "1500"),
        ],
    );
    let running = start_with(&cfg, telemetry.clone()).await;
    let mut c = client(&running).await;

    // Two that succeed.
    for _ in 0..2 {
        c.authorize(req(0)).await.unwrap();
    }
    // One invalid.
    let bad = c.authorize(AuthorizeRequest::default()).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    // One holding the only place, and one shed meanwhile.
    let mut holder = c.clone();
    let held = tokio::spawn(async move { holder.authorize(req(99)).await });
    let (metrics, text) = loop {
        let (_, text) = http_get(running.metrics.unwrap(), "/metrics").await;
        if sample(&text, "verdict_rpc_in_flight", &[]) == Some(1.0) {
            break (running.metrics.unwrap(), text);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        sample(&text, "verdict_rpc_concurrency_limit", &[]),
        Some(1.0)
    );
    let shed = c.authorize(req(0)).await.unwrap_err();
    assert_eq!(shed.code(), tonic::Code::ResourceExhausted, "{shed:?}");
    let waited = held.await.unwrap().unwrap_err();
    assert_eq!(waited.code(), tonic::Code::FailedPrecondition, "{waited:?}");
    // Health, counted but not traced.
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(tcp_channel(&running).await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();

    let (_, text) = http_get(metrics, "/metrics").await;
    let calls = |method: &str, code: u32| {
        sample(
            &text,
            "rpc_server_call_duration_seconds_count",
            &[
                &format!("rpc_method=\"{method}\""),
                &format!("rpc_grpc_status_code=\"{code}\""),
            ],
        )
    };
    assert_eq!(calls("Authorize", 0), Some(2.0), "{text}");
    assert_eq!(calls("Authorize", 3), Some(1.0), "{text}");
    assert_eq!(calls("Authorize", 8), Some(1.0), "{text}");
    assert_eq!(calls("Authorize", 9), Some(1.0), "{text}");
    assert_eq!(calls("Check", 0), Some(1.0), "{text}");
    assert!(
        text.contains("rpc_service=\"verdict.v1.Authorizer\"")
            && text.contains("rpc_system=\"grpc\""),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "verdict_rpc_shed_total",
            &["limit=\"concurrency_limit\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "verdict_rpc_in_flight", &[]), Some(0.0));
    let open = sample(&text, "verdict_connections_open", &[]).unwrap();
    assert!(open >= 2.0, "two clients are connected: {open}");
    assert_eq!(
        sample(
            &text,
            "verdict_bundle_load_duration_seconds_count",
            &["result=\"ok\""]
        ),
        Some(1.0),
        "{text}"
    );
    for name in [
        "process_cpu_time_seconds_total",
        "process_memory_usage_bytes",
        "process_unix_file_descriptor_count",
    ] {
        let v = sample(&text, name, &[]).unwrap_or_else(|| panic!("{name}\n{text}"));
        assert!(v > 0.0, "{name} = {v}");
    }

    // Over OTLP: the same histogram, with integer status codes.
    received
        .wait_for("the call histogram with the shed call", |r| {
            match r.metric("rpc.server.call.duration").and_then(|m| m.data) {
                Some(Data::Histogram(h)) => h.data_points.len() >= 5,
                _ => false,
            }
        })
        .await;
    let Some(Data::Histogram(h)) = received.metric("rpc.server.call.duration").unwrap().data else {
        panic!("rpc.server.call.duration is not a histogram")
    };
    let mut points: Vec<(String, i64, u64)> = h
        .data_points
        .iter()
        .map(|p| {
            (
                str_attr(&p.attributes, "rpc.method").unwrap().to_owned(),
                int_attr(&p.attributes, "rpc.grpc.status_code").unwrap(),
                p.count,
            )
        })
        .collect();
    points.sort();
    assert_eq!(
        points,
        [
            ("Authorize".to_owned(), 0, 2),
            ("Authorize".to_owned(), 3, 1),
            ("Authorize".to_owned(), 8, 1),
            ("Authorize".to_owned(), 9, 1),
            ("Check".to_owned(), 0, 1),
        ]
    );

    // Spans: the four Authorize calls that reached the method (a shed call
    // is refused before it, and only counted), none an error; no Health
    // span.
    received
        .wait_for("four Authorize spans", |r| r.spans().len() >= 4)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spans = received.spans();
    assert!(
        spans
            .iter()
            .all(|s| s.name.starts_with("verdict.v1.Authorizer/")),
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let mut codes: Vec<i64> = spans
        .iter()
        .map(|s| int_attr(&s.attributes, "rpc.grpc.status_code").unwrap_or(0))
        .collect();
    codes.sort_unstable();
    assert_eq!(codes, [0, 0, 3, 9]);
    for s in &spans {
        assert_eq!(
            s.status.as_ref().map_or(StatusCode::Unset, |s| s.code()),
            StatusCode::Unset,
            "{}",
            s.name
        );
    }
    running.shutdown().await;
}
