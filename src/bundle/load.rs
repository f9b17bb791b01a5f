//! Loading a bundle whole or not at all: every file parses, every reference
//! resolves, every policy validates for each place it is attached; otherwise
//! every error found is returned, each with file, JSON pointer and line:column.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::err::{
    BundleErrorKind as B, BundleWarningKind as BW, Diagnostic, Finding, LoadError, Severity,
};
use super::model::*;
use super::shape::*;
use super::source::{self, RawBundle};
use super::{Limits, LoadOptions};
use crate::policy::document::UniqueMap;
use crate::policy::locate::{self, LimitBreach, SourceText};
use crate::policy::parse::{self, json_error};
use crate::policy::principal::{self, PrincipalArn, canonical_arn, split_arn};
use crate::policy::{PolicyError, PolicyKind, PolicyWarning, PrincipalEntry};

/// A bundle that loaded, with its warnings.
#[derive(Debug)]
pub struct Loaded {
    /// The bundle.
    pub bundle: Bundle,
    /// What its signature says.
    pub signature: SignatureState,
    /// Warnings (never errors).
    pub(crate) warnings: Vec<Diagnostic>,
}

/// What a loaded bundle's signature says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureState {
    /// Verified with the configured key of this id.
    Verified(String),
    /// It carries `.signatures.json`, and no public key is configured: not checked.
    NotVerified,
    /// No `.signatures.json`, and no public key is configured.
    Unsigned,
}

impl std::fmt::Display for SignatureState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Verified(id) => write!(f, "verified by key {id}"),
            Self::NotVerified => {
                f.write_str("signed, not verified (no bundle_public_keys configured)")
            }
            Self::Unsigned => f.write_str("unsigned"),
        }
    }
}

/// With public keys configured, the bundle's signature must hold before
/// anything of it is parsed; every reason it does not is an error of
/// `.signatures.json`.
fn check_signature(raw: &RawBundle, opts: &LoadOptions) -> Result<SignatureState, LoadError> {
    let signed = raw
        .files
        .iter()
        .any(|f| f.path == super::sign::SIGNATURES_FILE);
    if opts.public_keys.is_empty() {
        return Ok(if signed {
            SignatureState::NotVerified
        } else {
            SignatureState::Unsigned
        });
    }
    super::sign::verify(&raw.files, &opts.public_keys)
        .map(SignatureState::Verified)
        .map_err(|errors| {
            // What reading found (a truncated archive, an oversized file)
            // comes first: it is usually why the signature fails.
            let read = raw
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .cloned();
            LoadError::Invalid(
                read.chain(errors.into_iter().map(|e| Diagnostic {
                    severity: Severity::Error,
                    file: super::sign::SIGNATURES_FILE.to_owned(),
                    pointer: String::new(),
                    position: None,
                    finding: Finding::Bundle(B::Signature(e.to_string())),
                }))
                .collect(),
            )
        })
}

/// Load the bundle at `path` (a directory or a `.tar.gz`).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let raw = source::read(path, &opts.limits)?;
    load_raw(raw, opts)
}

