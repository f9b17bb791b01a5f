//! The runtime the server runs on: its flavour and size
//! ([`RuntimeSettings`]), building it, and the `thread_per_core` flavour:
//! one single-threaded event loop per worker thread, and connections
//! handed to loops whole.
//!
//! tokio's work-stealing runtime spreads the calls of one HTTP/2 connection
//! over its workers: every call is a task that an idle worker is woken to
//! steal, and its answer wakes the connection's task back on the first
//! worker. On a few cores shared with other processes those wake-ups cost
//! more than the calls (context switches, contention on the connection's
//! stream store). Here an acceptor on the first loop hands each accepted
//! connection to the loop serving the fewest, and that loop serves all of
//! it: a call never leaves the thread its bytes arrived on. Many
//! connections spread over the cores; one connection uses one core.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt as _};
use tonic::transport::server::Connected;

use crate::conn::tls::Tls;
use crate::conn::{Gate, Slot, Warnings, Watched};

/// The tokio runtime to run the server on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RuntimeFlavor {
    /// One thread runs everything.
    CurrentThread,
    /// A pool of worker threads that steal tasks from each other.
    MultiThread,
    /// One single-threaded event loop per worker thread; each connection is
    /// served wholly on one loop (the one with the fewest connections when
    /// it was accepted), so a call never hops between threads.
    ThreadPerCore,
}

/// The `runtime` and `worker_threads` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// The flavour.
    pub(crate) flavor: RuntimeFlavor,
    /// Worker threads for `multi_thread`, event loops for `thread_per_core`
    /// (0: one per core).
    pub(crate) worker_threads: usize,
}

impl RuntimeSettings {
    /// The runtime the server starts on. For `thread_per_core` it is the
    /// first event loop; the server starts the others ([`spawn_loop`]).
    pub(crate) fn build(&self) -> io::Result<tokio::runtime::Runtime> {
        match self.flavor {
            RuntimeFlavor::CurrentThread | RuntimeFlavor::ThreadPerCore => {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            }
            RuntimeFlavor::MultiThread => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                if self.worker_threads > 0 {
                    b.worker_threads(self.worker_threads);
                }
                b.enable_all().build()
            }
        }
    }

    /// Event loops for `thread_per_core`: `worker_threads`, or one per
    /// core; one for the other flavours.
    pub(crate) fn loops(&self) -> usize {
        match (self.flavor, self.worker_threads) {
            (RuntimeFlavor::ThreadPerCore, 0) => {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            }
            (RuntimeFlavor::ThreadPerCore, n) => n,
            _ => 1,
        }
    }
}

/// Run `work` on event loop `i`: a thread of its own with a
/// single-threaded runtime. The task returned (on the caller's runtime)
/// ends with `work`'s result, or `on_lost` when the loop's thread ended
/// without one.
pub(crate) fn spawn_loop<T: Send + 'static>(
    i: usize,
    work: impl Future<Output = T> + Send + 'static,
    on_lost: impl FnOnce() -> T + Send + 'static,
) -> io::Result<tokio::task::JoinHandle<T>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("verdict-loop-{i}"))
        .spawn(move || {
            let _ = done_tx.send(runtime.block_on(work));
        })?;
    Ok(tokio::spawn(async move {
        done_rx.await.unwrap_or_else(|_| on_lost())
    }))
}

/// A transport whose connections can be accepted on one runtime and served
/// on another: they cross threads as the standard library's socket.
pub(crate) trait Transport: Sized {
    /// The listener accepting connections.
    type Listener: Send + 'static;
    /// The connection between runtimes.
    type Std: Send + 'static;
    /// Accept the next connection, detached from this runtime.
    fn poll_accept(listener: &Self::Listener, cx: &mut Context<'_>) -> Poll<io::Result<Self::Std>>;
    /// Register a connection with the current runtime.
    fn from_std(conn: Self::Std) -> io::Result<Self>;
    /// The peer's address, where the transport has one.
    fn peer(conn: &Self::Std) -> Option<std::net::SocketAddr>;
}

impl Transport for tokio::net::TcpStream {
    type Listener = tokio::net::TcpListener;
    type Std = std::net::TcpStream;

    fn poll_accept(listener: &Self::Listener, cx: &mut Context<'_>) -> Poll<io::Result<Self::Std>> {
        listener.poll_accept(cx).map(|r| {
            r.and_then(|(s, _)| {
                s.set_nodelay(true)?;
                s.into_std()
            })
        })
    }

    fn from_std(conn: Self::Std) -> io::Result<Self> {
        Self::from_std(conn)
    }

    fn peer(conn: &Self::Std) -> Option<std::net::SocketAddr> {
        conn.peer_addr().ok()
    }
}

#[cfg(unix)]
impl Transport for tokio::net::UnixStream {
    type Listener = tokio::net::UnixListener;
    type Std = std::os::unix::net::UnixStream;

