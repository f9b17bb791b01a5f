//! Principal ARNs and service principals: the callers a request names and
//! the identities policies, bundles and grants refer to.
//!
//! Parsing is strict (docs/evaluation.md §1): partitions `aws`, `aws-cn`,
//! `aws-us-gov`; 12-digit accounts; no wildcards. The canonical form
//! lower-cases the partition, service, region and account pieces and keeps
//! the rest as written, so two spellings of one principal compare equal as
//! strings (U31).

use std::fmt;

use compact_str::CompactString;

/// An IAM or STS principal ARN.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PrincipalArn {
    /// `arn:P:iam::A:root`.
    Root {
        /// Partition.
        partition: CompactString,
        /// Account.
        account: CompactString,
    },
    /// `arn:P:iam::A:user/[path/]N`.
    User {
        /// Partition.
        partition: CompactString,
        /// Account.
        account: CompactString,
        /// `/` or `/a/b/`.
        path: CompactString,
        /// User name.
        name: CompactString,
    },
    /// `arn:P:iam::A:role/[path/]R`.
    Role {
        /// Partition.
        partition: CompactString,
        /// Account.
        account: CompactString,
        /// `/` or `/a/b/`.
        path: CompactString,
        /// Role name.
        name: CompactString,
    },
    /// `arn:P:sts::A:assumed-role/R/S`.
    AssumedRole {
        /// Partition.
        partition: CompactString,
        /// Account.
        account: CompactString,
        /// Role name.
        role: CompactString,
        /// Session name.
        session: CompactString,
    },
    /// `arn:P:sts::A:federated-user/N`.
    FederatedUser {
        /// Partition.
        partition: CompactString,
        /// Account.
        account: CompactString,
        /// Federated user name.
        name: CompactString,
    },
}

/// Why a principal ARN was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PrincipalArnError {
    /// Not `arn:` and six colon pieces.
    #[error("not an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`)")]
    NotArn,
    /// Unknown partition.
    #[error("unknown partition (expected `aws`, `aws-cn` or `aws-us-gov`)")]
    Partition,
    /// Account piece is not 12 digits.
    #[error("the account must be 12 digits")]
    Account,
    /// Region piece not empty.
    #[error("IAM and STS principal ARNs have an empty region")]
    Region,
    /// A wildcard somewhere.
    #[error("wildcards are not allowed in principals")]
    Wildcard,
    /// Not one of the principal resource forms.
    #[error(
        "not a principal: expected `iam` `root`, `user/…` or `role/…`, or `sts` `assumed-role/ROLE/SESSION` or `federated-user/NAME`"
    )]
    Form,
}

