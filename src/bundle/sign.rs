//! Signed bundles: `.signatures.json` lists every bundle file with its
//! SHA-256 and holds Ed25519 signatures over that list, each with the id of
//! the key that made it.
//!
//! What is signed is a canonical text, not the JSON: a fixed first line,
//! then one line per file, sorted by path, `SHA256HEX PATH`. Verification
//! recomputes every digest from the bytes it read and demands that the list
//! names exactly the files of the bundle: a file not listed, a listed file
//! missing, a digest that differs, a signature file that is missing or
//! unreadable, a key id no configured key has, or a signature that does not
//! verify each refuse the bundle. Keys are files: private keys PKCS#8 PEM,
//! public keys SPKI PEM; a key's id is derived from its public key, so a
//! publisher and a verifier agree on it without configuring it twice.

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use super::source::RawFile;

/// The signature file's path in a bundle.
pub(crate) const SIGNATURES_FILE: &str = ".signatures.json";

/// The first line of the signed text: what it is and its version.
const CANONICAL_HEADER: &str = "verdict bundle files v1\n";

/// The only algorithm.
const ALGORITHM: &str = "ed25519";

/// `.signatures.json`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Signatures {
    /// Every bundle file but this one, sorted by path.
    pub(crate) files: Vec<FileDigest>,
    /// One or more signatures over the canonical text of `files`.
    pub(crate) signatures: Vec<SignatureEntry>,
}

/// One listed file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDigest {
    /// Path inside the bundle.
    pub(crate) path: String,
    /// SHA-256 of its bytes, lower-case hex.
    pub(crate) sha256: String,
}

/// One signature.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignatureEntry {
    /// The id of the key that signed ([`key_id`]).
    pub(crate) keyid: String,
    /// `ed25519`.
    pub(crate) algorithm: String,
    /// The signature, base64.
    pub(crate) signature: String,
}

/// Why a bundle's signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    /// No `.signatures.json` while keys are configured.
    #[error(
        "`.signatures.json` is missing, and public keys are configured: an unsigned bundle is refused"
    )]
    Missing,
    /// The signature file does not parse.
    #[error("`.signatures.json` is not a signature file: {0}")]
    Unreadable(String),
    /// A bundle file the list does not name.
    #[error("`{0}` is in the bundle but not in `.signatures.json`")]
    NotListed(String),
    /// A listed file the bundle does not hold.
    #[error("`{0}` is listed in `.signatures.json` but not in the bundle")]
    ListedMissing(String),
    /// A file whose bytes are not the ones signed.
    #[error("`{0}` differs from the signed file (SHA-256 mismatch)")]
    Digest(String),
    /// No configured key has the signature's key id.
    #[error("signed with key `{0}`, which no configured public key has")]
    UnknownKey(String),
    /// An algorithm other than Ed25519.
    #[error("signature algorithm `{0}` is not `ed25519`")]
    Algorithm(String),
    /// A signature that does not verify.
    #[error("the signature by key `{0}` does not verify")]
    Invalid(String),
    /// A path the canonical text cannot hold.
    #[error("`{0}`: a bundle path may not hold a line break")]
    Path(String),
}

/// A key id: the first 16 hex digits of the SHA-256 of the raw public key.
pub(crate) fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex(&digest).chars().take(16).collect()
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Every bundle file but the signature file, with its digest, sorted by path.
pub(crate) fn digests(files: &[RawFile]) -> Vec<FileDigest> {
    let mut out: Vec<FileDigest> = files
        .iter()
        .filter(|f| f.path != SIGNATURES_FILE)
        .map(|f| FileDigest {
            path: f.path.clone(),
            sha256: hex(&Sha256::digest(&f.bytes)),
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The text a signature covers.
fn canonical(files: &[FileDigest]) -> Result<Vec<u8>, SignatureError> {
    let mut text = String::from(CANONICAL_HEADER);
    for f in files {
        if f.path.contains(['\n', '\r']) {
            return Err(SignatureError::Path(crate::policy::err::cut(&f.path, 128)));
        }
        text.push_str(&f.sha256);
        text.push(' ');
        text.push_str(&f.path);
        text.push('\n');
    }
    Ok(text.into_bytes())
}

/// A private key from PKCS#8 PEM.
pub(crate) fn read_signing_key(pem: &str) -> Result<SigningKey, String> {
    SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| format!("not an Ed25519 private key in PKCS#8 PEM: {e}"))
}

/// A public key from SPKI PEM.
pub(crate) fn read_public_key(pem: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_public_key_pem(pem)
        .map_err(|e| format!("not an Ed25519 public key in PEM (SubjectPublicKeyInfo): {e}"))
}

/// A new key pair as (private PKCS#8 PEM, public SPKI PEM, key id), from
/// the operating system's random source.
pub(crate) fn generate() -> Result<(String, String, String), String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no random bytes from the system: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    // PKCS#8 version 1 (no public key inside), which every tool reads
    // (OpenSSL 3.0 refuses the version 2 form).
    let private = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: seed,
        public_key: None,
    }
    .to_pkcs8_pem(Default::default())
    .map_err(|e| e.to_string())?
    .to_string();
    seed.fill(0);
    let public = key
        .verifying_key()
        .to_public_key_pem(Default::default())
        .map_err(|e| e.to_string())?;
    Ok((private, public, key_id(&key.verifying_key())))
}

