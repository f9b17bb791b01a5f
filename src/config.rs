//! Server configuration from its sources: flags, `VERDICT_*` environment
//! variables and an optional TOML file, in that order of precedence, over
//! defaults. Parsing is a pure function of the sources (tests pass maps);
//! every bad value is reported, and a bad configuration stops the server
//! before anything binds.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::bundle::Limits;
use crate::cache::CacheLimits;
pub(crate) use crate::conn::ConnectionLimits;
use crate::eval::{EvalOptions, RequestLimits};
use crate::reload::{FetchSettings, ReloadSettings};
use crate::runtime::{RuntimeFlavor, RuntimeSettings};
use crate::service::ServiceSettings;
use crate::telemetry::{LogSettings, TelemetryOptions, TelemetrySettings};

pub(crate) use crate::bundle::BundleSource;

pub use crate::telemetry::LogFilter;

/// Everything the server needs, validated: what `serve` itself uses
/// (listeners, shutdown, its own log), then each module's settings, as
/// that module defines them.
#[derive(Clone, Debug)]
pub struct Config {
    /// TCP address, if any.
    pub listen: Option<SocketAddr>,
    /// Unix socket path, if any.
    pub uds: Option<PathBuf>,
    /// Unix socket file mode.
    pub(crate) uds_mode: u32,
    /// Prometheus `/metrics` address, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// How long in-flight calls may take to finish on shutdown.
    pub(crate) shutdown_grace: Duration,
    /// The server's own log as JSON lines (else text).
    pub(crate) log_json: bool,
    /// The bundle and its reloads.
    pub reload: ReloadSettings,
    /// The decision cache.
    pub cache: CacheLimits,
    /// What a call may be, and how many run at once.
    pub service: ServiceSettings,
    /// Connection-level protections: HTTP/2 and timeouts.
    pub(crate) connections: ConnectionLimits,
    /// The runtime.
    pub(crate) runtime: RuntimeSettings,
    /// The decision log.
    pub decision_log: LogSettings,
    /// Traces and metrics export (`OTEL_*`).
    pub telemetry: TelemetrySettings,
}

impl Config {
    /// What telemetry starts with.
    pub fn telemetry_options(&self) -> TelemetryOptions {
        TelemetryOptions {
            settings: self.telemetry.clone(),
            prometheus: self.metrics_listen.is_some(),
            decision_log: self.decision_log.sink(),
            decision_log_queue: self.decision_log.queue,
            decision_log_queue_bytes: self.decision_log.queue_bytes,
            decision_log_filter: self.decision_log.filter,
        }
    }
}

/// A bad configuration value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    /// Where the value came from (`--listen`, `VERDICT_MAX_BATCH`, `config.toml: max_batch`).
    pub(crate) origin: String,
    /// What is wrong.
    pub message: String,
}

/// Where a raw value came from.
#[derive(Clone, Debug)]
enum Origin {
    Flag(&'static str),
    Env(String),
    File(String, String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(flag) => write!(f, "--{flag}"),
            Self::Env(var) => f.write_str(var),
            Self::File(file, key) => write!(f, "{file}: {key}"),
        }
    }
}

/// The settings every source may set, by name (file key; env var is
/// `VERDICT_` + upper case).
pub const SETTINGS: &[&str] = &[
    "bundle",
    "listen",
    "uds",
    "uds_mode",
    "metrics_listen",
    "max_arn_bytes",
    "max_context_keys",
    "max_context_values",
    "max_context_value_bytes",
    "max_session_policy_bytes",
    "max_match_steps",
    "max_batch",
    "max_policy_bytes",
    "max_data_file_bytes",
    "max_string_bytes",
    "max_json_depth",
    "max_bundle_files",
    "max_unpacked_bytes",
    "trust_session_tags",
    "default_context",
    "cache_max_entries",
    "cache_ttl_ms",
    "watch",
    "poll_interval_ms",
    "reload_debounce_ms",
    "concurrency_limit",
    "request_timeout_ms",
    "shutdown_grace_ms",
    "runtime",
    "worker_threads",
    "decision_log",
    "decision_log_queue",
    "decision_log_filter",
    "log_format",
    "reload_timeout_ms",
    "cache_max_bytes",
    "cache_max_entry_bytes",
    "max_request_bytes",
    "max_batch_bytes",
    "max_batch_decoded_bytes",
    "batch_concurrency_limit",
    "decision_log_queue_bytes",
    "max_concurrent_streams",
    "request_body_timeout_ms",
    "handshake_timeout_ms",
    "keepalive_interval_ms",
    "keepalive_timeout_ms",
    "idle_timeout_ms",
    "max_connections",
    "max_connection_age_ms",
    "stream_window_bytes",
    "connection_window_bytes",
    "bundle_public_keys",
    "min_serial_wait_ms",
    "allow_insecure_bundle_source",
    "bundle_cache_dir",
    "bundle_ca_file",
    "bundle_token_file",
    "bundle_headers_file",
    "bundle_fetch_timeout_ms",
    "bundle_backoff_max_ms",
    "max_bundle_download_bytes",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "tls_allowed_clients",
    "analyzer",
    "analyzer_max_decisions",
];

