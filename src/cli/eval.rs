//! `verdict eval`: one request from flags, or JSON lines from `--requests`.

use std::fs;
use std::io::{self, BufRead, BufWriter, Write};
use std::time::SystemTime;

use clap::Args;

use super::{Exit, bundle_path, load_bundle};
use crate::compile::Snapshot;
use crate::eval::json::{DecisionJson, ErrorBody, ErrorJson, parse_request_line};
use crate::eval::{
    EvalOptions, InvalidRequest, Outcome, Request, RequestLimits, RequestParts, logic,
};

/// Arguments of `verdict eval`.
#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    bundle: super::BundleArg,
    /// The caller: a root, user, role, assumed-role, federated-user ARN or a service principal.
    #[arg(
        long,
        value_name = "ARN",
        required_unless_present = "requests",
        conflicts_with = "requests"
    )]
    principal: Option<String>,
    /// The action, `service:Name`.
    #[arg(
        long,
        value_name = "ACTION",
        required_unless_present = "requests",
        conflicts_with = "requests"
    )]
    action: Option<String>,
    /// The resource: an ARN or `*`.
    #[arg(
        long,
        value_name = "ARN",
        required_unless_present = "requests",
        conflicts_with = "requests"
    )]
    resource: Option<String>,
    /// A context entry; repeat a key to add values; `KEY=` gives one empty value.
    #[arg(long, value_name = "KEY=VALUE", conflicts_with_all = ["requests", "context_json"])]
    context: Vec<String>,
    /// The whole context as JSON: `{"KEY": VALUE or [VALUES]}`.
    #[arg(long, value_name = "JSON", conflicts_with = "requests")]
    context_json: Option<String>,
    /// A file holding the session policy document.
    #[arg(long, value_name = "FILE", conflicts_with = "requests")]
    session_policy: Option<String>,
    /// Include the explanation: per-gate results and statement positions.
    #[arg(long, conflicts_with = "requests")]
    explain: bool,
    /// Read JSON-lines requests from FILE (`-` for stdin); print one JSON line each, in order.
    #[arg(long, value_name = "FILE")]
    requests: Option<String>,
    /// `json`: each decision as JSON (docs/api.md); `text`: one line each,
    /// the decision and the statements that decided it.
    #[arg(long, value_enum, default_value_t = super::Format::Json)]
    format: super::Format,
    /// Exit 1 when a decision is not `Allow` (as when a request is
    /// invalid), so that a script can test the answer by the exit status.
    #[arg(long)]
    exit_code: bool,
}

/// One decision as a line of text: the outcome and what decided it.
fn decision_text(d: &crate::eval::Decision) -> String {
    format!(
        "{} by {}",
        d.outcome.as_str(),
        crate::suite::describe_matched(d)
    )
}

/// Print one decision in `format`.
fn print_decision(
    out: &mut impl Write,
    format: super::Format,
    pretty: bool,
    d: &crate::eval::Decision,
) -> io::Result<()> {
    match format {
        super::Format::Text => writeln!(out, "{}", decision_text(d)),
        super::Format::Json if pretty => {
            serde_json::to_writer_pretty(&mut *out, &DecisionJson::new(d))?;
            out.write_all(b"\n")
        }
        super::Format::Json => {
            serde_json::to_writer(&mut *out, &DecisionJson::new(d))?;
            out.write_all(b"\n")
        }
    }
}