/// `.signatures.json` for these files, signed with `key`.
pub(crate) fn sign(files: &[RawFile], key: &SigningKey) -> Result<Signatures, SignatureError> {
    let listed = digests(files);
    let signature = key.sign(&canonical(&listed)?);
    Ok(Signatures {
        files: listed,
        signatures: vec![SignatureEntry {
            keyid: key_id(&key.verifying_key()),
            algorithm: ALGORITHM.to_owned(),
            signature: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
        }],
    })
}

/// Check a bundle's files against its `.signatures.json` and the
/// configured keys: the id of the key whose signature holds, or every
/// reason it does not.
pub(crate) fn verify(
    files: &[RawFile],
    keys: &[VerifyingKey],
) -> Result<String, Vec<SignatureError>> {
    let Some(sig_file) = files.iter().find(|f| f.path == SIGNATURES_FILE) else {
        return Err(vec![SignatureError::Missing]);
    };
    let sigs: Signatures = serde_json::from_slice(&sig_file.bytes).map_err(|e| {
        vec![SignatureError::Unreadable(
            crate::policy::parse::strip_serde_position(&e.to_string()),
        )]
    })?;
    let mut errors = Vec::new();
    let actual = digests(files);
    for f in &actual {
        match sigs.files.iter().find(|l| l.path == f.path) {
            None => errors.push(SignatureError::NotListed(crate::policy::err::cut(
                &f.path, 128,
            ))),
            Some(l) if l.sha256 != f.sha256 => errors.push(SignatureError::Digest(
                crate::policy::err::cut(&f.path, 128),
            )),
            Some(_) => {}
        }
    }
    for l in &sigs.files {
        if !actual.iter().any(|f| f.path == l.path) {
            errors.push(SignatureError::ListedMissing(crate::policy::err::cut(
                &l.path, 128,
            )));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let text = canonical(&actual).map_err(|e| vec![e])?;
    for s in &sigs.signatures {
        if s.algorithm != ALGORITHM {
            errors.push(SignatureError::Algorithm(crate::policy::err::cut(
                &s.algorithm,
                128,
            )));
            continue;
        }
        let Some(key) = keys.iter().find(|k| key_id(k) == s.keyid) else {
            errors.push(SignatureError::UnknownKey(crate::policy::err::cut(
                &s.keyid, 128,
            )));
            continue;
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(&s.signature)
            .ok()
            .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok());
        match signature {
            Some(sig) if key.verify_strict(&text, &sig).is_ok() => return Ok(s.keyid.clone()),
            _ => errors.push(SignatureError::Invalid(s.keyid.clone())),
        }
    }
    if errors.is_empty() {
        errors.push(SignatureError::Unreadable("it holds no signature".into()));
    }
    Err(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> RawFile {
        RawFile {
            path: path.to_owned(),
            bytes: text.as_bytes().to_vec(),
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn the_signed_text_is_a_sorted_list_of_digests_and_paths() {
        let files = [file("policies/b.json", "b"), file("manifest.json", "m")];
        let text = String::from_utf8(canonical(&digests(&files)).unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "verdict bundle files v1");
        assert!(lines[1].ends_with(" manifest.json"), "{text}");
        assert!(lines[2].ends_with(" policies/b.json"), "{text}");
        assert_eq!(lines[1].split(' ').next().unwrap().len(), 64);
        let bad = [file("a\nb", "x")];
        assert!(matches!(
            canonical(&digests(&bad)),
            Err(SignatureError::Path(_))
        ));
    }

    #[test]
    fn signs_and_verifies_with_the_right_key_only() {
        let mut files = vec![file("manifest.json", "{}"), file("policies/p.json", "{}")];
        let sigs = sign(&files, &key(1)).unwrap();
        files.push(file(
            SIGNATURES_FILE,
            &serde_json::to_string(&sigs).unwrap(),
        ));
        let (right, wrong) = (key(1).verifying_key(), key(2).verifying_key());
        assert_eq!(verify(&files, &[wrong, right]), Ok(key_id(&right)));
        assert_eq!(
            verify(&files, &[wrong]),
            Err(vec![SignatureError::UnknownKey(key_id(&right))])
        );
        assert_eq!(key_id(&right).len(), 16);
    }
}
