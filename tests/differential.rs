//! Differential property test: random bundles (principals with groups and
//! boundaries, policies with wildcards, NotAction/NotResource/NotPrincipal,
//! every condition operator, variables, SCP and RCP levels, key policies,
//! grants, key states) and random requests drawn to hit them. The compiled
//! evaluator must return exactly the reference interpreter's decision:
//! outcome, matched statements, missing context keys and explanation.
//!
//! 10,000 bundles by default (each decided for several requests); set
//! `VERDICT_DIFF_CASES=1000000` for a long run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};
use verdict::bundle::source::{RawBundle, RawFile};
use verdict::bundle::{LoadOptions, load_raw};
use verdict::compile::Snapshot;
use verdict::eval::{EvalOptions, Request, RequestLimits, RequestParts, logic, reference};

const A: &str = "111122223333";
const B: &str = "444455556666";

const ACTIONS: &[&str] = &[
    "*",
    "*",
    "s3:*",
    "kms:*",
    "kms:*",
    "s3:*",
    "s3:GetObject",
    "s3:Get*",
    "s3:PutObject",
    "s3:?etObject",
    "kms:*",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:Describe*",
    "kms:CreateGrant",
    "kms:RetireGrant",
    "kms:ScheduleKeyDeletion",
    "kms:GetKeyPolicy",
    "iam:ListUsers",
    "IAM:listusers",
    "sts:AssumeRole",
    "sts:*",
];
const REQ_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:ListBucket",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:DescribeKey",
    "kms:CreateGrant",
    "kms:RetireGrant",
    "kms:ScheduleKeyDeletion",
    "kms:GetKeyPolicy",
    "kms:GenerateDataKey",
    "iam:ListUsers",
    "ec2:RunInstances",
    "sts:AssumeRole",
    "sts:TagSession",
];
const RESOURCES: &[&str] = &[
    "*",
    "*",
    "*",
    "*",
    "arn:aws:s3:::bucket/*",
    "arn:aws:s3:::bucket/${aws:username}/*",
    "arn:aws:s3:::bucket-${aws:PrincipalTag/team, 'shared'}/*",
    "arn:aws:s3:::b*",
    "arn:aws:s3:::bucket/?",
    "arn:aws:kms:*:111122223333:key/*",
    "arn:aws:kms:us-west-2:*:key/k1",
    "arn:aws:kms:*:${aws:PrincipalAccount}:key/*",
    "arn:aws:KMS:US-WEST-2:111122223333:key/k2",
    "arn:aws:s3",
    "arn:aws:s3:::*",
    "arn:*",
    "arn:aws:kms:us-west-2",
    "arn:aws:s3:us-?ast-1",
];
const REQ_RESOURCES: &[&str] = &[
    "*",
    "arn:aws:s3:::bucket/x",
    "arn:aws:s3:::bucket/alice/x",
    "arn:aws:s3:::bucket-shared/y",
    "arn:aws:s3:::bucket-red/y",
    "arn:aws:s3:::b1",
    "arn:aws:kms:us-west-2:111122223333:key/k1",
    "arn:aws:kms:us-west-2:111122223333:key/k2",
    "arn:aws:kms:us-east-1:111122223333:key/k3",
    "arn:aws:kms:us-west-2:444455556666:key/k4",
    "arn:aws:kms:us-west-2:111122223333:key/missing",
    "arn:aws:kms:us-west-2:111122223333:alias/a",
    "arn:aws:iam::aws:policy/ReadOnlyAccess",
    "arn:aws:iam::111122223333:role/app/R1",
    "arn:aws:iam::444455556666:role/Ext",
];
const KEYS: &[&str] = &[
    "k1",
    "k2",
    "aws:PrincipalTag/team",
    "aws:username",
    "aws:SourceIp",
    "kms:EncryptionContext:dept",
    "kms:EncryptionContext:Dept",
    "aws:TagKeys",
    "aws:CurrentTime",
    "aws:EpochTime",
    "aws:ResourceTag/env",
    "aws:PrincipalAccount",
    "kms:EncryptionContextKeys",
    "aws:RequestedRegion",
    "aws:userid",
    "aws:PrincipalArn",
    "aws:PrincipalType",
    "kms:ResourceAliases",
    "kms:KeySpec",
    "aws:ResourceAccount",
    "aws:PrincipalOrgID",
    "kms:GrantOperations",
    "kms:GrantConstraintType",
    "verdict:GrantId",
    "aws:SecureTransport",
    "k3",
];
const BASES: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Null",
];
const STRINGS: &[&str] = &[
    "a",
    "A",
    "red",
    "RED",
    "payments",
    "Payments",
    "alice",
    "x*",
    "*",
    "?ed",
    "${aws:username}",
    "${aws:PrincipalTag/team}",
    "${aws:PrincipalTag/nope, 'red'}",
    "${k1}",
    "${*}",
    "${aws:TagKeys}",
    "",
    "111122223333",
    "us-west-2",
    "Decrypt",
    "EncryptionContextSubset",
    "g1",
    "alias/a",
    "SYMMETRIC_DEFAULT",
    "arn:aws:iam::111122223333:user/alice",
    "arn:aws:iam::111122223333:role/app/R1",
    "Account",
    "AssumedRole",
    "AIDAALICE",
    "AROAR1:s1",
    "o-abc",
];
const NUMBERS: &[&str] = &["0", "10", "10.0", "-1.5", "1795824000", "ten"];
const DATES: &[&str] = &[
    "2026-11-28",
    "2026-11-28T06:00:00Z",
    "2027",
    "1795824000",
    "2026-11-28T08:00:00+02:00",
    "2026-13-01",
];
const IPS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.2.3",
    "2001:db8::/32",
    "192.0.2.1/24",
    "123456789012",
];
const ARNS: &[&str] = &[
    "arn:aws:iam::111122223333:user/*",
    "arn:aws:iam::*:role/app/*",
    "arn:aws:s3:::bucket",
    "arn:aws:s3",
    "arn:aws:iam::${aws:PrincipalAccount}:user/${aws:username}",
    "arn:aws:kms:*:*:key/*",
];
const REQ_VALUES: &[&str] = &[
    "a",
    "A",
    "red",
    "payments",
    "Payments",
    "alice",
    "x",
    "xyz",
    "",
    "10",
    "10.00",
    "-1.5",
    "abc",
    "2026-11-28T00:00:00Z",
    "2026-11-28T06:00:00Z",
    "2027-01-01",
    "1795824000",
    "10.1.2.3",
    "11.0.0.1",
    "2001:db8::1",
    "::ffff:10.0.0.1",
    "true",
    "FALSE",
    "TrUe",
    "yes",
    "YQ==",
    "arn:aws:logs",
    "arn:aws:iam::111122223333:user/alice",
    "arn:aws:iam::111122223333:role/app/R1",
    "arn:aws:s3:::bucket",
    "us-west-2",
    "Decrypt",
    "Encrypt",
    "EncryptionContextSubset",
    "EncryptionContextEquals",
    "g1",
    "g2",
    "dept",
    "Dept",
];

