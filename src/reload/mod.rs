//! The active bundle: loaded and compiled off the request path, published as
//! an immutable [`Snapshot`] with an atomic swap, reloaded when the bundle
//! path changes (file events, with a periodic check as a fallback), when a
//! poll of a remote source ([`remote`]) brings a new archive, or on
//! SIGHUP. A bundle that fails to load never replaces the one serving; the
//! failure is kept for `GetBundleStatus` and logged.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use tokio::sync::{Notify, watch};

use crate::bundle::BundleSource;
use crate::bundle::source::{RawBundle, RawFile, read_tar_gz_from};
use crate::bundle::{LoadError, LoadOptions, load, load_raw};
use crate::compile::Snapshot;
use crate::eval::EvalOptions;

pub(crate) mod fetch;
mod persist;
pub(crate) mod remote;

pub use fetch::FetchSettings;
pub use remote::{PollResult, SourceStatus};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_bundle.rs"));
}

/// The source description of the embedded example bundle.
pub(crate) const EMBEDDED_SOURCE: &str = "embedded:examples/bundles/kms";

/// A failed load.
#[derive(Clone, Debug)]
pub struct LoadFailure {
    /// When it was attempted.
    pub(crate) at: SystemTime,
    /// A one-line summary.
    pub message: String,
    /// Every error found, located.
    pub(crate) errors: Vec<String>,
}

impl LoadFailure {
    /// The message and its errors on one line, at most about 2 KiB.
    pub(crate) fn summary(&self) -> String {
        let mut text = self.message.clone();
        for (i, e) in self.errors.iter().enumerate() {
            if text.len() > 2048 {
                text.push_str(&format!("; and {} more", self.errors.len() - i));
                break;
            }
            text.push_str(if i == 0 { ": " } else { "; " });
            text.push_str(e);
        }
        text
    }

    pub(crate) fn new(message: String) -> Self {
        Self {
            at: SystemTime::now(),
            message,
            errors: Vec::new(),
        }
    }
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
    pub(crate) last_error: Option<LoadFailure>,
    /// Successful loads.
    pub(crate) reloads_ok: u64,
    /// Failed loads (errors, timeouts, panics).
    pub reloads_failed: u64,
    /// The number of the newest load whose outcome is recorded here: an
    /// older load finishing later never replaces a newer outcome.
    newest: u64,
}

/// What a load attempt did, for observers (metrics, logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new snapshot is active.
    Ok,
    /// The load failed; the previous snapshot (if any) stays.
    Error,
}

/// What observers (metrics, logs) are told.
#[derive(Clone, Copy, Debug)]
pub enum ReloadEvent<'a> {
    /// A load attempt ended, taking the given time from the start of its
    /// read to its outcome; the active snapshot after it.
    Load(ReloadOutcome, std::time::Duration, Option<&'a Snapshot>),
    /// A poll of a remote source ended.
    Poll(PollResult),
}

