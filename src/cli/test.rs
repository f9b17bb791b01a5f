//! `verdict test`: run the bundle's tests/ cases and report each failure
//! with the decision it got and the statements that decided it.

use clap::Args;

use super::{Exit, Findings, Format, bundle_path, diagnostic_json, load_bundle, print_diagnostics};
use crate::compile::Snapshot;
use crate::eval::{EvalOptions, RequestLimits, logic};
use crate::suite;

/// Arguments of `verdict test`.
#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    #[command(flatten)]
    bundle: super::BundleArg,
    /// `text`: each failure, then a summary; `json`: one object (`source`,
    /// `revision`, `passed`, `failed`, `invalid`, `failures`).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Run `verdict test`.
pub(crate) fn run(args: TestArgs) -> Exit {
    let path = match bundle_path(args.bundle.get()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let Ok(loaded) = load_bundle(&path, true, true, Findings::Diagnostic) else {
        // No case could run: like a usage error, not a failed test.
        return Exit::Usage;
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
    let _ = match args.format {
        Format::Text => report(
            &mut std::io::stdout().lock(),
            &results,
            failed,
            errors.len(),
            bundle,
        ),
        Format::Json => report_json(
            &mut std::io::stdout().lock(),
            &results,
            failed,
            &errors,
            bundle,
        ),
    };
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

/// The report as one JSON object: counts, the invalid cases' findings and
/// each failure with the decision it got.
fn report_json(
    out: &mut impl std::io::Write,
    results: &[suite::CaseResult<'_>],
    failed: usize,
    invalid: &[crate::bundle::Diagnostic],
    bundle: &crate::bundle::Bundle,
) -> std::io::Result<()> {
    let failures: Vec<serde_json::Value> = results
        .iter()
        .filter(|r| !r.failures.is_empty())
        .map(|r| {
            let c = r.case;
            serde_json::json!({
                "file": c.file,
                "line": c.position.line,
                "column": c.position.column,
                "name": c.label,
                "failures": r.failures,
                "got": r.decision.as_ref().map(crate::eval::json::DecisionJson::new),
            })
        })
        .collect();
    let report = serde_json::json!({
        "source": bundle.source,
        "revision": bundle.revision.to_string(),
        "passed": results.len() - failed,
        "failed": failed,
        "invalid": invalid.iter().map(diagnostic_json).collect::<Vec<_>>(),
        "failures": failures,
    });
    writeln!(out, "{report:#}")
}
