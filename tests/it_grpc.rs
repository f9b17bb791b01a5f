//! The server over real sockets: a tonic client against `verdict serve`'s
//! library entry point on 127.0.0.1:0 and on a temporary Unix socket.
//! Decisions equal `verdict eval`'s for the same requests; BatchAuthorize
//! keeps order; health and reflection (v1 and v1alpha) answer; malformed
//! requests get INVALID_ARGUMENT naming the field; the cache never changes an
//! answer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::collections::HashMap;
use std::process::Command;

use support::*;
use tonic::Code;
use verdict::proto::{
    self, AuthorizeRequest, AuthorizeResponse, BatchAuthorizeRequest, ContextValues,
};

fn ctx(pairs: &[(&str, &[&str])]) -> HashMap<String, ContextValues> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                ContextValues {
                    values: v.iter().map(|s| (*s).to_owned()).collect(),
                },
            )
        })
        .collect()
}

fn request(
    principal: &str,
    action: &str,
    resource: &str,
    context: &[(&str, &[&str])],
) -> AuthorizeRequest {
    AuthorizeRequest {
        principal: principal.into(),
        action: action.into(),
        resource: resource.into(),
        context: ctx(context),
        session_policy: String::new(),
        explain: false,
        min_serial: 0,
    }
}

/// The requests of the example bundle's tests, as gRPC requests and as JSON lines.
fn example_requests() -> Vec<(AuthorizeRequest, serde_json::Value)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(root().join(KMS).join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        for c in v["cases"].as_array().unwrap() {
            let context: Vec<(String, Vec<String>)> = c
                .get("context")
                .and_then(|c| c.as_object())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), vec![v.as_str().unwrap().to_owned()]))
                        .collect()
                })
                .unwrap_or_default();
            let req = AuthorizeRequest {
                principal: c["principal"].as_str().unwrap().into(),
                action: c["action"].as_str().unwrap().into(),
                resource: c["resource"].as_str().unwrap().into(),
                context: context
                    .iter()
                    .map(|(k, v)| (k.clone(), ContextValues { values: v.clone() }))
                    .collect(),
                session_policy: String::new(),
                explain: true,
                min_serial: 0,
            };
            let line = serde_json::json!({
                "principal": req.principal, "action": req.action, "resource": req.resource,
                "context": context.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                "explain": true,
            });
            out.push((req, line));
        }
    }
    assert!(out.len() > 30);
    out
}

