//! `verdict import`: build a bundle from an AWS CLI export (docs/import.md),
//! then load it as `check` would.

use std::path::PathBuf;

use clap::Args;

use super::{Exit, Findings, load_bundle};
use crate::import;

/// Arguments of `verdict import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The export: a directory laid out as docs/import.md says
    /// (`scripts/collect-aws` writes one).
    #[arg(value_name = "EXPORT")]
    export: PathBuf,
    /// Where to write the bundle: a new or empty directory.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
}

/// Run `verdict import`.
pub(crate) fn run(args: ImportArgs) -> Exit {
    if !args.export.is_dir() {
        eprintln!(
            "error: {}: not a directory; give the export directory",
            args.export.display()
        );
        return Exit::Usage;
    }
    let imported = match import::run(&args.export, &args.output) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    for note in &imported.notes {
        eprintln!("{note}");
    }
    println!(
        "{}: revision {}, {} file(s), {} note(s)",
        args.output.display(),
        imported.revision,
        imported.files.len(),
        imported.notes.len()
    );
    // What was written must load: the same check `verdict check` makes.
    match load_bundle(&args.output, false, false, Findings::Diagnostic) {
        Ok(_) => Exit::Ok,
        Err(_) => Exit::Failed,
    }
}
