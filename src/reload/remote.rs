//! Polling a remote bundle source (HTTPS or OCI): one poll at a time,
//! `If-None-Match` with the tag last downloaded (a 304 costs no parse, no
//! compile, no swap), the interval stretched by `Cache-Control: max-age`
//! and by exponential backoff with jitter after failures, and the last good
//! archive persisted for a cold start while the source is down.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::fetch::{Fetched, Fetcher};
use super::persist::{Persisted, Store};
use super::{Input, LoadFailure, ReloadEvent, Reloader};
use crate::compile::Snapshot;

/// At a cold start with a persisted copy, how long the first fetch may take
/// before the persisted copy serves while it goes on.
const COLD_START_WAIT: Duration = Duration::from_millis(500);

/// What one poll of a remote source did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollResult {
    /// The server said the bundle is unchanged (or, for OCI, the tag's
    /// digest is the same).
    NotModified,
    /// A new bundle was downloaded and is active.
    Loaded,
    /// The fetch failed, or what it brought did not load.
    Failed,
}

impl PollResult {
    /// The metric attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotModified => "not_modified",
            Self::Loaded => "loaded",
            Self::Failed => "failed",
        }
    }
}

/// Where bundles come from and how the latest polls went.
#[derive(Clone, Debug, Default)]
pub struct SourceStatus {
    /// `directory`, `archive`, `https`, `http`, `oci` or `embedded`.
    pub kind: &'static str,
    /// The address, without credentials.
    pub address: String,
    /// The ETag or manifest digest of the active bundle's download.
    pub tag: Option<String>,
    /// The latest poll: when, and what it did.
    pub last_poll: Option<(SystemTime, PollResult)>,
    /// The latest poll that reached the source and got a usable answer.
    pub last_success: Option<SystemTime>,
    /// Why the latest poll failed (cleared by a poll that does not fail).
    pub last_error: Option<String>,
    /// Polls failed in a row.
    pub failures: u32,
    /// When the next poll is due.
    pub next_poll: Option<SystemTime>,
    /// The persisted copy (`bundle_cache_dir`): off, none, written, served
    /// at start, refused (and why).
    pub persisted: String,
    /// `Cache-Control: max-age` of the latest answer.
    pub(crate) max_age: Option<Duration>,
}

/// A remote source and its state.
pub(crate) struct Remote {
    fetcher: Fetcher,
    store: Option<Store>,
    /// The full URL or reference (for the persisted record's digest only).
    full_source: String,
    /// Serializes polls; holds the tag of the archive last downloaded,
    /// whether or not it loaded (so a bad archive is not downloaded again
    /// until it changes).
    poll: tokio::sync::Mutex<Option<String>>,
    pub(crate) status: std::sync::Mutex<SourceStatus>,
    interval: Duration,
    backoff_max: Duration,
    max_bytes: u64,
    /// Whether the persisted copy was looked at (once, at the first poll).
    cold_start_done: std::sync::atomic::AtomicBool,
}

impl Remote {
    pub(crate) fn new(
        fetcher: Fetcher,
        settings: &super::ReloadSettings,
        full_source: String,
        kind: &'static str,
        address: String,
    ) -> Self {
        let store = settings.cache_dir.clone().map(Store::new);
        Self {
            fetcher,
            store,
            full_source,
            poll: tokio::sync::Mutex::new(None),
            status: std::sync::Mutex::new(SourceStatus {
                kind,
                address,
                persisted: if settings.cache_dir.is_some() {
                    "none".into()
                } else {
                    "off (no bundle_cache_dir)".into()
                },
                ..SourceStatus::default()
            }),
            interval: settings.poll_interval,
            backoff_max: settings.backoff_max,
            max_bytes: settings.fetch.max_bytes,
            cold_start_done: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn update(&self, f: impl FnOnce(&mut SourceStatus)) {
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s);
    }

    pub(crate) fn snapshot_status(&self) -> SourceStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How long until the next poll ([`poll_delay`]).
    fn next_delay(&self) -> Duration {
        let s = self.snapshot_status();
        poll_delay(
            self.interval,
            self.backoff_max,
            s.failures,
            s.max_age,
            getrandom::u64().unwrap_or(0),
        )
    }

    /// The persisted copy for this source, if any usable.
    fn read_persisted(&self) -> Option<Persisted> {
        let store = self.store.as_ref()?;
        match store.read(&self.full_source, self.max_bytes) {
            Ok(found) => found,
            Err(reason) => {
                tracing::warn!(error = %reason, "the persisted bundle is not used");
                self.update(|s| s.persisted = format!("refused: {reason}"));
                None
            }
        }
    }
}

impl Reloader {
    /// Poll the remote source once (serialized with other polls).
    pub(super) async fn poll(
        self: &Arc<Self>,
        remote: &Remote,
    ) -> Result<Arc<Snapshot>, LoadFailure> {
        let mut tag = remote.poll.lock().await;
        let first = !remote
            .cold_start_done
            .swap(true, std::sync::atomic::Ordering::AcqRel);
        let (result, outcome) = match first.then(|| remote.read_persisted()).flatten() {
            Some(persisted) => self.cold_start(remote, persisted, &mut tag).await,
            None => self.poll_source(remote, &mut tag).await,
        };
        remote.update(|s| {
            let now = SystemTime::now();
            s.last_poll = Some((now, outcome));
            if outcome == PollResult::Failed {
                s.failures = s.failures.saturating_add(1);
            } else {
                // The source answered; a 304 for an archive that did not
                // load keeps that load's error.
                s.failures = 0;
                s.last_success = Some(now);
            }
            s.last_error = result.as_ref().err().map(LoadFailure::summary);
        });
        if let Some(o) = &self.observer {
            o(ReloadEvent::Poll(outcome));
        }
        result
    }