    fn poll_accept(listener: &Self::Listener, cx: &mut Context<'_>) -> Poll<io::Result<Self::Std>> {
        listener
            .poll_accept(cx)
            .map(|r| r.and_then(|(s, _)| s.into_std()))
    }

    fn from_std(conn: Self::Std) -> io::Result<Self> {
        Self::from_std(conn)
    }

    fn peer(_: &Self::Std) -> Option<std::net::SocketAddr> {
        None
    }
}

/// One live connection on a loop; dropping it lowers the loop's count.
#[derive(Debug)]
pub(crate) struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection that counts as live on its loop for as long as it is open.
#[derive(Debug)]
pub(crate) struct Counted<IO> {
    io: IO,
    _live: Live,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
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

impl<IO: Connected> Connected for Counted<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// The live-connection count of each loop, shared by every listener's
/// dispatcher.
#[derive(Clone, Debug)]
pub(crate) struct Counts(Arc<[Arc<AtomicUsize>]>);

impl Counts {
    /// Counts for `loops` loops (at least one).
    pub(crate) fn new(loops: usize) -> Self {
        Self((0..loops.max(1)).map(|_| Arc::default()).collect())
    }

    /// How many loops there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Live connections per loop.
    pub(crate) fn snapshot(&self) -> Vec<usize> {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }
}

/// What an acceptor sends to a loop: the connection, its count on the
/// loop, and its place under `max_connections`.
pub(crate) type Handoff<T> = (<T as Transport>::Std, Live, Option<Slot>);

/// Hands accepted connections of one listener to the loops.
pub(crate) struct Dispatcher<T: Transport> {
    loops: Vec<(Arc<AtomicUsize>, mpsc::UnboundedSender<Handoff<T>>)>,
    turn: usize,
}

impl<T: Transport> Dispatcher<T> {
    /// A dispatcher over `counts`, and the receiving end for each loop, in
    /// the same order.
    pub(crate) fn new(counts: &Counts) -> (Self, Vec<mpsc::UnboundedReceiver<Handoff<T>>>) {
        let mut loops = Vec::new();
        let mut receivers = Vec::new();
        for count in counts.0.iter() {
            let (tx, rx) = mpsc::unbounded_channel();
            loops.push((count.clone(), tx));
            receivers.push(rx);
        }
        (Self { loops, turn: 0 }, receivers)
    }

    /// [`Self::dispatch`] for a connection holding a place under the limit.
    fn dispatch_admitted(&mut self, mut conn: T::Std, mut slot: Option<Slot>) -> bool {
        let n = self.loops.len();
        let start = self.turn;
        self.turn = self.turn.wrapping_add(1);
        loop {
            // `min_by_key` keeps the first of equal counts: the scan starts
            // one loop further each time.
            let Some((count, tx)) = (0..n)
                .filter_map(|k| self.loops.get((start + k) % n))
                .filter(|(_, tx)| !tx.is_closed())
                .min_by_key(|(count, _)| count.load(Ordering::Relaxed))
            else {
                return false;
            };
            match tx.send((conn, Live::new(count), slot)) {
                Ok(()) => return true,
                // The loop stopped between the check and the send: try the
                // others.
                Err(mpsc::error::SendError((c, _, s))) => {
                    conn = c;
                    slot = s;
                }
            }
        }
    }

    /// Accept connections and hand them out until `stop` completes; past
    /// the gate's `max_connections` a connection is closed as it is
    /// accepted. Accept errors (such as running out of file descriptors)
    /// are retried after a pause instead of spinning, and logged at most
    /// every ten seconds.
    /// Give a connection to the open loop with the fewest live connections
    /// (ties taken in turn); `false` if every loop has stopped.
    #[cfg(test)]
    pub(crate) fn dispatch(&mut self, conn: T::Std) -> bool {
        self.dispatch_admitted(conn, None)
    }

