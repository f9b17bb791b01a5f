//! Wiring: listeners (TCP and a Unix socket), the request timeout and the
//! edge (`crate::service::edge`: bodies read within their limits, then one
//! concurrency limit over every loop), health and reflection, the
//! `thread_per_core` event loops (`crate::runtime`), the reloader and its
//! readiness flip, and graceful shutdown.
//!
//! `start` binds, serves health as NOT_SERVING, loads and compiles the first
//! bundle off the runtime's workers, and only then reports SERVING; if that
//! first load fails it stops and returns the failure. `Running::shutdown`
//! reports NOT_SERVING, stops accepting, and lets in-flight calls finish
//! within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[cfg(unix)]
use tokio::net::UnixStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::Config;
use crate::conn::tls::Tls;
use crate::conn::{self, ConnSettings, Gate};
use crate::proto::server::authorizer_server::AuthorizerServer;
use crate::reload::{LoadFailure, Reloader};
use crate::runtime;
use crate::runtime::RuntimeFlavor;
use crate::service::AuthorizerService;
use crate::service::edge::{EdgeLayer, EdgeLimits};
use crate::service::stored::Cache;
use crate::telemetry::Telemetry;

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A listener could not be set up.
    #[error("cannot listen on {what}: {reason}")]
    Listen {
        /// The address or path.
        what: String,
        /// Why.
        reason: String,
    },
    /// The first bundle did not load.
    #[error("the first bundle does not load, so verdict stops ({})", .0.message)]
    FirstBundle(LoadFailure),
    /// The TLS certificate, key or client CA could not be read.
    #[error("TLS: {0}")]
    Tls(String),
    /// The remote bundle source's client could not be built.
    #[error("bundle source: {0}")]
    Source(String),
    /// Reflection could not be built.
    #[error("reflection: {0}")]
    Reflection(String),
    /// A `thread_per_core` event loop could not be started.
    #[error("cannot start an event loop: {0}")]
    Runtime(String),
    /// `/metrics` was asked for but telemetry keeps no Prometheus registry.
    #[error("metrics_listen is set but telemetry was started without the Prometheus exporter")]
    NoRegistry,
}

/// What the server reports to beyond its answers.
#[derive(Default)]
pub struct Hooks {
    /// Traces, metrics and the decision log (none: all off).
    pub telemetry: Option<Arc<Telemetry>>,
}

/// A running server.
pub struct Running {
    /// The bound TCP address, if any.
    pub tcp: Option<SocketAddr>,
    /// The Unix socket path, if any.
    pub uds: Option<PathBuf>,
    /// The reloader (tests and status).
    pub reloader: Arc<Reloader>,
    /// The `/metrics` address, if any.
    pub metrics: Option<SocketAddr>,
    /// Telemetry.
    pub telemetry: Arc<Telemetry>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
    loops: Option<runtime::Counts>,
    tasks: Vec<JoinHandle<()>>,
    health: HealthReporter,
    grace: Duration,
}

const SERVICE_NAME: &str =
    <AuthorizerServer<AuthorizerService> as tonic::server::NamedService>::NAME;

/// Bind a Unix socket, replacing a stale socket file (one nobody listens on)
/// but never another kind of file or a live socket; then set its mode.
#[cfg(unix)]
fn bind_uds(path: &Path, mode: u32) -> Result<tokio::net::UnixListener, AppError> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let err = |reason: String| AppError::Listen {
        what: path.display().to_string(),
        reason,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(err(
                "the path exists and is not a socket; not replacing it".into()
            ));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(err("another server is listening on this socket".into())),
            Err(_) => std::fs::remove_file(path)
                .map_err(|e| err(format!("cannot remove the stale socket: {e}")))?,
        }
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => err(format!(
            "the directory {} does not exist; create it (in Kubernetes, mount an emptyDir there)",
            path.parent()
                .map_or_else(|| ".".into(), |d| d.display().to_string())
        )),
        std::io::ErrorKind::PermissionDenied => err(
            "permission denied; the directory must be writable by the user verdict runs as".into(),
        ),
        _ => err(e.to_string()),
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| err(format!("cannot set the socket's mode: {e}")))?;
    Ok(listener)
}

