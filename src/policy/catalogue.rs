//! The IAM service catalogue: every service prefix, action and condition
//! key AWS documents, so that `check` can say when a policy names one that
//! does not exist (a typo that would otherwise never match), with the
//! closest known name.
//!
//! The data is `iam-catalogue.txt`, written by `scripts/iam-catalogue` from
//! a maintained package of AWS's service reference (the file's second line
//! names the package and version). It is read once, on first use. What it
//! finds are warnings, never errors: a catalogue is always a little behind
//! AWS, and a bundle naming an action newer than it must still load.

use std::collections::HashMap;
use std::sync::OnceLock;

const DATA: &str = include_str!("iam-catalogue.txt");

/// The parsed catalogue.
pub(crate) struct Catalogue {
    /// Services by lower-cased prefix.
    services: HashMap<&'static str, Service>,
    /// Global condition keys (`aws:…`).
    global: Vec<KeyName>,
    /// Identity providers whose keys are not listed (`saml`, `accounts.google.com`).
    providers: Vec<KeyName>,
    /// Where the data came from (the file's `# source:` line).
    pub(crate) source: &'static str,
}

struct Service {
    /// Actions by lower-cased name, each with its name as AWS writes it.
    actions: HashMap<String, &'static str>,
    /// The service's own condition keys.
    keys: Vec<KeyName>,
}

/// A condition key as documented, with `${…}` placeholders for the parts
/// the policy chooses (`kms:EncryptionContext:${EncryptionContextKey}`).
struct KeyName {
    written: &'static str,
    /// The lower-cased text between placeholders.
    pieces: Vec<String>,
}

impl KeyName {
    fn new(written: &'static str) -> Self {
        let lower = written.to_lowercase();
        let mut pieces = Vec::new();
        let mut rest = lower.as_str();
        while let Some(open) = rest.find("${") {
            pieces.push(rest.get(..open).unwrap_or("").to_owned());
            rest = rest
                .get(open..)
                .and_then(|r| r.find('}').map(|close| r.get(close + 1..).unwrap_or("")))
                .unwrap_or("");
        }
        pieces.push(rest.to_owned());
        Self { written, pieces }
    }

    /// Whether a lower-cased key is this name, each placeholder standing for
    /// one or more characters.
    fn matches(&self, key: &str) -> bool {
        let [first, middle @ .., last] = self.pieces.as_slice() else {
            return self.pieces.first().is_some_and(|p| p == key);
        };
        let Some(mut rest) = key.strip_prefix(first.as_str()) else {
            return false;
        };
        for piece in middle {
            // A placeholder takes at least one character.
            let Some(found) = rest.get(1..).and_then(|r| r.find(piece.as_str())) else {
                return false;
            };
            rest = rest.get(1 + found + piece.len()..).unwrap_or("");
        }
        rest.len() > last.len() && rest.ends_with(last.as_str())
    }
}

/// The catalogue, read on first use.
pub(crate) fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| Catalogue::parse(DATA))
}

impl Catalogue {
    fn parse(data: &'static str) -> Self {
        let mut cat = Catalogue {
            services: HashMap::new(),
            global: Vec::new(),
            providers: Vec::new(),
            source: "",
        };
        let mut current: Option<&'static str> = None;
        for line in data.lines() {
            if let Some(source) = line.strip_prefix("# source: ") {
                cat.source = source;
            }
            let Some((tag, value)) = line.split_once(' ') else {
                continue;
            };
            match tag {
                "s" => {
                    cat.services.insert(
                        value,
                        Service {
                            actions: HashMap::new(),
                            keys: Vec::new(),
                        },
                    );
                    current = Some(value);
                }
                "a" | "k" => {
                    let Some(service) = current.and_then(|s| cat.services.get_mut(s)) else {
                        continue;
                    };
                    if tag == "a" {
                        service.actions.insert(value.to_lowercase(), value);
                    } else {
                        service.keys.push(KeyName::new(value));
                    }
                }
                "g" => cat.global.push(KeyName::new(value)),
                "p" => cat.providers.push(KeyName::new(value)),
                _ => {}
            }
        }
        cat
    }