    pub(crate) async fn run(
        mut self,
        listener: T::Listener,
        gate: Gate,
        stop: impl Future<Output = ()>,
    ) {
        let mut stop = std::pin::pin!(stop);
        let failed = Warnings::new("accepting connections failed");
        loop {
            let accepted = tokio::select! {
                _ = &mut stop => return,
                r = std::future::poll_fn(|cx| T::poll_accept(&listener, cx)) => r,
            };
            match accepted {
                Ok(conn) => {
                    let Some(slot) = gate.admit() else {
                        drop(conn);
                        continue;
                    };
                    if !self.dispatch_admitted(conn, Some(slot)) {
                        return;
                    }
                }
                Err(e) => {
                    failed.note_with(Some(&e));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// The connections handed to one loop, registered with its runtime as they
/// arrive and watched by `gate` (a connection that cannot be registered is
/// logged and closed).
pub(crate) fn incoming<T: Transport + Send + Sync + 'static>(
    rx: mpsc::UnboundedReceiver<Handoff<T>>,
    gate: Gate,
) -> impl Stream<Item = io::Result<Counted<Watched<T>>>> {
    tokio_stream::wrappers::UnboundedReceiverStream::new(rx).filter_map(
        move |(conn, live, slot)| {
            let slot = slot.or_else(|| gate.admit())?;
            let peer = T::peer(&conn);
            Some(
                T::from_std(conn)
                    .map(|io| Counted {
                        io: gate.watch(io, peer, slot),
                        _live: live,
                    })
                    .inspect_err(|e| tracing::warn!("cannot serve an accepted connection: {e}")),
            )
        },
    )
}

/// [`incoming`] over TLS: each connection's handshake on a task of its
/// own (on this loop), then watched by `gate`.
pub(crate) fn incoming_tls<T>(
    rx: mpsc::UnboundedReceiver<Handoff<T>>,
    gate: Gate,
    tls: Arc<Tls>,
) -> impl Stream<Item = io::Result<Watched<tokio_rustls::server::TlsStream<Counted<T>>>>>
where
    T: Transport + AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    let admit = gate.clone();
    let plain = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).filter_map(
        move |(conn, live, slot)| {
            let slot = slot.or_else(|| admit.admit())?;
            let peer = T::peer(&conn);
            Some(
                T::from_std(conn)
                    .map(|io| (Counted { io, _live: live }, peer, slot))
                    .inspect_err(|e| tracing::warn!("cannot serve an accepted connection: {e}")),
            )
        },
    );
    crate::conn::tls::handshakes(plain, tls, gate, |watched| watched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn connections_go_to_the_least_loaded_loop_and_leave_it_when_closed() {
        let counts = Counts::new(3);
        let (mut d, mut rx) = Dispatcher::<tokio::net::TcpStream>::new(&counts);
        let mut keep = Vec::new();
        for _ in 0..6 {
            let (a, b) = pair();
            assert!(d.dispatch(b));
            keep.push(a);
        }
        assert_eq!(counts.snapshot(), vec![2, 2, 2]);
        // Close both connections of loop 1: the next two go there.
        let r1 = rx.get_mut(1).unwrap();
        drop(r1.try_recv().unwrap());
        drop(r1.try_recv().unwrap());
        assert_eq!(counts.snapshot(), vec![2, 0, 2]);
        for _ in 0..2 {
            let (a, b) = pair();
            assert!(d.dispatch(b));
            keep.push(a);
        }
        assert_eq!(counts.snapshot(), vec![2, 2, 2]);
        assert_eq!(rx.get_mut(1).unwrap().len(), 2);
    }

    #[test]
    fn a_stopped_loop_gets_nothing_and_no_loop_means_refused() {
        let counts = Counts::new(2);
        let (mut d, mut rx) = Dispatcher::<tokio::net::TcpStream>::new(&counts);
        drop(rx.remove(0));
        let mut keep = Vec::new();
        for _ in 0..3 {
            let (a, b) = pair();
            assert!(d.dispatch(b));
            keep.push(a);
        }
        assert_eq!(counts.snapshot(), vec![0, 3]);
        drop(rx);
        let (_a, b) = pair();
        assert!(!d.dispatch(b));
        assert_eq!(counts.snapshot(), vec![0, 0]);
    }

    #[tokio::test]
    async fn a_handed_off_connection_carries_bytes_both_ways() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let counts = Counts::new(1);
        let (mut d, rx) = Dispatcher::<tokio::net::TcpStream>::new(&counts);
        let (mut a, b) = pair();
        b.set_nonblocking(true).unwrap();
        assert!(d.dispatch(b));
        drop(d);
        let gate = Gate::new(crate::conn::ConnSettings {
            handshake_timeout: Duration::ZERO,
            idle_timeout: Duration::ZERO,
            max_connections: 10,
        });
        let mut conns = std::pin::pin!(incoming::<tokio::net::TcpStream>(
            rx.into_iter().next().unwrap(),
            gate.clone()
        ));
        let mut served = conns.next().await.unwrap().unwrap();
        std::io::Write::write_all(&mut a, b"ping").unwrap();
        let mut got = [0u8; 4];
        served.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        served.write_all(b"pong").await.unwrap();
        std::io::Read::read_exact(&mut a, &mut got).unwrap();
        assert_eq!(&got, b"pong");
        assert_eq!(counts.snapshot(), vec![1]);
        assert_eq!(gate.live(), 1);
        drop(served);
        assert_eq!(counts.snapshot(), vec![0]);
        assert_eq!(gate.live(), 0);
        assert!(conns.next().await.is_none());
    }
}