/// The connections one `thread_per_core` loop is handed, per listener.
struct LoopWork {
    gate: Gate,
    /// TLS on the TCP listener.
    tls: Option<Arc<Tls>>,
    tcp: Option<mpsc::UnboundedReceiver<runtime::Handoff<TcpStream>>>,
    #[cfg(unix)]
    uds: Option<mpsc::UnboundedReceiver<runtime::Handoff<UnixStream>>>,
}

/// One listener's server, whatever its connections are.
type Serving<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send + 'a>>;

/// Serve what one loop is handed, on each listener, until `stop`; then let
/// its calls in flight finish.
async fn serve_loop<L, F, S>(
    server: impl Fn() -> tonic::transport::server::Router<L>,
    work: LoopWork,
    stop: watch::Receiver<bool>,
    signal: impl Fn(watch::Receiver<bool>) -> F,
) -> Result<(), tonic::transport::Error>
where
    F: Future<Output = ()> + Send,
    L: tower::Layer<Routes, Service = S> + Send,
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError> + Send,
{
    let tcp = work.tcp.map(|rx| -> Serving<'_> {
        match &work.tls {
            Some(tls) => Box::pin(server().serve_with_incoming_shutdown(
                runtime::incoming_tls::<TcpStream>(rx, work.gate.clone(), tls.clone()),
                signal(stop.clone()),
            )),
            None => Box::pin(server().serve_with_incoming_shutdown(
                runtime::incoming::<TcpStream>(rx, work.gate.clone()),
                signal(stop.clone()),
            )),
        }
    });
    #[cfg(unix)]
    let uds = work.uds.map(|rx| {
        server().serve_with_incoming_shutdown(
            runtime::incoming::<UnixStream>(rx, work.gate.clone()),
            signal(stop.clone()),
        )
    });
    #[cfg(not(unix))]
    let uds = None::<std::future::Ready<Result<(), tonic::transport::Error>>>;
    // A listener this server does not have is done at once.
    async fn or_done<E>(serving: Option<impl Future<Output = Result<(), E>>>) -> Result<(), E> {
        match serving {
            Some(serving) => serving.await,
            None => Ok(()),
        }
    }
    let (tcp, uds) = tokio::join!(or_done(tcp), or_done(uds));
    tcp.and(uds)
}

/// What `start` listens on.
struct Listeners {
    tcp: Option<TcpListener>,
    #[cfg(unix)]
    uds: Option<tokio::net::UnixListener>,
    /// The `/metrics` listener and the registry it serves.
    metrics: Option<(TcpListener, prometheus::Registry)>,
}

impl Listeners {
    /// Bind every configured listener; the first that fails stops the start.
    async fn bind(config: &Config, telemetry: &Telemetry) -> Result<Self, AppError> {
        let bind_tcp = |addr: std::net::SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|e| AppError::Listen {
                what: addr.to_string(),
                reason: e.to_string(),
            })
        };
        let tcp = match config.listen {
            Some(addr) => Some(bind_tcp(addr).await?),
            None => None,
        };
        #[cfg(unix)]
        let uds = match &config.uds {
            Some(path) => Some(bind_uds(path, config.uds_mode)?),
            None => None,
        };
        let metrics = match config.metrics_listen {
            Some(addr) => {
                let registry = telemetry.registry().cloned().ok_or(AppError::NoRegistry)?;
                Some((bind_tcp(addr).await?, registry))
            }
            None => None,
        };
        Ok(Self {
            tcp,
            #[cfg(unix)]
            uds,
            metrics,
        })
    }
}

/// The edge's limits. Each event loop queues its own batches, so that a
/// batch finishing on one loop never wakes a batch waiting on another.
fn edge_limits(config: &Config, loops: usize) -> EdgeLimits {
    EdgeLimits {
        max_request_bytes: config.service.max_request_bytes,
        max_batch_bytes: config.service.max_batch_bytes,
        body_timeout: config.connections.request_body_timeout,
        batch_concurrency: config.service.batch_concurrency_limit.div_ceil(loops),
        max_batch_decoded_bytes: config.service.max_batch_decoded_bytes,
        allowed_clients: config
            .connections
            .tls
            .as_ref()
            .map(|t| t.allowed_clients.clone())
            .unwrap_or_default(),
    }
}

