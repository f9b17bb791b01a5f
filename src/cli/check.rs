//! `verdict check`: validate a bundle and its tests; print every error and
//! warning with file, JSON pointer and line:column.

use clap::Args;

use super::{Exit, Findings, bundle_path, load_bundle, print_diagnostics};
use crate::bundle::{LoadError, Severity};
use crate::eval::RequestLimits;
use crate::suite;

/// Arguments of `verdict check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    bundle: super::BundleArg,
}

/// Run `verdict check`.
pub fn run(args: CheckArgs) -> Exit {
    let path = match bundle_path(args.bundle.get()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    match load_bundle(&path, true, false, Findings::Result) {
        Ok(loaded) => {
            let (cases, errors) = suite::parse_tests(&loaded.bundle, &RequestLimits::default());
            print_diagnostics(&errors, Findings::Result);
            let warnings = loaded
                .warnings
                .iter()
                .filter(|d| d.severity == Severity::Warning)
                .count();
            Findings::Result.line(&format_args!(
                "{}: revision {}, {} error(s), {warnings} warning(s), {} test case(s)",
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
