//! `verdict serve`: the gRPC server, configured from flags, `VERDICT_*`
//! environment variables and an optional TOML file.

use std::sync::Arc;

use clap::Args;

use super::Exit;
use crate::app::{self, Hooks};
use crate::config::{self, Config, FlagValues, Sources};
use crate::telemetry::Telemetry;

/// Arguments of `verdict serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    bundle: super::OptionalBundleArg,
    /// TCP address to listen on (default 127.0.0.1:50051 when neither this nor --uds is given).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Unix socket to listen on.
    #[arg(long, value_name = "PATH")]
    uds: Option<String>,
    /// Configuration file (TOML); flags and VERDICT_* variables take precedence.
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
}

/// The sources of the configuration `args` name (the file read whole).
pub(crate) fn config_sources(args: &ServeArgs) -> Result<Sources<'static>, config::ConfigError> {
    let file = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some((path.clone(), text)),
            Err(e) => {
                return Err(config::ConfigError {
                    origin: format!("--config {path}"),
                    message: e.to_string(),
                });
            }
        },
        None => None,
    };
    Ok(Sources {
        flags: FlagValues {
            bundle: args.bundle.get().map(str::to_owned),
            listen: args.listen.clone(),
            uds: args.uds.clone(),
            metrics_listen: args.metrics_listen.clone(),
        },
        env: &|k: &str| std::env::var(k).ok(),
        file,
    })
}

/// Read the configuration, reporting every problem.
pub(crate) fn load_config(args: &ServeArgs) -> Result<Config, Vec<config::ConfigError>> {
    let sources = config_sources(args).map_err(|e| vec![e])?;
    config::from_sources(&sources)
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        builder
            .event_format(crate::telemetry::log_format::FlatJson)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Completes on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Run `verdict serve`.
pub(crate) fn run(args: ServeArgs) -> Exit {
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: configuration: {e}");
            }
            return Exit::Usage;
        }
    };
    init_logging(config.log_json);
    let runtime = config.runtime.build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return Exit::Usage;
        }
    };
    runtime.block_on(async {
        let telemetry = match Telemetry::start(config.telemetry_options()) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Usage;
            }
        };
        let hooks = Hooks {
            telemetry: Some(telemetry),
        };
        match app::start(&config, hooks).await {
            Ok(running) => {
                running.run_until(shutdown_signal()).await;
                Exit::Ok
            }
            Err(e) => {
                eprintln!("error: {e}");
                if let app::AppError::FirstBundle(f) = &e {
                    for line in &f.errors {
                        eprintln!("{line}");
                    }
                }
                Exit::Usage
            }
        }
    })
}