/// Called after every load attempt and every poll.
pub type ReloadObserver = Box<dyn Fn(ReloadEvent<'_>) + Send + Sync>;

/// What one load reads.
enum Input {
    /// The configured path, or the embedded bundle.
    Configured,
    /// A downloaded (or persisted) archive.
    Archive(Arc<Vec<u8>>),
}

/// What the reloader is told: where the bundle is, how it is loaded and
/// compiled, and what starts a reload (the configuration assembles it).
#[derive(Clone, Debug)]
pub struct ReloadSettings {
    /// The bundle.
    pub source: BundleSource,
    /// What one load may read.
    pub limits: crate::bundle::Limits,
    /// Compiled into every snapshot.
    pub(crate) eval: EvalOptions,
    /// Longest a load may take before it is recorded as failed and abandoned.
    pub(crate) timeout: Duration,
    /// Wait after a reload request, so that a burst of changes loads once.
    pub(crate) debounce: Duration,
    /// Reload on file events.
    pub(crate) watch: bool,
    /// Look for changes this often (0: never).
    pub(crate) poll_interval: Duration,
    /// A bundle loads only when signed by one of these (`bundle_public_keys`).
    pub(crate) public_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// How a remote source is fetched.
    pub(crate) fetch: FetchSettings,
    /// Where the last good remote bundle is kept (`bundle_cache_dir`).
    pub(crate) cache_dir: Option<PathBuf>,
    /// The longest wait between polls after failures (`bundle_backoff_max_ms`).
    pub(crate) backoff_max: Duration,
    /// Keep each snapshot's loaded bundle beside it (`analyzer`: access
    /// analysis reads the policies as written).
    pub(crate) keep_model: bool,
}

/// Holds the active snapshot and reloads it.
pub struct Reloader {
    source: BundleSource,
    load_opts: LoadOptions,
    eval_opts: EvalOptions,
    current: ArcSwapOption<Snapshot>,
    generation: AtomicU64,
    status: Mutex<ReloadStatus>,
    trigger: Notify,
    /// Woken whenever a new snapshot becomes active.
    published: Notify,
    observer: Option<ReloadObserver>,
    /// Longest a load may take before it is recorded as failed and abandoned.
    timeout: Duration,
    /// Numbers each load in the order it started.
    started: AtomicU64,
    /// Load threads alive, stuck ones included.
    running: Arc<AtomicUsize>,
    /// The fingerprint of the bundle path as the latest load began to read
    /// it (0: none yet), so that the periodic check compares with what was
    /// loaded, and a change made between a load and the check's start is
    /// not missed.
    read_fingerprint: AtomicU64,
    /// The remote source's client and state, when the source is remote.
    remote: Option<remote::Remote>,
    /// Keep each snapshot's loaded bundle ([`ReloadSettings::keep_model`]).
    keep_model: bool,
}

/// Load threads alive at once (stuck ones included) before another load is
/// refused: a bundle that wedges every load costs at most this many threads.
const MAX_LOADS_RUNNING: usize = 4;

/// How long a new load waits for the one before it to finish, so that loads
/// coalesce without a stuck load delaying the next.
const OVERLAP_AFTER: Duration = Duration::from_millis(500);

impl Reloader {
    /// A reloader for the configured source; nothing is loaded yet. Fails
    /// when a remote source's client cannot be built (a bad CA file).
    pub fn new(
        settings: &ReloadSettings,
        observer: Option<ReloadObserver>,
    ) -> Result<Arc<Self>, String> {
        let remote = fetch::Fetcher::new(&settings.source, &settings.fetch)?.map(|fetcher| {
            let full = match &settings.source {
                BundleSource::Http(url) => url.clone(),
                BundleSource::Oci(reference) => format!("oci://{reference}"),
                BundleSource::Path(_) | BundleSource::Embedded => String::new(),
            };
            remote::Remote::new(
                fetcher,
                settings,
                full,
                settings.source.kind(),
                settings.source.address(),
            )
        });
        Ok(Arc::new(Self {
            source: settings.source.clone(),
            load_opts: LoadOptions {
                limits: settings.limits.clone(),
                with_tests: false,
                public_keys: settings.public_keys.clone(),
            },
            eval_opts: settings.eval.clone(),
            current: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            status: Mutex::new(ReloadStatus::default()),
            trigger: Notify::new(),
            published: Notify::new(),
            observer,
            timeout: settings.timeout,
            started: AtomicU64::new(0),
            running: Arc::new(AtomicUsize::new(0)),
            read_fingerprint: AtomicU64::new(0),
            remote,
            keep_model: settings.keep_model,
        }))
    }

    /// Where bundles come from and, for a remote source, how the polls went.
    pub fn source_status(&self) -> SourceStatus {
        match &self.remote {
            Some(r) => r.snapshot_status(),
            None => SourceStatus {
                kind: self.source.kind(),
                address: self.source.address(),
                ..SourceStatus::default()
            },
        }
    }

    /// Whether the source is remote: a first bundle that does not load
    /// leaves the server up, NOT_SERVING, polling.
    pub(crate) fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Wait until a snapshot is active.
    pub(crate) async fn first_snapshot(&self) {
        loop {
            let published = self.published.notified();
            tokio::pin!(published);
            // Registered before the check, so a swap in between is not missed.
            published.as_mut().enable();
            if self.snapshot().is_some() {
                return;
            }
            published.await;
        }
    }

    /// The active snapshot (an `Arc` clone: hold it across `.await` freely).
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Wait until the active bundle's serial is at least `serial`, for at
    /// most `wait`; whether it is.
    pub(crate) async fn wait_for_serial(&self, serial: u64, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let published = self.published.notified();
            tokio::pin!(published);
            // Registered before the check, so a swap between the check and
            // the wait is not missed.
            published.as_mut().enable();
            if self.snapshot().is_some_and(|s| s.serial >= serial) {
                return true;
            }
            if tokio::time::timeout_at(deadline, published).await.is_err() {
                return false;
            }
        }
    }

    /// Counters and the last failure.
    pub fn status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn read(&self, input: &Input) -> Result<crate::bundle::Loaded, LoadError> {
        if let Input::Archive(bytes) = input {
            let raw = read_tar_gz_from(
                bytes.as_slice(),
                &self.source.address(),
                &self.load_opts.limits,
            );
            return load_raw(raw, &self.load_opts);
        }
        match &self.source {
            BundleSource::Path(p) => load(p, &self.load_opts),
            BundleSource::Http(_) | BundleSource::Oci(_) => Err(LoadError::NotABundle {
                path: self.source.address(),
                reason: "a remote source is loaded from what a poll fetched".into(),
            }),
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
                load_raw(raw, &self.load_opts)
            }
        }
    }

    fn compile(&self, input: &Input) -> Result<Snapshot, LoadError> {
        if let (BundleSource::Path(path), Input::Configured) = (&self.source, input) {
            let seen = fingerprint(path, &self.load_opts.limits);
            self.read_fingerprint.store(seen, Ordering::Relaxed);
        }
        let loaded = self.read(input)?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let mut snap = Snapshot::compile(&loaded.bundle, &self.eval_opts, generation);
        snap.signature = loaded.signature;
        if self.keep_model {
            snap.model = Some(Arc::new(loaded.bundle));
        }
        Ok(snap)
    }

    /// Load and compile on a thread of its own, within `reload_timeout_ms`,
    /// and publish on success. A load that fails, panics or times out is
    /// recorded as failed; a timed-out load is abandoned (its thread may
    /// stay blocked, but its result is never published) and never delays
    /// the next load.
    ///
    /// For a remote source this is a poll: a fetch with the tag last
    /// downloaded, and a load only when it brings a new archive.
    pub async fn reload(self: &Arc<Self>) -> Result<Arc<Snapshot>, LoadFailure> {
        match &self.remote {
            Some(remote) => self.poll(remote).await,
            None => self.load(Input::Configured).await,
        }
    }

    /// Load `input` and publish it (unless a newer load's outcome is in).
    async fn load(self: &Arc<Self>, input: Input) -> Result<Arc<Snapshot>, LoadFailure> {
        let number = self.next_number();
        let started = std::time::Instant::now();
        let result = self.load_on_thread(input).await;
        self.record(number, result, started.elapsed())
    }

    /// Number a load in the order loads start.
    fn next_number(&self) -> u64 {
        self.started.fetch_add(1, Ordering::Relaxed) + 1
    }

    async fn load_on_thread(self: &Arc<Self>, input: Input) -> Result<Snapshot, LoadFailure> {
        let running = self.running.fetch_add(1, Ordering::AcqRel);
        if running >= MAX_LOADS_RUNNING {
            self.running.fetch_sub(1, Ordering::AcqRel);
            return Err(LoadFailure::new(format!(
                "{running} earlier bundle loads are still running (stuck past reload_timeout_ms); no new load is started until one ends"
            )));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let alive = self.running.clone();
        let spawned = std::thread::Builder::new()
            .name("verdict-load".into())
            .spawn(move || {
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| this.compile(&input)));
                alive.fetch_sub(1, Ordering::AcqRel);
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            self.running.fetch_sub(1, Ordering::AcqRel);
            return Err(LoadFailure::new(format!(
                "cannot start a thread for the bundle load: {e}"
            )));
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(Ok(loaded))) => loaded.map_err(LoadFailure::from),
            Ok(Ok(Err(_))) => Err(LoadFailure::new("the bundle load panicked".into())),
            Ok(Err(_)) => Err(LoadFailure::new(
                "the bundle load ended without a result".into(),
            )),
            Err(_) => Err(LoadFailure::new(format!(
                "the bundle load did not finish within {} ms (reload_timeout_ms); it is abandoned and the next change or SIGHUP starts a new one",
                self.timeout.as_millis()
            ))),
        }
    }

    /// Publish a load's snapshot, or record its failure, unless a newer
    /// load's outcome is already recorded.
    fn record(
        &self,
        number: u64,
        result: Result<Snapshot, LoadFailure>,
        took: std::time::Duration,
    ) -> Result<Arc<Snapshot>, LoadFailure> {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let newest = number > status.newest;
        if newest {
            status.newest = number;
        }
        match result {
            Ok(snap) if newest => {
                let snap = Arc::new(snap);
                let previous = self.current.swap(Some(snap.clone()));
                self.published.notify_waiters();
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
                    o(ReloadEvent::Load(ReloadOutcome::Ok, took, Some(&snap)));
                }
                Ok(snap)
            }
            Ok(_) => {
                drop(status);
                tracing::info!("a bundle load finished after a newer one; its result is dropped");
                self.snapshot().ok_or_else(|| {
                    LoadFailure::new("superseded by a newer load, which failed".into())
                })
            }
            Err(failure) => {
                status.reloads_failed += 1;
                if newest {
                    status.last_error = Some(failure.clone());
                }
                drop(status);
                match self.snapshot() {
                    Some(active) => tracing::error!(
                        error = %failure.message,
                        errors = %failure.errors.join("; "),
                        revision = %active.revision,
                        "bundle failed to load; the active revision keeps serving"
                    ),
                    None => tracing::error!(
                        error = %failure.message,
                        errors = %failure.errors.join("; "),
                        "bundle failed to load, and no bundle is active yet"
                    ),
                }
                if let Some(o) = &self.observer {
                    o(ReloadEvent::Load(
                        ReloadOutcome::Error,
                        took,
                        self.snapshot().as_deref(),
                    ));
                }
                Err(failure)
            }
        }
    }

    /// Ask the reload task to reload (coalesced with other requests).
    pub(crate) fn request_reload(&self) {
        self.trigger.notify_one();
    }

    /// Start the tasks that reload: on request (debounced), on file events,
    /// on a periodic check and on SIGHUP. They stop when `shutdown` turns true.
    pub(crate) fn spawn_tasks(
        self: &Arc<Self>,
        settings: &ReloadSettings,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if self.remote.is_some() {
            tasks.push(self.spawn_poll_task(shutdown.clone()));
        } else {
            let this = self.clone();
            let debounce = settings.debounce;
            let mut stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let mut previous: Option<tokio::task::JoinHandle<()>> = None;
                loop {
                    tokio::select! {
                        () = this.trigger.notified() => {}
                        _ = stop.changed() => return,
                    }
                    tokio::time::sleep(debounce).await;
                    // Loads coalesce behind a running one, but a stuck
                    // load never holds up the next.
                    if let Some(mut running) = previous.take() {
                        let _ = tokio::time::timeout(OVERLAP_AFTER, &mut running).await;
                    }
                    let this = this.clone();
                    previous = Some(tokio::spawn(async move {
                        let _ = this.reload().await;
                    }));
                }
            }));
        }
        if let BundleSource::Path(path) = &self.source {
            tasks.extend(self.spawn_path_tasks(settings, path, &shutdown));
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
    /// For a bundle on disk: the file watch and the periodic check.
    fn spawn_path_tasks(
        self: &Arc<Self>,
        settings: &ReloadSettings,
        path: &Path,
        shutdown: &watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if settings.watch {
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
        if !settings.poll_interval.is_zero() {
            let this = self.clone();
            let path = path.to_path_buf();
            let every = settings.poll_interval;
            let mut stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let limits = this.load_opts.limits.clone();
                // Compare with what the latest load read, not with what is
                // there when this check starts.
                let mut last = match this.read_fingerprint.load(Ordering::Relaxed) {
                    0 => fingerprint_async(path.clone(), limits.clone()).await,
                    seen => seen,
                };
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        _ = stop.changed() => return,
                    }
                    let now = fingerprint_async(path.clone(), limits.clone()).await;
                    if now != last {
                        last = now;
                        this.request_reload();
                    }
                }
            }));
        }
        tasks
    }
}

