//! `verdict usage`: read a running server's statement-usage ledger
//! (`GetUsage`): every statement and grant of the active bundle with the
//! decisions it took part in since the bundle became active.

use std::io::Write as _;

use clap::Args;

use super::client::ServerArgs;
use super::{Exit, Format};
use crate::proto::authorizer_client::AuthorizerClient;
use crate::proto::{GetUsageRequest, UsageReport};

/// Arguments of `verdict usage`.
#[derive(Debug, Args)]
pub(crate) struct UsageArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// `text`: a header and a table; `json`: one object.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// List only the statements and grants that took part in no decision.
    #[arg(long)]
    unused: bool,
}

async fn fetch(args: &UsageArgs) -> Result<UsageReport, String> {
    let mut client = AuthorizerClient::new(args.server.connect().await?);
    let mut request = tonic::Request::new(GetUsageRequest {});
    request.set_timeout(args.server.timeout());
    let response = client
        .get_usage(request)
        .await
        .map_err(|s| format!("GetUsage: {}: {}", s.code(), s.message()))?;
    Ok(response.into_inner())
}

fn json(report: &UsageReport, unused: bool) -> serde_json::Value {
    let statements: Vec<serde_json::Value> = report
        .statements
        .iter()
        .filter(|s| !unused || s.allow + s.deny == 0)
        .map(|s| {
            serde_json::json!({
                "policy_id": s.policy_id, "index": s.index, "sid": s.sid,
                "allow": s.allow, "deny": s.deny,
            })
        })
        .collect();
    serde_json::json!({
        "revision": report.revision, "serial": report.serial,
        "generation": report.generation, "since": report.since,
        "decisions": report.decisions, "statements": statements,
    })
}

fn text(out: &mut impl std::io::Write, report: &UsageReport, unused: bool) -> std::io::Result<()> {
    writeln!(
        out,
        "bundle {} (serial {}): {} decisions since {}",
        report.revision, report.serial, report.decisions, report.since
    )?;
    writeln!(out, "POLICY\tSTATEMENT\tALLOW\tDENY")?;
    for s in report
        .statements
        .iter()
        .filter(|s| !unused || s.allow + s.deny == 0)
    {
        let at = match (s.index, &s.sid) {
            (None, _) => "grant".to_owned(),
            (Some(i), Some(sid)) => format!("#{i} ({sid})"),
            (Some(i), None) => format!("#{i}"),
        };
        writeln!(out, "{}\t{at}\t{}\t{}", s.policy_id, s.allow, s.deny)?;
    }
    Ok(())
}

/// Run `verdict usage`.
pub(crate) fn run(args: UsageArgs) -> Exit {
    let report = match super::client::runtime().and_then(|rt| rt.block_on(fetch(&args))) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        Format::Json => writeln!(out, "{}", json(&report, args.unused)),
        Format::Text => text(&mut out, &report, args.unused),
    };
    super::printed(written)
}