fn condition_value(base: &str, v2012: bool) -> BoxedStrategy<Value> {
    let pool: &'static [&'static str] = match base {
        b if b.starts_with("Numeric") => NUMBERS,
        b if b.starts_with("Date") => DATES,
        "Bool" if v2012 => &["true", "false", "${aws:PrincipalTag/secure}", "maybe"],
        "Bool" => &["true", "false", "maybe"],
        "BinaryEquals" => &["YQ==", "QUJD", "not base64!"],
        "IpAddress" | "NotIpAddress" => IPS,
        b if b.starts_with("Arn") => ARNS,
        "Null" => &["true", "false", "absent"],
        _ => STRINGS,
    };
    prop::collection::vec(select(pool), 1..3)
        .prop_map(|v| if v.len() == 1 { json!(v[0]) } else { json!(v) })
        .boxed()
}

fn operator() -> impl Strategy<Value = String> {
    (select(BASES), 0..6u8).prop_map(|(base, q)| {
        if base == "Null" {
            // U47: a set qualifier on `Null` is ignored.
            return match q {
                1 => "ForAllValues:Null".to_owned(),
                2 => "ForAnyValue:Null".to_owned(),
                _ => base.to_owned(),
            };
        }
        match q {
            0 => format!("{base}IfExists"),
            1 => format!("ForAllValues:{base}"),
            2 => format!("ForAnyValue:{base}"),
            _ => base.to_owned(),
        }
    })
}

