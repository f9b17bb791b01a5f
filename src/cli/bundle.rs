//! `verdict bundle`: build a bundle into one deterministic `.tar.gz`
//! (signed when asked), make a signing key pair, verify a signed bundle.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::Exit;
use crate::bundle::sign;
use crate::bundle::source::{RawBundle, RawFile};
use crate::bundle::{LoadError, LoadOptions, Severity, load_raw};

/// Arguments of `verdict bundle`.
#[derive(Debug, Args)]
pub(crate) struct BundleArgs {
    #[command(subcommand)]
    command: BundleCommand,
}

#[derive(Debug, Subcommand)]
enum BundleCommand {
    /// Write a bundle directory as one .tar.gz: entries sorted, times,
    /// owners and modes fixed, so the same files give the same bytes; with
    /// --sign, `.signatures.json` signs every file. The bundle must load.
    Build(BuildArgs),
    /// Make an Ed25519 key pair for signing bundles (PKCS#8 PEM private
    /// key, SubjectPublicKeyInfo PEM public key) and print its key id.
    Keygen(KeygenArgs),
    /// Check a bundle's `.signatures.json` against one or more public keys.
    Verify(VerifyArgs),
    /// Publish a bundle archive to an OCI registry (one layer of type
    /// application/vnd.verdict.bundle.v1.tar+gzip) for `serve --bundle
    /// oci://…`; the archive must load. Prints the manifest digest.
    Push(PushArgs),
}

#[derive(Debug, Args)]
struct PushArgs {
    /// The archive (from `verdict bundle build`).
    #[arg(value_name = "FILE")]
    archive: PathBuf,
    /// Where: oci://registry/repository:tag.
    #[arg(value_name = "REFERENCE")]
    reference: String,
    /// Send `Authorization: Bearer` with this file's content.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Trust only the CA certificates of this PEM file.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Speak plain HTTP to the registry (a registry on loopback).
    #[arg(long)]
    allow_insecure: bool,
    /// The longest the push may take.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    timeout_ms: u64,
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// The bundle directory.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The archive to write.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Sign with this private key (PKCS#8 PEM).
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Where to write the private key (created with mode 0600; never overwritten).
    #[arg(long, value_name = "FILE")]
    private: PathBuf,
    /// Where to write the public key.
    #[arg(long, value_name = "FILE")]
    public: PathBuf,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The bundle: a directory or a .tar.gz.
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
    /// A public key (PEM); give several for rotation.
    #[arg(long = "public-key", value_name = "FILE", required = true)]
    public_keys: Vec<PathBuf>,
}

/// Run `verdict bundle`.
pub(crate) fn run(args: BundleArgs) -> Exit {
    let result = match args.command {
        BundleCommand::Build(a) => build(&a),
        BundleCommand::Keygen(a) => keygen(&a),
        BundleCommand::Verify(a) => verify(&a),
        BundleCommand::Push(a) => push(&a),
    };
    result.unwrap_or_else(|(exit, message)| {
        eprintln!("error: {message}");
        exit
    })
}

type Failure = (Exit, String);

fn read_text(path: &Path, what: &str) -> Result<String, Failure> {
    fs::read_to_string(path).map_err(|e| {
        (
            Exit::Usage,
            format!("{}: cannot read the {what}: {e}", path.display()),
        )
    })
}

fn read_bundle(path: &Path) -> Result<RawBundle, Failure> {
    crate::bundle::source::read(path, &Default::default()).map_err(|e| (Exit::Usage, e.to_string()))
}

fn build(a: &BuildArgs) -> Result<Exit, Failure> {
    if !a.dir.is_dir() {
        return Err((Exit::Usage, format!("{}: not a directory", a.dir.display())));
    }
    let raw = read_bundle(&a.dir)?;
    for d in &raw.diagnostics {
        eprintln!("{d}");
    }
    let mut files: Vec<RawFile> = raw
        .files
        .into_iter()
        .filter(|f| f.path != sign::SIGNATURES_FILE)
        .collect();
    if let Some(key_path) = &a.sign {
        let key = sign::read_signing_key(&read_text(key_path, "private key")?)
            .map_err(|e| (Exit::Usage, format!("{}: {e}", key_path.display())))?;
        let sigs = sign::sign(&files, &key).map_err(|e| (Exit::Failed, e.to_string()))?;
        let mut bytes =
            serde_json::to_vec_pretty(&sigs).map_err(|e| (Exit::Failed, e.to_string()))?;
        bytes.push(b'\n');
        files.push(RawFile {
            path: sign::SIGNATURES_FILE.to_owned(),
            bytes,
        });
        eprintln!("signed with key {}", sign::key_id(&key.verifying_key()));
    }
    let archive = crate::bundle::archive::write_tar_gz(&files).map_err(|e| (Exit::Failed, e))?;
    let count = files.len();
    // What was archived must load before it is published.
    let archived = RawBundle {
        source: raw.source,
        files,
        diagnostics: Vec::new(),
    };
    let opts = LoadOptions {
        with_tests: true,
        ..Default::default()
    };
    load_raw(archived, &opts)
        .map_err(|e| load_failure(&a.dir.display().to_string(), "nothing written", &e))?;
    write_replacing(&a.output, &archive)?;
    println!(
        "{}: {count} files, {} bytes",
        a.output.display(),
        archive.len()
    );
    Ok(Exit::Ok)
}