/// Load a bundle from files already read.
pub fn load_raw(raw: RawBundle, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let signature = check_signature(&raw, opts)?;
    let mut cx = Loader {
        limits: &opts.limits,
        diags: raw.diagnostics,
        policies: BTreeMap::new(),
        checked: HashSet::new(),
        catalogue: CATALOGUE_BUDGET,
    };
    // 1. Text, UTF-8 and the limits serde cannot enforce.
    let mut texts: HashMap<String, SourceText> = HashMap::new();
    for f in raw.files {
        let text = match String::from_utf8(f.bytes) {
            Ok(t) => t,
            Err(_) => {
                cx.error(&f.path, "", None, B::Utf8);
                continue;
            }
        };
        if let Some(breach) =
            locate::check_limits(&text, opts.limits.max_depth, opts.limits.max_string_bytes)
        {
            let src = SourceText::new(text);
            let (pointer, offset, kind) = match breach {
                LimitBreach::Depth { pointer, offset } => {
                    (pointer, offset, B::TooDeep(opts.limits.max_depth))
                }
                LimitBreach::StringLength {
                    pointer,
                    offset,
                    len,
                } => (
                    pointer,
                    offset,
                    B::StringTooLong {
                        len,
                        limit: opts.limits.max_string_bytes,
                    },
                ),
            };
            cx.error(&f.path, &pointer, Some(src.position(offset)), kind);
            continue;
        }
        texts.insert(f.path, SourceText::new(text));
    }

    // 2. Manifest.
    let (revision, name, serial) = match texts.get("manifest.json") {
        None => {
            if !cx.diags.iter().any(|d| d.file == "manifest.json") {
                cx.error("", "", None, B::MissingManifest);
            }
            (None, None, 0)
        }
        Some(src) => match serde_json::from_str::<ManifestShape>(src.text()) {
            Ok(m) if m.revision.trim().is_empty() => {
                cx.error_at(src, "manifest.json", "/revision", B::EmptyRevision);
                (None, m.name, 0)
            }
            Ok(m) => (Some(m.revision), m.name, m.serial.unwrap_or(0)),
            Err(e) => {
                cx.json_error(src, "manifest.json", &e);
                (None, None, 0)
            }
        },
    };

    // 3. policies/: parsed once, validated per place when attached.
    for (path, src) in &texts {
        let Some(id) = path
            .strip_prefix("policies/")
            .and_then(|p| p.strip_suffix(".json"))
        else {
            continue;
        };
        let parsed =
            match parse::parse_checked(src.text(), &|o| src.position(o), Some(&mut cx.catalogue)) {
                Ok(p) => {
                    for w in p.warnings {
                        cx.policy_warning(src, path, "", 0, w);
                    }
                    Some(Arc::new(Policy {
                        id: id.into(),
                        file: path.as_str().into(),
                        pointer: String::new(),
                        document: p.document,
                    }))
                }
                Err(rejected) => {
                    for e in rejected.errors {
                        cx.policy_error(src, path, "", 0, e, None);
                    }
                    for w in rejected.warnings {
                        cx.policy_warning(src, path, "", 0, w);
                    }
                    None
                }
            };
        cx.policies.insert(
            id.to_owned(),
            PolicyFile {
                path: path.clone(),
                parsed,
                attached: false,
            },
        );
    }

    // 4. principals.json.
    let mut groups: HashMap<Arc<str>, Arc<Group>> = HashMap::new();
    let mut users: HashMap<Arc<str>, Arc<Identity>> = HashMap::new();
    let mut roles: HashMap<(Box<str>, Box<str>), Arc<Identity>> = HashMap::new();
    if let Some(src) = texts.get("principals.json") {
        load_principals(&mut cx, &texts, src, &mut groups, &mut users, &mut roles);
    }

    // 5. resources.json.
    let mut resources: HashMap<Arc<str>, Arc<Resource>> = HashMap::new();
    if let Some(src) = texts.get("resources.json") {
        load_resources(&mut cx, &texts, src, &mut resources);
    }

    // 6. accounts.json.
    let mut accounts: HashMap<Box<str>, Account> = HashMap::new();
    if let Some(src) = texts.get("accounts.json") {
        load_accounts(&mut cx, &texts, src, &mut accounts);
    }

    // 7. grants.json.
    let mut grants: Vec<Arc<Grant>> = Vec::new();
    if let Some(src) = texts.get("grants.json") {
        load_grants(&mut cx, src, &resources, &mut grants);
    }
    let mut grants_by_key: HashMap<Arc<str>, Vec<Arc<Grant>>> = HashMap::new();
    for g in &grants {
        grants_by_key
            .entry(g.key.clone())
            .or_default()
            .push(g.clone());
    }

    // 8. policies/ files attached nowhere: validated as identity policies.
    let unattached: Vec<(String, Arc<Policy>)> = cx
        .policies
        .iter()
        .filter(|(_, f)| !f.attached)
        .filter_map(|(id, f)| f.parsed.clone().map(|p| (id.clone(), p)))
        .collect();
    for (id, policy) in unattached {
        let Some(path) = cx.policies.get(&id).map(|f| f.path.clone()) else {
            continue;
        };
        if let Some(src) = texts.get(&path) {
            cx.warning_at(
                src,
                &path,
                "",
                Finding::PolicyWarning(crate::policy::PolicyWarningKind::Unattached),
            );
            cx.check_place(src, &path, "", 0, &policy, PolicyKind::Identity, None);
        }
    }

    // 9. tests/.
    let mut tests = Vec::new();
    if opts.with_tests {
        let mut paths: Vec<String> = texts
            .keys()
            .filter(|p| p.starts_with("tests/"))
            .cloned()
            .collect();
        paths.sort();
        for path in paths {
            if let Some(text) = texts.remove(&path) {
                tests.push(TestFileText { path, text });
            }
        }
    }

    let mut diags = cx.diags;
    diags.sort_by(|a, b| {
        (a.severity, &a.file, a.position.map(|p| (p.line, p.column))).cmp(&(
            b.severity,
            &b.file,
            b.position.map(|p| (p.line, p.column)),
        ))
    });
    diags.dedup();
    let failed = diags.iter().any(|d| d.severity == Severity::Error);
    match revision {
        Some(revision) if !failed => {
            let policies = cx
                .policies
                .into_iter()
                .filter_map(|(id, f)| f.parsed.map(|p| (Arc::from(id), p)))
                .collect();
            Ok(Loaded {
                bundle: Bundle {
                    revision: revision.into(),
                    name,
                    serial,
                    source: raw.source,
                    policies,
                    groups,
                    users,
                    roles,
                    resources,
                    accounts,
                    grants,
                    grants_by_key,
                    tests,
                },
                signature,
                warnings: diags,
            })
        }
        _ => Err(LoadError::Invalid(diags)),
    }
}