/// Values given as flags.
#[derive(Clone, Debug, Default)]
pub struct FlagValues {
    /// `--bundle`.
    pub bundle: Option<String>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--uds`.
    pub uds: Option<String>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<String>,
}

/// The raw sources.
pub struct Sources<'a> {
    /// Flags.
    pub flags: FlagValues,
    /// Environment lookup.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The config file: (path, text).
    pub file: Option<(String, String)>,
}

fn env_name(key: &str) -> String {
    format!("VERDICT_{}", key.to_ascii_uppercase())
}

/// Context entries: (key, values).
type ContextPairs = Vec<(String, Vec<String>)>;

struct Raw {
    values: BTreeMap<&'static str, (Origin, String)>,
    default_context: Option<(Origin, ContextPairs)>,
}

fn toml_scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn context_from_json(text: &str) -> Result<ContextPairs, String> {
    let map: crate::policy::document::UniqueMap<&serde_json::value::RawValue> =
        serde_json::from_str(text)
            .map_err(|e| format!("expected a JSON object of context keys: {e}"))?;
    crate::eval::json::context_pairs(&map).map_err(|e| e.to_string())
}

/// The settings the sources give, each with where it came from (a flag,
/// a `VERDICT_*` variable, or the file and key) and its value as given; the
/// others take their defaults. Errors are left to [`from_sources`].
pub(crate) fn explicit(sources: &Sources<'_>) -> BTreeMap<&'static str, (String, String)> {
    let raw = gather(sources, &mut Vec::new());
    let mut out: BTreeMap<&'static str, (String, String)> = raw
        .values
        .into_iter()
        .map(|(name, (origin, value))| (name, (origin.to_string(), value)))
        .collect();
    if let Some((origin, pairs)) = raw.default_context {
        let shown = serde_json::to_string(&pairs.into_iter().collect::<BTreeMap<_, _>>())
            .unwrap_or_default();
        out.insert("default_context", (origin.to_string(), shown));
    }
    out
}

fn gather(sources: &Sources<'_>, errors: &mut Vec<ConfigError>) -> Raw {
    let mut raw = Raw {
        values: BTreeMap::new(),
        default_context: None,
    };
    // Lowest precedence first; later sources overwrite.
    if let Some((path, text)) = &sources.file {
        match text.parse::<toml::Table>() {
            Err(e) => errors.push(ConfigError {
                origin: path.clone(),
                message: format!("not valid TOML: {e}"),
            }),
            Ok(table) => {
                for (key, value) in &table {
                    let origin = Origin::File(path.clone(), key.clone());
                    let Some(name) = SETTINGS.iter().find(|s| **s == key) else {
                        errors.push(ConfigError {
                            origin: origin.to_string(),
                            message: "unknown setting".into(),
                        });
                        continue;
                    };
                    if *name == "default_context" {
                        let as_json = serde_json::to_string(value).unwrap_or_default();
                        match context_from_json(&as_json) {
                            Ok(c) => raw.default_context = Some((origin, c)),
                            Err(m) => errors.push(ConfigError {
                                origin: origin.to_string(),
                                message: m,
                            }),
                        }
                        continue;
                    }
                    match toml_scalar(value) {
                        Some(v) => {
                            raw.values.insert(name, (origin, v));
                        }
                        None => errors.push(ConfigError {
                            origin: origin.to_string(),
                            message: "expected a string, number or boolean".into(),
                        }),
                    }
                }
            }
        }
    }
    for name in SETTINGS {
        let var = env_name(name);
        if let Some(v) = (sources.env)(&var) {
            if *name == "default_context" {
                match context_from_json(&v) {
                    Ok(c) => raw.default_context = Some((Origin::Env(var), c)),
                    Err(m) => errors.push(ConfigError {
                        origin: var,
                        message: m,
                    }),
                }
                continue;
            }
            raw.values.insert(name, (Origin::Env(var), v));
        }
    }
    let f = &sources.flags;
    for (name, flag, value) in [
        ("bundle", "bundle", &f.bundle),
        ("listen", "listen", &f.listen),
        ("uds", "uds", &f.uds),
        ("metrics_listen", "metrics-listen", &f.metrics_listen),
    ] {
        if let Some(v) = value {
            raw.values.insert(name, (Origin::Flag(flag), v.clone()));
        }
    }
    raw
}

struct Parser<'r> {
    raw: &'r Raw,
    errors: Vec<ConfigError>,
}

impl Parser<'_> {
    fn get<T>(&mut self, key: &str, default: T, parse: impl Fn(&str) -> Result<T, String>) -> T {
        match self.raw.values.get(key) {
            None => default,
            Some((origin, v)) => match parse(v.trim()) {
                Ok(t) => t,
                Err(message) => {
                    self.errors.push(ConfigError {
                        origin: origin.to_string(),
                        message: format!("`{v}`: {message}"),
                    });
                    default
                }
            },
        }
    }

    /// Report `key` (which is set) as wrong for a reason of its own.
    fn complain(&mut self, key: &str, message: String) {
        let origin = self
            .raw
            .values
            .get(key)
            .map_or_else(|| key.to_owned(), |(o, _)| o.to_string());
        self.errors.push(ConfigError { origin, message });
    }

    fn number<T: std::str::FromStr>(&mut self, key: &str, default: T) -> T {
        self.get(key, default, |v| {
            v.parse::<T>()
                .map_err(|_| "expected a non-negative whole number".into())
        })
    }

    fn positive(&mut self, key: &str, default: usize) -> usize {
        self.get(key, default, |v| match v.parse::<usize>() {
            Ok(0) | Err(_) => Err("expected a whole number greater than 0".into()),
            Ok(n) => Ok(n),
        })
    }

    fn millis(&mut self, key: &str, default: Duration) -> Duration {
        self.get(key, default, |v| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| "expected milliseconds as a whole number".into())
        })
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        self.get(key, default, |v| match v {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err("expected true or false".into()),
        })
    }

    fn addr(&mut self, key: &str) -> Option<SocketAddr> {
        self.get(key, None, |v| {
            v.parse::<SocketAddr>()
                .map(Some)
                .map_err(|_| "expected an address such as 127.0.0.1:50051 or [::1]:50051".into())
        })
    }
}

/// Default TCP address when neither `listen` nor `uds` is given.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// Build the configuration from its sources, reporting every bad value.
pub fn from_sources(sources: &Sources<'_>) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let raw = gather(sources, &mut errors);
    let mut p = Parser {
        raw: &raw,
        errors: Vec::new(),
    };
    let allow_insecure = p.boolean("allow_insecure_bundle_source", false);
    let bundle = p.get("bundle", BundleSource::Embedded, |v| {
        bundle_source(v, allow_insecure)
    });
    let mut listen = p.addr("listen");
    let uds = p.get("uds", None, |v| {
        if v.is_empty() {
            Err("empty path".into())
        } else {
            Ok(Some(PathBuf::from(v)))
        }
    });
    if listen.is_none() && uds.is_none() {
        listen = DEFAULT_LISTEN.parse().ok();
    }
    let uds_mode = p.get("uds_mode", 0o660, |v| {
        u32::from_str_radix(v.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| "expected an octal file mode such as 0660".into())
    });
    let metrics_listen = p.addr("metrics_listen");
    let defaults = RequestLimits::default();
    let request_limits = RequestLimits {
        max_arn_bytes: p.positive("max_arn_bytes", defaults.max_arn_bytes),
        max_context_keys: p.number("max_context_keys", defaults.max_context_keys),
        max_context_values: p.number("max_context_values", defaults.max_context_values),
        max_context_value_bytes: p
            .positive("max_context_value_bytes", defaults.max_context_value_bytes),
        max_session_policy_bytes: p.number(
            "max_session_policy_bytes",
            defaults.max_session_policy_bytes,
        ),
        max_match_steps: p.get("max_match_steps", defaults.max_match_steps, |v| {
            match v.parse::<u64>() {
                Ok(0) | Err(_) => Err("expected a whole number greater than 0".into()),
                Ok(n) => Ok(n),
            }
        }),
    };
    let max_batch = p.number("max_batch", 1000);
    let analyzer = p.boolean("analyzer", false);
    let analyzer_max_decisions = p.positive("analyzer_max_decisions", 5_000_000);
    let bl = Limits::default();
    let bundle_limits = Limits {
        max_policy_bytes: p.number("max_policy_bytes", bl.max_policy_bytes),
        max_data_file_bytes: p.number("max_data_file_bytes", bl.max_data_file_bytes),
        max_string_bytes: p.positive("max_string_bytes", bl.max_string_bytes),
        max_depth: p.positive("max_json_depth", bl.max_depth),
        max_files: p.positive("max_bundle_files", bl.max_files),
        max_unpacked_bytes: p.number("max_unpacked_bytes", bl.max_unpacked_bytes),
    };
    let trust_session_tags = p.boolean("trust_session_tags", false);
    let default_context = raw
        .default_context
        .clone()
        .map(|(_, c)| c)
        .unwrap_or_default();
    let public_keys = p.get("bundle_public_keys", Vec::new(), read_public_keys);
    let fetch = fetch_settings(&mut p, allow_insecure);
    let cache_dir = p.get("bundle_cache_dir", None, |v| non_empty_path(v).map(Some));
    let backoff_max = p.millis("bundle_backoff_max_ms", Duration::from_secs(300));
    let cache_max_entries = p.number("cache_max_entries", 100_000u64);
    let cache_ttl = p.millis("cache_ttl_ms", Duration::from_secs(60));
    let watch = p.boolean("watch", true);
    let poll_interval = p.millis("poll_interval_ms", Duration::from_secs(10));
    let reload_debounce = p.millis("reload_debounce_ms", Duration::from_millis(200));
    let concurrency_limit = p.positive("concurrency_limit", 1024);
    let request_timeout = p.millis("request_timeout_ms", Duration::from_secs(5));
    let min_serial_wait = p.millis("min_serial_wait_ms", Duration::ZERO);
    let shutdown_grace = p.millis("shutdown_grace_ms", Duration::from_secs(10));
    let runtime = p.get("runtime", RuntimeFlavor::ThreadPerCore, |v| match v {
        "current_thread" => Ok(RuntimeFlavor::CurrentThread),
        "multi_thread" => Ok(RuntimeFlavor::MultiThread),
        "thread_per_core" => Ok(RuntimeFlavor::ThreadPerCore),
        _ => Err("expected current_thread, multi_thread or thread_per_core".into()),
    });
    let worker_threads = p.number("worker_threads", 0usize);
    let decision_log = p.get("decision_log", None, |v| match v {
        "" | "off" | "none" => Ok(None),
        other => Ok(Some(other.to_owned())),
    });
    let decision_log_queue = p.positive("decision_log_queue", 8192);
    let decision_log_filter = p.get("decision_log_filter", LogFilter::All, |v| match v {
        "all" => Ok(LogFilter::All),
        "denies" => Ok(LogFilter::Denies),
        _ => Err("expected all or denies".into()),
    });
    let log_json = p.get("log_format", false, |v| match v {
        "text" => Ok(false),
        "json" => Ok(true),
        _ => Err("expected text or json".into()),
    });
    let reload_timeout = p.get("reload_timeout_ms", Duration::from_secs(30), |v| match v
        .parse::<u64>()
    {
        Ok(0) | Err(_) => Err("expected milliseconds greater than 0".into()),
        Ok(n) => Ok(Duration::from_millis(n)),
    });
    let cache_max_bytes = p.number("cache_max_bytes", 64 * 1024 * 1024u64);
    let cache_max_entry_bytes = p.number("cache_max_entry_bytes", 8 * 1024u64);
    let max_request_bytes = p.positive("max_request_bytes", 64 * 1024);
    let max_batch_bytes = p.positive("max_batch_bytes", 4 * 1024 * 1024);
    let max_batch_decoded_bytes = p.number("max_batch_decoded_bytes", 16 * 1024 * 1024u64);
    let batch_concurrency_limit = p.positive("batch_concurrency_limit", 8);
    let decision_log_queue_bytes = p.positive("decision_log_queue_bytes", 16 * 1024 * 1024);
    let cd = ConnectionLimits::default();
    let window = |v: &str| match v.parse::<u32>() {
        Ok(n) if (65_535..=0x7fff_ffff).contains(&n) => Ok(n),
        _ => Err("expected a whole number from 65535 to 2147483647 (HTTP/2 windows)".into()),
    };
    let connections = ConnectionLimits {
        max_concurrent_streams: p.get("max_concurrent_streams", cd.max_concurrent_streams, |v| {
            match v.parse::<u32>() {
                Ok(0) | Err(_) => Err("expected a whole number greater than 0".into()),
                Ok(n) => Ok(n),
            }
        }),
        request_body_timeout: p.millis("request_body_timeout_ms", cd.request_body_timeout),
        handshake_timeout: p.millis("handshake_timeout_ms", cd.handshake_timeout),
        keepalive_interval: p.millis("keepalive_interval_ms", cd.keepalive_interval),
        keepalive_timeout: p.millis("keepalive_timeout_ms", cd.keepalive_timeout),
        idle_timeout: p.millis("idle_timeout_ms", cd.idle_timeout),
        max_connections: p.positive("max_connections", cd.max_connections),
        max_connection_age: p.millis("max_connection_age_ms", cd.max_connection_age),
        stream_window_bytes: p.get("stream_window_bytes", cd.stream_window_bytes, window),
        connection_window_bytes: p.get(
            "connection_window_bytes",
            cd.connection_window_bytes,
            window,
        ),
        tls: tls_settings(&mut p),
    };
    errors.extend(p.errors);
    if max_request_bytes > max_batch_bytes {
        errors.push(ConfigError {
            origin: "max_request_bytes".into(),
            message: format!(
                "{max_request_bytes} is larger than max_batch_bytes ({max_batch_bytes})"
            ),
        });
    }
    // The OTEL_* variables are read in the same pass, so that every bad
    // value is reported at once.
    let telemetry = match TelemetrySettings::from_env(sources.env) {
        Ok(t) => Some(t),
        Err(bad) => {
            errors.extend(bad.into_iter().map(|e| ConfigError {
                origin: e.var,
                message: e.message,
            }));
            None
        }
    };
    let (Some(telemetry), true) = (telemetry, errors.is_empty()) else {
        return Err(errors);
    };
    Ok(Config {
        listen,
        uds,
        uds_mode,
        metrics_listen,
        shutdown_grace,
        log_json,
        reload: ReloadSettings {
            source: bundle,
            limits: bundle_limits,
            eval: EvalOptions {
                trust_session_tags,
                default_context,
            },
            timeout: reload_timeout,
            debounce: reload_debounce,
            watch,
            poll_interval,
            public_keys,
            fetch,
            cache_dir,
            backoff_max,
            keep_model: analyzer,
        },
        cache: CacheLimits {
            max_entries: cache_max_entries,
            max_bytes: cache_max_bytes,
            max_entry_bytes: cache_max_entry_bytes,
            ttl: cache_ttl,
        },
        service: ServiceSettings {
            request_limits,
            max_batch,
            concurrency_limit,
            request_timeout,
            max_request_bytes,
            max_batch_bytes,
            max_batch_decoded_bytes,
            batch_concurrency_limit,
            min_serial_wait,
            analyzer: analyzer.then_some(analyzer_max_decisions as u64),
        },
        connections,
        runtime: RuntimeSettings {
            flavor: runtime,
            worker_threads,
        },
        decision_log: LogSettings {
            path: decision_log,
            queue: decision_log_queue,
            queue_bytes: decision_log_queue_bytes,
            filter: decision_log_filter,
        },
        telemetry,
    })
}

/// `bundle`: a directory or `.tar.gz`, an `https://` URL (`http://` only
/// with `allow_insecure_bundle_source`), or `oci://registry/repository:tag`
/// (or `@sha256:…`).
fn bundle_source(v: &str, allow_insecure: bool) -> Result<BundleSource, String> {
    if let Some(reference) = v.strip_prefix("oci://") {
        return reference
            .parse::<oci_client::Reference>()
            .map(|_| BundleSource::Oci(reference.to_owned()))
            .map_err(|e| format!("not an OCI reference: {e}"));
    }
    if v.starts_with("https://") || v.starts_with("http://") {
        let url = url::Url::parse(v).map_err(|e| format!("not a URL: {e}"))?;
        if url.scheme() == "http" && !allow_insecure {
            return Err(
                "an http:// bundle source can be read and altered in transit; use https://, or set allow_insecure_bundle_source = true"
                    .into(),
            );
        }
        return Ok(BundleSource::Http(v.to_owned()));
    }
    if v.contains("://") {
        return Err(
            "unknown scheme: give a directory, a .tar.gz, an https:// URL or an oci:// reference"
                .into(),
        );
    }
    non_empty_path(v).map(BundleSource::Path)
}

fn non_empty_path(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        Err("empty path".into())
    } else {
        Ok(PathBuf::from(v))
    }
}