/// Run `verdict eval`.
pub(crate) fn run(args: EvalArgs) -> Exit {
    let path = match bundle_path(args.bundle.get()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let Ok(loaded) = load_bundle(&path, false, true, super::Findings::Diagnostic) else {
        return Exit::Usage;
    };
    let snapshot = Snapshot::compile(&loaded.bundle, &EvalOptions::default(), 0);
    let limits = RequestLimits::default();
    match &args.requests {
        Some(file) => run_lines(&snapshot, file, &limits, &args),
        None => run_one(&snapshot, &args, &limits),
    }
}

fn single_parts(args: &EvalArgs) -> Result<RequestParts, InvalidRequest> {
    let invalid = |field: &str, message: String| InvalidRequest {
        field: field.to_owned(),
        message,
    };
    let mut context: Vec<(String, Vec<String>)> = Vec::new();
    for kv in &args.context {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(invalid("context", format!("`{kv}` is not KEY=VALUE")));
        };
        match context.iter_mut().find(|(key, _)| key == k) {
            Some((_, values)) => values.push(v.to_owned()),
            None => context.push((k.to_owned(), vec![v.to_owned()])),
        }
    }
    if let Some(json) = &args.context_json {
        let map: crate::policy::document::UniqueMap<&serde_json::value::RawValue> =
            serde_json::from_str(json).map_err(|e| invalid("context", e.to_string()))?;
        context = crate::eval::json::context_pairs(&map)?;
    }
    let session_policy = match &args.session_policy {
        Some(file) => Some(
            fs::read_to_string(file)
                .map_err(|e| invalid("session_policy", format!("`{file}`: {e}")))?,
        ),
        None => None,
    };
    Ok(RequestParts {
        principal: args.principal.clone().unwrap_or_default(),
        action: args.action.clone().unwrap_or_default(),
        resource: args.resource.clone().unwrap_or_default(),
        context,
        session_policy,
        explain: args.explain,
    })
}

fn print_error(
    out: &mut impl Write,
    format: super::Format,
    line: Option<usize>,
    e: &InvalidRequest,
) -> io::Result<()> {
    if format == super::Format::Text {
        return match line {
            Some(n) => writeln!(out, "error: line {n}: {}: {}", e.field, e.message),
            None => writeln!(out, "error: {}: {}", e.field, e.message),
        };
    }
    serde_json::to_writer(
        &mut *out,
        &ErrorJson {
            error: ErrorBody {
                line,
                field: &e.field,
                message: &e.message,
            },
        },
    )?;
    out.write_all(b"\n")
}

fn run_one(snapshot: &Snapshot, args: &EvalArgs, limits: &RequestLimits) -> Exit {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let request = single_parts(args).and_then(|p| Request::new(p, limits));
    let result = match request {
        Ok(req) => {
            let d = logic::evaluate(snapshot, &req, SystemTime::now());
            let denied = args.exit_code && d.outcome != Outcome::Allow;
            print_decision(&mut out, args.format, true, &d)
                .map(|()| if denied { Exit::Failed } else { Exit::Ok })
        }
        Err(e) => print_error(&mut out, args.format, None, &e).map(|()| Exit::Failed),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: writing output: {e}");
        Exit::Failed
    })
}

fn run_lines(snapshot: &Snapshot, file: &str, limits: &RequestLimits, args: &EvalArgs) -> Exit {
    let format = args.format;
    let input: Box<dyn BufRead> = if file == "-" {
        Box::new(io::stdin().lock())
    } else {
        match fs::File::open(file) {
            Ok(f) => Box::new(io::BufReader::with_capacity(1 << 16, f)),
            Err(e) => {
                eprintln!("error: `{file}`: {e}");
                return Exit::Usage;
            }
        }
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut any_invalid = false;
    let mut any_denied = false;
    let now = SystemTime::now();
    let result = (|| -> io::Result<()> {
        for (i, line) in input.lines().enumerate() {
            let line = line?;
            match parse_request_line(&line).and_then(|p| Request::new(p, limits)) {
                Ok(req) => {
                    let d = logic::evaluate(snapshot, &req, now);
                    any_denied |= d.outcome != Outcome::Allow;
                    print_decision(&mut out, format, false, &d)?;
                }
                Err(e) => {
                    any_invalid = true;
                    print_error(&mut out, format, Some(i + 1), &e)?;
                }
            }
        }
        out.flush()
    })();
    if let Err(e) = result {
        eprintln!("error: {e}");
        return Exit::Failed;
    }
    if any_invalid || (args.exit_code && any_denied) {
        Exit::Failed
    } else {
        Exit::Ok
    }
}