struct PolicyFile {
    path: String,
    parsed: Option<Arc<Policy>>,
    attached: bool,
}

struct Loader<'l> {
    limits: &'l Limits,
    diags: Vec<Diagnostic>,
    policies: BTreeMap<String, PolicyFile>,
    /// (policy id, place) pairs already validated.
    checked: HashSet<(String, PolicyKind)>,
    /// What is left of [`CATALOGUE_BUDGET`] for this load.
    catalogue: u64,
}

/// How many names one load may compare against the IAM catalogue (to match
/// wildcards and find suggestions): plenty for any real bundle (each
/// unknown action costs its service's action count, at most about a
/// thousand), and a bound on what a bundle of unknown names can cost.
const CATALOGUE_BUDGET: u64 = 20_000_000;

impl Loader<'_> {
    fn error(&mut self, file: &str, pointer: &str, position: Option<locate::Position>, kind: B) {
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            pointer: pointer.to_owned(),
            position,
            finding: Finding::Bundle(kind),
        });
    }

    fn error_at(&mut self, src: &SourceText, file: &str, pointer: &str, kind: B) {
        let position = locate::offset_of_pointer(src.text(), pointer).map(|o| src.position(o));
        self.error(file, pointer, position, kind);
    }

    fn warning_at(&mut self, src: &SourceText, file: &str, pointer: &str, finding: Finding) {
        let position = locate::offset_of_pointer(src.text(), pointer).map(|o| src.position(o));
        self.diags.push(Diagnostic {
            severity: Severity::of_warning(&finding),
            file: file.to_owned(),
            pointer: pointer.to_owned(),
            position,
            finding,
        });
    }

    fn json_error(&mut self, src: &SourceText, file: &str, e: &serde_json::Error) {
        let pe = json_error(src.text(), e);
        let position = pe.offset.map(|o| src.position(o));
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            pointer: pe.pointer,
            position,
            finding: Finding::Bundle(B::Json(pe.kind.to_string())),
        });
    }

    /// A policy error inside a document at `base` (pointer) / `base_offset` of `src`.
    fn policy_error(
        &mut self,
        src: &SourceText,
        file: &str,
        base: &str,
        base_offset: usize,
        e: PolicyError,
        attached: Option<(&'static str, String)>,
    ) {
        let doc_text = src.text().get(base_offset..).unwrap_or("");
        let rel = e
            .offset
            .or_else(|| locate::offset_of_pointer(doc_text, &e.pointer));
        let position = rel.map(|o| src.position(base_offset + o));
        let finding = Finding::Policy(e.kind);
        let finding = match attached {
            Some((place, at)) => Finding::Attached {
                finding: Box::new(finding),
                place,
                at,
            },
            None => finding,
        };
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            pointer: format!("{base}{}", e.pointer),
            position,
            finding,
        });
    }

    fn policy_warning(
        &mut self,
        src: &SourceText,
        file: &str,
        base: &str,
        base_offset: usize,
        w: PolicyWarning,
    ) {
        let doc_text = src.text().get(base_offset..).unwrap_or("");
        let position =
            locate::offset_of_pointer(doc_text, &w.pointer).map(|o| src.position(base_offset + o));
        let finding = Finding::PolicyWarning(w.kind);
        self.diags.push(Diagnostic {
            severity: Severity::of_warning(&finding),
            file: file.to_owned(),
            pointer: format!("{base}{}", w.pointer),
            position,
            finding,
        });
    }

    /// Validate a document for a place, once per (policy, place).
    #[expect(
        clippy::too_many_arguments,
        reason = "location of the document and of its attachment"
    )]
    fn check_place(
        &mut self,
        src: &SourceText,
        file: &str,
        base: &str,
        base_offset: usize,
        policy: &Policy,
        place: PolicyKind,
        attached_at: Option<String>,
    ) {
        if !self.checked.insert((policy.id.to_string(), place)) {
            return;
        }
        let (errors, warnings) = parse::check_place(&policy.document, place);
        for e in errors {
            let attached = attached_at.clone().map(|at| (place.describe(), at));
            self.policy_error(src, file, base, base_offset, e, attached);
        }
        for w in warnings {
            self.policy_warning(src, file, base, base_offset, w);
        }
    }

    /// Resolve a policy reference (id or inline document) at `pointer` of `src`.
    fn policy_ref(
        &mut self,
        texts: &HashMap<String, SourceText>,
        src: &SourceText,
        file: &str,
        pointer: &str,
        raw: &RawValue,
        place: PolicyKind,
    ) -> Option<Arc<Policy>> {
        let text = raw.get();
        match text.trim_start().as_bytes().first() {
            Some(b'"') => {
                let id: String = serde_json::from_str(text).ok()?;
                let Some(pf) = self.policies.get_mut(&id) else {
                    self.error_at(src, file, pointer, B::UnknownPolicy(id));
                    return None;
                };
                pf.attached = true;
                let parsed = pf.parsed.clone()?;
                let path = pf.path.clone();
                if let Some(psrc) = texts.get(&path) {
                    self.check_place(
                        psrc,
                        &path,
                        "",
                        0,
                        &parsed,
                        place,
                        Some(format!("{file} {pointer}")),
                    );
                }
                Some(parsed)
            }
            Some(b'{') => {
                let len = u64::try_from(text.len()).unwrap_or(u64::MAX);
                if len > self.limits.max_policy_bytes {
                    self.error_at(
                        src,
                        file,
                        pointer,
                        B::TooLarge {
                            what: "inline policy document",
                            size: len,
                            limit: self.limits.max_policy_bytes,
                            setting: "max_policy_bytes",
                        },
                    );
                    return None;
                }
                let base_offset =
                    (text.as_ptr() as usize).saturating_sub(src.text().as_ptr() as usize);
                let position = |o| src.position(base_offset + o);
                match parse::parse_checked(text, &position, Some(&mut self.catalogue)) {
                    Ok(p) => {
                        for w in p.warnings {
                            self.policy_warning(src, file, pointer, base_offset, w);
                        }
                        let policy = Arc::new(Policy {
                            id: format!("{file}#{pointer}").into(),
                            file: file.into(),
                            pointer: pointer.to_owned(),
                            document: p.document,
                        });
                        self.check_place(src, file, pointer, base_offset, &policy, place, None);
                        Some(policy)
                    }
                    Err(rejected) => {
                        for e in rejected.errors {
                            self.policy_error(src, file, pointer, base_offset, e, None);
                        }
                        for w in rejected.warnings {
                            self.policy_warning(src, file, pointer, base_offset, w);
                        }
                        None
                    }
                }
            }
            _ => {
                self.error_at(src, file, pointer, B::PolicyRef);
                None
            }
        }
    }

    fn tags(
        &mut self,
        src: &SourceText,
        file: &str,
        pointer: &str,
        tags: &UniqueMap<String>,
    ) -> Vec<Tag> {
        let mut out: Vec<Tag> = Vec::with_capacity(tags.0.len());
        let mut seen = HashSet::new();
        for (k, v) in &tags.0 {
            let lower = k.to_lowercase();
            if !seen.insert(lower.clone()) {
                self.error_at(
                    src,
                    file,
                    &locate::push_segment(pointer, k),
                    B::DuplicateTag(k.clone()),
                );
                continue;
            }
            out.push(Tag {
                key: k.as_str().into(),
                key_lower: lower.into(),
                value: v.as_str().into(),
            });
        }
        out.sort_by(|a, b| a.key_lower.cmp(&b.key_lower));
        out
    }
}

