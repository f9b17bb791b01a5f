//! `verdict bundle`, end to end with the binary: key pairs, deterministic
//! archives, signatures that verify, and every way a signed bundle can be
//! tampered with, each refused with its reason.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn verdict(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run verdict")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A key pair in `dir`: (private, public).
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (private, public) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.pub.pem")),
    );
    let o = verdict(&[
        "bundle",
        "keygen",
        "--private",
        s(&private),
        "--public",
        s(&public),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).starts_with("key id "), "{}", text(&o));
    (private, public)
}

/// The archive unpacked into a new directory.
fn unpack(archive: &Path, into: &Path) -> PathBuf {
    fs::create_dir_all(into).unwrap();
    let st = Command::new("tar")
        .args(["xzf", s(archive), "-C", s(into)])
        .status()
        .unwrap();
    assert!(st.success());
    into.to_owned()
}

fn verify(bundle: &Path, keys: &[&Path]) -> Output {
    let mut args = vec!["bundle", "verify", s(bundle)];
    for k in keys {
        args.extend(["--public-key", s(k)]);
    }
    verdict(&args)
}

#[test]
fn keys_archives_and_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (private, public) = keygen(d, "k1");
    assert_eq!(
        fs::metadata(&private).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A private key is never overwritten.
    let again = verdict(&[
        "bundle",
        "keygen",
        "--private",
        s(&private),
        "--public",
        s(&d.join("x.pem")),
    ]);
    assert_eq!(code(&again), 2, "{}", text(&again));

    // The same files give the same bytes.
    let (a, b) = (d.join("a.tar.gz"), d.join("b.tar.gz"));
    for out in [&a, &b] {
        let o = verdict(&[
            "bundle",
            "build",
            "examples/bundles/kms",
            "-o",
            s(out),
            "--sign",
            s(&private),
        ]);
        assert_eq!(code(&o), 0, "{}", text(&o));
    }
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());

    // It verifies, loads, and passes its own tests.
    let o = verify(&a, &[&public]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("verified, signed by key"), "{}", text(&o));
    let t = verdict(&["test", s(&a)]);
    assert_eq!(code(&t), 0, "{}", text(&t));

    // Rotation: the signing key among several configured ones.
    let (_, other_public) = keygen(d, "k2");
    assert_eq!(code(&verify(&a, &[&other_public, &public])), 0);

    // Signed with a key no configured public key has.
    let o = verify(&a, &[&other_public]);
    assert_eq!(code(&o), 1);
    assert!(
        text(&o).contains("which no configured public key has"),
        "{}",
        text(&o)
    );

    // An unsigned archive.
    let unsigned = d.join("unsigned.tar.gz");
    let o = verdict(&[
        "bundle",
        "build",
        "examples/bundles/kms",
        "-o",
        s(&unsigned),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = verify(&unsigned, &[&public]);
    assert_eq!(code(&o), 1);
    assert!(
        text(&o).contains("`.signatures.json` is missing"),
        "{}",
        text(&o)
    );
}

#[test]
fn every_tampering_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (private, public) = keygen(d, "k");
    let archive = d.join("signed.tar.gz");
    let o = verdict(&[
        "bundle",
        "build",
        "examples/bundles/kms",
        "-o",
        s(&archive),
        "--sign",
        s(&private),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let pristine = unpack(&archive, &d.join("pristine"));
    assert_eq!(code(&verify(&pristine, &[&public])), 0);
    let policy_rel = PathBuf::from("principals.json");
    assert!(pristine.join(&policy_rel).is_file());

    type Tamper = Box<dyn Fn(&Path)>;
    let rel = policy_rel.clone();
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "a file modified",
            Box::new(move |b: &Path| {
                let p = b.join(&rel);
                let mut bytes = fs::read(&p).unwrap();
                bytes.push(b' ');
                fs::write(p, bytes).unwrap();
            }),
            "differs from the signed file",
        ),
        (
            "a file added",
            Box::new(|b: &Path| {
                fs::write(
                    b.join("policies/extra.json"),
                    r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"kms:*","Resource":"*"}}"#,
                )
                .unwrap();
            }),
            "is in the bundle but not in `.signatures.json`",
        ),
        (
            "a listed file removed",
            Box::new({
                let rel = policy_rel.clone();
                move |b: &Path| fs::remove_file(b.join(&rel)).unwrap()
            }),
            "is listed in `.signatures.json` but not in the bundle",
        ),
        (
            "the signature file removed",
            Box::new(|b: &Path| fs::remove_file(b.join(".signatures.json")).unwrap()),
            "`.signatures.json` is missing",
        ),
        (
            "the signature altered",
            Box::new(|b: &Path| {
                let p = b.join(".signatures.json");
                let mut v: serde_json::Value =
                    serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
                let sig = v["signatures"][0]["signature"].as_str().unwrap().to_owned();
                let flipped = match sig.strip_prefix('A') {
                    Some(rest) => format!("B{rest}"),
                    None => format!("A{}", &sig[1..]),
                };
                v["signatures"][0]["signature"] = flipped.into();
                fs::write(p, serde_json::to_vec(&v).unwrap()).unwrap();
            }),
            "does not verify",
        ),
        (
            "the list edited to match a modified file",
            Box::new({
                let rel = policy_rel.clone();
                move |b: &Path| {
                    let p = b.join(&rel);
                    fs::write(&p, br#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#)
                        .unwrap();
                    let sigs = b.join(".signatures.json");
                    let mut v: serde_json::Value =
                        serde_json::from_slice(&fs::read(&sigs).unwrap()).unwrap();
                    use sha2::Digest as _;
                    let digest: String = sha2::Sha256::digest(fs::read(&p).unwrap())
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    for f in v["files"].as_array_mut().unwrap() {
                        if f["path"] == rel.to_str().unwrap() {
                            f["sha256"] = digest.clone().into();
                        }
                    }
                    fs::write(sigs, serde_json::to_vec(&v).unwrap()).unwrap();
                }
            }),
            "does not verify",
        ),
        (
            "the signature file unreadable",
            Box::new(|b: &Path| fs::write(b.join(".signatures.json"), "{").unwrap()),
            "is not a signature file",
        ),
    ];
    for (i, (name, tamper, expect)) in cases.iter().enumerate() {
        let copy = unpack(&archive, &d.join(format!("case-{i}")));
        tamper(&copy);
        let o = verify(&copy, &[&public]);
        assert_eq!(code(&o), 1, "{name}: {}", text(&o));
        assert!(
            text(&o).contains(expect),
            "{name}: want `{expect}` in:\n{}",
            text(&o)
        );
    }
}

#[test]
fn a_bundle_that_does_not_load_is_not_built() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("broken.tar.gz");
    let broken = root().join("tests/fixtures/broken/bad-json/bundle");
    let o = verdict(&["bundle", "build", s(&broken), "-o", s(&out)]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("trailing comma"), "{}", text(&o));
    assert!(!out.exists());
}

/// Keys made by OpenSSL sign bundles verdict verifies, and OpenSSL reads
/// the private keys verdict makes (PKCS#8 version 1).
#[test]
fn keys_interoperate_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl (scripts/test installs it)");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    let (key, public) = (d.join("o.pem"), d.join("o.pub.pem"));
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", s(&key)]);
    openssl(&["pkey", "-in", s(&key), "-pubout", "-out", s(&public)]);
    let archive = d.join("b.tar.gz");
    let o = verdict(&[
        "bundle",
        "build",
        "examples/bundles/kms",
        "-o",
        s(&archive),
        "--sign",
        s(&key),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(code(&verify(&archive, &[&public])), 0);

    let (ours, ours_public) = keygen(d, "v");
    let derived = openssl(&["pkey", "-in", s(&ours), "-pubout"]);
    assert_eq!(derived.stdout, fs::read(&ours_public).unwrap());
}