    /// One fetch and, when it brings an archive, its load.
    async fn poll_source(
        self: &Arc<Self>,
        remote: &Remote,
        tag: &mut Option<String>,
    ) -> (Result<Arc<Snapshot>, LoadFailure>, PollResult) {
        let fetched = remote.fetcher.fetch(tag.as_deref()).await;
        self.handle_fetched(remote, tag, fetched).await
    }

    async fn handle_fetched(
        self: &Arc<Self>,
        remote: &Remote,
        tag: &mut Option<String>,
        fetched: Result<Fetched, super::fetch::FetchError>,
    ) -> (Result<Arc<Snapshot>, LoadFailure>, PollResult) {
        match fetched {
            Err(e) => {
                tracing::warn!(source = %self.source.address(), error = %e, "bundle poll failed");
                (Err(LoadFailure::new(e.0)), PollResult::Failed)
            }
            Ok(Fetched::NotModified { max_age }) => {
                remote.update(|s| s.max_age = max_age);
                match (self.snapshot(), self.status().last_error) {
                    // The download of this tag failed to load: still bad.
                    (_, Some(failure)) => (Err(failure), PollResult::NotModified),
                    (Some(active), None) => (Ok(active), PollResult::NotModified),
                    (None, None) => (
                        Err(LoadFailure::new(
                            "the source says the bundle is unchanged, but none is active".into(),
                        )),
                        PollResult::Failed,
                    ),
                }
            }
            Ok(Fetched::Archive {
                bytes,
                tag: new_tag,
                max_age,
            }) => {
                remote.update(|s| s.max_age = max_age);
                *tag = new_tag.clone();
                let bytes = Arc::new(bytes);
                match self.load(Input::Archive(bytes.clone())).await {
                    Ok(snap) => {
                        remote.update(|s| s.tag = new_tag.clone());
                        self.persist(remote, bytes, new_tag).await;
                        (Ok(snap), PollResult::Loaded)
                    }
                    Err(failure) => (Err(failure), PollResult::Failed),
                }
            }
        }
    }

    /// The first poll with a persisted copy at hand: the fetch sends its
    /// tag; the copy is compiled meanwhile, and serves if the source says
    /// it is current, if the fetch fails or brings a bundle that does not
    /// load, or if the fetch takes longer than [`COLD_START_WAIT`].
    async fn cold_start(
        self: &Arc<Self>,
        remote: &Remote,
        persisted: Persisted,
        tag: &mut Option<String>,
    ) -> (Result<Arc<Snapshot>, LoadFailure>, PollResult) {
        let written = persisted.record.written_at.clone();
        let persisted_tag = persisted.record.tag.clone();
        let this = self.clone();
        let bytes = Arc::new(persisted.bytes);
        let mut copy = Some(tokio::spawn(async move {
            let number = this.next_number();
            let started = std::time::Instant::now();
            let result = this.load_on_thread(Input::Archive(bytes)).await;
            (number, result, started.elapsed())
        }));
        let fetch = remote.fetcher.fetch(persisted_tag.as_deref());
        tokio::pin!(fetch);
        let early = tokio::select! {
            r = &mut fetch => Some(r),
            () = tokio::time::sleep(COLD_START_WAIT) => None,
        };
        let mut served = false;
        let fetched = match early {
            Some(r) => r,
            None => {
                if let Some(c) = copy.take() {
                    served = self
                        .serve_persisted(remote, c, &written, &persisted_tag)
                        .await;
                }
                fetch.await
            }
        };
        if served {
            *tag = persisted_tag.clone();
        }
        match fetched {
            Ok(Fetched::NotModified { max_age }) if !served => {
                remote.update(|s| s.max_age = max_age);
                if let Some(c) = copy.take()
                    && self
                        .serve_persisted(remote, c, &written, &persisted_tag)
                        .await
                {
                    tag.clone_from(&persisted_tag);
                    return (
                        self.snapshot().ok_or_else(no_snapshot),
                        PollResult::NotModified,
                    );
                }
                // The copy the source calls current did not load: fetch
                // the whole bundle.
                self.poll_source(remote, tag).await
            }
            other => {
                let (result, outcome) = self.handle_fetched(remote, tag, other).await;
                if self.snapshot().is_none()
                    && let Some(c) = copy.take()
                    && self
                        .serve_persisted(remote, c, &written, &persisted_tag)
                        .await
                {
                    tag.clone_from(&persisted_tag);
                }
                (result, outcome)
            }
        }
    }

