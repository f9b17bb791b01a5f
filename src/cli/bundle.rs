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
    match load_raw(archived, &opts) {
        Ok(_) => {}
        Err(LoadError::Invalid(diags)) => {
            for d in diags.iter().filter(|d| d.severity == Severity::Error) {
                eprintln!("{d}");
            }
            let dir = a.dir.display();
            return Err((
                Exit::Failed,
                format!("{dir}: the bundle does not load; nothing written"),
            ));
        }
        Err(e) => return Err((Exit::Usage, e.to_string())),
    }
    write_replacing(&a.output, &archive)?;
    println!(
        "{}: {count} files, {} bytes",
        a.output.display(),
        archive.len()
    );
    Ok(Exit::Ok)
}

fn cannot_write(path: &Path, e: &std::io::Error) -> Failure {
    (
        Exit::Failed,
        format!("{}: cannot write: {e}", path.display()),
    )
}

/// Write `bytes` to `path` whole or not at all: a file beside it, synced,
/// then renamed over it (a server watching `path` never reads half an
/// archive).
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let written = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        cannot_write(path, &e)
    })
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
