//! KMS tables: operations usable across accounts (§7.3 step 2) and the key
//! states that refuse each operation (§7.6).

use crate::bundle::KeyState;

/// Operations a principal of another account may call (names lower-cased).
const CROSS_ACCOUNT_OPS: &[&str] = &[
    "creategrant",
    "decrypt",
    "derivesharedsecret",
    "describekey",
    "encrypt",
    "generatedatakey",
    "generatedatakeypair",
    "generatedatakeypairwithoutplaintext",
    "generatedatakeywithoutplaintext",
    "generatemac",
    "getkeyrotationstatus",
    "getpublickey",
    "listgrants",
    "reencryptfrom",
    "reencryptto",
    "retiregrant",
    "revokegrant",
    "sign",
    "verify",
    "verifymac",
];

/// Whether `kms:<name>` (lower-cased) may be called across accounts.
pub(crate) fn cross_account_allowed(service: &str, name: &str) -> bool {
    service == "kms" && CROSS_ACCOUNT_OPS.contains(&name)
}

use KeyState::{
    Creating, Disabled, Enabled, PendingDeletion, PendingImport, PendingReplicaDeletion,
    Unavailable, Updating,
};

/// (operations, states that refuse them), from the key-state table.
const KEY_STATE_TABLE: &[(&[&str], &[KeyState])] = &[
    (
        &[
            "decrypt",
            "encrypt",
            "generatedatakey",
            "generatedatakeypair",
            "generatedatakeypairwithoutplaintext",
            "generatedatakeywithoutplaintext",
            "reencryptfrom",
            "reencryptto",
            "generatemac",
            "verifymac",
            "sign",
            "verify",
            "getpublickey",
            "enablekeyrotation",
            "disablekeyrotation",
            "updateprimaryregion",
        ],
        &[
            Disabled,
            PendingDeletion,
            PendingReplicaDeletion,
            PendingImport,
            Unavailable,
            Creating,
        ],
    ),
    (
        &["replicatekey"],
        &[
            Disabled,
            PendingDeletion,
            PendingReplicaDeletion,
            PendingImport,
            Unavailable,
            Creating,
            Updating,
        ],
    ),
    (
        &["creategrant"],
        &[
            Disabled,
            PendingDeletion,
            PendingReplicaDeletion,
            PendingImport,
            Creating,
        ],
    ),
    (
        &["enablekey", "disablekey"],
        &[
            PendingDeletion,
            PendingReplicaDeletion,
            PendingImport,
            Creating,
            Updating,
        ],
    ),
    (
        &["schedulekeydeletion"],
        &[PendingDeletion, PendingReplicaDeletion, Updating],
    ),
    (
        &[
            "createalias",
            "tagresource",
            "untagresource",
            "updatekeydescription",
        ],
        &[PendingDeletion, PendingReplicaDeletion],
    ),
    (
        &["cancelkeydeletion"],
        &[
            Enabled,
            Disabled,
            PendingImport,
            Unavailable,
            Creating,
            Updating,
        ],
    ),
    (&["getkeyrotationstatus"], &[PendingImport, Unavailable]),
    (
        &["getparametersforimport"],
        &[
            PendingDeletion,
            PendingReplicaDeletion,
            Unavailable,
            Creating,
            Updating,
        ],
    ),
    (
        &["importkeymaterial"],
        &[
            PendingDeletion,
            PendingReplicaDeletion,
            Unavailable,
            Creating,
        ],
    ),
    (
        &["deleteimportedkeymaterial"],
        &[Unavailable, Creating, Updating],
    ),
];

/// Whether a key in `state` refuses `kms:<name>` (lower-cased). Operations
/// not in the table are not gated (U35).
pub(crate) fn key_state_refuses(service: &str, name: &str, state: KeyState) -> bool {
    service == "kms"
        && KEY_STATE_TABLE
            .iter()
            .any(|(ops, states)| ops.contains(&name) && states.contains(&state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_state_rows() {
        assert!(key_state_refuses("kms", "encrypt", Disabled));
        assert!(!key_state_refuses("kms", "describekey", Disabled));
        assert!(key_state_refuses("kms", "decrypt", PendingDeletion));
        assert!(!key_state_refuses(
            "kms",
            "cancelkeydeletion",
            PendingDeletion
        ));
        assert!(key_state_refuses("kms", "cancelkeydeletion", Enabled));
        assert!(key_state_refuses("kms", "enablekey", PendingDeletion));
        assert!(key_state_refuses(
            "kms",
            "schedulekeydeletion",
            PendingReplicaDeletion
        ));
        assert!(key_state_refuses("kms", "tagresource", PendingDeletion));
        assert!(!key_state_refuses("kms", "listgrants", PendingDeletion));
        assert!(!key_state_refuses("kms", "creategrant", Unavailable));
        assert!(key_state_refuses("kms", "replicatekey", Updating));
        assert!(!key_state_refuses("kms", "rotatekeyondemand", Disabled));
        assert!(!key_state_refuses("s3", "encrypt", Disabled));
    }

    #[test]
    fn cross_account_operations() {
        assert!(cross_account_allowed("kms", "decrypt"));
        assert!(!cross_account_allowed("kms", "getkeypolicy"));
        assert!(!cross_account_allowed("kms", "schedulekeydeletion"));
        assert!(!cross_account_allowed("s3", "decrypt"));
    }
}