/// The gate every connection passes, with `max_connections` lowered (and a
/// warning) when the open-file limit cannot hold it beside bundle reads.
fn connection_gate(config: &Config) -> Gate {
    let (settings, fd_limit) = ConnSettings {
        handshake_timeout: config.connections.handshake_timeout,
        idle_timeout: config.connections.idle_timeout,
        max_connections: config.connections.max_connections,
    }
    .within_fd_limit();
    if let Some(fd_limit) = fd_limit {
        tracing::warn!(
            fd_limit,
            max_connections = settings.max_connections,
            "max_connections lowered to leave file descriptors for bundle reads"
        );
    }
    Gate::new(settings)
}

/// Health (NOT_SERVING until the first bundle is active), reflection and
/// the authorizer, as one set of routes.
async fn routes(
    config: &Config,
    authorizer: AuthorizerService,
    reloader: &Arc<Reloader>,
) -> Result<(HealthReporter, Routes), AppError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health
        .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
        .await;
    let reflection = |b: tonic_reflection::server::Builder<'static>| {
        b.register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .map_err(|e| AppError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .map_err(|e| AppError::Reflection(e.to_string()))?;
    let mut routes = Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            AuthorizerServer::new(authorizer)
                .max_decoding_message_size(config.service.max_batch_bytes)
                .max_encoding_message_size(usize::MAX),
        );
    if let Some(max_decisions) = config.service.analyzer {
        routes = routes.add_service(
            crate::proto::server::analyzer_server::AnalyzerServer::new(
                crate::service::analyzer::AnalyzerService::new(reloader.clone(), max_decisions),
            )
            .max_decoding_message_size(config.service.max_request_bytes),
        );
    }

    Ok((health, routes))
}

