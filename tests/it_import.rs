//! `verdict import` end to end: an export in the shapes the AWS CLI prints
//! (written here, one account's authorization details and one KMS key with
//! its policy, grant, tags and alias), imported by the real binary, checked,
//! and asked for decisions; a second import of the same export is
//! byte-identical.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

const A: &str = "111122223333";
const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

fn key_arn() -> String {
    format!("arn:aws:kms:us-west-2:{A}:key/{KEY_ID}")
}

fn verdict(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(args)
        .output()
        .expect("run verdict")
}

/// `%XX` for every byte but unreserved ones, as the IAM API encodes
/// documents.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn write(root: &Path, rel: &str, v: &Value) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn policy_version(doc: &Value) -> Value {
    json!([
        {"Document": {"Version": "2012-10-17", "Statement": []}, "VersionId": "v1", "IsDefaultVersion": false},
        {"Document": doc, "VersionId": "v2", "IsDefaultVersion": true}
    ])
}

fn export(root: &Path) {
    organization(root);
    let key = key_arn();
    let key_users = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": key}]});
    let read_only = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:Get*", "iam:List*"], "Resource": "*"}]});
    let trust = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{A}:user/carol")}, "Action": "sts:AssumeRole"}]});
    let iam = json!({
        "UserDetailList": [
            {"Path": "/", "UserName": "alice", "UserId": "AIDAALICE", "Arn": format!("arn:aws:iam::{A}:user/alice"),
             "GroupList": ["KeyUsers"], "UserPolicyList": [], "AttachedManagedPolicies": [],
             "Tags": [{"Key": "team", "Value": "payments"}]},
            {"Path": "/", "UserName": "bob", "UserId": "AIDABOB", "Arn": format!("arn:aws:iam::{A}:user/bob"),
             "GroupList": [], "UserPolicyList": [],
             "AttachedManagedPolicies": [
                {"PolicyName": "ReadOnlyAccess", "PolicyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
                {"PolicyName": "Gone", "PolicyArn": format!("arn:aws:iam::{A}:policy/Gone")}]},
            {"Path": "/", "UserName": "carol", "UserId": "AIDACAROL", "Arn": format!("arn:aws:iam::{A}:user/carol"),
             "GroupList": [], "AttachedManagedPolicies": [],
             "UserPolicyList": [{"PolicyName": "assume", "PolicyDocument": url_encode(
                &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}).to_string())}]},
            {"Path": "/", "UserName": "erin", "UserId": "AIDAERIN", "Arn": format!("arn:aws:iam::{A}:user/erin"),
             "GroupList": [], "AttachedManagedPolicies": [],
             "PermissionsBoundary": {"PermissionsBoundaryType": "Policy",
                "PermissionsBoundaryArn": format!("arn:aws:iam::{A}:policy/NotExported")},
             "UserPolicyList": [{"PolicyName": "all", "PolicyDocument":
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}}]}
        ],
        "GroupDetailList": [
            {"Path": "/", "GroupName": "KeyUsers", "GroupId": "AGPAKEYUSERS", "Arn": format!("arn:aws:iam::{A}:group/KeyUsers"),
             "GroupPolicyList": [],
             "AttachedManagedPolicies": [{"PolicyName": "KeyUsers", "PolicyArn": format!("arn:aws:iam::{A}:policy/team/KeyUsers")}]}
        ],
        "RoleDetailList": [
            {"Path": "/app/", "RoleName": "App", "RoleId": "AROAAPP", "Arn": format!("arn:aws:iam::{A}:role/app/App"),
             "AssumeRolePolicyDocument": url_encode(&trust.to_string()),
             "RolePolicyList": [], "AttachedManagedPolicies": [], "Tags": []}
        ],
        "Policies": [
            {"PolicyName": "KeyUsers", "PolicyId": "ANPAKEYUSERS", "Arn": format!("arn:aws:iam::{A}:policy/team/KeyUsers"),
             "Path": "/team/", "DefaultVersionId": "v2", "PolicyVersionList": policy_version(&key_users)},
            {"PolicyName": "ReadOnlyAccess", "PolicyId": "ANPAREADONLY", "Arn": "arn:aws:iam::aws:policy/ReadOnlyAccess",
             "Path": "/", "DefaultVersionId": "v2", "PolicyVersionList": policy_version(&read_only)}
        ],
        "IsTruncated": false
    });
    write(root, &format!("iam/{A}.json"), &iam);
    let key_policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{A}:root")}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "App decrypts", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{A}:role/app/App")}, "Action": "kms:Decrypt", "Resource": "*"}]});
    let dir = format!("kms/{KEY_ID}");
    write(
        root,
        &format!("{dir}/describe-key.json"),
        &json!({"KeyMetadata": {
        "AWSAccountId": A, "KeyId": KEY_ID, "Arn": key, "Enabled": true, "KeyState": "Enabled",
        "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT", "Origin": "AWS_KMS", "KeyManager": "CUSTOMER"}}),
    );
    write(
        root,
        &format!("{dir}/key-policy.json"),
        &json!({"Policy": key_policy.to_string(), "PolicyName": "default"}),
    );
    write(
        root,
        &format!("{dir}/grants.json"),
        &json!({"Grants": [
        {"KeyId": key, "GrantId": "grant-dave", "Name": "", "GranteePrincipal": format!("arn:aws:iam::{A}:user/dave"),
         "IssuingAccount": format!("arn:aws:iam::{A}:root"), "Operations": ["Decrypt"],
         "Constraints": {"EncryptionContextSubset": {"dept": "pay"}}}]}),
    );
    write(
        root,
        &format!("{dir}/tags.json"),
        &json!({"Tags": [{"TagKey": "env", "TagValue": "prod"}]}),
    );
    write(
        root,
        "kms/aliases.json",
        &json!({"Aliases": [
        {"AliasName": "alias/payments", "AliasArn": format!("arn:aws:kms:us-west-2:{A}:alias/payments"), "TargetKeyId": KEY_ID},
        {"AliasName": "alias/aws/s3", "AliasArn": format!("arn:aws:kms:us-west-2:{A}:alias/aws/s3")}]}),
    );
}

