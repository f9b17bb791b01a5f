//! What a client connection may hold, whatever the runtime: how many
//! connections there are at once, how long one may take to start speaking
//! HTTP/2, and how long it may stay open with no call. Every accepted
//! connection is admitted by a [`Gate`] (refused past `max_connections`)
//! and served through [`Watched`], whose reads close it when its handshake
//! or idle time runs out. The calls on a connection are counted in its
//! [`Activity`], which the edge layer finds in each request's extensions
//! through [`ConnInfo`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

pub(crate) mod h2scan;
pub(crate) mod tls;

pub use tls::{Allowlist, TlsSettings};

/// What bounds a client connection: its streams, how long it may take to
/// start and to send a request, how long it may stay idle or live, and how
/// many connections there may be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// HTTP/2 streams a connection may have open at once.
    pub(crate) max_concurrent_streams: u32,
    /// A request body not fully received this long after its headers is reset.
    pub(crate) request_body_timeout: Duration,
    /// A connection that has not sent the HTTP/2 preface and SETTINGS this long after it was accepted is closed.
    pub(crate) handshake_timeout: Duration,
    /// HTTP/2 PING every this often (0: never).
    pub(crate) keepalive_interval: Duration,
    /// A PING not answered within this closes the connection.
    pub(crate) keepalive_timeout: Duration,
    /// A connection with no open stream for this long is closed (0: never).
    pub(crate) idle_timeout: Duration,
    /// Connections open at once; more are closed as they are accepted.
    pub(crate) max_connections: usize,
    /// A connection older than this is asked to go away (0: never).
    pub(crate) max_connection_age: Duration,
    /// HTTP/2 flow-control window of one stream: the most a stream may
    /// send before the server has read it.
    pub(crate) stream_window_bytes: u32,
    /// HTTP/2 flow-control window of a connection: the most all its streams
    /// together may send before the server has read it, so at most this
    /// times `max_connections` bytes wait unread.
    pub(crate) connection_window_bytes: u32,
    /// TLS on the TCP listener (none: plaintext).
    pub(crate) tls: Option<TlsSettings>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            request_body_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_connections: 10_000,
            max_connection_age: Duration::ZERO,
            stream_window_bytes: 256 * 1024,
            connection_window_bytes: 512 * 1024,
            tls: None,
        }
    }
}

/// The client's HTTP/2 preface (24 bytes) and the header of its SETTINGS
/// frame (9 bytes): a connection that has not sent this much has not
/// started HTTP/2.
const HANDSHAKE_BYTES: usize = 24 + 9;

/// The idle check runs this many times per idle timeout; a connection is
/// idle when every check of a whole timeout found it so.
const IDLE_CHECKS: u32 = 4;

/// Warnings about refused or failed accepts are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Connection limits (see `ConnectionLimits` in the configuration).
#[derive(Clone, Debug)]
pub(crate) struct ConnSettings {
    /// Longest wait for the preface and SETTINGS.
    pub(crate) handshake_timeout: Duration,
    /// Time without an open call after which a connection is closed (0: never).
    pub(crate) idle_timeout: Duration,
    /// Connections open at once.
    pub(crate) max_connections: usize,
}

/// File descriptors kept for everything but client connections (bundle
/// reads, the watcher, event loops, exporters), so that a flood of
/// connections cannot keep a reload from opening its files.
const FD_RESERVE: u64 = 128;

impl ConnSettings {
    /// These settings with `max_connections` lowered, if it must be, to
    /// what the process's open-file limit allows beside [`FD_RESERVE`]
    /// (half the limit when the limit is small). The soft limit is first
    /// raised to the hard one. Returns the settings and, when lowered, the
    /// limit that lowered them.
    pub(crate) fn within_fd_limit(mut self) -> (Self, Option<u64>) {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            let raised = rustix::process::Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                limit = raised;
            }
        }
        let Some(soft) = limit.current else {
            return (self, None);
        };
        let room = soft - FD_RESERVE.min(soft / 2);
        let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
        if room >= self.max_connections {
            return (self, None);
        }
        self.max_connections = room;
        (self, Some(soft))
    }
}