    /// What is wrong with an action pattern (`service` and `name` as the
    /// model keeps them: lower-cased), if anything. `budget` is how many
    /// names may still be compared: a wildcard is checked, and a
    /// suggestion looked for, only while it lasts.
    /// The actions of `service` (lower-cased prefix) whose lower-cased
    /// names match `pattern` (`*`, `?`), as AWS writes them, sorted; none
    /// for a service the catalogue does not know.
    pub(crate) fn actions_matching(&self, service: &str, pattern: &str) -> Vec<&'static str> {
        let Some(svc) = self.services.get(service) else {
            return Vec::new();
        };
        let pattern = pattern.to_ascii_lowercase();
        let mut out: Vec<&'static str> = svc
            .actions
            .iter()
            .filter(|(lower, _)| wildcard_match(pattern.as_bytes(), lower.as_bytes()))
            .map(|(_, written)| *written)
            .collect();
        out.sort_unstable();
        out
    }

    pub(crate) fn action(
        &self,
        service: &str,
        name: &str,
        budget: &mut u64,
    ) -> Option<ActionFinding> {
        let Some(svc) = self.services.get(service) else {
            let suggestion = spend(budget, self.services.len())
                .then(|| closest(service, self.services.keys().copied()))
                .flatten();
            return Some(ActionFinding::UnknownService { suggestion });
        };
        if !name.contains(['*', '?']) {
            if svc.actions.contains_key(name) {
                return None;
            }
            let suggestion = spend(budget, svc.actions.len())
                .then(|| closest(name, svc.actions.values().copied()))
                .flatten()
                .map(|a| format!("{service}:{a}"));
            return Some(ActionFinding::UnknownAction { suggestion });
        }
        if !spend(budget, svc.actions.len())
            || svc
                .actions
                .keys()
                .any(|a| wildcard_match(name.as_bytes(), a.as_bytes()))
        {
            None
        } else {
            Some(ActionFinding::MatchesNothing)
        }
    }

    /// Whether a condition key (lower-cased) is unknown: `None` when the
    /// catalogue knows it (or cannot judge it: a key holding a policy
    /// variable, an identity provider's key, or the budget has run out),
    /// else the closest known key, if any is close.
    pub(crate) fn condition_key(
        &self,
        key: &str,
        budget: &mut u64,
    ) -> Option<Option<&'static str>> {
        if key.contains("${") {
            return None;
        }
        let (prefix, _) = key.split_once(':')?;
        let names: &[KeyName] = if prefix == "aws" {
            &self.global
        } else if let Some(svc) = self.services.get(prefix) {
            &svc.keys
        } else if prefix.contains(['.', '/']) || self.providers.iter().any(|p| p.matches(prefix)) {
            // An identity provider's keys (trust policies): the listed ones,
            // and any prefix that is a host name (every OIDC provider has its own).
            return None;
        } else {
            return Some(None);
        };
        if !spend(budget, 2 * names.len()) || names.iter().any(|k| k.matches(key)) {
            return None;
        }
        Some(closest_key(key, names.iter()))
    }
}

/// Take `cost` from `budget` if it holds that much.
fn spend(budget: &mut u64, cost: usize) -> bool {
    let cost = u64::try_from(cost).unwrap_or(u64::MAX);
    match budget.checked_sub(cost) {
        Some(left) => {
            *budget = left;
            true
        }
        None => false,
    }
}

/// Whether `text` matches `pattern`, whose `*` is any run and `?` any one
/// byte (action names are ASCII). Iterative, with one backtrack point: linear
/// in practice, quadratic at worst, on names of a few dozen bytes.
/// Whether `text` matches `pattern` (`*` any run, `?` one byte).
pub(crate) fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// What the catalogue says of an action pattern.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ActionFinding {
    /// The service prefix is not in the catalogue.
    UnknownService { suggestion: Option<&'static str> },
    /// The service has no action of this name.
    UnknownAction { suggestion: Option<String> },
    /// A wildcard pattern that names no action of its service.
    MatchesNothing,
}

/// The known name closest to `word` (ignoring case), if one is close
/// enough to be a likely typo: at most two edits, and fewer than a third of
/// the word.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    let len = word.chars().count();
    let limit = 2.min(len / 3).max(1);
    candidates
        .filter(|c| c.len().abs_diff(len) <= limit)
        .map(|c| (strsim::damerau_levenshtein(&word, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)))
        .map(|(_, c)| c)
}

/// The known key closest to a lower-cased one. A name with a placeholder
/// is compared by what precedes it (`aws:principaltag/` for
/// `aws:PrincipalTag/${TagKey}`) with as many characters of the key.
fn closest_key<'a>(key: &str, names: impl Iterator<Item = &'a KeyName>) -> Option<&'static str> {
    let mut best: Option<(usize, &'static str)> = None;
    for n in names {
        let candidate = n.pieces.first().map_or("", String::as_str);
        let against = if n.pieces.len() > 1 {
            let len = candidate.chars().count();
            key.char_indices()
                .nth(len)
                .and_then(|(i, _)| key.get(..i))
                .unwrap_or(key)
        } else {
            key
        };
        let d = strsim::damerau_levenshtein(against, candidate);
        let limit = 2.min(against.chars().count() / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, bw)| (d, n.written) < (bd, bw)) {
            best = Some((d, n.written));
        }
    }
    best.map(|(_, w)| w)
}