fn condition(v2012: bool) -> impl Strategy<Value = Value> {
    prop::collection::vec(
        operator().prop_flat_map(move |op| {
            let base = op
                .trim_start_matches("ForAllValues:")
                .trim_start_matches("ForAnyValue:")
                .trim_end_matches("IfExists")
                .to_owned();
            (Just(op), select(KEYS), condition_value(&base, v2012))
        }),
        0..3,
    )
    .prop_map(|entries| {
        let mut block = serde_json::Map::new();
        for (op, key, value) in entries {
            let slot = block.entry(op).or_insert_with(|| json!({}));
            let keys = slot.as_object_mut().unwrap();
            if !keys.keys().any(|k| k.eq_ignore_ascii_case(key)) {
                keys.insert(key.to_owned(), value);
            }
        }
        Value::Object(block)
    })
}

fn principal_value() -> impl Strategy<Value = Value> {
    select(vec![
        json!("*"),
        json!({"AWS": A}),
        json!({"AWS": B}),
        json!({"AWS": format!("arn:aws:iam::{A}:root")}),
        json!({"AWS": format!("arn:aws:iam::{A}:user/alice")}),
        json!({"AWS": format!("arn:aws:iam::{A}:role/app/R1")}),
        json!({"AWS": format!("arn:aws:sts::{A}:assumed-role/R1/s1")}),
        json!({"AWS": format!("arn:aws:sts::{A}:federated-user/fed")}),
        json!({"AWS": [format!("arn:aws:iam::{B}:user/bob"), A]}),
        json!({"AWS": [A, format!("arn:aws:iam::{A}:role/app/R1"), format!("arn:aws:sts::{A}:assumed-role/R1/s1")]}),
        json!({"Service": "s3.amazonaws.com"}),
    ])
}

/// `kind`: 0 identity-like, 1 key policy, 2 RCP, 3 other resource policy.
/// The resource patterns a policy of `kind` may hold (U43): an RCP (2)
/// takes no short pattern, a policy attached as an SCP (5) only short ones
/// whose last piece ends in `*`.
fn resources_for(kind: u8) -> &'static [&'static str] {
    const SIX_PIECES: &[&str] = &[
        "*",
        "arn:aws:s3:::bucket/*",
        "arn:aws:s3:::b*",
        "arn:aws:kms:*:111122223333:key/*",
        "arn:aws:kms:us-west-2:*:key/k1",
        "arn:aws:s3:::*",
    ];
    const SCP_SAFE: &[&str] = &[
        "*",
        "arn:aws:s3:::bucket/*",
        "arn:aws:kms:*:111122223333:key/*",
        "arn:aws:s3:::*",
        "arn:*",
        "arn:aws:kms:us-west-2:*",
    ];
    match kind {
        2 => SIX_PIECES,
        5 => SCP_SAFE,
        _ => RESOURCES,
    }
}

