use super::*;
use crate::policy::err::{PolicyErrorKind as E, PolicyWarningKind as W};

fn parse(text: &str) -> Result<Parsed, Vec<PolicyError>> {
    parse_document(text, &|_| Position::default())
}

fn errors(text: &str) -> Vec<(String, E)> {
    parse(text)
        .unwrap_err()
        .into_iter()
        .map(|e| (e.pointer, e.kind))
        .collect()
}

fn warnings(text: &str) -> Vec<W> {
    parse(text)
        .unwrap()
        .warnings
        .into_iter()
        .map(|w| w.kind)
        .collect()
}

#[test]
fn kms_guide_examples_parse() {
    let doc = r#"{
      "Version": "2012-10-17",
      "Statement": [
        {"Sid": "ReadOnlyAccessForAllKMSKeysInAccount", "Effect": "Allow",
         "Action": ["kms:GetPublicKey", "kms:DescribeKey", "tag:GetResources"],
         "Resource": "arn:aws:kms:*:111122223333:key/*"},
        {"Effect": "Deny", "Action": ["kms:DisableKey", "kms:ScheduleKeyDeletion"], "Resource": "*"}
      ]}"#;
    let p = parse(doc).unwrap();
    assert_eq!(p.document.statements.len(), 2);
    assert!(p.warnings.is_empty());
    let st = &p.document.statements[0];
    assert_eq!(st.effect, Effect::Allow);
    assert_eq!(
        st.action.items[0],
        ActionPattern::Named {
            service: "kms".into(),
            name: "getpublickey".into()
        }
    );
    let ResourcePattern::Arn(arn) = &st.resource.as_ref().unwrap().items[0] else {
        panic!("expected an ARN pattern");
    };
    assert_eq!(arn.pieces.len(), 6);
    assert_eq!(arn.pieces[5].source(), "key/*");
}

#[test]
fn effect_is_case_sensitive() {
    let e = errors(r#"{"Statement": {"Effect": "allow", "Action": "s3:*", "Resource": "*"}}"#);
    assert_eq!(
        e,
        vec![("/Statement/Effect".into(), E::Effect("allow".into()))]
    );
}

#[test]
fn every_error_is_reported() {
    let e = errors(
        r#"{"Version": "2013-01-01", "Statement": [
            {"Effect": "Allow", "Action": "*:Get*", "Resource": "arn:aws:s*:::x"},
            {"Effect": "Allow", "Action": "s3", "NotAction": "s3:x", "Resource": "bucket"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
             "Condition": {"StringEqualz": {"a": "b"}, "NumericLessThan": {"n": "ten"},
                           "IpAddress": {"aws:SourceIp": "10.0.0.300"}, "DateLessThan": {"d": "tomorrow"},
                           "ForAllValues:Null": {"k": "true"}, "NullIfExists": {"k": "true"},
                           "StringEquals": {"K": "1", "k": "2"},
                           "BinaryEquals": {"b": "!!"}, "Bool": {"x": "yes"}}}
        ]}"#,
    );
    let pointers: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        pointers,
        vec![
            "/Version",
            "/Statement/0/Action",
            "/Statement/0/Resource",
            "/Statement/1",
            "/Statement/1/Resource",
            "/Statement/2/Condition/StringEqualz",
            "/Statement/2/Condition/NullIfExists",
            "/Statement/2/Condition/StringEquals/k",
        ]
    );
    assert!(matches!(e[1].1, E::ActionServiceWildcard(_)));
    assert!(matches!(e[2].1, E::ResourceServiceWildcard(_)));
    assert_eq!(e[3].1, E::ExactlyOne("Action"));
}

#[test]
fn unknown_elements_and_duplicates_are_located() {
    let text = "{\"Statement\": [{\"Effect\": \"Allow\",\n \"Actions\": \"s3:*\"}]}";
    let e = parse(text).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].pointer, "/Statement/0/Actions");
    assert!(e[0].kind.to_string().contains("unknown field `Actions`"));
    let dup = "{\"Statement\": [], \"Statement\": []}";
    let e = parse(dup).unwrap_err();
    assert!(
        e[0].kind
            .to_string()
            .contains("duplicate field `Statement`")
    );
}

#[test]
fn numbers_keep_their_text() {
    let p = parse(
        r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"NumericEquals": {"s3:max-keys": 1.10}, "StringEquals": {"x": [1.10, true]}}}}"#,
    )
    .unwrap();
    let c = &p.document.statements[0].conditions[1];
    assert_eq!(
        &*c.values,
        &[
            ConditionValue::String(Template::plain("1.10")),
            ConditionValue::String(Template::plain("true"))
        ]
    );
}

