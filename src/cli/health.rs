//! `verdict health`: ask a running server's `grpc.health.v1.Health/Check`
//! and exit 0 only when it answers SERVING. Made for orchestrators: a
//! container health check, or a Kubernetes exec probe on the Unix socket
//! (a kubelet's own gRPC probe cannot reach a server bound to localhost).

use std::io::Write as _;

use clap::Args;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::Exit;
use super::client::ServerArgs;

/// Arguments of `verdict health`.
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The service to ask about (default: the server as a whole).
    #[arg(long, value_name = "NAME", default_value = "")]
    service: String,
}

async fn check(args: &HealthArgs) -> Result<ServingStatus, String> {
    let channel = args.server.connect().await?;
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: args.service.clone(),
    });
    request.set_timeout(args.server.timeout());
    let response = client
        .check(request)
        .await
        .map_err(|s| format!("Health/Check: {}: {}", s.code(), s.message()))?;
    Ok(response.into_inner().status())
}

/// Run `verdict health`.
pub(crate) fn run(args: HealthArgs) -> Exit {
    let runtime = match super::client::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    match runtime.block_on(check(&args)) {
        Ok(ServingStatus::Serving) => {
            let _ = writeln!(std::io::stdout(), "SERVING");
            Exit::Ok
        }
        Ok(status) => {
            let _ = writeln!(std::io::stdout(), "{}", status.as_str_name());
            Exit::Failed
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Usage
        }
    }
}
