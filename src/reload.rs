//! The active bundle: loaded and compiled off the request path, published as
//! an immutable [`Snapshot`] with an atomic swap, reloaded when the bundle
//! path changes (file events, with a periodic check as a fallback) or on
//! SIGHUP. A bundle that fails to load never replaces the one serving; the
//! failure is kept for `GetBundleStatus` and logged.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use tokio::sync::{Notify, watch};

use crate::bundle::source::{RawBundle, RawFile};
use crate::bundle::{LoadError, LoadOptions, load, load_raw};
use crate::compile::Snapshot;
use crate::config::{BundleSource, Config};
use crate::eval::EvalOptions;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_bundle.rs"));
}

/// The source description of the embedded example bundle.
pub const EMBEDDED_SOURCE: &str = "embedded:examples/bundles/kms";

/// A failed load.
#[derive(Clone, Debug)]
pub struct LoadFailure {
    /// When it was attempted.
    pub at: SystemTime,
    /// A one-line summary.
    pub message: String,
    /// Every error found, located.
    pub errors: Vec<String>,
}

impl From<LoadError> for LoadFailure {
    fn from(e: LoadError) -> Self {
        let errors = e
            .diagnostics()
            .iter()
            .filter(|d| d.severity == crate::bundle::Severity::Error)
            .map(ToString::to_string)
            .collect();
        Self {
            at: SystemTime::now(),
            message: e.to_string(),
            errors,
        }
    }
}

/// Counters and the last failure.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    /// The last attempt failed with this (cleared by a successful load).
    pub last_error: Option<LoadFailure>,
    /// Successful loads.
    pub reloads_ok: u64,
    /// Failed loads.
    pub reloads_failed: u64,
}

/// What a load attempt did, for observers (metrics, logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new snapshot is active.
    Ok,
    /// The load failed; the previous snapshot (if any) stays.
    Error,
}

/// Called after every load attempt.
pub type ReloadObserver = Box<dyn Fn(ReloadOutcome, Option<&Snapshot>) + Send + Sync>;

/// Holds the active snapshot and reloads it.
pub struct Reloader {
    source: BundleSource,
    load_opts: LoadOptions,
    eval_opts: EvalOptions,
    current: ArcSwapOption<Snapshot>,
    generation: AtomicU64,
    status: Mutex<ReloadStatus>,
    trigger: Notify,
    observer: Option<ReloadObserver>,
}

impl Reloader {
    /// A reloader for the configured source; nothing is loaded yet.
    pub fn new(config: &Config, observer: Option<ReloadObserver>) -> Arc<Self> {
        Arc::new(Self {
            source: config.bundle.clone(),
            load_opts: LoadOptions {
                limits: config.bundle_limits.clone(),
                with_tests: false,
            },
            eval_opts: config.eval.clone(),
            current: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            status: Mutex::new(ReloadStatus::default()),
            trigger: Notify::new(),
            observer,
        })
    }

    /// The active snapshot (an `Arc` clone: hold it across `.await` freely).
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Counters and the last failure.
    pub fn status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Where the bundle comes from.
    pub fn source(&self) -> &BundleSource {
        &self.source
    }

    fn read(&self) -> Result<crate::bundle::Bundle, LoadError> {
        match &self.source {
            BundleSource::Path(p) => load(p, &self.load_opts).map(|l| l.bundle),
            BundleSource::Embedded => {
                let raw = RawBundle {
                    source: EMBEDDED_SOURCE.to_owned(),
                    files: embedded::FILES
                        .iter()
                        .filter(|(p, _)| !p.starts_with("tests/"))
                        .map(|(p, b)| RawFile {
                            path: (*p).to_owned(),
                            bytes: b.to_vec(),
                        })
                        .collect(),
                    diagnostics: Vec::new(),
                };
                load_raw(raw, &self.load_opts).map(|l| l.bundle)
            }
        }
    }