/// Admits connections up to the limit; shared by every listener.
#[derive(Clone, Debug)]
pub struct Gate {
    settings: Arc<ConnSettings>,
    live: Arc<AtomicUsize>,
    refused: Arc<Warnings>,
}

impl Gate {
    /// A gate for `settings`.
    pub(crate) fn new(settings: ConnSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            live: Arc::default(),
            refused: Arc::new(Warnings::new("connections refused at max_connections")),
        }
    }

    /// A place for one more connection, or `None` at the limit (the caller
    /// closes the connection; a warning is logged at most every ten seconds).
    pub(crate) fn admit(&self) -> Option<Slot> {
        let before = self.live.fetch_add(1, Ordering::AcqRel);
        if before >= self.settings.max_connections {
            self.live.fetch_sub(1, Ordering::AcqRel);
            self.refused.note();
            return None;
        }
        Some(Slot(self.live.clone()))
    }

    /// The count of connections open, shared (for a gauge).
    pub(crate) fn live_count(&self) -> Arc<AtomicUsize> {
        self.live.clone()
    }

    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Serve `io` (admitted with `slot`) under the handshake and idle limits.
    pub(crate) fn watch<IO>(&self, io: IO, peer: Option<SocketAddr>, slot: Slot) -> Watched<IO> {
        self.watch_as(io, peer, None, slot)
    }

    /// The handshake timeout, when there is one.
    pub(crate) fn handshake_timeout(&self) -> Option<Duration> {
        let t = self.settings.handshake_timeout;
        (!t.is_zero()).then_some(t)
    }

    /// [`Gate::watch`] for a connection after its TLS handshake, with the
    /// client's identity when it presented a certificate.
    pub(crate) fn watch_identified<IO>(
        &self,
        io: IO,
        peer: Option<SocketAddr>,
        identity: Option<Arc<tls::ClientIdentity>>,
        slot: Slot,
    ) -> Watched<IO> {
        self.watch_as(io, peer, Some(identity), slot)
    }

    /// `tls`: `Some` (with the identity, if any) for a TLS connection.
    fn watch_as<IO>(
        &self,
        io: IO,
        peer: Option<SocketAddr>,
        tls: Option<Option<Arc<tls::ClientIdentity>>>,
        slot: Slot,
    ) -> Watched<IO> {
        let s = &self.settings;
        let now = Instant::now();
        let check = if s.handshake_timeout.is_zero() {
            self.idle_period().map_or(far_future(now), |p| now + p)
        } else {
            now + s.handshake_timeout
        };
        Watched {
            io,
            info: ConnInfo {
                peer,
                tls: tls.is_some(),
                identity: tls.flatten(),
                activity: Arc::default(),
            },
            _slot: slot,
            handshake_left: if s.handshake_timeout.is_zero() {
                0
            } else {
                HANDSHAKE_BYTES
            },
            idle_period: self.idle_period(),
            quiet_checks: 0,
            seen_started: 0,
            timer: Box::pin(tokio::time::sleep_until(check)),
            scan: h2scan::FrameScan::default(),
            preface: Some(([0; h2scan::PREFACE.len()], 0)),
        }
    }

    fn idle_period(&self) -> Option<Duration> {
        let idle = self.settings.idle_timeout;
        (!idle.is_zero()).then(|| idle / IDLE_CHECKS)
    }
}

fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365)
}

/// A warning logged at most every [`WARN_EVERY`], with how many times it
/// happened since it was last logged.
#[derive(Debug)]
pub(crate) struct Warnings {
    what: &'static str,
    count: AtomicU64,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Warnings {
    /// A rate-limited warning about `what`.
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            count: AtomicU64::new(0),
            last: std::sync::Mutex::new(None),
        }
    }

    /// Count one occurrence; log when the last log is old enough.
    pub(crate) fn note(&self) {
        self.note_with(None);
    }

    /// Count one occurrence with its error; log when the last log is old enough.
    pub(crate) fn note_with(&self, error: Option<&dyn std::fmt::Display>) {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        *last = Some(std::time::Instant::now());
        self.count.fetch_sub(count, Ordering::Relaxed);
        match error {
            Some(e) => tracing::warn!(count, error = %e, "{}", self.what),
            None => tracing::warn!(count, "{}", self.what),
        }
    }
}

