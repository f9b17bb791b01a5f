//! `verdict who-can`, `verdict what-can` and `verdict diff`: access
//! analysis over a bundle's universe (`crate::analysis`).

use std::io::Write as _;

use clap::Args;

use super::{Exit, Format, bundle_path, load_bundle};
use crate::analysis::{self, Access, Bounds, Universe};
use crate::bundle::Loaded;
use crate::compile::Snapshot;
use crate::eval::EvalOptions;

/// The bounds of the universe, as flags.
#[derive(Debug, Args)]
pub(crate) struct BoundsArgs {
    /// Context classes tried for each request, `no context` included.
    #[arg(long, value_name = "N", default_value_t = Bounds::default().max_contexts)]
    max_contexts: usize,
    /// Principals of the universe.
    #[arg(long, value_name = "N", default_value_t = Bounds::default().max_principals)]
    max_principals: usize,
    /// Actions of the universe.
    #[arg(long, value_name = "N", default_value_t = Bounds::default().max_actions)]
    max_actions: usize,
    /// Resources of the universe.
    #[arg(long, value_name = "N", default_value_t = Bounds::default().max_resources)]
    max_resources: usize,
}

impl BoundsArgs {
    fn bounds(&self) -> Bounds {
        Bounds {
            max_contexts: self.max_contexts.max(1),
            max_principals: self.max_principals,
            max_actions: self.max_actions,
            max_resources: self.max_resources,
        }
    }
}