/// An organization: the management account 999988887777 and, under
/// `ou-prod`, account A. The SCP at the root allows everything; the one on
/// `ou-prod` denies `kms:ScheduleKeyDeletion`. An RCP at the root allows
/// everything.
fn organization(root: &Path) {
    let o = "organizations";
    write(
        root,
        &format!("{o}/describe-organization.json"),
        &json!({"Organization": {
        "Id": "o-a1b2c3d4e5", "Arn": "arn:aws:organizations::999988887777:organization/o-a1b2c3d4e5",
        "MasterAccountId": "999988887777", "FeatureSet": "ALL"}}),
    );
    write(
        root,
        &format!("{o}/roots.json"),
        &json!({"Roots": [{"Id": "r-ab12", "Name": "Root"}]}),
    );
    write(
        root,
        &format!("{o}/children/r-ab12/ous.json"),
        &json!({"OrganizationalUnits": [
        {"Id": "ou-ab12-prod0001", "Name": "prod"}]}),
    );
    write(
        root,
        &format!("{o}/children/r-ab12/accounts.json"),
        &json!({"Accounts": [
        {"Id": "999988887777", "Name": "management", "Status": "ACTIVE"}]}),
    );
    write(
        root,
        &format!("{o}/children/ou-ab12-prod0001/accounts.json"),
        &json!({"Accounts": [
        {"Id": A, "Name": "payments", "Status": "ACTIVE"}]}),
    );
    let full = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let rcp_full = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]});
    let deny = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "kms:ScheduleKeyDeletion", "Resource": "*"}]});
    let policies: [(&str, &str, &Value, &[&str]); 3] = [
        (
            "p-FullAWSAccess",
            "SERVICE_CONTROL_POLICY",
            &full,
            &["r-ab12", "ou-ab12-prod0001", A],
        ),
        (
            "p-denydelete",
            "SERVICE_CONTROL_POLICY",
            &deny,
            &["ou-ab12-prod0001"],
        ),
        (
            "p-RCPFullAWSAccess",
            "RESOURCE_CONTROL_POLICY",
            &rcp_full,
            &["r-ab12", "ou-ab12-prod0001", A],
        ),
    ];
    for (id, kind, doc, targets) in policies {
        write(
            root,
            &format!("{o}/policies/{id}/describe-policy.json"),
            &json!({"Policy": {
            "PolicySummary": {"Id": id, "Name": id, "Type": kind, "AwsManaged": false},
            "Content": doc.to_string()}}),
        );
        let targets: Vec<Value> = targets
            .iter()
            .map(|t| json!({"TargetId": t, "Name": t, "Type": "ORGANIZATIONAL_UNIT"}))
            .collect();
        write(
            root,
            &format!("{o}/policies/{id}/targets.json"),
            &json!({"Targets": targets}),
        );
    }
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn decide(bundle: &str, principal: &str, action: &str, resource: &str, context: &[&str]) -> String {
    let mut args = vec![
        "eval",
        bundle,
        "--principal",
        principal,
        "--action",
        action,
        "--resource",
        resource,
    ];
    for c in context {
        args.push("--context");
        args.push(c);
    }
    let o = verdict(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let d: Value = serde_json::from_slice(&o.stdout).unwrap();
    d["decision"].as_str().unwrap().to_owned()
}

#[test]
fn an_export_imports_checks_and_decides_as_aws_would() {
    let tmp = tempfile::tempdir().unwrap();
    let export_dir = tmp.path().join("export");
    export(&export_dir);
    let out = tmp.path().join("bundle");
    let o = verdict(&[
        "import",
        export_dir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    // What the bundle cannot carry is said, with its source entry.
    assert!(
        stderr.contains(&format!(
            "warning: iam/{A}.json: /UserDetailList/1/AttachedManagedPolicies/1: managed policy `arn:aws:iam::{A}:policy/Gone` is not in the export's `Policies`"
        )),
        "{stderr}"
    );
    let check = verdict(&["check", out.to_str().unwrap()]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    let b = out.to_str().unwrap();
    let key = key_arn();
    let user = |n: &str| format!("arn:aws:iam::{A}:user/{n}");
    let role = format!("arn:aws:iam::{A}:role/app/App");
    let cases: Vec<(String, &str, String, Vec<&str>, &str)> = vec![
        // A group's managed policy, through the key policy's delegation.
        (user("alice"), "kms:Encrypt", key.clone(), vec![], "Allow"),
        (
            user("bob"),
            "kms:Encrypt",
            key.clone(),
            vec![],
            "ImplicitDeny",
        ),
        // The trust policy (URL-encoded in the export) names carol only.
        (
            user("carol"),
            "sts:AssumeRole",
            role.clone(),
            vec![],
            "Allow",
        ),
        (
            user("bob"),
            "sts:AssumeRole",
            role.clone(),
            vec![],
            "ImplicitDeny",
        ),
        // An AWS managed policy, on an AWS managed policy (U44).
        (
            user("bob"),
            "iam:GetPolicy",
            "arn:aws:iam::aws:policy/ReadOnlyAccess".into(),
            vec![],
            "Allow",
        ),
        // The key policy names the role (with its path) directly.
        (
            format!("arn:aws:sts::{A}:assumed-role/App/s1"),
            "kms:Decrypt",
            key.clone(),
            vec![],
            "Allow",
        ),
        (
            format!("arn:aws:sts::{A}:assumed-role/App/s1"),
            "kms:Encrypt",
            key.clone(),
            vec![],
            "ImplicitDeny",
        ),
        // A grant with its constraint.
        (
            user("dave"),
            "kms:Decrypt",
            key.clone(),
            vec!["kms:EncryptionContext:dept=pay"],
            "Allow",
        ),
        (
            user("dave"),
            "kms:Decrypt",
            key.clone(),
            vec![],
            "ImplicitDeny",
        ),
        // A boundary the export lacks stands in as one that allows nothing.
        (
            user("erin"),
            "iam:ListUsers",
            "*".into(),
            vec![],
            "ImplicitDeny",
        ),
        // The SCP on the account's OU denies key deletion, whatever IAM says.
        (
            format!("arn:aws:iam::{A}:root"),
            "kms:ScheduleKeyDeletion",
            key.clone(),
            vec![],
            "ExplicitDeny",
        ),
        (
            format!("arn:aws:iam::{A}:root"),
            "kms:DescribeKey",
            key.clone(),
            vec![],
            "Allow",
        ),
    ];
    for (principal, action, resource, context, want) in &cases {
        assert_eq!(
            decide(b, principal, action, resource, context),
            *want,
            "{principal} {action} {resource}"
        );
    }
    // Aliases, tags and key facts reach the conditions.
    let resources: Value =
        serde_json::from_slice(&fs::read(out.join("resources.json")).unwrap()).unwrap();
    let entry = &resources[key.as_str()];
    assert_eq!(entry["aliases"], json!(["alias/payments"]));
    assert_eq!(entry["tags"], json!({"env": "prod"}));
    assert_eq!(entry["key_spec"], "SYMMETRIC_DEFAULT");
    // The organization: levels from the root to the account, the org path;
    // the management account is bound by neither SCPs nor RCPs.
    let accounts: Value =
        serde_json::from_slice(&fs::read(out.join("accounts.json")).unwrap()).unwrap();
    assert_eq!(
        accounts[A]["scps"],
        json!([
            ["org/p-FullAWSAccess"],
            ["org/p-FullAWSAccess", "org/p-denydelete"],
            ["org/p-FullAWSAccess"]
        ])
    );
    assert_eq!(
        accounts[A]["org_paths"],
        json!(["o-a1b2c3d4e5/r-ab12/ou-ab12-prod0001/"])
    );
    assert_eq!(accounts[A]["rcps"].as_array().unwrap().len(), 3);
    assert_eq!(accounts["999988887777"]["org_id"], "o-a1b2c3d4e5");
    assert!(accounts["999988887777"].get("scps").is_none());

    // The same export gives the same bytes, and so the same revision.
    let again = tmp.path().join("again");
    let o = verdict(&[
        "import",
        export_dir.to_str().unwrap(),
        "-o",
        again.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(files(&out), files(&again));
    // An output directory that is not empty is refused.
    let o = verdict(&[
        "import",
        export_dir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
}