fn statement(kind: u8, v2012: bool) -> impl Strategy<Value = Value> {
    (
        prop::bool::weighted(0.75),
        prop::collection::vec(select(ACTIONS), 1..3),
        0..5u8,
        prop::collection::vec(select(resources_for(kind)), 1..3),
        0..6u8,
        principal_value(),
        0..5u8,
        prop_oneof![3 => Just(json!({})), 2 => condition(v2012)],
    )
        .prop_map(
            move |(
                allow,
                actions,
                not_action,
                resources,
                resource_form,
                principal,
                not_principal,
                cond,
            )| {
                let mut s = serde_json::Map::new();
                let effect = if allow { "Allow" } else { "Deny" };
                s.insert("Effect".into(), json!(effect));
                let action_key = if not_action == 0 {
                    "NotAction"
                } else {
                    "Action"
                };
                s.insert(action_key.into(), json!(actions));
                match resource_form {
                    // A trust policy (kind 4) names no resource.
                    _ if kind == 4 => {}
                    0 => {
                        s.insert("NotResource".into(), json!(resources));
                    }
                    1 if kind == 1 => {}
                    _ => {
                        s.insert("Resource".into(), json!(resources));
                    }
                }
                if kind > 0 && kind != 5 {
                    if !allow && not_principal == 0 && kind != 2 && kind != 4 {
                        s.insert("NotPrincipal".into(), principal);
                    } else {
                        s.insert("Principal".into(), principal);
                    }
                }
                if cond.as_object().is_some_and(|c| !c.is_empty()) {
                    s.insert("Condition".into(), cond);
                }
                Value::Object(s)
            },
        )
}

fn policy(kind: u8) -> impl Strategy<Value = Value> {
    // Mostly small policies; some large enough to be indexed by action.
    (
        any::<bool>(),
        prop_oneof![4 => Just(1usize..4), 1 => Just(8usize..14)],
    )
        .prop_flat_map(move |(v2012, count)| {
            prop::collection::vec(statement(kind, v2012), count).prop_map(move |st| {
                let mut d = json!({"Statement": st});
                if v2012 {
                    d["Version"] = json!("2012-10-17");
                }
                d
            })
        })
}

#[derive(Debug, Clone)]
struct World {
    files: Vec<(String, String)>,
    trust_session_tags: bool,
}