#[test]
fn null_and_object_condition_values_are_errors() {
    let e = errors(
        r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"StringEquals": {"a": null, "b": [{"x": 1}]}}}}"#,
    );
    assert_eq!(
        e,
        vec![
            ("/Statement/Condition/StringEquals/a".into(), E::ValueType),
            ("/Statement/Condition/StringEquals/b/0".into(), E::ValueType)
        ]
    );
}

#[test]
fn variables_need_the_2012_version() {
    let w = warnings(
        r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:username}/*"}}"#,
    );
    assert_eq!(w, vec![W::VariablesNeedVersion]);
    let p = parse(r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:username}/*"}}"#).unwrap();
    let ResourcePattern::Arn(a) = &p.document.statements[0].resource.as_ref().unwrap().items[0]
    else {
        panic!()
    };
    assert!(a.pieces[5].has_variables());
}

#[test]
fn risky_patterns_warn() {
    let w = warnings(
        r#"{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::x",
         "Condition": {"ForAllValues:StringEquals": {"kms:EncryptionContext:app": "x"}}},
        {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:${aws:username}::b",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}, "StringEquals": {"aws:TagKeys": "a"},
                       "StringLike": {"s3:prefix": "${aws:TagKeys}/x${oops"}}}
    ]}"#,
    );
    assert!(w.contains(&W::NotActionWithAllow));
    assert!(w.contains(&W::NotResourceWithAllow));
    assert!(w.contains(&W::ForAllValuesInAllow("ForAllValues:StringEquals".into())));
    assert!(
        w.iter()
            .any(|w| matches!(w, W::SetOperatorOnSingleValued { .. }))
    );
    assert!(w.iter().any(|w| matches!(w, W::DenyOnOptionalKey { .. })));
    assert!(
        w.iter()
            .any(|w| matches!(w, W::PlainOperatorOnMultivalued { .. }))
    );
    assert!(w.contains(&W::MultivaluedVariable("aws:tagkeys".into())));
    assert!(w.contains(&W::MalformedVariable));
    assert!(w.contains(&W::VariableInArnPiece("region")));
}

#[test]
fn place_rules() {
    let key_policy = parse(
        r#"{"Statement": [{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt"}]}"#,
    )
    .unwrap()
    .document;
    let (e, w) = check_place(&key_policy, PolicyKind::KeyPolicy);
    assert!(e.is_empty());
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].kind, W::KeyPolicyWithoutResource);
    let (e, w) = check_place(&key_policy, PolicyKind::Identity);
    let kinds: Vec<_> = e.iter().map(|e| (e.pointer.as_str(), &e.kind)).collect();
    assert_eq!(kinds.len(), 3);
    assert_eq!(kinds[0].0, "/Statement/0/Principal");
    assert_eq!(kinds[2], ("/Statement/1", &E::MissingResource));
    assert!(w.iter().any(|w| matches!(w.kind, W::SidNotAlphanumeric(_))));

    let not_principal_allow = parse(
        r#"{"Statement": {"Effect": "Allow", "NotPrincipal": {"AWS": "111122223333"}, "Action": "s3:*", "Resource": "*"}}"#,
    )
    .unwrap()
    .document;
    let (e, _) = check_place(&not_principal_allow, PolicyKind::Resource);
    assert_eq!(e[0].kind, E::NotPrincipalWithAllow);
    let (e, _) = check_place(&not_principal_allow, PolicyKind::Rcp);
    assert!(matches!(e[0].kind, E::PrincipalNotAllowed { .. }));
    let (e, _) = check_place(&not_principal_allow, PolicyKind::Scp);
    assert!(matches!(e[0].kind, E::PrincipalNotAllowed { .. }));
}

#[test]
fn principals_parse_strictly() {
    let e = errors(
        r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Principal": {"AWS": ["arn:aws:iam::111122223333:user/*", "arn:aws:iam::111122223333:group/G", "1234"]}}}"#,
    );
    assert_eq!(e.len(), 3);
    assert_eq!(e[0].0, "/Statement/Principal/AWS/0");
    let p = parse(
        r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Principal": {"AWS": ["*", "111122223333", "arn:aws:iam::444455556666:root"], "Service": "s3.amazonaws.com"}}}"#,
    )
    .unwrap();
    let items = &p.document.statements[0].principal.as_ref().unwrap().items;
    assert_eq!(
        &**items,
        &[
            PrincipalEntry::Everyone,
            PrincipalEntry::Account("111122223333".into()),
            PrincipalEntry::Account("444455556666".into()),
            PrincipalEntry::Service("s3.amazonaws.com".into()),
        ]
    );
}

#[test]
fn operators_parse() {
    let op = Operator::parse("ForAnyValue:StringNotLikeIfExists").unwrap();
    assert_eq!(op.base, BaseOperator::StringNotLike);
    assert_eq!(op.set, Some(SetQualifier::ForAnyValue));
    assert!(op.if_exists);
    assert_eq!(op.to_string(), "ForAnyValue:StringNotLikeIfExists");
    assert!(Operator::parse("stringequals").is_none());
    assert!(Operator::parse("ForAllValues:").is_none());
    assert!(Operator::parse("IfExists").is_none());
    for base in BaseOperator::ALL {
        assert_eq!(Operator::parse(base.name()).unwrap().base, *base);
    }
}

#[test]
fn statement_positions_are_reported() {
    let text = "{\n  \"Statement\": [\n    {\"Effect\": \"Allow\", \"Action\": \"s3:*\", \"Resource\": \"*\"},\n    {\"Effect\": \"Deny\", \"Action\": \"s3:*\", \"Resource\": \"*\"}\n  ]\n}";
    let src = crate::policy::locate::SourceText::new(text.to_owned());
    let p = parse_document(text, &|o| src.position(o)).unwrap();
    assert_eq!(
        p.document.statements[0].position,
        Position { line: 3, column: 5 }
    );
    assert_eq!(
        p.document.statements[1].position,
        Position { line: 4, column: 5 }
    );
}

#[test]
fn unreadable_values_and_qualified_null_load_with_warnings() {
    let p = parse(
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:Get", "Resource": "*",
            "Condition": {"NumericLessThan": {"n": ["ten", "5"]}, "Bool": {"b": "yes"},
                          "ForAnyValue:Null": {"k": "true"}}}]}"#,
    )
    .unwrap();
    let conditions = &p.document.statements[0].conditions;
    let numeric = conditions
        .iter()
        .find(|c| c.op.base == BaseOperator::NumericLessThan)
        .unwrap();
    assert_eq!(numeric.values.len(), 2);
    assert_eq!(numeric.values[0], ConditionValue::Unreadable);
    let null = conditions
        .iter()
        .find(|c| c.op.base == BaseOperator::Null)
        .unwrap();
    assert_eq!(null.op.set, None);
    let w: Vec<String> = p.warnings.iter().map(|w| w.kind.to_string()).collect();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w.iter().any(|w| w.contains("`ten` is not a number")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("`yes` is not `true` or `false`")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("`Null` takes no set qualifier")),
        "{w:?}"
    );
}

#[test]
fn short_arn_patterns_per_place() {
    let doc = parse(
        r#"{"Statement": [{"Effect": "Allow", "Action": "s3:Get*",
            "Resource": ["arn:aws:s3", "arn:aws:sqs:*:111122223333", "arn:aws:s3:::b/*", "arn:aws:sqs:*"]}]}"#,
    )
    .unwrap()
    .document;
    let count = |(e, w): (Vec<PolicyError>, Vec<PolicyWarning>)| {
        let padded = w
            .iter()
            .filter(|w| matches!(w.kind, W::ShortArnPadded(_)))
            .count();
        let nothing = w
            .iter()
            .filter(|w| matches!(w.kind, W::ShortArnMatchesNothing(_)))
            .count();
        let refused: Vec<String> = e
            .iter()
            .filter(|e| matches!(e.kind, E::ShortArn(..)))
            .map(|e| e.pointer.clone())
            .collect();
        (padded, nothing, refused)
    };
    // Identity policies pad every short pattern.
    assert_eq!(
        count(check_place(&doc, PolicyKind::Identity)),
        (3, 0, vec![])
    );
    // SCPs take only those whose last piece ends in `*`.
    assert_eq!(
        count(check_place(&doc, PolicyKind::Scp)),
        (
            1,
            0,
            vec![
                "/Statement/0/Resource/0".to_owned(),
                "/Statement/0/Resource/1".to_owned()
            ]
        )
    );
    // RCPs take none.
    let (_, _, refused) = count(check_place(&doc, PolicyKind::Rcp));
    assert_eq!(refused.len(), 3);
    // Resource policies: no wildcard, no match; a wildcard pads.
    let (padded, nothing, _) = count(check_place(&doc, PolicyKind::Resource));
    assert_eq!((padded, nothing), (2, 1));
}
