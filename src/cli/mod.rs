//! The `verdict` command line (docs/api.md, "The command line"): one file per subcommand, each
//! returning an exit status (0 / 1 / 2 as docs/api.md gives per command).

mod analyze;
mod bundle;
mod check;
mod client;
mod eval;
mod health;
mod import;
pub(crate) mod serve;
mod settings;
mod test;
mod usage;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::bundle::{Diagnostic, LoadError, LoadOptions, Loaded};

/// Exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// What the command found: `check`'s errors, a failed test, an
    /// invalid request, or (`eval --exit-code`) a decision other than `Allow`.
    Failed = 1,
    /// Usage error, or a bundle that does not load where the command needs
    /// one to run (`eval`, `test`, `serve`).
    Usage = 2,
}

/// verdict: decide AWS IAM / KMS authorization requests from a policy bundle.
#[derive(Debug, Parser)]
#[command(name = "verdict", version, about)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Decide one request (flags) or many (`--requests`, JSON lines) and print JSON.
    Eval(eval::EvalArgs),
    /// Validate a bundle, its tests included; print every error and warning.
    Check(check::CheckArgs),
    /// Run the bundle's tests/ cases.
    Test(test::TestArgs),
    /// Serve the gRPC API (Authorize, BatchAuthorize, GetBundleStatus, GetUsage, health, reflection).
    #[command(after_long_help = settings::help())]
    Serve(serve::ServeArgs),
    /// Check the configuration `serve` would run with (same flags) and print
    /// every setting, its value and where it came from.
    Config(settings::ConfigArgs),
    /// Ask a running server's gRPC health service; exit 0 only when SERVING.
    Health(health::HealthArgs),
    /// Read a running server's statement-usage ledger: every statement and
    /// grant of its active bundle, with the decisions it took part in.
    Usage(usage::UsageArgs),
    /// Build a bundle from an AWS CLI export (IAM account authorization
    /// details, KMS keys, grants and aliases).
    Import(import::ImportArgs),
    /// Build a bundle into one deterministic .tar.gz (signed with --sign),
    /// make a signing key pair, verify a signed bundle.
    Bundle(bundle::BundleArgs),
    /// Who may act on a resource: every principal allowed, per action, with
    /// the context under which it is and the statements or grant that allow it.
    WhoCan(analyze::WhoCanArgs),
    /// What a principal may do: every resource and action allowed, with
    /// the context and the statements or grant that allow it.
    WhatCan(analyze::WhatCanArgs),
    /// What a new bundle changes: every request of the two bundles'
    /// universe whose Allow differs, gained or lost, with a witness request.
    Diff(analyze::DiffArgs),
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Exit {
    match cli.command {
        Command::Eval(a) => eval::run(a),
        Command::Check(a) => check::run(a),
        Command::Test(a) => test::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Config(a) => settings::run(a),
        Command::Health(a) => health::run(a),
        Command::Usage(a) => usage::run(a),
        Command::Import(a) => import::run(a),
        Command::Bundle(a) => bundle::run(a),
        Command::WhoCan(a) => analyze::who_can(a),
        Command::WhatCan(a) => analyze::what_can(a),
        Command::Diff(a) => analyze::diff(a),
    }
}

/// The exit status of a command that has printed its result: a reader
/// that went away (a closed pipe) is no failure.
pub(crate) fn printed(written: std::io::Result<()>) -> Exit {
    match written {
        Ok(()) => Exit::Ok,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Exit::Ok,
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Usage
        }
    }
}

/// How a command prints its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// A finding as JSON: severity, file, pointer, line, column, message.
fn diagnostic_json(d: &Diagnostic) -> serde_json::Value {
    serde_json::json!({
        "severity": d.severity.as_str(),
        "file": d.file,
        "pointer": d.pointer,
        "line": d.position.map(|p| p.line),
        "column": d.position.map(|p| p.column),
        "message": d.finding.to_string(),
        "code": d.finding.code(),
        "suggestion": d.finding.suggestion(),
    })
}

/// The bundle of a command: `PATH`, or `--bundle PATH` (the same).
#[derive(Debug, clap::Args)]
pub(crate) struct BundleArg {
    /// The bundle: a directory (or Kubernetes ConfigMap volume) or a .tar.gz.
    #[arg(value_name = "PATH", required_unless_present = "bundle")]
    path: Option<String>,
    /// The bundle, as a flag (the same as PATH).
    #[arg(long, value_name = "PATH", conflicts_with = "path")]
    bundle: Option<String>,
}

/// The bundle of `serve`, which may be left out (the embedded example).
#[derive(Debug, clap::Args)]
pub(crate) struct OptionalBundleArg {
    /// The bundle: a directory (or Kubernetes ConfigMap volume) or a
    /// .tar.gz. Default: the example bundle embedded in the binary.
    #[arg(value_name = "PATH")]
    path: Option<String>,
    /// The bundle, as a flag (the same as PATH).
    #[arg(long, value_name = "PATH", conflicts_with = "path")]
    bundle: Option<String>,
}

impl BundleArg {
    /// The path given, either way.
    fn get(&self) -> &str {
        self.path
            .as_deref()
            .or(self.bundle.as_deref())
            .unwrap_or_default()
    }
}

impl OptionalBundleArg {
    /// The path given, either way, if any.
    fn get(&self) -> Option<&str> {
        self.path.as_deref().or(self.bundle.as_deref())
    }
}

/// A bundle path argument: a local directory or `.tar.gz`; URLs are not in v1.
fn bundle_path(arg: &str) -> Result<PathBuf, String> {
    if arg.contains("://") {
        return Err(format!(
            "`{arg}`: URL bundles are not supported; give a directory or a .tar.gz"
        ));
    }
    Ok(PathBuf::from(arg))
}

/// Where a command prints what a bundle load finds: `check` reports
/// findings as its result (stdout), the others as diagnostics (stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Findings {
    Result,
    Diagnostic,
}

impl Findings {
    /// Print one line; a reader that went away is not an error here.
    fn line(self, text: &dyn std::fmt::Display) {
        use std::io::Write as _;
        let _ = match self {
            Self::Result => writeln!(std::io::stdout(), "{text}"),
            Self::Diagnostic => writeln!(std::io::stderr(), "{text}"),
        };
    }
}

/// Load a bundle, printing its warnings and errors where `to` says.
fn load_bundle(
    path: &std::path::Path,
    with_tests: bool,
    quiet_warnings: bool,
    to: Findings,
) -> Result<Loaded, LoadError> {
    let opts = LoadOptions {
        with_tests,
        ..Default::default()
    };
    match crate::bundle::load(path, &opts) {
        Ok(loaded) => {
            if !quiet_warnings {
                print_diagnostics(&loaded.warnings, to);
            }
            Ok(loaded)
        }
        Err(e) => {
            match &e {
                LoadError::NotABundle { .. } => eprintln!("error: {e}"),
                LoadError::Invalid(d) => {
                    print_diagnostics(d, to);
                    to.line(&e);
                }
            }
            Err(e)
        }
    }
}

fn print_diagnostics(d: &[Diagnostic], to: Findings) {
    for d in d {
        to.line(d);
    }
}
