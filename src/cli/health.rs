//! `verdict health`: ask a running server's `grpc.health.v1.Health/Check`
//! and exit 0 only when it answers SERVING. Made for orchestrators: a
//! container health check, or a Kubernetes exec probe on the Unix socket
//! (a kubelet's own gRPC probe cannot reach a server bound to localhost).

use std::io::Write as _;
use std::time::Duration;

use clap::Args;
use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::Exit;

/// Arguments of `verdict health`.
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// TCP address of the server (default 127.0.0.1:50051 when --uds is not given).
    #[arg(long, value_name = "ADDR", conflicts_with = "uds")]
    addr: Option<String>,
    /// Unix socket of the server.
    #[arg(long, value_name = "PATH")]
    uds: Option<String>,
    /// The service to ask about (default: the server as a whole).
    #[arg(long, value_name = "NAME", default_value = "")]
    service: String,
    /// Give up after this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    timeout_ms: u64,
    /// Speak TLS to --addr, trusting the CA certificates of this PEM file.
    #[arg(long, value_name = "FILE", conflicts_with = "uds")]
    tls_ca: Option<std::path::PathBuf>,
    /// With --tls-ca: present this client certificate (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key", requires = "tls_ca")]
    tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// The server name its certificate must hold (default: the host of --addr).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_server_name: Option<String>,
}

/// The client TLS configuration of `--tls-ca`, `--tls-cert`, `--tls-key`.
fn client_tls(
    args: &HealthArgs,
    addr: &str,
) -> Result<Option<tonic::transport::ClientTlsConfig>, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let Some(ca) = &args.tls_ca else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca)?))
        .domain_name(
            args.tls_server_name
                .clone()
                .unwrap_or_else(|| host.to_owned()),
        );
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}

/// Why a server could not be reached, from the innermost cause tonic
/// wraps (its own message is "transport error"), and what to check.
fn unreachable_message(target: &str, e: &tonic::transport::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let io = cause
        .downcast_ref::<std::io::Error>()
        .map(std::io::Error::kind);
    let hint = match io {
        Some(std::io::ErrorKind::NotFound) => {
            "no socket there; is `verdict serve --uds` running with this path?"
        }
        Some(std::io::ErrorKind::ConnectionRefused) => {
            "nothing is listening there; is `verdict serve` running, and on this address?"
        }
        Some(std::io::ErrorKind::PermissionDenied) => {
            "permission denied; the socket's mode is `uds_mode` (default 0660)"
        }
        _ => "check the address and that the server is running",
    };
    format!("cannot connect to {target}: {cause} ({hint})")
}

async fn check(args: &HealthArgs) -> Result<ServingStatus, String> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let channel = match &args.uds {
        Some(path) => {
            let path = path.clone();
            Endpoint::from_static("http://localhost")
                .connect_timeout(timeout)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .map_err(|e| unreachable_message(args.uds.as_deref().unwrap_or_default(), &e))?
        }
        None => {
            let addr = args
                .addr
                .as_deref()
                .unwrap_or(crate::config::DEFAULT_LISTEN);
            crate::reload::fetch::install_crypto_provider();
            let tls = client_tls(args, addr)?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut endpoint = Endpoint::try_from(format!("{scheme}://{addr}"))
                .map_err(|e| format!("`{addr}`: {e}"))?
                .connect_timeout(timeout);
            if let Some(tls) = tls {
                endpoint = endpoint.tls_config(tls).map_err(|e| format!("TLS: {e}"))?;
            }
            endpoint
                .connect()
                .await
                .map_err(|e| unreachable_message(addr, &e))?
        }
    };
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: args.service.clone(),
    });
    request.set_timeout(timeout);
    let response = client
        .check(request)
        .await
        .map_err(|s| format!("Health/Check: {}: {}", s.code(), s.message()))?;
    Ok(response.into_inner().status())
}

/// Run `verdict health`.
pub(crate) fn run(args: HealthArgs) -> Exit {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
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