/// Start serving; returns once the first bundle is active.
pub async fn start(config: &Config, hooks: Hooks) -> Result<Running, AppError> {
    let telemetry = hooks
        .telemetry
        .unwrap_or_else(|| Arc::new(Telemetry::disabled()));
    // Listeners first, so that a bad address fails before any work.
    let Listeners {
        tcp,
        #[cfg(unix)]
        uds,
        metrics,
    } = Listeners::bind(config, &telemetry).await?;
    let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
    let metrics_addr = metrics.as_ref().and_then(|(l, _)| l.local_addr().ok());

    let observer = telemetry.clone();
    let reloader = Reloader::new(
        &config.reload.clone(),
        Some(Box::new(move |event| observer.reloaded(event))),
    )
    .map_err(AppError::Source)?;
    let cache = Arc::new(Cache::new(config.cache));
    let authorizer = AuthorizerService::new(
        reloader.clone(),
        cache.clone(),
        config.service.request_limits.clone(),
        config.service.max_batch,
        telemetry.clone(),
    )
    .min_serial_wait(config.service.min_serial_wait);
    let (health, routes) = routes(config, authorizer, &reloader).await?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let signal = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // Calls past their body, over every listener and loop together.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(
        config.service.concurrency_limit,
    ));
    let loops = config.runtime.loops();
    let edge = edge_limits(config, loops);
    let gate = connection_gate(config);
    let rpc = telemetry.rpc_metrics(crate::telemetry::ServerGauges {
        in_flight: in_flight.clone(),
        limit: config.service.concurrency_limit,
        connections: gate.live_count(),
    });
    let timeout = config.service.request_timeout;
    let conn = config.connections.clone();
    let server = move || {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        let mut builder = tonic::transport::Server::builder()
            .timeout(timeout)
            .max_concurrent_streams(conn.max_concurrent_streams)
            .initial_stream_window_size(conn.stream_window_bytes)
            .initial_connection_window_size(conn.connection_window_bytes)
            .http2_keepalive_interval(nonzero(conn.keepalive_interval))
            .http2_keepalive_timeout(nonzero(conn.keepalive_timeout));
        if let Some(age) = nonzero(conn.max_connection_age) {
            builder = builder
                .max_connection_age(age)
                .max_connection_age_grace(timeout);
        }
        builder
            .layer(EdgeLayer::new(edge.clone(), in_flight.clone(), rpc.clone()))
            .add_routes(routes.clone())
    };
    let tls = match &config.connections.tls {
        Some(settings) => Some(Arc::new(Tls::new(settings.clone()).map_err(AppError::Tls)?)),
        None => None,
    };
    let mut servers = Vec::new();
    let mut loop_counts = None;
    if config.runtime.flavor == RuntimeFlavor::ThreadPerCore {
        let counts = runtime::Counts::new(loops);
        let (tcp_dispatch, tcp_rx) = runtime::Dispatcher::<TcpStream>::new(&counts);
        #[cfg(unix)]
        let (uds_dispatch, uds_rx) = runtime::Dispatcher::<UnixStream>::new(&counts);
        // Without a listener its receivers are dropped at once.
        let mut tcp_rx = tcp_rx.into_iter().filter(|_| tcp.is_some());
        #[cfg(unix)]
        let mut uds_rx = uds_rx.into_iter().filter(|_| uds.is_some());
        for i in 0..counts.len() {
            let work = LoopWork {
                gate: gate.clone(),
                tls: tls.clone(),
                tcp: tcp_rx.next(),
                #[cfg(unix)]
                uds: uds_rx.next(),
            };
            let serving = serve_loop(server.clone(), work, shutdown_rx.clone(), signal);
            if i == 0 {
                // The first loop is the caller's runtime, which also runs the
                // acceptors and the reloader.
                servers.push(tokio::spawn(serving));
                continue;
            }
            let lost = move || {
                tracing::error!("event loop {i} ended without finishing its connections");
                Ok(())
            };
            let task = runtime::spawn_loop(i, serving, lost)
                .map_err(|e| AppError::Runtime(e.to_string()))?;
            servers.push(task);
        }
        if let Some(listener) = tcp {
            let stop = signal(shutdown_rx.clone());
            let gate = gate.clone();
            servers.push(tokio::spawn(async move {
                tcp_dispatch.run(listener, gate, stop).await;
                Ok(())
            }));
        }
        #[cfg(unix)]
        if let Some(listener) = uds {
            let stop = signal(shutdown_rx.clone());
            let gate = gate.clone();
            servers.push(tokio::spawn(async move {
                uds_dispatch.run(listener, gate, stop).await;
                Ok(())
            }));
        }
        tracing::info!(loops = counts.len(), "serving on one event loop per thread");
        loop_counts = Some(counts);
    } else {
        if let Some(listener) = tcp {
            let admit = gate.clone();
            let accepted = tokio_stream::wrappers::TcpListenerStream::new(listener).filter_map(
                move |accepted| match accepted {
                    Err(e) => Some(Err(e)),
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        let slot = admit.admit()?;
                        let peer = s.peer_addr().ok();
                        Some(Ok((s, peer, slot)))
                    }
                },
            );
            let stop = signal(shutdown_rx.clone());
            let serving: Serving<'static> = match &tls {
                Some(tls) => Box::pin(server().serve_with_incoming_shutdown(
                    conn::tls::handshakes(accepted, tls.clone(), gate.clone(), |w| w),
                    stop,
                )),
                None => {
                    let gate = gate.clone();
                    let watched =
                        accepted.map(move |a| a.map(|(s, peer, slot)| gate.watch(s, peer, slot)));
                    Box::pin(server().serve_with_incoming_shutdown(watched, stop))
                }
            };
            servers.push(tokio::spawn(serving));
        }
        #[cfg(unix)]
        if let Some(listener) = uds {
            let gate = gate.clone();
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener).filter_map(
                move |accepted| match accepted {
                    Err(e) => Some(Err(e)),
                    Ok(s) => {
                        let slot = gate.admit()?;
                        Some(Ok(gate.watch(s, None, slot)))
                    }
                },
            );
            servers.push(tokio::spawn(
                server().serve_with_incoming_shutdown(incoming, signal(shutdown_rx.clone())),
            ));
        }
    }

    let mut tasks = Vec::new();
    if let Some((listener, registry)) = metrics {
        let stop = signal(shutdown_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::telemetry::http::serve(listener, registry, stop).await {
                tracing::error!("/metrics server: {e}");
            }
        }));
    }

    let running = Running {
        tcp: tcp_addr,
        uds: config.uds.clone(),
        reloader: reloader.clone(),
        metrics: metrics_addr,
        telemetry,
        shutdown: shutdown_tx,
        servers,
        loops: loop_counts,
        tasks,
        health,
        grace: config.shutdown_grace,
    };
    running.first_load(&reloader, config, shutdown_rx).await
}

