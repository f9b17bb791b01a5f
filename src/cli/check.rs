//! `verdict check`: validate a bundle and its tests; print every error and
//! warning with file, JSON pointer and line:column.

use clap::Args;

use super::{Exit, Findings, Format, bundle_path, diagnostic_json, load_bundle, print_diagnostics};
use crate::bundle::{Diagnostic, LoadError, LoadOptions, Severity};
use crate::eval::RequestLimits;
use crate::suite;

/// Arguments of `verdict check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    bundle: super::BundleArg,
    /// `text`: one line per finding, then a summary; `json`: one object
    /// (`source`, `revision`, `errors`, `warnings`, `test_cases`).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Count every warning as an error (exit 1), so that CI can hold
    /// authors to the strict form while exported bundles still load.
    #[arg(long)]
    strict: bool,
}

/// The bundle's warnings, as errors under `--strict` (suggestions stay).
fn graded(warnings: &[Diagnostic], strict: bool) -> Vec<Diagnostic> {
    warnings
        .iter()
        .cloned()
        .map(|mut d| {
            if strict && d.severity == Severity::Warning {
                d.severity = Severity::Error;
            }
            d
        })
        .collect()
}

/// Run `verdict check`.
pub(crate) fn run(args: CheckArgs) -> Exit {
    let path = match bundle_path(args.bundle.get()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    if args.format == Format::Json {
        return run_json(&path, args.strict);
    }
    match load_bundle(&path, true, true, Findings::Result) {
        Ok(loaded) => {
            let findings = graded(&loaded.warnings, args.strict);
            print_diagnostics(&findings, Findings::Result);
            let (cases, mut errors) = suite::parse_tests(&loaded.bundle, &RequestLimits::default());
            print_diagnostics(&errors, Findings::Result);
            let count = |s: Severity| findings.iter().filter(|d| d.severity == s).count();
            let warnings = count(Severity::Warning);
            let suggestions = match count(Severity::Suggestion) {
                0 => String::new(),
                n => format!(", {n} suggestion(s)"),
            };
            errors.extend(
                findings
                    .into_iter()
                    .filter(|d| d.severity == Severity::Error),
            );
            Findings::Result.line(&format_args!(
                "{}: revision {}, {} error(s), {warnings} warning(s){suggestions}, {} test case(s)",
                loaded.bundle.source,
                loaded.bundle.revision,
                errors.len(),
                cases.len()
            ));
            if errors.is_empty() {
                Exit::Ok
            } else {
                Exit::Failed
            }
        }
        Err(LoadError::NotABundle { .. }) => Exit::Usage,
        Err(LoadError::Invalid(_)) => Exit::Failed,
    }
}

/// `check --format json`: the same findings and status as one JSON object.
fn run_json(path: &std::path::Path, strict: bool) -> Exit {
    let opts = LoadOptions {
        with_tests: true,
        ..Default::default()
    };
    // Errors, then warnings and suggestions.
    let split = |all: &[&Diagnostic]| -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
        let (errors, rest): (Vec<&&Diagnostic>, Vec<&&Diagnostic>) =
            all.iter().partition(|d| d.severity == Severity::Error);
        let json = |ds: Vec<&&Diagnostic>| ds.into_iter().map(|d| diagnostic_json(d)).collect();
        (json(errors), json(rest))
    };
    let (report, exit) = match crate::bundle::load(path, &opts) {
        Ok(loaded) => {
            let (cases, test_errors) =
                suite::parse_tests(&loaded.bundle, &RequestLimits::default());
            let findings = graded(&loaded.warnings, strict);
            let all: Vec<&Diagnostic> = findings.iter().chain(&test_errors).collect();
            let (errors, warnings) = split(&all);
            let exit = if errors.is_empty() {
                Exit::Ok
            } else {
                Exit::Failed
            };
            let report = serde_json::json!({
                "source": loaded.bundle.source,
                "revision": loaded.bundle.revision.to_string(),
                "errors": errors,
                "warnings": warnings,
                "test_cases": cases.len(),
            });
            (report, exit)
        }
        Err(e @ LoadError::NotABundle { .. }) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
        Err(LoadError::Invalid(found)) => {
            let all: Vec<&Diagnostic> = found.iter().collect();
            let (errors, warnings) = split(&all);
            let report = serde_json::json!({
                "source": path.display().to_string(),
                "revision": null,
                "errors": errors,
                "warnings": warnings,
                "test_cases": null,
            });
            (report, Exit::Failed)
        }
    };
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{report:#}");
    exit
}