fn group_arn(s: &str) -> Option<String> {
    let [arn, partition, service, region, account, rest] = split_arn(s)?;
    let ok = arn.eq_ignore_ascii_case("arn")
        && matches!(
            partition.to_ascii_lowercase().as_str(),
            "aws" | "aws-cn" | "aws-us-gov"
        )
        && service.eq_ignore_ascii_case("iam")
        && region.is_empty()
        && principal::is_account_id(account)
        && rest
            .strip_prefix("group/")
            .is_some_and(|n| !n.is_empty() && !n.ends_with('/'))
        && !s.contains(['*', '?']);
    ok.then(|| canonical_arn(s))
}

fn load_principals(
    cx: &mut Loader<'_>,
    texts: &HashMap<String, SourceText>,
    src: &SourceText,
    groups: &mut HashMap<Arc<str>, Arc<Group>>,
    users: &mut HashMap<Arc<str>, Arc<Identity>>,
    roles: &mut HashMap<(Box<str>, Box<str>), Arc<Identity>>,
) {
    const FILE: &str = "principals.json";
    let shape: PrincipalsShape<'_> = match serde_json::from_str(src.text()) {
        Ok(s) => s,
        Err(e) => return cx.json_error(src, FILE, &e),
    };
    for (arn, g) in &shape.groups.0 {
        let ptr = locate::push_segment("/groups", arn);
        let Some(canonical) = group_arn(arn) else {
            cx.error_at(src, FILE, &ptr, B::GroupArn(arn.clone()));
            continue;
        };
        let mut policies = Vec::new();
        for (i, raw) in g.policies.iter().enumerate() {
            let p = locate::push_index(&format!("{ptr}/policies"), i);
            if let Some(policy) = cx.policy_ref(texts, src, FILE, &p, raw, PolicyKind::Group) {
                policies.push(policy);
            }
        }
        let canonical: Arc<str> = canonical.into();
        groups.insert(
            canonical.clone(),
            Arc::new(Group {
                arn: canonical,
                policies,
            }),
        );
    }
    // Names per (account, kind), ignoring case, to catch duplicates.
    let mut names: HashMap<(String, &'static str, String), String> = HashMap::new();
    for (key, p) in &shape.principals.0 {
        let ptr = locate::push_segment("/principals", key);
        let arn = match PrincipalArn::parse(key) {
            Ok(a @ (PrincipalArn::User { .. } | PrincipalArn::Role { .. })) => a,
            Ok(_) => {
                cx.error_at(
                    src,
                    FILE,
                    &ptr,
                    B::PrincipalKey {
                        value: key.clone(),
                        reason: "principals are users and roles; sessions map to their role".into(),
                    },
                );
                continue;
            }
            Err(e) => {
                cx.error_at(
                    src,
                    FILE,
                    &ptr,
                    B::PrincipalKey {
                        value: key.clone(),
                        reason: e.to_string(),
                    },
                );
                continue;
            }
        };
        let (kind, name) = match &arn {
            PrincipalArn::User { name, .. } => ("user", name.clone()),
            PrincipalArn::Role { name, .. } => ("role", name.clone()),
            _ => continue,
        };
        let name_key = (
            arn.account().to_owned(),
            kind,
            name.to_lowercase().to_string(),
        );
        if let Some(other) = names.get(&name_key) {
            cx.error_at(
                src,
                FILE,
                &ptr,
                B::DuplicateName {
                    kind,
                    name: name.to_string(),
                    account: arn.account().to_owned(),
                    other: other.clone(),
                },
            );
            continue;
        }
        names.insert(name_key, key.clone());

        let mut policies = Vec::new();
        for (i, raw) in p.policies.iter().enumerate() {
            let pp = locate::push_index(&format!("{ptr}/policies"), i);
            if let Some(policy) = cx.policy_ref(texts, src, FILE, &pp, raw, PolicyKind::Identity) {
                policies.push(policy);
            }
        }
        let mut member_of = Vec::new();
        if kind == "role" && !p.groups.is_empty() {
            cx.error_at(src, FILE, &format!("{ptr}/groups"), B::GroupsOnRole);
        } else {
            for (i, g) in p.groups.iter().enumerate() {
                let gp = locate::push_index(&format!("{ptr}/groups"), i);
                match groups.get(canonical_arn(g).as_str()) {
                    Some(group) => member_of.push(group.clone()),
                    None => cx.error_at(src, FILE, &gp, B::UnknownGroup(g.clone())),
                }
            }
        }
        let boundary = p.boundary.and_then(|raw| {
            cx.policy_ref(
                texts,
                src,
                FILE,
                &format!("{ptr}/boundary"),
                raw,
                PolicyKind::Boundary,
            )
        });
        let tags = cx.tags(src, FILE, &format!("{ptr}/tags"), &p.tags);
        let arn_text: Arc<str> = arn.to_string().into();
        let identity = Arc::new(Identity {
            arn: arn.clone(),
            arn_text: arn_text.clone(),
            policies,
            groups: member_of,
            boundary,
            tags,
            unique_id: p.unique_id.as_deref().map(Arc::from),
        });
        if kind == "user" {
            users.insert(arn_text, identity);
        } else {
            roles.insert((arn.account().into(), name.as_str().into()), identity);
        }
    }
}

