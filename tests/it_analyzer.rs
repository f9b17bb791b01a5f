//! `verdict.v1.Analyzer` against a real server: off by default
//! (UNIMPLEMENTED); with `analyzer = true`, WhoCan and WhatCan stream the
//! same answers as the library over the same bundle; a call over
//! `analyzer_max_decisions` ends with RESOURCE_EXHAUSTED after what it
//! found.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::collections::BTreeSet;

use support::*;
use verdict::analysis::{self, Bounds, Universe};
use verdict::bundle::{LoadOptions, load};
use verdict::compile::Snapshot;
use verdict::eval::EvalOptions;
use verdict::proto::analyzer_client::AnalyzerClient;
use verdict::proto::{WhatCanRequest, WhoCanRequest};

async fn entries(
    stream: Result<tonic::Response<tonic::Streaming<verdict::proto::AccessEntry>>, tonic::Status>,
) -> (Vec<verdict::proto::AccessEntry>, Option<tonic::Status>) {
    let mut stream = match stream {
        Ok(s) => s.into_inner(),
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(e)) => out.push(e),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyzer_streams_the_librarys_answers_and_is_off_by_default() {
    let bundle_dir = root().join(KMS);
    // Off by default.
    let running = start(&config(&bundle_dir, None, &[])).await;
    let mut c = AnalyzerClient::new(tcp_channel(&running).await);
    let (_, err) = entries(
        c.who_can(WhoCanRequest {
            resource: KEY.into(),
            actions: vec![],
        })
        .await,
    )
    .await;
    assert_eq!(err.unwrap().code(), tonic::Code::Unimplemented);
    running.shutdown().await;

    let running = start(&config(&bundle_dir, None, &[("VERDICT_ANALYZER", "true")])).await;
    let mut c = AnalyzerClient::new(tcp_channel(&running).await);
    let bundle = load(&bundle_dir, &LoadOptions::default()).unwrap().bundle;
    let snap = Snapshot::compile(&bundle, &EvalOptions::default(), 1);

    let actions = vec!["kms:Decrypt".to_owned(), "kms:Encrypt".to_owned()];
    let (got, err) = entries(
        c.who_can(WhoCanRequest {
            resource: KEY.into(),
            actions: actions.clone(),
        })
        .await,
    )
    .await;
    assert!(err.is_none(), "{err:?}");
    let u = Universe::of_with(&bundle, Bounds::default(), &[KEY.to_owned()]);
    let want = analysis::who_can(&snap, &u, KEY, &actions);
    let key = |p: &str, a: &str, w: &[String]| (p.to_owned(), a.to_owned(), w.to_vec());
    let got_set: BTreeSet<_> = got
        .iter()
        .map(|e| key(&e.principal, &e.action, &e.allowed_when))
        .collect();
    let want_set: BTreeSet<_> = want
        .iter()
        .map(|a| key(&a.principal, &a.action, &a.allowed_when))
        .collect();
    assert_eq!(got_set, want_set);
    let worker = got
        .iter()
        .find(|e| e.principal == "arn:aws:iam::111122223333:role/PaymentsWorker")
        .unwrap();
    assert!(!worker.unconditional);
    assert_eq!(worker.allowed_by[0].kind, "grant");

    let dave = "arn:aws:iam::111122223333:user/dave";
    let (got, err) = entries(
        c.what_can(WhatCanRequest {
            principal: dave.into(),
            resource_pattern: "arn:aws:kms:us-west-2:*".into(),
        })
        .await,
    )
    .await;
    assert!(err.is_none(), "{err:?}");
    let u = Universe::of(&bundle, Bounds::default());
    let want = analysis::what_can(&snap, &u, dave, Some("arn:aws:kms:us-west-2:*"));
    assert_eq!(got.len(), want.len());
    assert!(
        got.iter()
            .any(|e| e.action == "kms:Encrypt" && e.resource == KEY)
    );
    running.shutdown().await;

    // A budget too small for the question.
    let running = start(&config(
        &bundle_dir,
        None,
        &[
            ("VERDICT_ANALYZER", "true"),
            ("VERDICT_ANALYZER_MAX_DECISIONS", "30"),
        ],
    ))
    .await;
    let mut c = AnalyzerClient::new(tcp_channel(&running).await);
    let (_, err) = entries(
        c.who_can(WhoCanRequest {
            resource: KEY.into(),
            actions: vec![],
        })
        .await,
    )
    .await;
    let err = err.unwrap();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.message().contains("analyzer_max_decisions"), "{err:?}");
    running.shutdown().await;
}