fn world() -> impl Strategy<Value = World> {
    (
        (policy(5), policy(0), prop::collection::vec(policy(5), 4)),
        prop::collection::vec(policy(1), 4),
        prop::collection::vec(policy(3), 2),
        prop::collection::vec(policy(2), 1..2),
        (prop::collection::vec(any::<bool>(), 16), prop::collection::vec(policy(4), 2)),
        select(&["Enabled", "Disabled", "PendingDeletion", "PendingImport", "Updating"][..]),
        0..4u8,
        any::<bool>(),
    )
        .prop_map(|((p0, p1, rest), rbps, bucket_policies, rcps, (flags, trusts), state, scp_shape, trust)| {
            // Every identity policy but p1 is also attached as an SCP somewhere.
            let ids: Vec<Value> = [p0, p1].into_iter().chain(rest).collect();
            let f = |i: usize| flags[i];
            let mut files = vec![("manifest.json".to_owned(), json!({"revision": "diff"}).to_string())];
            for (i, p) in ids.iter().enumerate() {
                files.push((format!("policies/p{i}.json"), p.to_string()));
            }
            files.push(("policies/scp-full.json".to_owned(), json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}).to_string()));
            for (i, p) in rcps.iter().enumerate() {
                files.push((format!("policies/rcp{i}.json"), p.to_string()));
            }
            let mut alice = json!({"policies": ["p0"], "tags": {"team": "red", "secure": "true"}, "unique_id": "AIDAALICE"});
            if f(0) {
                alice["groups"] = json!([format!("arn:aws:iam::{A}:group/G")]);
            }
            if f(1) {
                alice["boundary"] = json!("p3");
            }
            let mut r1 = json!({"policies": ["p1"], "tags": {"team": "blue"}, "unique_id": "AROAR1"});
            if f(2) {
                r1["boundary"] = json!("p4");
            }
            let principals = json!({
                "groups": {format!("arn:aws:iam::{A}:group/G"): {"policies": ["p2"]}},
                "principals": {
                    format!("arn:aws:iam::{A}:user/alice"): alice,
                    format!("arn:aws:iam::{A}:role/app/R1"): r1,
                    format!("arn:aws:iam::{B}:user/bob"): {"policies": ["p5"]},
                    format!("arn:aws:iam::{A}:role/aws-service-role/x.amazonaws.com/Linked"): {"policies": ["p5"]},
                }
            });
            files.push(("principals.json".into(), principals.to_string()));
            let key = |i: usize| rbps[i].clone();
            let mut resources = json!({
                format!("arn:aws:kms:us-west-2:{A}:key/k1"): {"policy": key(0), "tags": {"env": "prod"}, "aliases": ["alias/a"],
                    "key_spec": "SYMMETRIC_DEFAULT", "state": state},
                format!("arn:aws:kms:us-west-2:{A}:key/k2"): {"policy": key(1), "aws_managed": f(3)},
                format!("arn:aws:kms:us-east-1:{A}:key/k3"): {"policy": key(2)},
                format!("arn:aws:kms:us-west-2:{B}:key/k4"): {"policy": key(3)},
                "arn:aws:s3:::b1": {"policy": bucket_policies[0].clone(), "account": if f(4) { A } else { B }, "tags": {"env": "dev"}},
            });
            if f(5) {
                resources["arn:aws:s3:::bucket/x"] = json!({"policy": bucket_policies[1].clone(), "account": A});
            }
            // Trust policies (U45): on the listed role, and on a role of B.
            if f(6) {
                resources[format!("arn:aws:iam::{A}:role/app/R1")] = json!({"policy": trusts[0].clone()});
            }
            resources[format!("arn:aws:iam::{B}:role/Ext")] = json!({"policy": trusts[1].clone()});
            files.push(("resources.json".into(), resources.to_string()));
            let scps = match scp_shape {
                0 => json!(["p5", "scp-full"]),
                1 => json!([["scp-full"], ["p4", "scp-full"], ["p0"]]),
                2 => json!(["p2", "p3"]),
                _ => Value::Null,
            };
            let mut a = json!({"org_id": "o-abc", "org_paths": ["o-abc/r-1/"]});
            if !scps.is_null() {
                a["scps"] = scps;
            }
            if f(6) {
                a["rcps"] = json!(if f(7) { json!(["rcp0"]) } else { json!([["rcp0"], ["rcp0"]]) });
            }
            let mut b = json!({});
            if !f(6) {
                b["rcps"] = json!(["rcp0"]);
            }
            if f(8) {
                b["scps"] = json!(["p5"]);
            }
            files.push(("accounts.json".into(), json!({A: a, B: b}).to_string()));
            let mut grants = vec![json!({"grant_id": "g1", "key": format!("arn:aws:kms:us-west-2:{A}:key/k1"),
                "grantee": if f(9) { format!("arn:aws:iam::{A}:role/app/R1") } else { format!("arn:aws:iam::{A}:user/alice") },
                "operations": ["Decrypt", "CreateGrant", "RetireGrant", "DescribeKey"],
                "constraints": if f(10) { json!({"encryption_context_subset": {"dept": "payments"}}) } else { json!({"encryption_context_equals": {"Dept": "payments"}}) },
                "retiring_principal": format!("arn:aws:sts::{A}:assumed-role/R1/s1")})];
            if f(11) {
                grants.push(json!({"grant_id": "g2", "key": format!("arn:aws:kms:us-west-2:{B}:key/k4"),
                    "grantee": if f(12) { A.to_owned() } else { format!("arn:aws:iam::{A}:user/alice") },
                    "operations": ["Decrypt", "Encrypt"]}));
            }
            files.push(("grants.json".into(), json!(grants).to_string()));
            World {
                files,
                trust_session_tags: trust,
            }
        })
}