/// Arguments of `verdict who-can`.
#[derive(Debug, Args)]
pub(crate) struct WhoCanArgs {
    #[command(flatten)]
    bundle: super::BundleArg,
    /// The resource (a key ARN, or any resource ARN).
    #[arg(long, value_name = "ARN")]
    resource: String,
    /// Only these actions (repeat); default: every action of the universe.
    #[arg(long, value_name = "ACTION")]
    action: Vec<String>,
    #[command(flatten)]
    bounds: BoundsArgs,
    /// `text`: a table; `json`: one JSON document.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Arguments of `verdict what-can`.
#[derive(Debug, Args)]
pub(crate) struct WhatCanArgs {
    #[command(flatten)]
    bundle: super::BundleArg,
    /// The principal: a user, role, session, root ARN or service principal.
    #[arg(long, value_name = "ARN")]
    principal: String,
    /// Only resources matching this pattern (`*`, `?`).
    #[arg(long, value_name = "PATTERN")]
    resource: Option<String>,
    #[command(flatten)]
    bounds: BoundsArgs,
    /// `text`: a table; `json`: one JSON document.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// What makes `diff` fail, for CI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FailOn {
    /// Access the new bundle grants.
    Gained,
    /// Access it takes away.
    Lost,
    /// Either.
    Any,
}

/// Arguments of `verdict diff`.
#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The bundle as it is (directory or .tar.gz).
    old: String,
    /// The bundle as it would be.
    new: String,
    #[command(flatten)]
    bounds: BoundsArgs,
    /// Exit 1 when access is gained, lost, or either (0 otherwise; 2 when a
    /// bundle does not load).
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
    /// `text`: one line per change; `json`: one JSON document.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Load and compile a bundle.
fn compiled(arg: &str) -> Result<(Loaded, Snapshot), Exit> {
    let path = bundle_path(arg).map_err(|e| {
        eprintln!("error: {e}");
        Exit::Usage
    })?;
    let loaded =
        load_bundle(&path, false, true, super::Findings::Diagnostic).map_err(|_| Exit::Usage)?;
    let snap = Snapshot::compile(&loaded.bundle, &EvalOptions::default(), 0);
    Ok((loaded, snap))
}

fn universe_json(u: &Universe) -> serde_json::Value {
    serde_json::json!({
        "principals": u.principals.len(),
        "actions": u.actions.len(),
        "resources": u.resources.len(),
        "contexts": u.contexts.iter().map(|c| &c.name).collect::<Vec<_>>(),
        "cut": u.cut,
    })
}

/// Print a JSON document, or the access as a table.
fn print(format: Format, json: &serde_json::Value, access: &[Access], u: &Universe) -> Exit {
    let mut out = std::io::stdout().lock();
    let written = match format {
        Format::Json => serde_json::to_writer_pretty(&mut out, json)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        Format::Text => table(&mut out, access, u),
    };
    super::printed(written)
}

fn table(out: &mut impl std::io::Write, access: &[Access], u: &Universe) -> std::io::Result<()> {
    writeln!(
        out,
        "{} principals x {} actions x {} resources x {} context classes{}",
        u.principals.len(),
        u.actions.len(),
        u.resources.len(),
        u.contexts.len(),
        if u.cut.is_empty() {
            String::new()
        } else {
            format!("; cut: {}", u.cut.join("; "))
        }
    )?;
    if access.is_empty() {
        return writeln!(out, "no access");
    }
    writeln!(out, "PRINCIPAL\tACTION\tRESOURCE\tWHEN\tPATH")?;
    for a in access {
        let when = if a.unconditional {
            "always".to_owned()
        } else {
            format!("only with {}", a.allowed_when.join(" or "))
        };
        writeln!(
            out,
            "{}\t{}\t{}\t{when}\t{}",
            a.principal,
            a.action,
            a.resource,
            a.path()
        )?;
        for d in &a.denied_when {
            writeln!(out, "\t\t\tdenied with {}\t{}", d.context, d.by)?;
        }
    }
    Ok(())
}

/// Run `verdict who-can`.
pub(crate) fn who_can(args: WhoCanArgs) -> Exit {
    let (loaded, snap) = match compiled(args.bundle.get()) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let u = Universe::of_with(
        &loaded.bundle,
        args.bounds.bounds(),
        std::slice::from_ref(&args.resource),
    );
    let access = analysis::who_can(&snap, &u, &args.resource, &args.action);
    let json = serde_json::json!({
        "resource": args.resource, "universe": universe_json(&u), "access": access,
    });
    print(args.format, &json, &access, &u)
}

/// Run `verdict what-can`.
pub(crate) fn what_can(args: WhatCanArgs) -> Exit {
    let (loaded, snap) = match compiled(args.bundle.get()) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let u = Universe::of(&loaded.bundle, args.bounds.bounds());
    let access = analysis::what_can(&snap, &u, &args.principal, args.resource.as_deref());
    let json = serde_json::json!({
        "principal": args.principal, "universe": universe_json(&u), "access": access,
    });
    print(args.format, &json, &access, &u)
}

/// Run `verdict diff`.
pub(crate) fn diff(args: DiffArgs) -> Exit {
    let (old, new) = match (compiled(&args.old), compiled(&args.new)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let bounds = args.bounds.bounds();
    let u = Universe::of_all(&[&old.0.bundle, &new.0.bundle], bounds);
    let d = analysis::diff((&old.0.bundle, &old.1), (&new.0.bundle, &new.1), &u);
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        Format::Json => serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({"universe": universe_json(&u), "diff": d}),
        )
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out)),
        Format::Text => diff_text(&mut out, &d, &u),
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: {e}");
        return Exit::Usage;
    }
    let failed = match args.fail_on {
        None => false,
        Some(FailOn::Gained) => !d.gained.is_empty(),
        Some(FailOn::Lost) => !d.lost.is_empty(),
        Some(FailOn::Any) => !d.gained.is_empty() || !d.lost.is_empty(),
    };
    if failed { Exit::Failed } else { Exit::Ok }
}

fn diff_text(
    out: &mut impl std::io::Write,
    d: &analysis::Diff,
    u: &Universe,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{} requests compared ({} principals x {} actions x {} resources x {} context classes); {} gained, {} lost (principal, action, resource){}",
        d.compared,
        u.principals.len(),
        u.actions.len(),
        u.resources.len(),
        u.contexts.len(),
        d.gained.len(),
        d.lost.len(),
        if u.cut.is_empty() {
            String::new()
        } else {
            format!("; cut: {}", u.cut.join("; "))
        }
    )?;
    for c in d.gained.iter().chain(&d.lost) {
        let when = if c.every_context {
            "always".to_owned()
        } else {
            format!("only with {}", c.contexts.join(" or "))
        };
        writeln!(
            out,
            "{}\t{}\t{when}\told {} by {}\tnew {} by {}",
            c.change, c.witness, c.old.decision, c.old.matched, c.new.decision, c.new.matched
        )?;
    }
    Ok(())
}