    /// Load and compile now, on this thread, and publish on success.
    pub fn reload_blocking(&self) -> Result<Arc<Snapshot>, LoadFailure> {
        let result = self.read().map(|bundle| {
            let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
            Arc::new(Snapshot::compile(&bundle, &self.eval_opts, generation))
        });
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(snap) => {
                let previous = self.current.swap(Some(snap.clone()));
                status.reloads_ok += 1;
                status.last_error = None;
                drop(status);
                match previous {
                    Some(p) if p.revision == snap.revision => tracing::warn!(
                        revision = %snap.revision,
                        source = %snap.source,
                        "bundle reloaded with the same revision as the active one"
                    ),
                    _ => tracing::info!(
                        revision = %snap.revision,
                        source = %snap.source,
                        generation = snap.generation,
                        "bundle loaded"
                    ),
                }
                if let Some(o) = &self.observer {
                    o(ReloadOutcome::Ok, Some(&snap));
                }
                Ok(snap)
            }
            Err(e) => {
                let failure = LoadFailure::from(e);
                status.reloads_failed += 1;
                status.last_error = Some(failure.clone());
                drop(status);
                tracing::error!(
                    error = %failure.message,
                    errors = ?failure.errors,
                    "bundle failed to load; the active bundle stays"
                );
                if let Some(o) = &self.observer {
                    o(ReloadOutcome::Error, self.snapshot().as_deref());
                }
                Err(failure)
            }
        }
    }

    /// Load and compile on a blocking thread, and publish on success.
    pub async fn reload(self: &Arc<Self>) -> Result<Arc<Snapshot>, LoadFailure> {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.reload_blocking()).await {
            Ok(r) => r,
            Err(e) => Err(LoadFailure {
                at: SystemTime::now(),
                message: format!("bundle load panicked or was cancelled: {e}"),
                errors: Vec::new(),
            }),
        }
    }

    /// Ask the reload task to reload (coalesced with other requests).
    pub fn request_reload(&self) {
        self.trigger.notify_one();
    }

    /// Start the tasks that reload: on request (debounced), on file events,
    /// on a periodic check and on SIGHUP. They stop when `shutdown` turns true.
    pub fn spawn_tasks(
        self: &Arc<Self>,
        config: &Config,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        // The reload loop.
        {
            let this = self.clone();
            let debounce = config.reload_debounce;
            let mut stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = this.trigger.notified() => {}
                        _ = stop.changed() => return,
                    }
                    tokio::time::sleep(debounce).await;
                    let _ = this.reload().await;
                }
            }));
        }
        let BundleSource::Path(path) = &self.source else {
            return tasks;
        };
        if config.watch {
            match watch_path(self.clone(), path) {
                Ok(watcher) => {
                    let mut stop = shutdown.clone();
                    tasks.push(tokio::spawn(async move {
                        let _keep = watcher;
                        let _ = stop.changed().await;
                    }));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot watch the bundle path; relying on the periodic check")
                }
            }
        }
        if !config.poll_interval.is_zero() {
            let this = self.clone();
            let path = path.clone();
            let every = config.poll_interval;
            let mut stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let mut last = fingerprint_async(path.clone()).await;
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        _ = stop.changed() => return,
                    }
                    let now = fingerprint_async(path.clone()).await;
                    if now != last {
                        last = now;
                        this.request_reload();
                    }
                }
            }));
        }
        #[cfg(unix)]
        {
            let this = self.clone();
            let mut stop = shutdown;
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(mut hup) => tasks.push(tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            r = hup.recv() => {
                                if r.is_none() {
                                    return;
                                }
                                tracing::info!("SIGHUP: reloading the bundle");
                                this.request_reload();
                            }
                            _ = stop.changed() => return,
                        }
                    }
                })),
                Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP"),
            }
        }
        tasks
    }
}

/// Watch the bundle path: a directory recursively (a ConfigMap's `..data`
/// swap included), a file through its directory.
fn watch_path(reloader: Arc<Reloader>, path: &Path) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher as _};
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let is_dir = target.is_dir();
    let watched_file = target.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        if is_dir || event.paths.iter().any(|p| p == &watched_file) {
            reloader.request_reload();
        }
    })?;
    if is_dir {
        watcher.watch(&target, RecursiveMode::Recursive)?;
    } else {
        let parent = target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        watcher.watch(&parent, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

/// A cheap fingerprint of what is at `path`: names, sizes and modification
/// times of the files (through a ConfigMap's `..data` link).
fn fingerprint(path: &Path) -> u64 {
    fn walk(dir: &Path, h: &mut std::hash::DefaultHasher, depth: usize) {
        if depth > 32 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let name = e.file_name();
            if name.to_string_lossy().starts_with("..") {
                continue;
            }
            name.hash(h);
            let Ok(meta) = std::fs::metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() {
                walk(&e.path(), h, depth + 1);
            } else {
                meta.len().hash(h);
                meta.modified().ok().hash(h);
            }
        }
    }
    let mut h = std::hash::DefaultHasher::new();
    let data = path.join("..data");
    if let Ok(target) = std::fs::read_link(&data) {
        target.hash(&mut h);
        walk(&path.join(&target), &mut h, 0);
    } else if path.is_dir() {
        walk(path, &mut h, 0);
    } else if let Ok(meta) = std::fs::metadata(path) {
        meta.len().hash(&mut h);
        meta.modified().ok().hash(&mut h);
    }
    h.finish()
}

async fn fingerprint_async(path: PathBuf) -> u64 {
    tokio::task::spawn_blocking(move || fingerprint(&path))
        .await
        .unwrap_or_default()
}

/// Format a time as RFC 3339 (UTC, seconds).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    chrono::DateTime::from_timestamp(i64::try_from(d.as_secs()).unwrap_or(0), d.subsec_nanos())
        .map(|dt| dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}
