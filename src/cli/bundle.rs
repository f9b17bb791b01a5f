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
    // The bundle must load before it is published.
    let check = RawBundle {
        source: raw.source.clone(),
        files: files
            .iter()
            .map(|f| RawFile {
                path: f.path.clone(),
                bytes: f.bytes.clone(),
            })
            .collect(),
        diagnostics: Vec::new(),
    };
    match load_raw(
        check,
        &LoadOptions {
            with_tests: true,
            ..Default::default()
        },
    ) {
        Ok(_) => {}
        Err(LoadError::Invalid(diags)) => {
            for d in diags.iter().filter(|d| d.severity == Severity::Error) {
                eprintln!("{d}");
            }
            return Err((
                Exit::Failed,
                format!(
                    "{}: the bundle does not load; nothing written",
                    a.dir.display()
                ),
            ));
        }
        Err(e) => return Err((Exit::Usage, e.to_string())),
    }
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
    files.sort_by(|x, y| x.path.cmp(&y.path));
    let archive = crate::bundle::archive::write_tar_gz(&files).map_err(|e| (Exit::Failed, e))?;
    write_new(&a.output, &archive, false)?;
    println!(
        "{}: {} files, {} bytes",
        a.output.display(),
        files.len(),
        archive.len()
    );
    Ok(Exit::Ok)
}

/// Write `bytes` to a new file (refusing to overwrite a private key).
fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), Failure> {
    let mut options = fs::OpenOptions::new();
    options.write(true);
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.create_new(true).mode(0o600);
    } else {
        options.create(true).truncate(true);
    }
    let mut file = options.open(path).map_err(|e| {
        (
            Exit::Usage,
            format!("{}: cannot write: {e}", path.display()),
        )
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            (
                Exit::Failed,
                format!("{}: cannot write: {e}", path.display()),
            )
        })
}

fn keygen(a: &KeygenArgs) -> Result<Exit, Failure> {
    let (private, public, id) = sign::generate().map_err(|e| (Exit::Failed, e))?;
    write_new(&a.private, private.as_bytes(), true)?;
    write_new(&a.public, public.as_bytes(), false)?;
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