/// How remote bundles are fetched; the CA file is read now, so a bad one
/// stops the server at start.
fn fetch_settings(p: &mut Parser<'_>, allow_insecure: bool) -> FetchSettings {
    let d = FetchSettings::default();
    let ca_file = p.get("bundle_ca_file", None, |v| {
        let path = non_empty_path(v)?;
        std::fs::metadata(&path).map_err(|e| format!("{v}: {e}"))?;
        Ok(Some(path))
    });
    FetchSettings {
        timeout: p.get("bundle_fetch_timeout_ms", d.timeout, |v| {
            match v.parse::<u64>() {
                Ok(0) | Err(_) => {
                    Err("expected a whole number of milliseconds greater than 0".into())
                }
                Ok(n) => Ok(Duration::from_millis(n)),
            }
        }),
        max_bytes: p.get("max_bundle_download_bytes", d.max_bytes, |v| {
            match v.parse::<u64>() {
                Ok(0) | Err(_) => Err("expected a whole number greater than 0".into()),
                Ok(n) => Ok(n),
            }
        }),
        ca_file,
        token_file: p.get("bundle_token_file", None, |v| non_empty_path(v).map(Some)),
        headers_file: p.get("bundle_headers_file", None, |v| non_empty_path(v).map(Some)),
        allow_insecure,
    }
}