/// A connection's place under `max_connections`, freed when it closes.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The calls of one connection.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    open: AtomicUsize,
    started: AtomicU64,
}

impl Activity {
    /// A call started; it counts as open until the guard is dropped.
    pub(crate) fn call(self: &Arc<Self>) -> CallGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        CallGuard(self.clone())
    }
}

/// An open call of a connection.
#[derive(Debug)]
pub(crate) struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the server knows of a connection, in every request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    /// The peer's address (TCP only).
    pub(crate) peer: Option<SocketAddr>,
    /// Whether it came over TLS.
    pub(crate) tls: bool,
    /// The client certificate's SANs (mutual TLS only).
    pub(crate) identity: Option<Arc<tls::ClientIdentity>>,
    /// Its calls.
    pub(crate) activity: Arc<Activity>,
}

impl ConnInfo {
    /// Who is calling, for spans and the decision log: the client
    /// certificate's SANs, else the peer's address; none on the Unix socket.
    pub(crate) fn caller(&self) -> Option<Arc<str>> {
        match (&self.identity, self.peer) {
            (Some(who), _) if !who.sans.is_empty() => Some(who.display().into()),
            (_, Some(peer)) => Some(peer.to_string().into()),
            _ => None,
        }
    }
}

/// A connection served under the handshake and idle limits: when one runs
/// out, its next read fails and the server closes it.
#[derive(Debug)]
pub(crate) struct Watched<IO> {
    io: IO,
    info: ConnInfo,
    _slot: Slot,
    /// Bytes still to read before the handshake counts as done.
    handshake_left: usize,
    idle_period: Option<Duration>,
    /// Consecutive idle checks that found no call open or started.
    quiet_checks: u32,
    seen_started: u64,
    timer: Pin<Box<Sleep>>,
    /// The server's frames, scanned for a PROTOCOL_ERROR to report.
    scan: h2scan::FrameScan,
    /// The client's first bytes, until they are known to be the HTTP/2
    /// preface or not (`None` once they are).
    preface: Option<([u8; h2scan::PREFACE.len()], usize)>,
}

impl<IO> Watched<IO> {
    /// Who the connection's client is, for the server log.
    fn peer_text(&self) -> String {
        self.info
            .peer
            .map_or_else(|| "the Unix socket".to_owned(), |p| p.to_string())
    }

    /// Check the client's first bytes against the HTTP/2 preface.
    fn check_preface(&mut self, read: &[u8]) {
        let Some((buf, have)) = &mut self.preface else {
            return;
        };
        let take = (buf.len() - *have).min(read.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(*have..*have + take), read.get(..take)) {
            dst.copy_from_slice(src);
        }
        *have += take;
        let first = buf.get(..*have).unwrap_or_default();
        if let Some(sent) = h2scan::not_preface(first) {
            tracing::warn!(
                peer = %self.peer_text(),
                sent = %sent,
                hint = "gRPC needs HTTP/2: cleartext HTTP/2 (h2c) without TLS, or TLS with ALPN h2 when tls_cert is set",
                "a client did not open with the HTTP/2 preface; its connection is closed"
            );
            self.preface = None;
        } else if *have == buf.len() {
            self.preface = None;
        }
    }