/// A bundle that does not load: its errors on stderr, and what was not done.
fn load_failure(what: &str, consequence: &str, e: &LoadError) -> Failure {
    match e {
        LoadError::Invalid(diags) => {
            for d in diags.iter().filter(|d| d.severity == Severity::Error) {
                eprintln!("{d}");
            }
            (
                Exit::Failed,
                format!("{what}: the bundle does not load; {consequence}"),
            )
        }
        LoadError::NotABundle { .. } => (Exit::Usage, e.to_string()),
    }
}

fn cannot_write(path: &Path, e: &std::io::Error) -> Failure {
    (
        Exit::Failed,
        format!("{}: cannot write: {e}", path.display()),
    )
}

/// Write `bytes` to `path` whole or not at all (a server watching `path`
/// never reads half an archive).
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    crate::bundle::archive::write_atomic(path, bytes).map_err(|e| cannot_write(path, &e))
}

/// Write a private key to a new file, readable by its owner only; an
/// existing file is never overwritten.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            (
                Exit::Usage,
                format!("{}: cannot write: {e}", path.display()),
            )
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| cannot_write(path, &e))
}

fn keygen(a: &KeygenArgs) -> Result<Exit, Failure> {
    let (private, public, id) = sign::generate().map_err(|e| (Exit::Failed, e))?;
    write_private(&a.private, private.as_bytes())?;
    write_replacing(&a.public, public.as_bytes())?;
    println!("key id {id}");
    Ok(Exit::Ok)
}

fn verify(a: &VerifyArgs) -> Result<Exit, Failure> {
    let mut keys = Vec::new();
    for path in &a.public_keys {
        let key = sign::read_public_key(&read_text(path, "public key")?)
            .map_err(|e| (Exit::Usage, format!("{}: {e}", path.display())))?;
        keys.push(key);
    }
    let raw = read_bundle(&a.bundle)?;
    match sign::verify(&raw.files, &keys) {
        Ok(id) => {
            println!("{}: verified, signed by key {id}", a.bundle.display());
            Ok(Exit::Ok)
        }
        Err(errors) => {
            for e in &errors {
                println!("error: {}: {e}", a.bundle.display());
            }
            Ok(Exit::Failed)
        }
    }
}

fn push(a: &PushArgs) -> Result<Exit, Failure> {
    let Some(reference) = a.reference.strip_prefix("oci://") else {
        return Err((
            Exit::Usage,
            format!("{}: expected oci://registry/repository:tag", a.reference),
        ));
    };
    let archive = fs::read(&a.archive).map_err(|e| {
        (
            Exit::Usage,
            format!("{}: cannot read: {e}", a.archive.display()),
        )
    })?;
    let display = a.archive.display().to_string();
    let raw =
        crate::bundle::source::read_tar_gz_from(archive.as_slice(), &display, &Default::default());
    let loaded = load_raw(raw, &LoadOptions::default())
        .map_err(|e| load_failure(&display, "nothing pushed", &e))?;
    let bundle = &loaded.bundle;
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.revision".to_owned(),
        bundle.revision.to_string(),
    );
    if let Some(name) = &bundle.name {
        annotations.insert("org.opencontainers.image.title".to_owned(), name.clone());
    }
    annotations.insert(
        "dev.verdict.bundle.serial".to_owned(),
        bundle.serial.to_string(),
    );
    let settings = crate::reload::FetchSettings {
        timeout: std::time::Duration::from_millis(a.timeout_ms),
        ca_file: a.ca_file.clone(),
        token_file: a.token_file.clone(),
        allow_insecure: a.allow_insecure,
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (Exit::Failed, format!("cannot start a runtime: {e}")))?;
    let digest = runtime
        .block_on(crate::reload::fetch::oci_push(
            reference,
            &settings,
            archive,
            annotations,
        ))
        .map_err(|e| (Exit::Failed, format!("{}: {e}", a.reference)))?;
    println!("{}@{digest}", a.reference);
    Ok(Exit::Ok)
}