fn request() -> impl Strategy<Value = (RequestParts, u64)> {
    let principals = vec![
        format!("arn:aws:iam::{A}:user/alice"),
        format!("arn:aws:iam::{A}:user/ALICE"),
        format!("arn:aws:sts::{A}:assumed-role/R1/s1"),
        format!("arn:aws:sts::{A}:assumed-role/R1/s2"),
        format!("arn:aws:iam::{A}:role/other/R1"),
        format!("arn:aws:iam::{A}:root"),
        format!("arn:aws:iam::{B}:user/bob"),
        format!("arn:aws:iam::{B}:root"),
        format!("arn:aws:sts::{A}:federated-user/fed"),
        format!("arn:aws:sts::{A}:assumed-role/Linked/s"),
        "s3.amazonaws.com".to_owned(),
    ];
    (
        select(principals),
        select(REQ_ACTIONS),
        select(REQ_RESOURCES),
        prop::collection::vec((select(KEYS), prop::collection::vec(select(REQ_VALUES), 0..3)), 0..4),
        prop_oneof![
            2 => Just(vec![]),
            1 => Just(vec![("kms:EncryptionContext:dept", "payments")]),
            1 => Just(vec![("kms:EncryptionContext:Dept", "payments"), ("kms:GrantOperations", "Decrypt"), ("kms:GrantConstraintType", "EncryptionContextEquals")]),
        ],
        proptest::option::weighted(0.2, policy(0)),
        any::<bool>(),
        0u64..3,
    )
        .prop_map(|(principal, action, resource, context, extra, sp, explain, clock)| {
            let mut ctx: Vec<(String, Vec<String>)> = Vec::new();
            for (k, v) in extra {
                ctx.push((k.to_owned(), vec![v.to_owned()]));
            }
            for (k, v) in context {
                if !ctx.iter().any(|(e, _)| e.eq_ignore_ascii_case(k)) {
                    ctx.push((k.to_owned(), v.into_iter().map(str::to_owned).collect()));
                }
            }
            let is_session = principal.contains(":assumed-role/") || principal.contains(":role/") || principal.contains("federated-user");
            (
                RequestParts {
                    principal,
                    action: action.to_owned(),
                    resource: resource.to_owned(),
                    context: ctx,
                    session_policy: sp.filter(|_| is_session).map(|v| v.to_string()),
                    explain,
                },
                clock,
            )
        })
}

fn cases() -> u32 {
    std::env::var("VERDICT_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_global_rejects: 1_000_000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_equals_reference(w in world(), requests in prop::collection::vec(request(), 4)) {
        let raw = RawBundle {
            source: "differential".into(),
            files: w.files.iter().map(|(p, t)| RawFile { path: p.clone(), bytes: t.clone().into_bytes() }).collect(),
            diagnostics: Vec::new(),
        };
        let loaded = match load_raw(raw, &LoadOptions::default()) {
            Ok(l) => l,
            Err(e) => {
                // Generated bundles are valid by construction; say why if not.
                let d: Vec<String> = e.diagnostics().iter().map(ToString::to_string).collect();
                panic!("generated bundle does not load:\n{}", d.join("\n"));
            }
        };
        let opts = EvalOptions {
            trust_session_tags: w.trust_session_tags,
            default_context: vec![("k3".into(), vec!["a".into()]), ("kms:EncryptionContext:zone".into(), vec!["z".into()])],
        };
        let snapshot = Snapshot::compile(&loaded.bundle, &opts, 7);
        for (parts, clock) in requests {
            let Ok(req) = Request::new(parts, &RequestLimits::default()) else { continue };
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_800_000 + clock * 50_000);
            let want = reference::evaluate(&loaded.bundle, &req, &opts, now);
            let got = logic::evaluate(&snapshot, &req, now);
            prop_assert_eq!(&got, &want, "request {:?}", req);
        }
    }
}
