//! Property tests: whatever the input, the parser, the loader and request
//! validation answer with a value or an error, never a panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use proptest::prelude::*;
use serde_json::{Map, Value};
use verdict::bundle::{LoadOptions, load};
use verdict::eval::{Request, RequestLimits, RequestParts};
use verdict::policy::locate::Position;
use verdict::policy::template::Template;
use verdict::policy::{PolicyKind, check_place, locate, parse_document, value};

const KEYS: &[&str] = &[
    "Version",
    "Id",
    "Statement",
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Principal",
    "NotPrincipal",
    "Condition",
    "AWS",
    "Service",
    "StringEquals",
    "StringLike",
    "ForAnyValue:StringNotLikeIfExists",
    "NumericLessThan",
    "DateGreaterThan",
    "IpAddress",
    "ArnLike",
    "Null",
    "Bool",
    "BinaryEquals",
    "aws:SourceIp",
    "kms:EncryptionContext:a",
    "x",
];
const STRINGS: &[&str] = &[
    "2012-10-17",
    "2008-10-17",
    "Allow",
    "Deny",
    "allow",
    "*",
    "s3:*",
    "kms:Decrypt",
    "*:x",
    "arn:aws:s3:::b/*",
    "arn:aws:kms:*:111122223333:key/*",
    "arn:aws:s*:::x",
    "arn:",
    "111122223333",
    "arn:aws:iam::111122223333:root",
    "arn:aws:iam::111122223333:user/a",
    "arn:aws:sts::111122223333:assumed-role/R/s",
    "10.0.0.0/8",
    "::1",
    "true",
    "2026-11-28T00:00:00Z",
    "1.5",
    "-0",
    "QUJD",
    "${aws:username}",
    "${aws:PrincipalTag/t, 'd''x'}",
    "${",
    "${*}",
    "",
    "\u{0}",
    "é",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(STRINGS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// Documents that look like policies, so the parser gets past the first element.
fn policy_like() -> impl Strategy<Value = Value> {
    (
        json(),
        prop::collection::vec(json(), 0..4),
        prop::sample::select(&["2012-10-17", "2008-10-17"][..]),
    )
        .prop_map(|(extra, statements, version)| {
            let mut doc = Map::new();
            doc.insert("Version".into(), Value::from(version));
            let statements = statements
                .into_iter()
                .map(|s| match s {
                    Value::Object(mut m) => {
                        m.entry("Effect").or_insert(Value::from("Allow"));
                        Value::Object(m)
                    }
                    other => other,
                })
                .collect();
            doc.insert("Statement".into(), Value::Array(statements));
            if let Value::Object(m) = extra {
                for (k, v) in m {
                    if k != "Statement" {
                        doc.insert(k, v);
                    }
                }
            }
            Value::Object(doc)
        })
}

fn parse_everywhere(text: &str) {
    if let Ok(parsed) = parse_document(text, &|_| Position::default()) {
        for kind in [
            PolicyKind::Identity,
            PolicyKind::Resource,
            PolicyKind::KeyPolicy,
            PolicyKind::Scp,
            PolicyKind::Rcp,
            PolicyKind::Session,
        ] {
            let _ = check_place(&parsed.document, kind);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        parse_everywhere(&text);
        let _ = locate::check_limits(&text, 32, 64);
        let _ = locate::pointer_at_offset(&text, bytes.len() / 2);
        let _ = locate::offset_of_pointer(&text, "/Statement/0");
        let _ = locate::element_offsets(&text, "/Statement");
    }

    #[test]
    fn random_json_never_panics(v in json()) {
        parse_everywhere(&v.to_string());
    }

    #[test]
    fn policy_like_json_never_panics(v in policy_like()) {
        let text = serde_json::to_string_pretty(&v).unwrap();
        parse_everywhere(&text);
        let _ = locate::pointer_at_offset(&text, text.len() / 3);
    }

    #[test]
    fn values_and_templates_never_panic(s in ".{0,40}") {
        let _ = value::parse_number(&s);
        let _ = value::parse_date(&s);
        let _ = value::parse_ip_net(&s);
        let _ = value::parse_base64(&s);
        let (t, _) = Template::parse(&s, true);
        prop_assert_eq!(t.source(), s.clone());
        let _ = t.split_colons(5);
    }

    #[test]
    fn requests_never_panic(p in prop::sample::select(STRINGS), a in ".{0,20}", r in prop::sample::select(STRINGS),
                            k in ".{0,10}", sp in proptest::option::of(json())) {
        let parts = RequestParts {
            principal: p.to_owned(),
            action: a,
            resource: r.to_owned(),
            context: vec![(k, vec![String::new()])],
            session_policy: sp.map(|v| v.to_string()),
            explain: false,
        };
        let _ = Request::new(parts, &RequestLimits::default());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random content in every bundle file: the loader reports, never panics.
    #[test]
    fn random_bundles_never_panic(files in prop::collection::vec((0usize..7, json()), 1..7)) {
        let names = ["manifest.json", "principals.json", "resources.json", "accounts.json", "grants.json",
                     "policies/p.json", "tests/t.json"];
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::create_dir_all(dir.path().join("tests")).unwrap();
        std::fs::write(dir.path().join("manifest.json"), r#"{"revision": "r"}"#).unwrap();
        for (i, v) in files {
            std::fs::write(dir.path().join(names[i]), v.to_string()).unwrap();
        }
        let opts = LoadOptions { with_tests: true, ..Default::default() };
        if let Ok(loaded) = load(dir.path(), &opts) {
            let _ = verdict::suite::parse_tests(&loaded.bundle, &RequestLimits::default());
        }
    }
}
