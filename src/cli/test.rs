//! `verdict test`: run the bundle's tests/ cases and report each failure
//! with the decision it got and the statements that decided it.

use clap::Args;

use super::{Exit, Findings, bundle_path, load_bundle, print_diagnostics};
use crate::compile::Snapshot;
use crate::eval::{EvalOptions, RequestLimits, logic};
use crate::suite;

/// Arguments of `verdict test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    bundle: super::BundleArg,
}

/// Run `verdict test`.
pub fn run(args: TestArgs) -> Exit {
    let path = match bundle_path(args.bundle.get()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let Ok(loaded) = load_bundle(&path, true, true, Findings::Diagnostic) else {
        return Exit::Failed;
    };
    let bundle = &loaded.bundle;
    if bundle.tests.is_empty() {
        eprintln!("warning: {}: no tests/ in the bundle", bundle.source);
        return Exit::Ok;
    }
    let (cases, errors) = suite::parse_tests(bundle, &RequestLimits::default());
    print_diagnostics(&errors, Findings::Diagnostic);
    let snapshot = Snapshot::compile(bundle, &EvalOptions::default(), 0);
    let results = suite::run(&cases, &|req, now| logic::evaluate(&snapshot, req, now));
    let failed = results.iter().filter(|r| !r.failures.is_empty()).count();
    // A reader that went away (`| head`) ends the report, not the process.
    let _ = report(
        &mut std::io::stdout().lock(),
        &results,
        failed,
        errors.len(),
        bundle,
    );
    if failed == 0 && errors.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    }
}

/// Each failure with the decision it got, then the summary.
fn report(
    out: &mut impl std::io::Write,
    results: &[suite::CaseResult<'_>],
    failed: usize,
    invalid: usize,
    bundle: &crate::bundle::Bundle,
) -> std::io::Result<()> {
    for r in results.iter().filter(|r| !r.failures.is_empty()) {
        let c = r.case;
        writeln!(
            out,
            "FAIL {}:{}:{}: {}",
            c.file, c.position.line, c.position.column, c.label
        )?;
        for f in &r.failures {
            writeln!(out, "  {f}")?;
        }
        if let Some(d) = &r.decision {
            writeln!(
                out,
                "  got {} by {}",
                d.outcome.as_str(),
                suite::describe_matched(d)
            )?;
            if let Some(e) = &d.explanation
                && !e.blocked_by.is_empty()
            {
                let gates: Vec<&str> = e.blocked_by.iter().map(|g| g.as_str()).collect();
                writeln!(out, "  blocked by {}", gates.join(", "))?;
            }
        }
    }
    writeln!(
        out,
        "{} passed, {failed} failed, {invalid} invalid ({} revision {})",
        results.len() - failed,
        bundle.source,
        bundle.revision
    )
}
