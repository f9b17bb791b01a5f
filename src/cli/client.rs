//! Connecting to a running server, for the commands that ask one
//! (`health`, `usage`): `--addr` (TCP, TLS with `--tls-ca`, mutual TLS with
//! `--tls-cert`/`--tls-key`) or `--uds`, within `--timeout-ms`.

use std::time::Duration;

use clap::Args;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Where the server is and how to reach it.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// TCP address of the server (default 127.0.0.1:50051 when --uds is not given).
    #[arg(long, value_name = "ADDR", conflicts_with = "uds")]
    addr: Option<String>,
    /// Unix socket of the server.
    #[arg(long, value_name = "PATH")]
    uds: Option<String>,
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

/// A runtime for one client call.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

impl ServerArgs {
    /// `--timeout-ms`.
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The client TLS configuration of `--tls-ca`, `--tls-cert`, `--tls-key`.
    fn client_tls(&self, addr: &str) -> Result<Option<tonic::transport::ClientTlsConfig>, String> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let read =
            |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca)?))
            .domain_name(
                self.tls_server_name
                    .clone()
                    .unwrap_or_else(|| host.to_owned()),
            );
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Some(tls))
    }

    /// A channel to the server, or why it cannot be reached.
    pub(crate) async fn connect(&self) -> Result<Channel, String> {
        let timeout = self.timeout();
        if let Some(path) = &self.uds {
            let target = path.clone();
            let path = path.clone();
            return Endpoint::from_static("http://localhost")
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
                .map_err(|e| unreachable_message(&target, &e));
        }
        let addr = self
            .addr
            .as_deref()
            .unwrap_or(crate::config::DEFAULT_LISTEN);
        crate::reload::fetch::install_crypto_provider();
        let tls = self.client_tls(addr)?;
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
            .map_err(|e| unreachable_message(addr, &e))
    }
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