/// The known name closest to a misspelt one (`Actoin` → `Action`,
/// `action` → `Action`).
pub(crate) fn closest_name(word: &str, known: &[&'static str]) -> Option<&'static str> {
    closest(word, known.iter().copied())
}

/// The operator closest to an unknown one, keeping its qualifiers
/// (`ForAnyValue:StringEqualz` → `ForAnyValue:StringEquals`).
pub(crate) fn closest_operator(written: &str) -> Option<String> {
    let (set, rest) = ["ForAllValues:", "ForAnyValue:"]
        .iter()
        .find_map(|p| written.strip_prefix(p).map(|r| (*p, r)))
        .unwrap_or(("", written));
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, "IfExists"),
        None => (rest, ""),
    };
    let names = super::model::BaseOperator::ALL.iter().map(|o| o.name());
    closest(base, names).map(|b| format!("{set}{b}{if_exists}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_loads_and_names_its_source() {
        let c = catalogue();
        assert!(c.source.contains("iam-data"), "{}", c.source);
        assert!(c.services.len() > 300);
        assert!(c.services.get("kms").is_some_and(|s| s.actions.len() > 40));
    }

    #[test]
    fn actions() {
        let c = catalogue();
        let mut budget = u64::MAX;
        let b = &mut budget;
        assert_eq!(c.action("kms", "decrypt", b), None);
        assert_eq!(c.action("kms", "get*", b), None);
        assert_eq!(
            c.action("kms", "getpublikkey", b),
            Some(ActionFinding::UnknownAction {
                suggestion: Some("kms:GetPublicKey".into())
            })
        );
        assert_eq!(
            c.action("kms", "frobnicate*", b),
            Some(ActionFinding::MatchesNothing)
        );
        assert_eq!(
            c.action("kmss", "decrypt", b),
            Some(ActionFinding::UnknownService {
                suggestion: Some("kms")
            })
        );
        assert!(matches!(
            c.action("nosuchservicehere", "x", b),
            Some(ActionFinding::UnknownService { suggestion: None })
        ));
    }

    #[test]
    fn condition_keys() {
        let c = catalogue();
        let mut budget = u64::MAX;
        let b = &mut budget;
        for known in [
            "aws:username",
            "aws:principaltag/team",
            "kms:encryptioncontext:dept",
            "kms:callerAccount".to_lowercase().as_str(),
            "kms:viaservice",
            "accounts.google.com:aud",
            "token.actions.githubusercontent.com:sub",
            "saml:aud",
            "aws:resourcetag/${aws:username}",
        ] {
            assert_eq!(c.condition_key(known, b), None, "{known}");
        }
        assert_eq!(
            c.condition_key("aws:usrname", b),
            Some(Some("aws:username"))
        );
        assert_eq!(
            c.condition_key("kms:calleracount", b),
            Some(Some("kms:CallerAccount"))
        );
        assert_eq!(
            c.condition_key("aws:principletag/team", b),
            Some(Some("aws:PrincipalTag/${TagKey}"))
        );
        assert_eq!(c.condition_key("zzz:qqqqqqqqqqqq", b), Some(None));
    }

    #[test]
    fn an_exhausted_budget_checks_no_wildcard_and_suggests_nothing() {
        let c = catalogue();
        let mut none = 0;
        assert_eq!(c.action("kms", "frobnicate*", &mut none), None);
        assert_eq!(
            c.action("kms", "getpublikkey", &mut none),
            Some(ActionFinding::UnknownAction { suggestion: None })
        );
        assert_eq!(c.action("kms", "decrypt", &mut none), None);
        assert_eq!(c.condition_key("aws:usrname", &mut none), None);
        let mut some = 10_000;
        assert!(c.action("kms", "frobnicate*", &mut some).is_some());
        assert!(some < 10_000);
    }

    #[test]
    fn wildcards() {
        for (p, t, m) in [
            ("get*", "getpublickey", true),
            ("*key", "getpublickey", true),
            ("g?t*", "getkey", true),
            ("get", "getkey", false),
            ("*a*b", "xaxb", true),
            ("*a*b", "xaxbx", false),
            ("", "", true),
            ("*", "", true),
        ] {
            assert_eq!(wildcard_match(p.as_bytes(), t.as_bytes()), m, "{p} {t}");
        }
    }

    #[test]
    fn placeholders_take_at_least_one_character() {
        let k = KeyName::new("kms:EncryptionContext:${EncryptionContextKey}");
        assert!(k.matches("kms:encryptioncontext:a"));
        assert!(!k.matches("kms:encryptioncontext:"));
        let two = KeyName::new("svc:${A}/mid/${B}.x");
        assert!(two.matches("svc:a/mid/b.x"));
        assert!(!two.matches("svc:/mid/b.x"));
        assert!(!two.matches("svc:a/mid/.x"));
    }

    #[test]
    fn operators() {
        assert_eq!(
            closest_operator("StringEqualz").as_deref(),
            Some("StringEquals")
        );
        assert_eq!(
            closest_operator("ForAnyValue:StringLikee").as_deref(),
            Some("ForAnyValue:StringLike")
        );
        assert_eq!(
            closest_operator("ArnEqualIfExists").as_deref(),
            Some("ArnEqualsIfExists")
        );
        assert_eq!(closest_operator("Quux"), None);
    }
}
