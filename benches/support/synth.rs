//! Synthetic bundles for benchmarks and load tests, deterministic by seed.
//!
//! A generated bundle looks like a real account: thousands of users and
//! roles, groups, shared managed policies with exact and wildcard actions,
//! resource wildcards and conditions (principal tags, encryption context,
//! source IP), KMS keys with key policies, and an SCP level with denies.
//! The same access rules are also written as Cedar policies and entities,
//! so that verdict and cedar-policy decide the same requests side by side.

#![allow(dead_code, reason = "each bench uses part of this module")]

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The account every generated principal and resource belongs to.
pub const ACCOUNT: &str = "111122223333";

const SERVICES: &[(&str, &[&str], &[&str])] = &[
    (
        "s3",
        &[
            "GetObject",
            "PutObject",
            "ListBucket",
            "DeleteObject",
            "GetObjectTagging",
            "PutObjectTagging",
        ],
        &["Get*", "Put*", "*"],
    ),
    (
        "kms",
        &[
            "Encrypt",
            "Decrypt",
            "GenerateDataKey",
            "DescribeKey",
            "ReEncryptFrom",
            "ReEncryptTo",
            "Sign",
            "Verify",
        ],
        &["ReEncrypt*", "Generate*", "*"],
    ),
    (
        "dynamodb",
        &[
            "GetItem",
            "PutItem",
            "Query",
            "Scan",
            "UpdateItem",
            "DeleteItem",
        ],
        &["Get*", "*"],
    ),
    (
        "sqs",
        &["SendMessage", "ReceiveMessage", "DeleteMessage"],
        &["*"],
    ),
];

struct Gen {
    rng: ChaCha8Rng,
}

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.rng.next_u64() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.rng.next_u64() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One access rule, rendered both as an IAM statement and a Cedar policy.
#[derive(Clone, Debug)]
struct Rule {
    allow: bool,
    service: usize,
    /// (name pattern, exact?)
    actions: Vec<(String, bool)>,
    /// Resource patterns: `*`, an ARN, or an ARN prefix ending in `*`.
    resources: Vec<String>,
    condition: Option<Cond>,
}

#[derive(Clone, Debug)]
enum Cond {
    Tag(String),
    Dept(String),
    Ip(String),
}

/// A request, with its Cedar form.
#[derive(Clone, Debug)]
pub struct SynthRequest {
    /// Principal ARN (a user, or a role session).
    pub principal: String,
    /// `service:Action`.
    pub action: String,
    /// Resource ARN.
    pub resource: String,
    /// Context entries (one value each).
    pub context: Vec<(String, String)>,
    /// Cedar principal entity id.
    pub cedar_principal: String,
    /// Cedar context.
    pub cedar_context: Value,
}

/// A generated bundle.
pub struct Synth {
    /// Bundle files (path, JSON text).
    pub files: Vec<(String, String)>,
    /// Cedar policies, as text.
    pub cedar_policies: String,
    /// Cedar entities, as JSON.
    pub cedar_entities: Value,
    /// Requests drawn to hit the rules.
    pub requests: Vec<SynthRequest>,
    /// Statements in the bundle (all policies, key policies included).
    pub statements: usize,
}

fn bucket(i: usize) -> String {
    format!("bucket-{i:05}")
}

fn key_arn(i: usize) -> String {
    format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{i:08x}-0000-4000-8000-{i:012x}")
}

fn table_arn(i: usize) -> String {
    format!("arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/t-{i:05}")
}

fn queue_arn(i: usize) -> String {
    format!("arn:aws:sqs:us-east-1:{ACCOUNT}:q-{i:05}")
}

struct Sizes {
    users: usize,
    roles: usize,
    groups: usize,
    managed: usize,
    keys: usize,
    buckets: usize,
    tables: usize,
    teams: usize,
}

impl Sizes {
    fn for_statements(n: usize) -> Self {
        let n = n.max(200);
        Self {
            users: n / 20,
            roles: n / 40,
            groups: (n / 200).max(2),
            managed: n / 12,
            keys: n / 20,
            buckets: (n / 20).max(4),
            tables: (n / 40).max(4),
            teams: (n / 100).max(3),
        }
    }
}