/// `tls_cert` and `tls_key` (both or neither), `tls_client_ca`,
/// `tls_allowed_clients` (which needs `tls_client_ca`: without client
/// certificates there is no identity to allow).
fn tls_settings(p: &mut Parser<'_>) -> Option<crate::conn::TlsSettings> {
    let path = |p: &mut Parser<'_>, key: &str| p.get(key, None, |v| non_empty_path(v).map(Some));
    let cert = path(p, "tls_cert");
    let key = path(p, "tls_key");
    let client_ca = path(p, "tls_client_ca");
    let allowed = p.get(
        "tls_allowed_clients",
        crate::conn::Allowlist::default(),
        crate::conn::Allowlist::parse,
    );
    let complaint = match (&cert, &key) {
        (Some(_), None) => Some(("tls_cert", "tls_key is not set; give both")),
        (None, Some(_)) => Some(("tls_key", "tls_cert is not set; give both")),
        (None, None) if client_ca.is_some() => {
            Some(("tls_client_ca", "needs tls_cert and tls_key"))
        }
        (None, None) if !allowed.is_empty() => Some((
            "tls_allowed_clients",
            "needs tls_cert, tls_key and tls_client_ca",
        )),
        (Some(_), Some(_)) if client_ca.is_none() && !allowed.is_empty() => Some((
            "tls_allowed_clients",
            "needs tls_client_ca (without client certificates no client has a name to allow)",
        )),
        _ => None,
    };
    if let Some((setting, why)) = complaint {
        p.complain(setting, why.to_owned());
        return None;
    }
    Some(crate::conn::TlsSettings {
        cert: cert?,
        key: key?,
        client_ca,
        allowed_clients: allowed,
    })
}

