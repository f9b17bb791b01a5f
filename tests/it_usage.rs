//! The statement-usage ledger over the real server: the example bundle's
//! test requests replayed (each twice, so the decision cache answers the
//! second), over TCP and the Unix socket and in a batch; `GetUsage` then
//! counts, for every statement and grant, exactly the decisions the
//! decision log lists it in (`matched`), and `verdict usage` (the binary)
//! prints the same ledger.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use support::*;
use verdict::proto::authorizer_client::AuthorizerClient;
use verdict::proto::{
    AuthorizeRequest, BatchAuthorizeRequest, ContextValues, GetUsageRequest, UsageReport,
};

/// The requests of the example bundle's tests.
fn example_requests() -> Vec<AuthorizeRequest> {
    let mut files: Vec<_> = std::fs::read_dir(root().join(KMS).join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        for c in v["cases"].as_array().unwrap() {
            let context = c
                .get("context")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let values = vec![v.as_str().unwrap().to_owned()];
                            (k.clone(), ContextValues { values })
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(AuthorizeRequest {
                principal: c["principal"].as_str().unwrap().into(),
                action: c["action"].as_str().unwrap().into(),
                resource: c["resource"].as_str().unwrap().into(),
                context,
                ..Default::default()
            });
        }
    }
    assert!(out.len() > 30);
    out
}

/// (policy id, index) → (allow, deny), the statements with a count.
type Counts = BTreeMap<(String, Option<u64>), (u64, u64)>;

fn from_report(r: &UsageReport) -> Counts {
    r.statements
        .iter()
        .filter(|s| s.allow + s.deny > 0)
        .map(|s| {
            (
                (s.policy_id.clone(), s.index.map(u64::from)),
                (s.allow, s.deny),
            )
        })
        .collect()
}

fn from_log(records: &[Value]) -> Counts {
    let mut counts = Counts::new();
    for r in records {
        let allow = match r["decision"].as_str().unwrap() {
            "Allow" => true,
            "ExplicitDeny" => false,
            _ => continue,
        };
        for m in r["matched"].as_array().unwrap() {
            let key = (
                m["policy_id"].as_str().unwrap().to_owned(),
                m["index"].as_u64(),
            );
            let c = counts.entry(key).or_default();
            if allow {
                c.0 += 1;
            } else {
                c.1 += 1;
            }
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_usage_counts_what_the_decision_log_lists() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("verdict.sock");
    let (telemetry, log_in) = log_telemetry();
    let running = start_with(&config(&root().join(KMS), Some(&sock), &[]), telemetry).await;
    let mut tcp = AuthorizerClient::new(tcp_channel(&running).await);
    let mut uds = AuthorizerClient::new(uds_channel(&sock).await);

    let before = tcp
        .get_usage(GetUsageRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.decisions, 0);
    assert!(before.statements.iter().all(|s| s.allow + s.deny == 0));
    assert!(
        before.statements.iter().any(|s| s.index.is_none()),
        "grants are listed"
    );

    let requests = example_requests();
    for r in &requests {
        tcp.authorize(r.clone()).await.unwrap();
        uds.authorize(r.clone()).await.unwrap();
    }
    tcp.batch_authorize(BatchAuthorizeRequest {
        requests: requests.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let report = tcp
        .get_usage(GetUsageRequest {})
        .await
        .unwrap()
        .into_inner();

    // `verdict usage`, the binary, over TCP.
    let addr = running.tcp.unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_verdict"))
            .args(["usage", "--addr", &addr, "--format", "json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();

    let log = shutdown_and_read_log(running, log_in).await;

    let n = requests.len() as u64 * 3;
    assert_eq!(report.decisions, n);
    assert_eq!(log.len() as u64, n, "the decision log has every decision");
    assert!(
        log.iter().any(|r| r["cached"] == true),
        "the cache answered some"
    );
    let counted = from_report(&report);
    assert!(counted.values().any(|c| c.0 > 0) && counted.values().any(|c| c.1 > 0));
    assert_eq!(counted, from_log(&log));

    assert_eq!(printed["decisions"], n);
    assert_eq!(printed["revision"], report.revision.as_str());
    let listed = printed["statements"].as_array().unwrap();
    assert_eq!(listed.len(), report.statements.len());
    for (p, s) in listed.iter().zip(&report.statements) {
        assert_eq!(p["policy_id"], s.policy_id.as_str());
        assert_eq!(p["allow"], s.allow);
        assert_eq!(p["deny"], s.deny);
    }
}