/// Log where verdict serves, each listener as an address or `off` (no
/// Rust debug text in the log).
fn log_serving(
    tcp: Option<std::net::SocketAddr>,
    uds: Option<&std::path::Path>,
    metrics: Option<std::net::SocketAddr>,
) {
    let or_off = |a: Option<String>| a.unwrap_or_else(|| "off".to_owned());
    tracing::info!(
        tcp = %or_off(tcp.map(|a| a.to_string())),
        uds = %or_off(uds.map(|p| p.display().to_string())),
        metrics = %or_off(metrics.map(|a| a.to_string())),
        "verdict is serving"
    );
}

/// Report SERVING for the server and the Authorizer service.
async fn report_serving(health: &tonic_health::server::HealthReporter) {
    for service in ["", SERVICE_NAME] {
        health
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
}

impl Running {
    /// Start the reload tasks, load the first bundle and report SERVING; a
    /// first bundle on disk that does not load stops everything. A remote
    /// source that does not answer (and no persisted copy) leaves the
    /// server up and NOT_SERVING, polling, until a bundle loads. The reload
    /// tasks (SIGHUP among them) start before the first load, so that a
    /// signal during it never kills the process; a load they start runs
    /// beside the first one, and the newer outcome wins.
    async fn first_load(
        mut self,
        reloader: &Arc<Reloader>,
        config: &Config,
        shutdown_rx: watch::Receiver<bool>,
    ) -> Result<Self, AppError> {
        self.tasks
            .extend(reloader.spawn_tasks(&config.reload.clone(), shutdown_rx));
        tracing::info!("loading the first bundle");
        match reloader.reload().await {
            Ok(_) => {}
            Err(failure) if reloader.is_remote() && reloader.snapshot().is_none() => {
                tracing::error!(
                    error = %failure.message,
                    "no bundle yet: NOT_SERVING until a poll of the source brings one"
                );
                let (health, reloader) = (self.health.clone(), reloader.clone());
                let (tcp, uds, metrics) = (self.tcp, self.uds.clone(), self.metrics);
                self.tasks.push(tokio::spawn(async move {
                    reloader.first_snapshot().await;
                    report_serving(&health).await;
                    log_serving(tcp, uds.as_deref(), metrics);
                }));
                return Ok(self);
            }
            Err(_) if reloader.snapshot().is_some() => {}
            Err(failure) => {
                self.shutdown().await;
                return Err(AppError::FirstBundle(failure));
            }
        }
        report_serving(&self.health).await;
        log_serving(self.tcp, self.uds.as_deref(), self.metrics);
        Ok(self)
    }

    /// With `thread_per_core`: the connections each event loop serves now.
    pub fn loop_connections(&self) -> Option<Vec<usize>> {
        self.loops.as_ref().map(runtime::Counts::snapshot)
    }

    /// Report NOT_SERVING, stop accepting, let in-flight calls finish within
    /// the grace period, then stop.
    pub async fn shutdown(mut self) {
        self.health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        self.health
            .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
            .await;
        let _ = self.shutdown.send(true);
        let servers = std::mem::take(&mut self.servers);
        let drain = async {
            for s in servers {
                let _ = s.await;
            }
        };
        if tokio::time::timeout(self.grace, drain).await.is_err() {
            tracing::warn!(
                grace_ms = self.grace.as_millis(),
                "in-flight calls did not finish within the grace period"
            );
        }
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
        }
        if let Some(path) = &self.uds {
            let _ = std::fs::remove_file(path);
        }
        self.telemetry.shutdown(self.grace).await;
        tracing::info!("verdict stopped");
    }

    /// Run until `signal` completes, then shut down gracefully.
    pub(crate) async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