/// Watch the bundle path: a directory recursively (a ConfigMap's `..data`
/// swap included); a file through the directory it is named in (where a
/// ConfigMap volume swaps `..data`) and, when it is a link, the directory
/// of what it points at.
fn watch_path(reloader: Arc<Reloader>, path: &Path) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher as _};
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let is_dir = target.is_dir();
    let named = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let (watched_file, watched_target) = (named.clone(), target.clone());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let concerns_bundle = |p: &PathBuf| {
            p == &watched_file
                || p == &watched_target
                || p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".."))
        };
        if is_dir || event.paths.iter().any(concerns_bundle) {
            reloader.request_reload();
        }
    })?;
    if is_dir {
        watcher.watch(&target, RecursiveMode::Recursive)?;
    } else {
        let parent_of = |p: &Path| {
            p.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        };
        let (named_dir, target_dir) = (parent_of(&named), parent_of(&target));
        watcher.watch(&named_dir, RecursiveMode::NonRecursive)?;
        if target_dir != named_dir {
            watcher.watch(&target_dir, RecursiveMode::NonRecursive)?;
        }
    }
    Ok(watcher)
}

/// A cheap fingerprint of what is at `path`: the names, sizes and
/// modification times of the files a load would read (the same listing,
/// with its limits and refusals), or of the archive.
fn fingerprint(path: &Path, limits: &crate::bundle::Limits) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    if path.is_dir() {
        match crate::bundle::source::scan(path, limits) {
            Ok(listing) => {
                listing.entries.hash(&mut h);
                listing.diagnostics.len().hash(&mut h);
            }
            Err(reason) => reason.hash(&mut h),
        }
    } else if let Ok(meta) = std::fs::metadata(path) {
        meta.len().hash(&mut h);
        meta.modified().ok().hash(&mut h);
    }
    h.finish()
}

async fn fingerprint_async(path: PathBuf, limits: crate::bundle::Limits) -> u64 {
    tokio::task::spawn_blocking(move || fingerprint(&path, &limits))
        .await
        .unwrap_or_default()
}

/// Format a time as RFC 3339 (UTC, seconds).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    chrono::DateTime::from_timestamp(i64::try_from(d.as_secs()).unwrap_or(0), d.subsec_nanos())
        .map(|dt| dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}