/// Whether a canonical ARN names a KMS key (`arn:*:kms:*:*:key/*`).
pub(crate) fn is_kms_key_arn(arn: &str) -> bool {
    split_arn(arn).is_some_and(|[a, _, svc, _, _, rest]| {
        a.eq_ignore_ascii_case("arn") && svc.eq_ignore_ascii_case("kms") && rest.starts_with("key/")
    })
}

/// Whether an ARN names an IAM role (`arn:*:iam::*:role/…`).
pub(crate) fn is_role_arn(arn: &str) -> bool {
    split_arn(arn).is_some_and(|[a, _, svc, _, _, rest]| {
        a.eq_ignore_ascii_case("arn")
            && svc.eq_ignore_ascii_case("iam")
            && rest.starts_with("role/")
    })
}

fn load_resources(
    cx: &mut Loader<'_>,
    texts: &HashMap<String, SourceText>,
    src: &SourceText,
    resources: &mut HashMap<Arc<str>, Arc<Resource>>,
) {
    const FILE: &str = "resources.json";
    let shape: UniqueMap<ResourceShape<'_>> = match serde_json::from_str(src.text()) {
        Ok(s) => s,
        Err(e) => return cx.json_error(src, FILE, &e),
    };
    for (key, r) in &shape.0 {
        let ptr = locate::push_segment("", key);
        let Some(pieces) = split_arn(key).filter(|p| p[0].eq_ignore_ascii_case("arn")) else {
            cx.error_at(src, FILE, &ptr, B::ResourceArn(key.clone()));
            continue;
        };
        let canonical: Arc<str> = canonical_arn(key).into();
        if resources.contains_key(&canonical) {
            cx.error_at(
                src,
                FILE,
                &ptr,
                B::ResourceArn(format!("{key}` repeats `{canonical}")),
            );
            continue;
        }
        let is_key = is_kms_key_arn(key);
        let account = match &r.account {
            Some(a) if !principal::is_account_id(a) => {
                cx.error_at(src, FILE, &format!("{ptr}/account"), B::Account(a.clone()));
                None
            }
            other => other.as_deref().map(Box::from),
        };
        let key_info = if is_key {
            let state = match r.state.as_deref() {
                None => Some(KeyState::Enabled),
                Some(s) => {
                    let st = KeyState::parse(s);
                    if st.is_none() {
                        cx.error_at(
                            src,
                            FILE,
                            &format!("{ptr}/state"),
                            B::KeyState(s.to_owned()),
                        );
                    }
                    st
                }
            };
            let mut aliases = Vec::new();
            for (i, a) in r.aliases.iter().flatten().enumerate() {
                if a.strip_prefix("alias/").is_some_and(|n| !n.is_empty()) {
                    aliases.push(Box::from(a.as_str()));
                } else {
                    cx.error_at(
                        src,
                        FILE,
                        &format!("{ptr}/aliases/{i}"),
                        B::Alias(a.clone()),
                    );
                }
            }
            state.map(|state| KeyInfo {
                state,
                aliases,
                key_spec: r.key_spec.as_deref().map(Box::from),
                key_usage: r.key_usage.as_deref().map(Box::from),
                key_origin: r.key_origin.as_deref().map(Box::from),
                aws_managed: r.aws_managed.unwrap_or(false),
            })
        } else {
            for (field, present) in [
                ("state", r.state.is_some()),
                ("aliases", r.aliases.is_some()),
                ("key_spec", r.key_spec.is_some()),
                ("key_usage", r.key_usage.is_some()),
                ("key_origin", r.key_origin.is_some()),
                ("aws_managed", r.aws_managed.is_some()),
            ] {
                if present {
                    cx.error_at(src, FILE, &format!("{ptr}/{field}"), B::KeyOnlyField(field));
                }
            }
            None
        };
        let place = if is_key {
            PolicyKind::KeyPolicy
        } else if is_role_arn(key) {
            // U45: a role's entry carries its trust policy.
            PolicyKind::Trust
        } else {
            PolicyKind::Resource
        };
        let policy = match r.policy {
            Some(raw) => cx.policy_ref(texts, src, FILE, &format!("{ptr}/policy"), raw, place),
            None => {
                if is_key {
                    cx.error_at(src, FILE, &ptr, B::KeyPolicyRequired);
                }
                None
            }
        };
        let account_piece = pieces[4];
        let names_account =
            account_piece.len() == 12 && account_piece.bytes().all(|b| b.is_ascii_digit());
        if r.policy.is_some() && !names_account && account.is_none() {
            cx.warning_at(
                src,
                FILE,
                &ptr,
                Finding::BundleWarning(BW::ResourceWithoutAccount),
            );
        }
        let tags = cx.tags(src, FILE, &format!("{ptr}/tags"), &r.tags);
        resources.insert(
            canonical.clone(),
            Arc::new(Resource {
                arn: canonical,
                policy,
                tags,
                account,
                key: key_info,
            }),
        );
    }
}