/// What `verdict eval --requests` answers to the same requests.
fn verdict_eval(
    dir: &std::path::Path,
    cases: &[(AuthorizeRequest, serde_json::Value)],
) -> Vec<serde_json::Value> {
    let lines: Vec<String> = cases.iter().map(|(_, l)| l.to_string()).collect();
    let file = dir.join("requests.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args([
            "eval",
            "--bundle",
            KMS,
            "--requests",
            file.to_str().unwrap(),
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn decision_name(r: &AuthorizeResponse) -> &'static str {
    match r.decision() {
        proto::Decision::Allow => "Allow",
        proto::Decision::ExplicitDeny => "ExplicitDeny",
        proto::Decision::ImplicitDeny => "ImplicitDeny",
        proto::Decision::Unspecified => "Unspecified",
    }
}

/// The parts of a response `verdict eval` prints too.
fn same_as_eval(r: &AuthorizeResponse, eval: &serde_json::Value) {
    assert_eq!(decision_name(r), eval["decision"], "{eval}");
    assert_eq!(r.bundle_revision, eval["bundle_revision"]);
    let missing: Vec<&str> = eval["missing_context_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(r.missing_context_keys, missing);
    let matched = eval["matched"].as_array().unwrap();
    assert_eq!(r.matched.len(), matched.len());
    for (m, e) in r.matched.iter().zip(matched) {
        assert_eq!(m.policy_id, e["policy_id"]);
        assert_eq!(m.kind, e["kind"]);
        assert_eq!(m.index.map(u64::from), e["index"].as_u64());
        assert_eq!(m.sid.as_deref(), e["sid"].as_str());
        assert_eq!(m.effect, e["effect"]);
        assert_eq!(m.line.map(u64::from), e["line"].as_u64());
        assert_eq!(m.column.map(u64::from), e["column"].as_u64());
    }
    let x = r.explanation.as_ref().unwrap();
    let ex = &eval["explanation"];
    assert_eq!(x.allowed_by_boundary, ex["allowed_by_boundary"]);
    assert_eq!(x.grant_id.as_deref(), ex["grant_id"].as_str());
    let blocked: Vec<&str> = ex["blocked_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert_eq!(x.blocked_by, blocked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_over_tcp_and_unix_socket_equal_verdict_eval() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("verdict.sock");
    let running = start(&config(&root().join(KMS), Some(&sock), &[])).await;
    let cases = example_requests();

    let evals = verdict_eval(dir.path(), &cases);

    let mut tcp = proto::authorizer_client::AuthorizerClient::new(tcp_channel(&running).await);
    let mut uds = proto::authorizer_client::AuthorizerClient::new(uds_channel(&sock).await);
    for ((req, _), eval) in cases.iter().zip(&evals) {
        let a = tcp.authorize(req.clone()).await.unwrap().into_inner();
        let b = uds.authorize(req.clone()).await.unwrap().into_inner();
        same_as_eval(&a, eval);
        same_as_eval(&b, eval);
    }
    running.shutdown().await;
    assert!(!sock.exists(), "the socket file is removed on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_authorize_keeps_order_and_is_all_or_nothing() {
    let running = start(&config(
        &root().join(KMS),
        None,
        &[("VERDICT_MAX_BATCH", "100")],
    ))
    .await;
    let mut c = client(&running).await;
    let mut reqs: Vec<AuthorizeRequest> = example_requests().into_iter().map(|(r, _)| r).collect();
    reqs.extend(reqs.clone().into_iter().rev());
    let batch = c
        .batch_authorize(BatchAuthorizeRequest {
            requests: reqs.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.responses.len(), reqs.len());
    for (req, got) in reqs.iter().zip(&batch.responses) {
        let mut one = c.authorize(req.clone()).await.unwrap().into_inner();
        one.cached = got.cached;
        let mut got = got.clone();
        got.cached = one.cached;
        // Every decision has an id of its own.
        assert_eq!(got.decision_id.len(), 36);
        assert_ne!(got.decision_id, one.decision_id);
        one.decision_id.clone_from(&got.decision_id);
        assert_eq!(got, one);
    }
    // One malformed item fails the whole call, naming it.
    let mut bad = reqs.clone();
    bad[5].principal = "not-a-principal".into();
    let e = c
        .batch_authorize(BatchAuthorizeRequest {
            requests: bad,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("requests[5].principal:"),
        "{}",
        e.message()
    );
    // More than max_batch.
    let many: Vec<AuthorizeRequest> = (0..101).map(|_| reqs[0].clone()).collect();
    let e = c
        .batch_authorize(BatchAuthorizeRequest {
            requests: many,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("requests:"), "{}", e.message());
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_invalid_argument_naming_the_field() {
    let running = start(&config(
        &root().join(KMS),
        None,
        &[("VERDICT_MAX_CONTEXT_KEYS", "3")],
    ))
    .await;
    let mut c = client(&running).await;
    let user = "arn:aws:iam::111122223333:user/alice";
    let session = "arn:aws:sts::111122223333:assumed-role/KeyAdmin/s";
    let long = "x".repeat(5000);
    let mut cases: Vec<(AuthorizeRequest, &str)> = vec![
        (request("", "kms:Decrypt", KEY, &[]), "principal"),
        (request("anonymous", "kms:Decrypt", KEY, &[]), "principal"),
        (
            request("arn:aws:iam::111122223333:group/G", "kms:Decrypt", KEY, &[]),
            "principal",
        ),
        (request(user, "Decrypt", KEY, &[]), "action"),
        (request(user, "kms:Decrypt", "key/1234", &[]), "resource"),
        (
            request(
                user,
                "kms:Decrypt",
                KEY,
                &[("aws:SourceIp", &["1"]), ("AWS:SOURCEIP", &["2"])],
            ),
            "context[",
        ),
        (
            request(
                user,
                "kms:Decrypt",
                KEY,
                &[("a", &[]), ("b", &[]), ("c", &[]), ("d", &[])],
            ),
            "context",
        ),
        (
            request(user, "kms:Decrypt", KEY, &[("k", &[long.as_str()])]),
            "context[k]",
        ),
        (
            request(
                &format!("arn:aws:iam::111122223333:user/{long}"),
                "kms:Decrypt",
                KEY,
                &[],
            ),
            "principal",
        ),
    ];
    let mut sp_user = request(user, "kms:Decrypt", KEY, &[]);
    sp_user.session_policy = r#"{"Statement": []}"#.into();
    cases.push((sp_user, "session_policy"));
    let mut sp_bad = request(session, "kms:Decrypt", KEY, &[]);
    sp_bad.session_policy =
        r#"{"Statement": {"Effect": "allow", "Action": "kms:*", "Resource": "*"}}"#.into();
    cases.push((sp_bad, "session_policy"));
    for (req, field) in cases {
        let e = c.authorize(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{req:?}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_v1_and_v1alpha() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let running = start(&config(&root().join(KMS), None, &[])).await;
    let channel = tcp_channel(&running).await;
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "verdict.v1.Authorizer"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut r = ServerReflectionClient::new(channel.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = r
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            panic!()
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.contains(&"verdict.v1.Authorizer".to_owned()),
            "{names:?}"
        );
        assert!(
            names.contains(&"grpc.health.v1.Health".to_owned()),
            "{names:?}"
        );
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut r = ServerReflectionClient::new(channel);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "verdict.v1.Authorizer".into(),
            )),
        };
        let mut stream = r
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(fd)) = resp.message_response else {
            panic!()
        };
        assert!(!fd.file_descriptor_proto.is_empty());
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_never_changes_an_answer() {
    // One server with the cache, one without: every answer equal, repeated
    // requests served from the cache, requests differing only in context or
    // session policy never served another's decision.
    let cached = start(&config(&root().join(KMS), None, &[])).await;
    let uncached = start(&config(
        &root().join(KMS),
        None,
        &[("VERDICT_CACHE_MAX_ENTRIES", "0")],
    ))
    .await;
    let mut a = client(&cached).await;
    let mut b = client(&uncached).await;
    let worker = "arn:aws:sts::111122223333:assumed-role/PaymentsWorker/i-1";
    let mut reqs: Vec<AuthorizeRequest> = example_requests().into_iter().map(|(r, _)| r).collect();
    for dept in ["payments", "Payments", "hr", ""] {
        reqs.push(request(
            worker,
            "kms:Decrypt",
            KEY,
            &[("kms:EncryptionContext:dept", &[dept])],
        ));
    }
    reqs.push(request(
        worker,
        "kms:Decrypt",
        KEY,
        &[("kms:EncryptionContext:dept", &["payments", "hr"])],
    ));
    reqs.push(request(
        worker,
        "kms:Decrypt",
        KEY,
        &[("kms:EncryptionContext:dept", &[])],
    ));
    for sp in [
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}}"#,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*"}}"#,
    ] {
        let mut r = request(
            worker,
            "kms:Decrypt",
            KEY,
            &[("kms:EncryptionContext:dept", &["payments"])],
        );
        r.session_policy = sp.into();
        reqs.push(r);
    }
    let mut hits = 0;
    for round in 0..3 {
        for r in &reqs {
            for explain in [false, true] {
                let mut r = r.clone();
                r.explain = explain;
                let x = a.authorize(r.clone()).await.unwrap().into_inner();
                let mut y = b.authorize(r.clone()).await.unwrap().into_inner();
                assert!(!y.cached);
                if round > 0 {
                    assert!(x.cached, "a repeated request is served from the cache");
                    hits += 1;
                }
                y.cached = x.cached;
                // A hit gets an id of its own, never the entry's.
                assert_eq!(x.decision_id.len(), 36);
                assert_ne!(x.decision_id, y.decision_id);
                y.decision_id.clone_from(&x.decision_id);
                assert_eq!(x, y, "{r:?}");
            }
        }
    }
    assert!(hits > 0);
    // The two session policies give different answers, each served from its own entry.
    let n = reqs.len();
    let with_decrypt = a.authorize(reqs[n - 2].clone()).await.unwrap().into_inner();
    let with_encrypt = a.authorize(reqs[n - 1].clone()).await.unwrap().into_inner();
    assert_eq!(with_decrypt.decision(), proto::Decision::Allow);
    assert_eq!(with_encrypt.decision(), proto::Decision::ImplicitDeny);
    cached.shutdown().await;
    uncached.shutdown().await;
}

/// A server on a copy of the KMS example bundle that reloads only when
/// asked (no watcher, no periodic check), and the copy's directory.
async fn start_on_a_copy() -> (tempfile::TempDir, verdict::app::Running) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join(KMS), dir.path());
    let config = config(
        dir.path(),
        None,
        &[
            ("VERDICT_WATCH", "false"),
            ("VERDICT_POLL_INTERVAL_MS", "0"),
        ],
    );
    let running = start(&config).await;
    (dir, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_follows_reloads() {
    let (dir, running) = start_on_a_copy().await;
    let mut c = client(&running).await;
    let req = request(
        "arn:aws:iam::111122223333:user/dave",
        "kms:Encrypt",
        KEY,
        &[],
    );
    let first = c.authorize(req.clone()).await.unwrap().into_inner();
    let again = c.authorize(req.clone()).await.unwrap().into_inner();
    assert_eq!(first.decision(), proto::Decision::Allow);
    assert!(again.cached);
    // dave loses his group; the same revision text would not matter either.
    let p = dir.path().join("principals.json");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        r#""groups": ["arn:aws:iam::111122223333:group/KeyUsers"]"#,
        r#""groups": []"#,
    );
    std::fs::write(&p, text).unwrap();
    running.reloader.reload().await.unwrap();
    let after = c.authorize(req.clone()).await.unwrap().into_inner();
    assert!(
        !after.cached,
        "a reload never serves an answer of the old bundle"
    );
    assert_eq!(after.decision(), proto::Decision::ImplicitDeny);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_status_reports_the_active_bundle_and_the_last_failure() {
    let (dir, running) = start_on_a_copy().await;
    let mut c = client(&running).await;
    let s = c
        .get_bundle_status(proto::GetBundleStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.revision, "2026-11-28.1");
    assert!(s.last_error.is_none());
    assert!(!s.loaded_at.is_empty());
    std::fs::write(dir.path().join("principals.json"), "{ not json").unwrap();
    assert!(running.reloader.reload().await.is_err());
    let s = c
        .get_bundle_status(proto::GetBundleStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        s.revision, "2026-11-28.1",
        "the last good bundle keeps serving"
    );
    let e = s.last_error.unwrap();
    assert!(
        e.errors.iter().any(|l| l.contains("principals.json:1:")),
        "{e:?}"
    );
    assert_eq!(s.reloads_failed, 1);
    let r = c
        .authorize(request(
            "arn:aws:iam::111122223333:user/frank",
            "kms:Encrypt",
            KEY,
            &[],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.decision(), proto::Decision::Allow);
    running.shutdown().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_mode_and_stale_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("v.sock");
    // A stale socket (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let cfg = config(
        &root().join(KMS),
        Some(&sock),
        &[("VERDICT_UDS_MODE", "0600")],
    );
    let running = start(&cfg).await;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A live socket is not taken over.
    let e = verdict::app::start(&cfg, verdict::app::Hooks::default())
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("another server is listening"), "{e}");
    running.shutdown().await;
    // A regular file is never removed.
    std::fs::write(&sock, "data").unwrap();
    let e = verdict::app::start(&cfg, verdict::app::Hooks::default())
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_bundle_that_does_not_load_stops_the_server() {
    let bundle = root().join("tests/fixtures/broken/effect-lowercase/bundle");
    let e = verdict::app::start(&config(&bundle, None, &[]), verdict::app::Hooks::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, verdict::app::AppError::FirstBundle(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_is_shed_beyond_the_concurrency_limit() {
    let running = start(&config(
        &root().join(KMS),
        None,
        &[
            ("VERDICT_CONCURRENCY_LIMIT", "1"),
            ("VERDICT_CACHE_MAX_ENTRIES", "0"),
        ],
    ))
    .await;
    let base: Vec<AuthorizeRequest> = example_requests().into_iter().map(|(r, _)| r).collect();
    let requests: Vec<AuthorizeRequest> = base.iter().cycle().take(1000).cloned().collect();
    let mut calls = Vec::new();
    for _ in 0..32 {
        let mut c = client(&running).await;
        let requests = requests.clone();
        calls.push(tokio::spawn(async move {
            c.batch_authorize(BatchAuthorizeRequest {
                requests,
                ..Default::default()
            })
            .await
        }));
    }
    let (mut ok, mut shed) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.into_inner().responses.len(), 1000);
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
                shed += 1;
            }
        }
    }
    assert!(ok > 0 && shed > 0, "{ok} served, {shed} shed");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_per_core_serves_each_connection_on_one_of_its_loops() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("verdict.sock");
    let running = start(&config(
        &root().join(KMS),
        Some(&sock),
        &[
            ("VERDICT_RUNTIME", "thread_per_core"),
            ("VERDICT_WORKER_THREADS", "3"),
            ("VERDICT_CACHE_MAX_ENTRIES", "0"),
        ],
    ))
    .await;
    assert_eq!(running.loop_connections(), Some(vec![0, 0, 0]));
    let mut clients = Vec::new();
    for i in 0..6 {
        let channel = if i % 2 == 0 {
            tcp_channel(&running).await
        } else {
            uds_channel(&sock).await
        };
        clients.push(proto::authorizer_client::AuthorizerClient::new(channel));
    }
    // Every connection is answered, many calls at once on each.
    let cases = example_requests();
    let evals = verdict_eval(dir.path(), &cases);
    let mut calls = Vec::new();
    for c in &clients {
        for ((req, _), eval) in cases.iter().cloned().zip(evals.iter().cloned()) {
            let mut c = c.clone();
            calls.push(tokio::spawn(async move {
                let r = c.authorize(req).await.unwrap().into_inner();
                same_as_eval(&r, &eval);
            }));
        }
    }
    for call in calls {
        call.await.unwrap();
    }
    // Six connections over three loops, two each, TCP and Unix socket
    // counted together.
    assert_eq!(running.loop_connections(), Some(vec![2, 2, 2]));
    // Closed connections leave their loop's count.
    clients.truncate(3);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while running
        .loop_connections()
        .is_some_and(|c| c.iter().sum::<usize>() != 3)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            running.loop_connections()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Graceful shutdown stops every loop.
    tokio::time::timeout(std::time::Duration::from_secs(20), running.shutdown())
        .await
        .unwrap();
}
