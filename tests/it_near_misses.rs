//! "Why not" end to end: a bundle whose ImplicitDenys come close in every
//! way a near miss names (a resource, a condition, a key policy's
//! delegation, a grant's constraint, a `CreateGrant` beyond a grant, a
//! refusing boundary's statements and a policy of it with none), asked
//! with `explain` over gRPC against the real server with the decision log
//! on, and through `verdict eval`. The three say the same near misses, and
//! every decision log record is valid against
//! `docs/decision-log.schema.json`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::*;
use verdict::proto::{self, AuthorizeRequest, ContextValues};

const ACCOUNT_KEY: &str = "arn:aws:kms:us-west-2:111122223333:key/k1";
const BOUNDED: &str = "arn:aws:iam::111122223333:role/Bounded";
const PLAIN: &str = "arn:aws:iam::111122223333:role/Plain";
const REGIONAL: &str = "arn:aws:iam::111122223333:role/Regional";

fn write(dir: &Path, name: &str, v: &Value) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn policy(statements: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

fn bundle(dir: &Path) {
    write(dir, "manifest.json", &json!({"revision": "near-misses-1"}));
    write(
        dir,
        "principals.json",
        &json!({"principals": {
            BOUNDED: {"policies": ["allow-kms"], "boundary": "boundary"},
            PLAIN: {},
            REGIONAL: {"policies": ["regional"]},
        }}),
    );
    write(
        dir,
        "policies/allow-kms.json",
        &policy(json!([{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}])),
    );
    write(
        dir,
        "policies/boundary.json",
        &policy(json!([
            {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "arn:aws:kms:*:*:key/other"},
            {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}},
        ])),
    );
    write(
        dir,
        "policies/regional.json",
        &policy(
            json!([{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"StringEquals": {"kms:ViaService": "s3.us-west-2.amazonaws.com"}}}]),
        ),
    );
    write(
        dir,
        "policies/keys/k1.json",
        &policy(json!([{"Sid": "Delegate", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
            "Action": "kms:*", "Resource": "*"}])),
    );
    write(
        dir,
        "resources.json",
        &json!({ACCOUNT_KEY: {"policy": "keys/k1"}}),
    );
    write(
        dir,
        "grants.json",
        &json!([
            {"grant_id": "g-subset", "key": ACCOUNT_KEY, "grantee": PLAIN,
             "operations": ["Decrypt"],
             "constraints": {"encryption_context_subset": {"dept": "payments"}}},
            {"grant_id": "g-create", "key": ACCOUNT_KEY, "grantee": PLAIN,
             "operations": ["Decrypt", "CreateGrant"],
             "constraints": {"encryption_context_equals": {"dept": "it"}}},
        ]),
    );
}

/// One request: principal, action, context, and the near-miss kinds
/// its answer must show.
type Case = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    &'static [&'static str],
);

fn cases() -> Vec<Case> {
    vec![
        // The boundary refuses: its Decrypt statement misses the resource.
        (BOUNDED, "kms:Decrypt", vec![], &["Resource"]),
        // Its Encrypt statement's condition is false.
        (
            BOUNDED,
            "kms:Encrypt",
            vec![("aws:RequestedRegion", "us-west-2")],
            &["Condition"],
        ),
        // No statement of the boundary covers DescribeKey.
        (BOUNDED, "kms:DescribeKey", vec![], &["NoAllow"]),
        // The key policy delegates, the identity policy's condition fails.
        (
            REGIONAL,
            "kms:Decrypt",
            vec![],
            &["Condition", "Delegation"],
        ),
        // Both grants' constraints fail; the key policy delegates to nobody.
        (
            PLAIN,
            "kms:Decrypt",
            vec![("kms:EncryptionContext:dept", "hr")],
            &["Delegation", "GrantConstraint"],
        ),
        // CreateGrant asks for an operation the grant does not give.
        (
            PLAIN,
            "kms:CreateGrant",
            vec![
                ("kms:GrantOperations", "Encrypt"),
                ("kms:GrantConstraintType", "EncryptionContextEquals"),
            ],
            &["Delegation", "GrantRequest"],
        ),
        // ... or a constraint type that loosens the grant's.
        (
            PLAIN,
            "kms:CreateGrant",
            vec![
                ("kms:GrantOperations", "Decrypt"),
                ("kms:GrantConstraintType", "EncryptionContextSubset"),
            ],
            &["Delegation", "GrantRequest"],
        ),
    ]
}