fn load_levels(
    cx: &mut Loader<'_>,
    texts: &HashMap<String, SourceText>,
    src: &SourceText,
    ptr: &str,
    raw: &RawValue,
    place: PolicyKind,
) -> Option<Vec<Vec<Arc<Policy>>>> {
    const FILE: &str = "accounts.json";
    let items: Vec<&RawValue> = match serde_json::from_str(raw.get()) {
        Ok(v) => v,
        Err(_) => {
            cx.error_at(
                src,
                FILE,
                ptr,
                B::Levels("expected a list of policies, or a list of lists (one per level)"),
            );
            return None;
        }
    };
    if items.is_empty() {
        cx.error_at(
            src,
            FILE,
            ptr,
            B::Levels("must not be empty: omit it to apply no limits"),
        );
        return None;
    }
    let is_list = |r: &RawValue| r.get().trim_start().starts_with('[');
    let lists = items.iter().filter(|r| is_list(r)).count();
    if lists != 0 && lists != items.len() {
        cx.error_at(
            src,
            FILE,
            ptr,
            B::Levels("mixes policies and lists of policies"),
        );
        return None;
    }
    let mut levels = Vec::new();
    let mut ok = true;
    if lists == 0 {
        let mut level = Vec::new();
        for (i, r) in items.iter().enumerate() {
            match cx.policy_ref(texts, src, FILE, &locate::push_index(ptr, i), r, place) {
                Some(p) => level.push(p),
                None => ok = false,
            }
        }
        levels.push(level);
    } else {
        for (i, r) in items.iter().enumerate() {
            let lp = locate::push_index(ptr, i);
            let inner: Vec<&RawValue> = match serde_json::from_str(r.get()) {
                Ok(v) => v,
                Err(_) => {
                    cx.error_at(src, FILE, &lp, B::Levels("expected a list of policies"));
                    ok = false;
                    continue;
                }
            };
            if inner.is_empty() {
                cx.error_at(src, FILE, &lp, B::Levels("a level must not be empty"));
                ok = false;
                continue;
            }
            let mut level = Vec::new();
            for (j, r) in inner.iter().enumerate() {
                if is_list(r) {
                    cx.error_at(src, FILE, &locate::push_index(&lp, j), B::PolicyRef);
                    ok = false;
                    continue;
                }
                match cx.policy_ref(texts, src, FILE, &locate::push_index(&lp, j), r, place) {
                    Some(p) => level.push(p),
                    None => ok = false,
                }
            }
            levels.push(level);
        }
    }
    ok.then_some(levels)
}