/// `bundle_public_keys`: PEM files (SubjectPublicKeyInfo, Ed25519),
/// separated by commas; each is read now, so a missing or unreadable key is
/// a configuration error, never a bundle that loads unverified.
fn read_public_keys(value: &str) -> Result<Vec<ed25519_dalek::VerifyingKey>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|path| {
            let pem = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            crate::bundle::sign::read_public_key(&pem).map_err(|e| format!("{path}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeFlavor;
    use std::collections::HashMap;

    fn parse(
        flags: FlagValues,
        env: &[(&str, &str)],
        file: Option<&str>,
    ) -> Result<Config, Vec<ConfigError>> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let lookup = move |k: &str| env.get(k).cloned();
        from_sources(&Sources {
            flags,
            env: &lookup,
            file: file.map(|t| ("verdict.toml".to_owned(), t.to_owned())),
        })
    }

    #[test]
    fn defaults() {
        let c = parse(FlagValues::default(), &[], None).unwrap();
        assert_eq!(c.reload.source, BundleSource::Embedded);
        assert_eq!(c.listen, Some("127.0.0.1:50051".parse().unwrap()));
        assert_eq!(c.uds, None);
        assert_eq!(c.uds_mode, 0o660);
        assert_eq!(c.runtime.flavor, RuntimeFlavor::ThreadPerCore);
        assert_eq!(c.runtime.worker_threads, 0);
        assert_eq!(c.service.max_batch, 1000);
        assert_eq!(c.service.request_limits, RequestLimits::default());
        assert!(!c.reload.eval.trust_session_tags);
    }

    #[test]
    fn precedence_flags_env_file() {
        let file = "max_batch = 10\nlisten = \"127.0.0.1:1\"\ncache_ttl_ms = 5\n[default_context]\n\"aws:SecureTransport\" = \"true\"\n";
        let c = parse(
            FlagValues {
                listen: Some("127.0.0.1:3".into()),
                ..Default::default()
            },
            &[
                ("VERDICT_MAX_BATCH", "20"),
                ("VERDICT_LISTEN", "127.0.0.1:2"),
            ],
            Some(file),
        )
        .unwrap();
        assert_eq!(c.service.max_batch, 20);
        assert_eq!(c.listen, Some("127.0.0.1:3".parse().unwrap()));
        assert_eq!(c.cache.ttl, Duration::from_millis(5));
        assert_eq!(
            c.reload.eval.default_context,
            vec![("aws:SecureTransport".to_owned(), vec!["true".to_owned()])]
        );
    }

    #[test]
    fn runtime_flavours() {
        for (value, want) in [
            ("current_thread", RuntimeFlavor::CurrentThread),
            ("multi_thread", RuntimeFlavor::MultiThread),
            ("thread_per_core", RuntimeFlavor::ThreadPerCore),
        ] {
            let c = parse(
                FlagValues::default(),
                &[("VERDICT_RUNTIME", value), ("VERDICT_WORKER_THREADS", "3")],
                None,
            )
            .unwrap();
            assert_eq!(
                (c.runtime.flavor, c.runtime.worker_threads),
                (want, 3),
                "{value}"
            );
        }
    }

    #[test]
    fn otel_variables_are_checked_in_the_same_pass() {
        let errors = parse(
            FlagValues::default(),
            &[
                ("VERDICT_MAX_BATCH", "many"),
                ("OTEL_SPAN_EVENT_COUNT_LIMIT", "lots"),
            ],
            None,
        )
        .unwrap_err();
        let origins: Vec<&str> = errors.iter().map(|e| e.origin.as_str()).collect();
        assert!(
            origins.iter().any(|o| o.contains("VERDICT_MAX_BATCH")),
            "{origins:?}"
        );
        assert!(
            origins.contains(&"OTEL_SPAN_EVENT_COUNT_LIMIT"),
            "{origins:?}"
        );
    }

    #[test]
    fn uds_alone_means_no_tcp() {
        let c = parse(
            FlagValues {
                uds: Some("/tmp/v.sock".into()),
                ..Default::default()
            },
            &[("VERDICT_UDS_MODE", "0600")],
            None,
        )
        .unwrap();
        assert_eq!(c.listen, None);
        assert_eq!(c.uds_mode, 0o600);
    }

    #[test]
    fn tls_settings_come_in_working_sets() {
        let errors = |env: &[(&str, &str)]| {
            parse(FlagValues::default(), env, None)
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|e| format!("{}: {}", e.origin, e.message))
                .collect::<Vec<_>>()
        };
        let e = errors(&[("VERDICT_TLS_CERT", "/c.pem")]);
        assert!(e.iter().any(|m| m.contains("tls_key is not set")), "{e:?}");
        let e = errors(&[("VERDICT_TLS_CLIENT_CA", "/ca.pem")]);
        assert!(
            e.iter().any(|m| m.contains("needs tls_cert and tls_key")),
            "{e:?}"
        );
        let e = errors(&[
            ("VERDICT_TLS_CERT", "/c.pem"),
            ("VERDICT_TLS_KEY", "/k.pem"),
            ("VERDICT_TLS_ALLOWED_CLIENTS", "dns:a"),
        ]);
        assert!(
            e.iter()
                .any(|m| m.starts_with("VERDICT_TLS_ALLOWED_CLIENTS: needs tls_client_ca")),
            "{e:?}"
        );
        let e = errors(&[("VERDICT_TLS_ALLOWED_CLIENTS", "payments")]);
        assert!(
            e.iter()
                .any(|m| m.contains("dns:NAME, uri:URI or ip:ADDRESS")),
            "{e:?}"
        );
        let c = parse(
            FlagValues::default(),
            &[
                ("VERDICT_TLS_CERT", "/c.pem"),
                ("VERDICT_TLS_KEY", "/k.pem"),
                ("VERDICT_TLS_CLIENT_CA", "/ca.pem"),
                ("VERDICT_TLS_ALLOWED_CLIENTS", "dns:a, uri:spiffe://t/*"),
            ],
            None,
        )
        .unwrap();
        let tls = c.connections.tls.unwrap();
        assert_eq!(tls.client_ca, Some(PathBuf::from("/ca.pem")));
        assert!(!tls.allowed_clients.is_empty());
    }

    #[test]
    fn remote_bundle_sources() {
        let source = |v: &str, env: &[(&str, &str)]| {
            parse(
                FlagValues {
                    bundle: Some(v.into()),
                    ..Default::default()
                },
                env,
                None,
            )
            .map(|c| c.reload.source)
            .map_err(|e| e.into_iter().map(|e| e.message).collect::<Vec<_>>())
        };
        assert_eq!(
            source("https://b.example/x.tar.gz?sig=s3cr3t", &[]),
            Ok(BundleSource::Http(
                "https://b.example/x.tar.gz?sig=s3cr3t".into()
            ))
        );
        assert_eq!(
            source("oci://r.example/policy/kms:live", &[]),
            Ok(BundleSource::Oci("r.example/policy/kms:live".into()))
        );
        let e = source("http://b.example/x.tar.gz", &[]).unwrap_err();
        assert!(e[0].contains("allow_insecure_bundle_source"), "{e:?}");
        assert!(
            source(
                "http://b.example/x.tar.gz",
                &[("VERDICT_ALLOW_INSECURE_BUNDLE_SOURCE", "true")]
            )
            .is_ok()
        );
        assert!(source("ftp://b.example/x.tar.gz", &[]).is_err());
        // Status and logs never show credentials.
        let s = BundleSource::Http("https://u:p@b.example/x.tar.gz?sig=s3cr3t".into());
        assert_eq!(s.address(), "https://b.example/x.tar.gz?…");
        assert_eq!(s.kind(), "https");
    }

    #[test]
    fn every_bad_value_is_reported() {
        let errors = parse(
            FlagValues {
                listen: Some("localhost".into()),
                bundle: Some("ftp://example.com/b.tar.gz".into()),
                ..Default::default()
            },
            &[
                ("VERDICT_MAX_BATCH", "-1"),
                ("VERDICT_RUNTIME", "fibers"),
                ("VERDICT_UDS_MODE", "999"),
            ],
            Some("cache_ttl_ms = \"soon\"\ncolour = \"blue\"\n"),
        )
        .unwrap_err();
        let origins: Vec<&str> = errors.iter().map(|e| e.origin.as_str()).collect();
        for want in [
            "--listen",
            "--bundle",
            "VERDICT_MAX_BATCH",
            "VERDICT_RUNTIME",
            "VERDICT_UDS_MODE",
            "verdict.toml: cache_ttl_ms",
            "verdict.toml: colour",
        ] {
            assert!(origins.contains(&want), "{want} not in {origins:?}");
        }
    }
}