    /// Scan bytes the server wrote; log the connection's first
    /// PROTOCOL_ERROR.
    fn scan_written<'b>(&mut self, written: impl Iterator<Item = &'b [u8]>) {
        let mut found = false;
        for bytes in written {
            found |= self.scan.written(bytes);
        }
        if found {
            tracing::warn!(
                peer = %self.peer_text(),
                hint = h2scan::hint(self.info.peer.is_none() && !self.info.tls),
                "a client's HTTP/2 request was refused with PROTOCOL_ERROR (logged once per connection)"
            );
        }
    }

    /// The timer fired: the error that closes the connection, or `None`
    /// with the timer set again.
    fn on_timer(&mut self) -> Option<io::Error> {
        if self.handshake_left > 0 {
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface and SETTINGS within handshake_timeout_ms",
            ));
        }
        let now = Instant::now();
        let Some(period) = self.idle_period else {
            self.timer.as_mut().reset(far_future(now));
            return None;
        };
        let activity = &self.info.activity;
        let started = activity.started.load(Ordering::Relaxed);
        if activity.open.load(Ordering::Relaxed) == 0 && started == self.seen_started {
            self.quiet_checks += 1;
            if self.quiet_checks >= IDLE_CHECKS {
                return Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no call within idle_timeout_ms",
                ));
            }
        } else {
            self.quiet_checks = 0;
            self.seen_started = started;
        }
        self.timer.as_mut().reset(now + period);
        None
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.preface.is_some() {
                    this.check_preface(buf.filled().get(before..).unwrap_or_default());
                }
                if this.handshake_left > 0 {
                    let read = buf.filled().len() - before;
                    this.handshake_left = this.handshake_left.saturating_sub(read);
                    if this.handshake_left == 0 {
                        let now = Instant::now();
                        let next = this.idle_period.map_or(far_future(now), |p| now + p);
                        this.timer.as_mut().reset(next);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => loop {
                match this.timer.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => {
                        if let Some(e) = this.on_timer() {
                            return Poll::Ready(Err(e));
                        }
                    }
                }
            },
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.scan_written(buf.get(..n).into_iter());
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            let mut left = n;
            let written = bufs.iter().map_while(|b| {
                let take = b.len().min(left);
                left -= take;
                (take > 0).then(|| b.get(..take).unwrap_or_default())
            });
            this.scan_written(written);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Send + Sync + 'static> Connected for Watched<IO> {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn max_connections_leaves_descriptors_for_bundle_reads() {
        let settings = |max_connections| ConnSettings {
            handshake_timeout: Duration::ZERO,
            idle_timeout: Duration::ZERO,
            max_connections,
        };
        let (lowered, limit) = settings(usize::MAX).within_fd_limit();
        let limit = limit.expect("the open-file limit is finite here");
        assert_eq!(
            lowered.max_connections as u64,
            limit - FD_RESERVE.min(limit / 2)
        );
        let (kept, none) = settings(10).within_fd_limit();
        assert_eq!((kept.max_connections, none), (10, None));
    }

    fn gate(handshake_ms: u64, idle_ms: u64, max: usize) -> Gate {
        Gate::new(ConnSettings {
            handshake_timeout: Duration::from_millis(handshake_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            max_connections: max,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_at_the_handshake_timeout() {
        let g = gate(100, 0, 10);
        let (_client, server) = tokio::io::duplex(64);
        let mut w = g.watch(server, None, g.admit().unwrap());
        let mut buf = [0u8; 8];
        let err = w.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
        let g = gate(100, 400, 10);
        let (mut client, server) = tokio::io::duplex(64);
        let mut w = g.watch(server, None, g.admit().unwrap());
        client.write_all(&[0u8; HANDSHAKE_BYTES]).await.unwrap();
        let mut buf = [0u8; HANDSHAKE_BYTES];
        w.read_exact(&mut buf).await.unwrap();
        // A call open for longer than the idle timeout keeps it open.
        let call = w.info.activity.call();
        let started = Instant::now();
        let read = tokio::time::timeout(Duration::from_millis(1000), w.read(&mut buf)).await;
        assert!(read.is_err(), "closed while a call was open");
        drop(call);
        let err = w.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let idle_for = started.elapsed() - Duration::from_millis(1000);
        assert!(idle_for >= Duration::from_millis(400), "{idle_for:?}");
        assert!(idle_for <= Duration::from_millis(600), "{idle_for:?}");
    }

    #[test]
    fn the_gate_admits_up_to_the_limit_and_frees_places() {
        let g = gate(0, 0, 2);
        let a = g.admit().unwrap();
        let _b = g.admit().unwrap();
        assert!(g.admit().is_none());
        drop(a);
        assert!(g.admit().is_some());
        assert_eq!(g.live(), 1);
    }
}