fn load_accounts(
    cx: &mut Loader<'_>,
    texts: &HashMap<String, SourceText>,
    src: &SourceText,
    accounts: &mut HashMap<Box<str>, Account>,
) {
    const FILE: &str = "accounts.json";
    let shape: UniqueMap<AccountShape<'_>> = match serde_json::from_str(src.text()) {
        Ok(s) => s,
        Err(e) => return cx.json_error(src, FILE, &e),
    };
    for (id, a) in &shape.0 {
        let ptr = locate::push_segment("", id);
        if !principal::is_account_id(id) {
            cx.error_at(src, FILE, &ptr, B::Account(id.clone()));
            continue;
        }
        let scps = a.scps.and_then(|raw| {
            load_levels(cx, texts, src, &format!("{ptr}/scps"), raw, PolicyKind::Scp)
        });
        let rcps = a.rcps.and_then(|raw| {
            load_levels(cx, texts, src, &format!("{ptr}/rcps"), raw, PolicyKind::Rcp)
        });
        accounts.insert(
            id.as_str().into(),
            Account {
                scps,
                rcps,
                org_id: a.org_id.as_deref().map(Box::from),
                org_paths: a
                    .org_paths
                    .as_ref()
                    .map(|v| v.iter().map(|s| Box::from(s.as_str())).collect()),
            },
        );
    }
}