/// A gRPC near miss in the JSON shape `verdict eval` prints.
fn proto_json(n: &proto::NearMiss) -> Value {
    let s = n.statement.as_ref().unwrap();
    let mut v = json!({
        "policy_id": s.policy_id, "kind": s.kind, "index": s.index, "sid": s.sid,
        "effect": s.effect, "failed": n.failed,
    });
    if let Some(level) = s.level {
        v["level"] = json!(level);
    }
    if let (Some(line), Some(column)) = (s.line, s.column) {
        v["line"] = json!(line);
        v["column"] = json!(column);
    }
    let value = || (!n.request_value_absent).then(|| n.request_values.first().cloned().unwrap());
    match n.failed.as_str() {
        "Condition" => {
            v["condition"] = json!({
                "index": n.condition_index, "operator": n.operator, "key": n.key,
                "request_values": (!n.request_value_absent).then_some(&n.request_values),
                "policy_values": n.policy_values,
            });
        }
        "GrantConstraint" => {
            v["missing_context_pair"] = match &n.key {
                Some(k) => json!([k, n.request_values[0]]),
                None => Value::Null,
            };
        }
        "GrantRequest" => v["grant_request"] = json!({"key": n.key, "value": value()}),
        _ => {}
    }
    v
}

fn without_position(list: &Value) -> Value {
    let mut list = list.clone();
    for n in list.as_array_mut().unwrap() {
        let m = n.as_object_mut().unwrap();
        m.remove("line");
        m.remove("column");
    }
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_misses_agree_over_grpc_the_decision_log_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("bundle");
    bundle(&b);

    let (telemetry, log_in) = log_telemetry();
    let running = start_with(&config(&b, None, &[]), telemetry).await;
    let mut c = client(&running).await;

    let mut lines = Vec::new();
    let mut answers = Vec::new();
    for (principal, action, context, _) in cases() {
        let ctx: HashMap<String, ContextValues> = context
            .iter()
            .map(|(k, v)| {
                let values = v.split(',').map(str::to_owned).collect();
                ((*k).to_owned(), ContextValues { values })
            })
            .collect();
        let r = c
            .authorize(AuthorizeRequest {
                principal: principal.into(),
                action: action.into(),
                resource: ACCOUNT_KEY.into(),
                context: ctx,
                explain: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        answers.push(r);
        let context: serde_json::Map<String, Value> = context
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v.split(',').collect::<Vec<_>>())))
            .collect();
        lines.push(
            json!({"principal": principal, "action": action, "resource": ACCOUNT_KEY,
                   "context": context, "explain": true})
            .to_string(),
        );
    }
    let log = shutdown_and_read_log(running, log_in).await;

    let requests = dir.path().join("requests.jsonl");
    std::fs::write(&requests, lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(["eval", "--bundle", b.to_str().unwrap(), "--requests"])
        .arg(&requests)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evals: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/decision-log.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert_eq!(log.len(), cases().len());
    for (((case, grpc), eval), record) in cases().iter().zip(&answers).zip(&evals).zip(&log) {
        let (principal, action, _, kinds) = case;
        let what = format!("{principal} {action}");
        assert_eq!(eval["decision"], "ImplicitDeny", "{what}: {eval}");
        let want = &eval["explanation"]["near_misses"];
        let shown: BTreeSet<&str> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["failed"].as_str().unwrap())
            .collect();
        assert_eq!(shown, kinds.iter().copied().collect(), "{what}: {want}");
        let over_grpc: Vec<Value> = grpc
            .explanation
            .as_ref()
            .unwrap()
            .near_misses
            .iter()
            .map(proto_json)
            .collect();
        assert_eq!(
            without_position(&json!(over_grpc)),
            without_position(want),
            "{what}: gRPC"
        );
        assert_eq!(&record["explanation"]["near_misses"], want, "{what}: log");
        let errors: Vec<String> = validator
            .iter_errors(record)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{what}: {errors:?}");
    }
}