fn rule(g: &mut Gen, s: &Sizes) -> Rule {
    let service = g.below(SERVICES.len());
    let (svc, names, wild) = SERVICES[service];
    let n_actions = 1 + g.below(3);
    let mut actions = Vec::new();
    for _ in 0..n_actions {
        if g.chance(25) {
            actions.push(((*g.pick(wild)).to_owned(), false));
        } else {
            actions.push(((*g.pick(names)).to_owned(), true));
        }
    }
    let n_res = 1 + g.below(2);
    let mut resources = Vec::new();
    for _ in 0..n_res {
        let r = match svc {
            "s3" => {
                let b = bucket(g.below(s.buckets));
                if g.chance(50) {
                    format!("arn:aws:s3:::{b}/*")
                } else {
                    format!("arn:aws:s3:::{b}/team-{}/*", g.below(s.teams))
                }
            }
            "kms" => {
                if g.chance(20) {
                    format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/*")
                } else {
                    key_arn(g.below(s.keys))
                }
            }
            "dynamodb" => {
                if g.chance(30) {
                    format!(
                        "arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/t-{:03}*",
                        g.below(s.tables / 100 + 1)
                    )
                } else {
                    table_arn(g.below(s.tables))
                }
            }
            _ => queue_arn(g.below(s.tables)),
        };
        resources.push(r);
    }
    if g.chance(5) {
        resources = vec!["*".to_owned()];
    }
    let condition = match g.below(10) {
        0 | 1 => Some(Cond::Tag(format!("team-{}", g.below(s.teams)))),
        2 if svc == "kms" => Some(Cond::Dept(format!("dept-{}", g.below(8)))),
        3 => Some(Cond::Ip(format!("10.{}.0.0/16", g.below(16)))),
        _ => None,
    };
    Rule {
        allow: !g.chance(8),
        service,
        actions,
        resources,
        condition,
    }
}

fn iam_statement(r: &Rule) -> Value {
    let svc = SERVICES[r.service].0;
    let actions: Vec<String> = r
        .actions
        .iter()
        .map(|(a, _)| format!("{svc}:{a}"))
        .collect();
    let mut st = json!({
        "Effect": if r.allow { "Allow" } else { "Deny" },
        "Action": actions,
        "Resource": r.resources,
    });
    match &r.condition {
        Some(Cond::Tag(t)) => {
            st["Condition"] = json!({"StringEquals": {"aws:PrincipalTag/team": t}})
        }
        Some(Cond::Dept(d)) => {
            st["Condition"] = json!({"StringEquals": {"kms:EncryptionContext:dept": d}})
        }
        Some(Cond::Ip(ip)) => st["Condition"] = json!({"IpAddress": {"aws:SourceIp": ip}}),
        None => {}
    }
    st
}

fn cedar_policy(r: &Rule, principal_scope: &str, resource_scope: &str) -> String {
    let svc = SERVICES[r.service].0;
    let actions: Vec<String> = r
        .actions
        .iter()
        .map(|(a, _)| format!("Action::\"{svc}:{a}\""))
        .collect();
    let mut when: Vec<String> = Vec::new();
    if !r.resources.iter().any(|x| x == "*") {
        let alts: Vec<String> = r
            .resources
            .iter()
            .map(|x| {
                if x.contains('*') {
                    format!("resource.arn like \"{x}\"")
                } else {
                    format!("resource.arn == \"{x}\"")
                }
            })
            .collect();
        when.push(format!("({})", alts.join(" || ")));
    }
    match &r.condition {
        Some(Cond::Tag(t)) => when.push(format!("principal.tags.contains(\"team={t}\")")),
        Some(Cond::Dept(d)) => when.push(format!("context.ec.contains(\"dept={d}\")")),
        Some(Cond::Ip(ip)) => when.push(format!("context.ip.isInRange(ip(\"{ip}\"))")),
        None => {}
    }
    let effect = if r.allow { "permit" } else { "forbid" };
    let body = if when.is_empty() {
        String::new()
    } else {
        format!(" when {{ {} }}", when.join(" && "))
    };
    format!(
        "{effect}({principal_scope}, action in [{}], {resource_scope}){body};\n",
        actions.join(", ")
    )
}

/// A concrete resource a rule's resource pattern covers.
fn instance(g: &mut Gen, r: &Rule, s: &Sizes) -> String {
    let pattern = g.pick(&r.resources).clone();
    let svc = SERVICES[r.service].0;
    if pattern == "*" {
        return match svc {
            "s3" => format!("arn:aws:s3:::{}/x", bucket(g.below(s.buckets))),
            "kms" => key_arn(g.below(s.keys)),
            "dynamodb" => table_arn(g.below(s.tables)),
            _ => queue_arn(g.below(s.tables)),
        };
    }
    match pattern.strip_suffix('*') {
        Some(prefix) if svc == "kms" => {
            let _ = prefix;
            key_arn(g.below(s.keys))
        }
        Some(prefix) if svc == "dynamodb" => format!("{prefix}{}", g.below(10)),
        Some(prefix) => format!("{prefix}obj-{}.dat", g.below(1000)),
        None => pattern,
    }
}

fn action_for(g: &mut Gen, r: &Rule) -> String {
    let (svc, names, _) = SERVICES[r.service];
    let (a, exact) = g.pick(&r.actions).clone();
    if exact {
        return format!("{svc}:{a}");
    }
    let prefix = a.trim_end_matches('*');
    let matching: Vec<&&str> = names.iter().filter(|n| n.starts_with(prefix)).collect();
    if matching.is_empty() {
        format!("{svc}:{}", g.pick(names))
    } else {
        format!("{svc}:{}", g.pick(&matching))
    }
}

impl Synth {
    /// The bundle's files as a loader input.
    pub fn raw(&self) -> verdict::bundle::source::RawBundle {
        verdict::bundle::source::RawBundle {
            source: "synth".into(),
            files: self
                .files
                .iter()
                .map(|(p, t)| verdict::bundle::source::RawFile {
                    path: p.clone(),
                    bytes: t.clone().into_bytes(),
                })
                .collect(),
            diagnostics: Vec::new(),
        }
    }
}

/// Generate a bundle of about `target` statements, with `requests` requests.
pub fn generate(seed: u64, target: usize, requests: usize) -> Synth {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(seed),
    };
    let s = Sizes::for_statements(target);
    let mut files = Vec::new();
    let mut cedar = String::new();
    let mut statements = 0usize;
    files.push((
        "manifest.json".to_owned(),
        json!({"revision": format!("synth-{seed}-{target}")}).to_string(),
    ));

    // Managed policies.
    let mut managed: Vec<Vec<Rule>> = Vec::new();
    for p in 0..s.managed {
        let n = 6 + g.below(9);
        let rules: Vec<Rule> = (0..n).map(|_| rule(&mut g, &s)).collect();
        let doc = json!({"Version": "2012-10-17", "Statement": rules.iter().map(iam_statement).collect::<Vec<_>>()});
        files.push((format!("policies/managed/p{p:05}.json"), doc.to_string()));
        for r in &rules {
            cedar.push_str(&cedar_policy(
                r,
                &format!("principal in Policy::\"p{p:05}\""),
                "resource",
            ));
        }
        statements += rules.len();
        managed.push(rules);
    }
    // SCP: full access plus denies (forbid for every principal of the account).
    let scp_rules: Vec<Rule> = (0..5)
        .map(|_| {
            let mut r = rule(&mut g, &s);
            r.allow = false;
            r.condition = None;
            r
        })
        .collect();
    let scp = json!({"Version": "2012-10-17", "Statement":
        std::iter::once(json!({"Sid": "FullAWSAccess", "Effect": "Allow", "Action": "*", "Resource": "*"}))
            .chain(scp_rules.iter().map(iam_statement)).collect::<Vec<_>>()});
    files.push(("policies/scp/guardrails.json".to_owned(), scp.to_string()));
    for r in &scp_rules {
        cedar.push_str(&cedar_policy(r, "principal", "resource"));
    }
    statements += scp_rules.len() + 1;
    files.push((
        "accounts.json".to_owned(),
        json!({ACCOUNT: {"scps": ["scp/guardrails"], "org_id": "o-synth"}}).to_string(),
    ));

    // Groups.
    let mut entities: Vec<Value> = Vec::new();
    let mut groups = serde_json::Map::new();
    let mut group_policies: Vec<Vec<usize>> = Vec::new();
    for gi in 0..s.groups {
        let ps: Vec<usize> = (0..2 + g.below(2)).map(|_| g.below(s.managed)).collect();
        let arn = format!("arn:aws:iam::{ACCOUNT}:group/g-{gi:04}");
        groups.insert(
            arn.clone(),
            json!({"policies": ps.iter().map(|p| format!("managed/p{p:05}")).collect::<Vec<_>>()}),
        );
        entities.push(json!({"uid": {"type": "Group", "id": arn}, "attrs": {},
            "parents": ps.iter().map(|p| json!({"type": "Policy", "id": format!("p{p:05}")})).collect::<Vec<_>>()}));
        group_policies.push(ps);
    }
    for p in 0..s.managed {
        entities.push(json!({"uid": {"type": "Policy", "id": format!("p{p:05}")}, "attrs": {}, "parents": []}));
    }

    // Users and roles.
    struct Who {
        arn: String,
        request_principal: String,
        rules: Vec<Rule>,
    }
    let mut principals = serde_json::Map::new();
    let mut who: Vec<Who> = Vec::new();
    for i in 0..s.users + s.roles {
        let is_user = i < s.users;
        let arn = if is_user {
            format!("arn:aws:iam::{ACCOUNT}:user/u-{i:05}")
        } else {
            format!("arn:aws:iam::{ACCOUNT}:role/app/r-{i:05}")
        };
        let request_principal = if is_user {
            arn.clone()
        } else {
            format!("arn:aws:sts::{ACCOUNT}:assumed-role/r-{i:05}/session")
        };
        let team = format!("team-{}", g.below(s.teams));
        let direct: Vec<usize> = (0..1 + g.below(3)).map(|_| g.below(s.managed)).collect();
        let mut entry = json!({
            "policies": direct.iter().map(|p| format!("managed/p{p:05}")).collect::<Vec<_>>(),
            "tags": {"team": team},
        });
        let mut parents: Vec<Value> = direct
            .iter()
            .map(|p| json!({"type": "Policy", "id": format!("p{p:05}")}))
            .collect();
        let mut rules: Vec<Rule> = direct.iter().flat_map(|p| managed[*p].clone()).collect();
        if is_user {
            let gi = g.below(s.groups);
            entry["groups"] = json!([format!("arn:aws:iam::{ACCOUNT}:group/g-{gi:04}")]);
            parents.push(
                json!({"type": "Group", "id": format!("arn:aws:iam::{ACCOUNT}:group/g-{gi:04}")}),
            );
            rules.extend(group_policies[gi].iter().flat_map(|p| managed[*p].clone()));
        }
        if g.chance(50) {
            let inline: Vec<Rule> = (0..3).map(|_| rule(&mut g, &s)).collect();
            let id = format!("inline-{i:05}");
            entry["policies"]
                .as_array_mut()
                .expect("policies is a list")
                .push(json!({"Version": "2012-10-17", "Statement": inline.iter().map(iam_statement).collect::<Vec<_>>()}));
            parents.push(json!({"type": "Policy", "id": id}));
            entities.push(json!({"uid": {"type": "Policy", "id": id}, "attrs": {}, "parents": []}));
            for r in &inline {
                cedar.push_str(&cedar_policy(
                    r,
                    &format!("principal in Policy::\"{id}\""),
                    "resource",
                ));
            }
            statements += inline.len();
            rules.extend(inline);
        }
        principals.insert(arn.clone(), entry);
        entities.push(json!({"uid": {"type": "Principal", "id": arn}, "attrs": {"tags": [format!("team={team}")]}, "parents": parents}));
        who.push(Who {
            arn,
            request_principal,
            rules,
        });
    }
    files.push((
        "principals.json".to_owned(),
        json!({"groups": groups, "principals": principals}).to_string(),
    ));

    // Keys: the default statement, plus direct grants to roles and denies for users.
    let mut resources = serde_json::Map::new();
    for k in 0..s.keys {
        let arn = key_arn(k);
        let mut sts = vec![
            json!({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"}),
        ];
        if g.chance(50) && s.roles > 0 {
            let role = &who[s.users + g.below(s.roles)].arn;
            let dept = format!("dept-{}", g.below(8));
            sts.push(
                json!({"Sid": "AllowUseByApp", "Effect": "Allow", "Principal": {"AWS": role},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
                "Condition": {"StringEquals": {"kms:EncryptionContext:dept": dept}}}),
            );
            cedar.push_str(&format!(
                "permit(principal == Principal::\"{role}\", action in [Action::\"kms:Encrypt\", Action::\"kms:Decrypt\", Action::\"kms:GenerateDataKey\"], resource == Resource::\"{arn}\") when {{ context.ec.contains(\"dept={dept}\") }};\n"
            ));
        }
        if g.chance(20) {
            let user = &who[g.below(s.users)].arn;
            sts.push(
                json!({"Sid": "DenyDecrypt", "Effect": "Deny", "Principal": {"AWS": user},
                "Action": "kms:Decrypt", "Resource": "*"}),
            );
            cedar.push_str(&format!(
                "forbid(principal == Principal::\"{user}\", action in [Action::\"kms:Decrypt\"], resource == Resource::\"{arn}\");\n"
            ));
        }
        statements += sts.len();
        resources.insert(arn, json!({"policy": {"Version": "2012-10-17", "Statement": sts}, "key_spec": "SYMMETRIC_DEFAULT"}));
    }
    files.push((
        "resources.json".to_owned(),
        Value::Object(resources).to_string(),
    ));

    // Actions and their groups (wildcard patterns) for Cedar.
    for (svc, names, wild) in SERVICES {
        for w in *wild {
            entities.push(json!({"uid": {"type": "Action", "id": format!("{svc}:{w}")}, "attrs": {}, "parents": []}));
        }
        for n in *names {
            let parents: Vec<Value> = wild
                .iter()
                .filter(|w| n.starts_with(w.trim_end_matches('*')))
                .map(|w| json!({"type": "Action", "id": format!("{svc}:{w}")}))
                .collect();
            entities.push(json!({"uid": {"type": "Action", "id": format!("{svc}:{n}")}, "attrs": {}, "parents": parents}));
        }
    }

    // Requests: most drawn from a rule the principal has, some at random.
    let mut reqs = Vec::with_capacity(requests);
    let mut resource_ids = std::collections::BTreeSet::new();
    for _ in 0..requests {
        let w = &who[g.below(who.len())];
        let r = if !w.rules.is_empty() && g.chance(80) {
            w.rules[g.below(w.rules.len())].clone()
        } else {
            rule(&mut g, &s)
        };
        let action = action_for(&mut g, &r);
        let resource = instance(&mut g, &r, &s);
        let ip = format!("10.{}.{}.{}", g.below(16), g.below(256), g.below(256));
        let mut context = vec![("aws:SourceIp".to_owned(), ip.clone())];
        let mut ec = Vec::new();
        if SERVICES[r.service].0 == "kms" {
            let dept = match &r.condition {
                Some(Cond::Dept(d)) if g.chance(70) => d.clone(),
                _ => format!("dept-{}", g.below(8)),
            };
            context.push(("kms:EncryptionContext:dept".to_owned(), dept.clone()));
            ec.push(format!("dept={dept}"));
        }
        resource_ids.insert(resource.clone());
        reqs.push(SynthRequest {
            principal: w.request_principal.clone(),
            action,
            resource,
            context,
            cedar_principal: w.arn.clone(),
            cedar_context: json!({"ip": {"__extn": {"fn": "ip", "arg": ip}}, "ec": ec}),
        });
    }
    for r in resource_ids {
        entities.push(
            json!({"uid": {"type": "Resource", "id": r}, "attrs": {"arn": r}, "parents": []}),
        );
    }
    Synth {
        files,
        cedar_policies: cedar,
        cedar_entities: Value::Array(entities),
        requests: reqs,
        statements,
    }
}