/// Parse a grantee or retiring principal.
pub(crate) fn parse_grantee(s: &str) -> Result<PrincipalEntry, String> {
    if principal::is_account_id(s) {
        return Ok(PrincipalEntry::Account(s.into()));
    }
    if principal::is_service_principal(s) {
        return Ok(PrincipalEntry::Service(s.into()));
    }
    match PrincipalArn::parse(s) {
        Ok(PrincipalArn::Root { account, .. }) => {
            Ok(PrincipalEntry::Account(account.as_str().into()))
        }
        Ok(arn) => Ok(PrincipalEntry::Arn(arn)),
        Err(e) => Err(e.to_string()),
    }
}

fn load_grants(
    cx: &mut Loader<'_>,
    src: &SourceText,
    resources: &HashMap<Arc<str>, Arc<Resource>>,
    grants: &mut Vec<Arc<Grant>>,
) {
    const FILE: &str = "grants.json";
    let shape: Vec<GrantShape> = match serde_json::from_str(src.text()) {
        Ok(s) => s,
        Err(e) => return cx.json_error(src, FILE, &e),
    };
    let mut ids = HashSet::new();
    for (i, g) in shape.into_iter().enumerate() {
        let ptr = format!("/{i}");
        let mut ok = true;
        if g.grant_id.is_empty() {
            cx.error_at(src, FILE, &format!("{ptr}/grant_id"), B::Empty("grant_id"));
            ok = false;
        } else if !ids.insert(g.grant_id.clone()) {
            cx.error_at(
                src,
                FILE,
                &format!("{ptr}/grant_id"),
                B::DuplicateGrant(g.grant_id.clone()),
            );
            ok = false;
        }
        let key: Arc<str> = canonical_arn(&g.key).into();
        if !is_kms_key_arn(&key) || !resources.contains_key(&key) {
            cx.error_at(src, FILE, &format!("{ptr}/key"), B::GrantKey(g.key.clone()));
            ok = false;
        }
        let grantee = match parse_grantee(&g.grantee) {
            Ok(p) => Some(p),
            Err(reason) => {
                cx.error_at(
                    src,
                    FILE,
                    &format!("{ptr}/grantee"),
                    B::Grantee {
                        value: g.grantee.clone(),
                        reason,
                    },
                );
                None
            }
        };
        let retiring = match g.retiring_principal.as_deref().map(parse_grantee) {
            Some(Ok(p)) => Some(p),
            Some(Err(reason)) => {
                cx.error_at(
                    src,
                    FILE,
                    &format!("{ptr}/retiring_principal"),
                    B::Grantee {
                        value: g.retiring_principal.clone().unwrap_or_default(),
                        reason,
                    },
                );
                ok = false;
                None
            }
            None => None,
        };
        if g.operations.is_empty() {
            cx.error_at(
                src,
                FILE,
                &format!("{ptr}/operations"),
                B::Empty("operations"),
            );
            ok = false;
        }
        let mut operations = Vec::new();
        for (j, op) in g.operations.iter().enumerate() {
            match GrantOperation::parse(op) {
                Some(o) => operations.push(o),
                None => {
                    cx.error_at(
                        src,
                        FILE,
                        &format!("{ptr}/operations/{j}"),
                        B::GrantOperation(op.clone()),
                    );
                    ok = false;
                }
            }
        }
        let pairs = |m: UniqueMap<String>| -> Vec<(Box<str>, Box<str>)> {
            m.0.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
        };
        let constraint = match g.constraints {
            None => None,
            Some(c) => match (c.encryption_context_equals, c.encryption_context_subset) {
                (Some(_), Some(_)) => {
                    cx.error_at(
                        src,
                        FILE,
                        &format!("{ptr}/constraints"),
                        B::GrantConstraints,
                    );
                    ok = false;
                    None
                }
                (Some(e), None) => Some(GrantConstraint::Equals(pairs(e))),
                (None, Some(s)) => Some(GrantConstraint::Subset(pairs(s))),
                (None, None) => None,
            },
        };
        if let (true, Some(grantee)) = (ok, grantee) {
            grants.push(Arc::new(Grant {
                grant_id: g.grant_id.into(),
                key,
                grantee,
                operations,
                constraint,
                retiring_principal: retiring,
            }));
        }
    }
}