/// Whether `s` is a 12-digit account id.
pub(crate) fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` looks like a service principal (`x.amazonaws.com[.cn]`).
pub(crate) fn is_service_principal(s: &str) -> bool {
    let base = s
        .strip_suffix(".amazonaws.com.cn")
        .or_else(|| s.strip_suffix(".amazonaws.com"));
    base.is_some_and(|b| {
        !b.is_empty()
            && b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
    })
}

/// Split an ARN at its first five colons.
pub(crate) fn split_arn(s: &str) -> Option<[&str; 6]> {
    let (a, s) = split_once_ascii(s, b':')?;
    let (b, s) = split_once_ascii(s, b':')?;
    let (c, s) = split_once_ascii(s, b':')?;
    let (d, s) = split_once_ascii(s, b':')?;
    let (e, f) = split_once_ascii(s, b':')?;
    Some([a, b, c, d, e, f])
}

/// `s.split_once(sep)` for an ASCII separator, by byte search: the `char`
/// pattern of `str::split_once` confirms each match with a `memcmp` call,
/// which costs more than the search on the request path (see BENCHMARKS.md).
#[inline]
pub(crate) fn split_once_ascii(s: &str, sep: u8) -> Option<(&str, &str)> {
    debug_assert!(sep.is_ascii());
    let i = s.bytes().position(|b| b == sep)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

fn split_path_name(rest: &str) -> Option<(&str, &str)> {
    // rest starts with '/': "/name" or "/a/b/name".
    let idx = rest.bytes().rposition(|b| b == b'/')?;
    let (path, name) = rest.split_at(idx + 1);
    if name.is_empty() || !path.starts_with('/') || path.contains("//") {
        return None;
    }
    Some((path, name))
}

impl PrincipalArn {
    /// Parse a principal ARN.
    pub(crate) fn parse(s: &str) -> Result<Self, PrincipalArnError> {
        if s.contains(['*', '?']) {
            return Err(PrincipalArnError::Wildcard);
        }
        let [arn, partition, service, region, account, rest] =
            split_arn(s).ok_or(PrincipalArnError::NotArn)?;
        if !arn.eq_ignore_ascii_case("arn") {
            return Err(PrincipalArnError::NotArn);
        }
        let Some(partition) = ["aws", "aws-cn", "aws-us-gov"]
            .into_iter()
            .find(|p| p.eq_ignore_ascii_case(partition))
        else {
            return Err(PrincipalArnError::Partition);
        };
        if !is_account_id(account) {
            return Err(PrincipalArnError::Account);
        }
        if !region.is_empty() {
            return Err(PrincipalArnError::Region);
        }
        let partition: CompactString = partition.into();
        let account: CompactString = account.into();
        let service = if service.eq_ignore_ascii_case("iam") {
            "iam"
        } else if service.eq_ignore_ascii_case("sts") {
            "sts"
        } else {
            ""
        };
        match service {
            "iam" => {
                if rest == "root" {
                    return Ok(Self::Root { partition, account });
                }
                if let Some(r) = rest.strip_prefix("user") {
                    let (path, name) = split_path_name(r).ok_or(PrincipalArnError::Form)?;
                    return Ok(Self::User {
                        partition,
                        account,
                        path: path.into(),
                        name: name.into(),
                    });
                }
                if let Some(r) = rest.strip_prefix("role") {
                    let (path, name) = split_path_name(r).ok_or(PrincipalArnError::Form)?;
                    return Ok(Self::Role {
                        partition,
                        account,
                        path: path.into(),
                        name: name.into(),
                    });
                }
                Err(PrincipalArnError::Form)
            }
            "sts" => {
                if let Some(r) = rest.strip_prefix("assumed-role/") {
                    let (role, session) =
                        split_once_ascii(r, b'/').ok_or(PrincipalArnError::Form)?;
                    if role.is_empty() || session.is_empty() || session.bytes().any(|b| b == b'/') {
                        return Err(PrincipalArnError::Form);
                    }
                    return Ok(Self::AssumedRole {
                        partition,
                        account,
                        role: role.into(),
                        session: session.into(),
                    });
                }
                if let Some(name) = rest.strip_prefix("federated-user/") {
                    if name.is_empty() || name.bytes().any(|b| b == b'/') {
                        return Err(PrincipalArnError::Form);
                    }
                    return Ok(Self::FederatedUser {
                        partition,
                        account,
                        name: name.into(),
                    });
                }
                Err(PrincipalArnError::Form)
            }
            _ => Err(PrincipalArnError::Form),
        }
    }

    /// The account.
    pub(crate) fn account(&self) -> &str {
        match self {
            Self::Root { account, .. }
            | Self::User { account, .. }
            | Self::Role { account, .. }
            | Self::AssumedRole { account, .. }
            | Self::FederatedUser { account, .. } => account,
        }
    }
}

impl fmt::Display for PrincipalArn {
    /// The canonical ARN.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root { partition, account } => write!(f, "arn:{partition}:iam::{account}:root"),
            Self::User {
                partition,
                account,
                path,
                name,
            } => write!(f, "arn:{partition}:iam::{account}:user{path}{name}"),
            Self::Role {
                partition,
                account,
                path,
                name,
            } => write!(f, "arn:{partition}:iam::{account}:role{path}{name}"),
            Self::AssumedRole {
                partition,
                account,
                role,
                session,
            } => write!(
                f,
                "arn:{partition}:sts::{account}:assumed-role/{role}/{session}"
            ),
            Self::FederatedUser {
                partition,
                account,
                name,
            } => write!(f, "arn:{partition}:sts::{account}:federated-user/{name}"),
        }
    }
}

/// The byte offset where the sixth piece of an ARN begins (just after its
/// fifth colon), if it has one.
fn arn_rest_offset(s: &str) -> Option<usize> {
    let mut seen = 0;
    for (i, b) in s.bytes().enumerate() {
        if b == b':' {
            seen += 1;
            if seen == 5 {
                return Some(i + 1);
            }
        }
    }
    None
}

/// Make an ARN canonical in place: lower-case its first five pieces, keep
/// the rest as written; text that is not an ARN is left unchanged
/// (nothing is allocated).
pub(crate) fn canonicalize_arn(s: &mut str) {
    if let Some(end) = arn_rest_offset(s)
        && let Some(head) = s.get_mut(..end)
    {
        head.make_ascii_lowercase();
    }
}

/// The canonical form of an ARN for lookups ([`canonicalize_arn`] on a copy).
pub(crate) fn canonical_arn(s: &str) -> String {
    let mut s = s.to_owned();
    canonicalize_arn(&mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_in_place_is_what_a_principal_prints() {
        for s in [
            "arn:aws:iam::111122223333:root",
            "ARN:AWS:IAM::111122223333:user/Division/Alice",
            "arn:AWS-CN:iam::111122223333:role/a/b/R",
            "arn:aws:STS::111122223333:assumed-role/R/Sess@X",
            "Arn:Aws-Us-Gov:sts::111122223333:federated-user/Bob",
        ] {
            let mut text = s.to_owned();
            canonicalize_arn(&mut text);
            assert_eq!(text, PrincipalArn::parse(s).unwrap().to_string());
        }
        // Resource ARNs: the sixth piece keeps its case, colons and all.
        assert_eq!(
            canonical_arn("ARN:AWS:KMS:US-West-2:111122223333:key/AbC:x"),
            "arn:aws:kms:us-west-2:111122223333:key/AbC:x"
        );
        // Fewer than five colons: not an ARN, unchanged.
        assert_eq!(canonical_arn("A:B:C:D:E"), "A:B:C:D:E");
        let mut not_arn = "no colons here".to_owned();
        canonicalize_arn(&mut not_arn);
        assert_eq!(not_arn, "no colons here");
        assert_eq!(
            split_arn("a:b:c:d:e:f:g"),
            Some(["a", "b", "c", "d", "e", "f:g"])
        );
        assert_eq!(split_arn("a:b:c:d:e"), None);
    }

    #[test]
    fn parses_every_form() {
        let p = |s| PrincipalArn::parse(s).map(|p| p.to_string());
        assert_eq!(
            p("arn:aws:iam::111122223333:root"),
            Ok("arn:aws:iam::111122223333:root".into())
        );
        assert_eq!(
            p("ARN:AWS:IAM::111122223333:user/division/alice"),
            Ok("arn:aws:iam::111122223333:user/division/alice".into())
        );
        assert_eq!(
            p("arn:aws-cn:iam::111122223333:role/R"),
            Ok("arn:aws-cn:iam::111122223333:role/R".into())
        );
        assert_eq!(
            p("arn:aws:sts::111122223333:assumed-role/R/s@x"),
            Ok("arn:aws:sts::111122223333:assumed-role/R/s@x".into())
        );
        assert!(p("arn:aws:sts::111122223333:federated-user/bob").is_ok());
    }

    #[test]
    fn refuses_what_is_not_a_principal() {
        let e = |s| PrincipalArn::parse(s).unwrap_err();
        assert_eq!(
            e("arn:aws:iam::111122223333:group/G"),
            PrincipalArnError::Form
        );
        assert_eq!(
            e("arn:aws:iam::11112222333:root"),
            PrincipalArnError::Account
        );
        assert_eq!(
            e("arn:aws-eu:iam::111122223333:root"),
            PrincipalArnError::Partition
        );
        assert_eq!(
            e("arn:aws:iam::111122223333:user/*"),
            PrincipalArnError::Wildcard
        );
        assert_eq!(
            e("arn:aws:iam:us-east-1:111122223333:root"),
            PrincipalArnError::Region
        );
        assert_eq!(e("arn:aws:s3:::bucket"), PrincipalArnError::Account);
        assert_eq!(
            e("arn:aws:iam::111122223333:user/"),
            PrincipalArnError::Form
        );
        assert_eq!(
            e("arn:aws:sts::111122223333:assumed-role/R"),
            PrincipalArnError::Form
        );
        assert_eq!(e("anonymous"), PrincipalArnError::NotArn);
    }

    #[test]
    fn service_principals() {
        assert!(is_service_principal("dynamodb.us-west-2.amazonaws.com"));
        assert!(is_service_principal("ec2.amazonaws.com.cn"));
        assert!(!is_service_principal("amazonaws.com"));
        assert!(!is_service_principal("Dynamodb.amazonaws.com"));
        assert!(!is_service_principal("*.amazonaws.com"));
    }
}