    /// Publish the compiled persisted copy, if it compiled; whether it did.
    async fn serve_persisted(
        &self,
        remote: &Remote,
        copy: tokio::task::JoinHandle<(u64, Result<Snapshot, LoadFailure>, Duration)>,
        written: &str,
        tag: &Option<String>,
    ) -> bool {
        let Ok((number, result, took)) = copy.await else {
            return false;
        };
        match self.record(number, result, took) {
            Ok(_) => {
                tracing::info!(written_at = %written, "serving the persisted bundle");
                remote.update(|s| {
                    s.persisted = format!("served at start (written {written})");
                    s.tag = tag.clone();
                });
                true
            }
            Err(failure) => {
                remote.update(|s| s.persisted = format!("refused: {}", failure.summary()));
                false
            }
        }
    }

    /// Keep the archive that just loaded (off the runtime's workers).
    async fn persist(&self, remote: &Remote, bytes: Arc<Vec<u8>>, tag: Option<String>) {
        let Some(store) = remote.store.clone() else {
            return;
        };
        let source = remote.full_source.clone();
        let written =
            tokio::task::spawn_blocking(move || store.write(&bytes, tag.as_deref(), &source)).await;
        let state = match written {
            Ok(Ok(())) => format!("written {}", super::rfc3339(SystemTime::now())),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot persist the bundle");
                format!("write failed: {e}")
            }
            Err(e) => format!("write failed: {e}"),
        };
        remote.update(|s| s.persisted = state);
    }

    /// Poll on schedule, and at once on request (SIGHUP), until shutdown.
    pub(super) fn spawn_poll_task(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let Some(remote) = this.remote.as_ref() else {
                return;
            };
            loop {
                let delay = (!remote.interval.is_zero() || remote.snapshot_status().failures > 0)
                    .then(|| remote.next_delay());
                remote.update(|s| s.next_poll = delay.map(|d| SystemTime::now() + d));
                let sleep = async {
                    match delay {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = sleep => {}
                    () = this.trigger.notified() => {}
                    _ = stop.changed() => return,
                }
                let _ = this.poll(remote).await;
            }
        })
    }
}

/// How long until the next poll: the interval (at least `max-age`) after a
/// success; after `failures` failures, the interval doubled that many times
/// up to `backoff_max`, then a random part of that (half to all, from
/// `random`), so that a fleet does not retry in step.
fn poll_delay(
    interval: Duration,
    backoff_max: Duration,
    failures: u32,
    max_age: Option<Duration>,
    random: u64,
) -> Duration {
    if failures == 0 {
        return max_age.map_or(interval, |m| m.max(interval));
    }
    let doubled = interval
        .max(Duration::from_millis(100))
        .saturating_mul(1u32 << failures.min(16))
        .min(backoff_max.max(Duration::from_millis(1)));
    let half = doubled / 2;
    let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_millis(random % spread)
}

fn no_snapshot() -> LoadFailure {
    LoadFailure::new("no bundle is active".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn max_age_is_a_lower_bound_on_the_interval() {
        assert_eq!(poll_delay(10 * S, 300 * S, 0, None, 7), 10 * S);
        assert_eq!(poll_delay(10 * S, 300 * S, 0, Some(60 * S), 7), 60 * S);
        assert_eq!(poll_delay(10 * S, 300 * S, 0, Some(S), 7), 10 * S);
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter_up_to_the_cap() {
        for (failures, full) in [
            (1, 20 * S),
            (2, 40 * S),
            (3, 80 * S),
            (5, 300 * S),
            (30, 300 * S),
        ] {
            let low = poll_delay(10 * S, 300 * S, failures, None, 0);
            let high = poll_delay(10 * S, 300 * S, failures, None, u64::MAX - 1);
            assert_eq!(low, full / 2, "{failures}");
            assert!(high <= full && high > full / 2, "{failures}: {high:?}");
        }
        // A zero interval (polling off) still backs off from 100 ms.
        assert_eq!(
            poll_delay(Duration::ZERO, 300 * S, 1, None, 0),
            Duration::from_millis(100)
        );
    }
}
