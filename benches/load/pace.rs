//! `load_support pace`: a steady open-loop gRPC load over raw HTTP/2.
//!
//! A general HTTP/2 client (the `h2` crate with a task per call) spends
//! about as much CPU per call as the server it measures. On 2 cores shared
//! with that server, the client's own stalls then decide the tail. This
//! client does the least a correct HTTP/2 client must:
//!
//! - one thread; what is due is released on a periodic timerfd watched by
//!   the runtime's own epoll (no second thread to wake);
//! - per connection, what is due is written in one write: a HEADERS frame
//!   with a header block encoded once (static-table indexes and literals
//!   without indexing, so it is valid on every stream) and a DATA frame with
//!   the pre-encoded body;
//! - responses are parsed frame by frame; every header block goes through
//!   an HPACK decoder (`loona-hpack`), so `:status` and `grpc-status` are
//!   read as sent, dynamic table and Huffman coding included;
//! - it honours the server's SETTINGS (concurrent streams, initial window,
//!   frame size), connection flow control both ways, PING and GOAWAY.
//!
//! Latency runs from the write that sent a request to the frame that ended
//! its stream. A call with grpc-status 8 (RESOURCE_EXHAUSTED: the server
//! shedding beyond its concurrency limit) is counted apart; any other
//! failure is an error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const MAX_WINDOW: u32 = 0x7fff_ffff;
const DEFAULT_WINDOW: i64 = 65_535;

pub struct Args<'a> {
    pub target: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
    pub rate: f64,
    pub duration: f64,
    pub connections: usize,
    pub tick: Duration,
    /// Closed loop instead: this many calls in flight per connection, each
    /// answer releasing the next, for `duration` (`rate` is not used).
    pub closed: Option<u64>,
    /// TLS (ALPN h2) with this configuration, for the server name
    /// `localhost`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Default)]
pub struct Report {
    pub sent: u64,
    /// Latencies of the calls that ended with grpc-status 0, in µs.
    pub latencies: Vec<u64>,
    pub shed: u64,
    pub errors: Vec<String>,
    /// Calls released while the connection was at the server's
    /// concurrent-stream limit or out of flow-control window: sent later.
    pub held: u64,
    /// From the first release to the last answer.
    pub elapsed: Duration,
}

/// HPACK integer with an `n`-bit prefix whose high bits are `flags`.
fn hpack_int(out: &mut Vec<u8>, flags: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// The request's header block: `:method POST` and `:scheme http` from the
/// static table, the rest literals without indexing (RFC 7541 §6.2.2), so
/// the same bytes are valid on every stream whatever the decoder's table.
pub fn request_block(path: &str, authority: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.push(0x83); // :method POST (static 3)
    b.push(0x86); // :scheme http (static 6)
    hpack_int(&mut b, 0x00, 4, 4); // :path (static name 4)
    hpack_str(&mut b, path.as_bytes());
    hpack_int(&mut b, 0x00, 4, 1); // :authority (static name 1)
    hpack_str(&mut b, authority.as_bytes());
    hpack_int(&mut b, 0x00, 4, 31); // content-type (static name 31)
    hpack_str(&mut b, b"application/grpc");
    b.push(0x00); // a literal name
    hpack_str(&mut b, b"te");
    hpack_str(&mut b, b"trailers");
    b
}

fn frame_head(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    out.put_uint(len as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream);
}

/// Where a stream is: sent, answered with `:status 200`, or ended.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Sent,
    Answered,
    Ended,
}

/// One request: when it was written (µs since start) and where it is.
struct Stream {
    sent_at: u64,
    phase: Phase,
}

/// How a response's header blocks ended a call.
enum Outcome {
    Ok,
    Shed,
    Failed(String),
}

/// One connection: writes what it is given as soon as it may, reads and
/// checks every response.
struct Conn<'a> {
    block: &'a [u8],
    body: &'a [u8],
    start: Instant,
    /// Stream 2i+1 at index i.
    streams: Vec<Stream>,
    next: u32,
    done: u64,
    pending: u64,
    max_streams: u64,
    stream_window: i64,
    max_frame: usize,
    send_window: i64,
    recv_unacked: u32,
    decoder: loona_hpack::Decoder<'static>,
    /// A header block still waiting for its CONTINUATION frames.
    partial: Option<(u32, u8, Vec<u8>)>,
    wbuf: BytesMut,
    report: Report,
    /// Closed loop: each ended call releases another while the run lasts.
    refill: bool,
}

impl<'a> Conn<'a> {
    fn in_flight(&self) -> u64 {
        u64::from(self.next) - self.done
    }

    /// The request a server frame on `stream` belongs to (client streams
    /// are odd).
    fn stream(&mut self, stream: u32) -> Result<&mut Stream, String> {
        let i = if stream % 2 == 1 {
            (stream / 2) as usize
        } else {
            usize::MAX
        };
        self.streams
            .get_mut(i)
            .ok_or_else(|| format!("a frame on stream {stream}, never opened"))
    }

    /// Whether the request and its header block fit the server's limits.
    fn check_fit(&self) -> Result<(), String> {
        if self.body.len() as i64 > self.stream_window
            || self.body.len().max(self.block.len()) > self.max_frame
        {
            return Err("the request does not fit the server's window or frame size".into());
        }
        Ok(())
    }

    /// Queue as many pending calls as the server's limits allow.
    fn release(&mut self) {
        let now = self.start.elapsed().as_micros() as u64;
        while self.pending > 0
            && self.in_flight() < self.max_streams
            && self.send_window >= self.body.len() as i64
        {
            let stream = 2 * self.next + 1;
            frame_head(
                &mut self.wbuf,
                self.block.len(),
                HEADERS,
                END_HEADERS,
                stream,
            );
            self.wbuf.extend_from_slice(self.block);
            frame_head(&mut self.wbuf, self.body.len(), DATA, END_STREAM, stream);
            self.wbuf.extend_from_slice(self.body);
            self.send_window -= self.body.len() as i64;
            self.streams.push(Stream {
                sent_at: now,
                phase: Phase::Sent,
            });
            self.next += 1;
            self.pending -= 1;
            self.report.sent += 1;
        }
    }

    /// End a call once; frames after its end (a reset after a failed
    /// status) change nothing.
    fn finish(&mut self, stream: u32, outcome: Outcome) -> Result<(), String> {
        let s = self.stream(stream)?;
        if s.phase == Phase::Ended {
            return Ok(());
        }
        s.phase = Phase::Ended;
        let at = s.sent_at;
        self.done += 1;
        if self.refill {
            self.pending += 1;
        }
        match outcome {
            Outcome::Ok => {
                let now = self.start.elapsed().as_micros() as u64;
                self.report.latencies.push(now.saturating_sub(at));
            }
            Outcome::Shed => self.report.shed += 1,
            Outcome::Failed(e) => self.report.errors.push(e),
        }
        Ok(())
    }

    fn header_block(&mut self, stream: u32, flags: u8, block: &[u8]) -> Result<(), String> {
        let mut status = None;
        let mut grpc_status = None;
        let mut message = None;
        self.decoder
            .decode_with_cb(block, |name, value| match &name[..] {
                b":status" => status = Some(value.into_owned()),
                b"grpc-status" => grpc_status = Some(value.into_owned()),
                b"grpc-message" => message = Some(value.into_owned()),
                _ => {}
            })
            .map_err(|e| format!("HPACK: {e}"))?;
        if let Some(s) = status {
            if s != b"200" {
                let e = format!("HTTP {}", String::from_utf8_lossy(&s));
                return self.finish(stream, Outcome::Failed(e));
            }
            let st = self.stream(stream)?;
            if st.phase == Phase::Sent {
                st.phase = Phase::Answered;
            }
        }
        if flags & END_STREAM == 0 {
            return Ok(());
        }
        if self.stream(stream)?.phase == Phase::Sent {
            return self.finish(stream, Outcome::Failed("trailers before :status".into()));
        }
        let outcome = match grpc_status.as_deref() {
            Some(b"0") => Outcome::Ok,
            Some(b"8") => Outcome::Shed,
            Some(s) => Outcome::Failed(format!(
                "grpc-status {} {}",
                String::from_utf8_lossy(s),
                String::from_utf8_lossy(message.as_deref().unwrap_or_default())
            )),
            None => Outcome::Failed("no grpc-status".into()),
        };
        self.finish(stream, outcome)
    }

    /// Handle every whole frame in `rbuf`.
    fn frames(&mut self, rbuf: &mut BytesMut) -> Result<(), String> {
        while rbuf.len() >= 9 {
            let len =
                (usize::from(rbuf[0]) << 16) | (usize::from(rbuf[1]) << 8) | usize::from(rbuf[2]);
            if rbuf.len() < 9 + len {
                break;
            }
            let kind = rbuf[3];
            let flags = rbuf[4];
            let stream = u32::from_be_bytes([rbuf[5], rbuf[6], rbuf[7], rbuf[8]]) & MAX_WINDOW;
            rbuf.advance(9);
            let payload = rbuf.split_to(len);
            if let Some((s, _, _)) = &self.partial
                && (kind != CONTINUATION || stream != *s)
            {
                return Err("a header block interrupted before its end".into());
            }
            match kind {
                DATA => {
                    self.recv_unacked += len as u32;
                    if flags & END_STREAM != 0 {
                        self.finish(stream, Outcome::Failed("no trailers".into()))?;
                    }
                }
                HEADERS | CONTINUATION => {
                    let mut p = &payload[..];
                    if kind == HEADERS {
                        let pad = if flags & PADDED != 0 {
                            let n = usize::from(*p.first().ok_or("empty padded frame")?);
                            p = &p[1..];
                            n
                        } else {
                            0
                        };
                        if flags & PRIORITY != 0 {
                            p = p.get(5..).ok_or("short priority")?;
                        }
                        p = p
                            .get(..p.len().checked_sub(pad).ok_or("bad padding")?)
                            .ok_or("bad padding")?;
                        self.partial = Some((stream, flags, p.to_vec()));
                    } else if let Some((_, _, block)) = &mut self.partial {
                        block.extend_from_slice(p);
                    } else {
                        return Err("CONTINUATION without HEADERS".into());
                    }
                    if flags & END_HEADERS != 0
                        && let Some((s, first_flags, block)) = self.partial.take()
                    {
                        self.header_block(s, first_flags, &block)?;
                    }
                }
                RST_STREAM => {
                    let code = payload
                        .get(..4)
                        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                    self.finish(stream, Outcome::Failed(format!("RST_STREAM {code:?}")))?;
                }
                SETTINGS if flags & ACK == 0 => {
                    for s in payload.chunks_exact(6) {
                        let id = u16::from_be_bytes([s[0], s[1]]);
                        let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
                        match id {
                            0x3 => self.max_streams = u64::from(v),
                            0x4 => self.stream_window = i64::from(v),
                            0x5 => self.max_frame = v as usize,
                            _ => {}
                        }
                    }
                    self.check_fit()?;
                    frame_head(&mut self.wbuf, 0, SETTINGS, ACK, 0);
                }
                SETTINGS => {}
                PING if flags & ACK == 0 => {
                    frame_head(&mut self.wbuf, payload.len(), PING, ACK, 0);
                    self.wbuf.extend_from_slice(&payload);
                }
                PING => {}
                GOAWAY => {
                    return Err(format!(
                        "GOAWAY {:?}",
                        String::from_utf8_lossy(payload.get(8..).unwrap_or_default())
                    ));
                }
                WINDOW_UPDATE if stream == 0 => {
                    let v = payload
                        .get(..4)
                        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) & MAX_WINDOW);
                    self.send_window += i64::from(v.unwrap_or(0));
                }
                PUSH_PROMISE => return Err("PUSH_PROMISE although push is disabled".into()),
                _ => {}
            }
        }
        // Give the server back its connection window in large steps (the
        // stream windows are at their maximum from the start).
        if self.recv_unacked >= 1 << 20 {
            frame_head(&mut self.wbuf, 4, WINDOW_UPDATE, 0, 0);
            self.wbuf.put_u32(self.recv_unacked);
            self.recv_unacked = 0;
        }
        Ok(())
    }
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    block: &[u8],
    body: &[u8],
    start: Instant,
    mut due: mpsc::UnboundedReceiver<u64>,
    closed: bool,
) -> Report {
    let mut conn = Conn {
        refill: closed,
        block,
        body,
        start,
        streams: Vec::new(),
        next: 0,
        done: 0,
        pending: 0,
        max_streams: u64::MAX,
        stream_window: DEFAULT_WINDOW,
        max_frame: 16_384,
        send_window: DEFAULT_WINDOW,
        recv_unacked: 0,
        decoder: loona_hpack::Decoder::new(),
        partial: None,
        wbuf: BytesMut::with_capacity(64 * 1024),
        report: Report::default(),
    };
    // Preface; push off, stream windows at the maximum; the connection
    // window raised to the maximum too.
    conn.wbuf.extend_from_slice(PREFACE);
    frame_head(&mut conn.wbuf, 12, SETTINGS, 0, 0);
    conn.wbuf.put_u16(0x2);
    conn.wbuf.put_u32(0);
    conn.wbuf.put_u16(0x4);
    conn.wbuf.put_u32(MAX_WINDOW);
    frame_head(&mut conn.wbuf, 4, WINDOW_UPDATE, 0, 0);
    conn.wbuf.put_u32(MAX_WINDOW - DEFAULT_WINDOW as u32);
    let mut rbuf = BytesMut::with_capacity(256 * 1024);
    let mut open = true;
    let fail = |conn: &mut Conn, e: String| conn.report.errors.push(e);
    if let Err(e) = conn.check_fit() {
        fail(&mut conn, e);
        open = false;
    }
    loop {
        if !conn.wbuf.is_empty() {
            if let Err(e) = io.write_all(&conn.wbuf).await {
                fail(&mut conn, format!("write: {e}"));
                break;
            }
            conn.wbuf.clear();
        }
        if !open && conn.pending == 0 && conn.in_flight() == 0 {
            break;
        }
        tokio::select! {
            n = due.recv(), if open => match n {
                Some(n) => {
                    conn.pending += n;
                    conn.release();
                    // The newest calls are the ones left waiting.
                    if !conn.refill {
                        conn.report.held += conn.pending.min(n);
                    }
                }
                None => {
                    open = false;
                    conn.refill = false;
                }
            },
            r = io.read_buf(&mut rbuf) => match r {
                Ok(0) => {
                    fail(&mut conn, "the server closed the connection".into());
                    break;
                }
                Ok(_) => {
                    if let Err(e) = conn.frames(&mut rbuf) {
                        fail(&mut conn, e);
                        break;
                    }
                    conn.release();
                }
                Err(e) => {
                    fail(&mut conn, format!("read: {e}"));
                    break;
                }
            },
        }
    }
    let unanswered = conn.in_flight() + conn.pending;
    if unanswered > 0 {
        conn.report
            .errors
            .push(format!("{unanswered} calls unanswered"));
    }
    conn.report
}

/// Connect, run the load, and merge what every connection saw.
pub async fn run(args: Args<'_>) -> Report {
    use timerfd::{ClockId, SetTimeFlags, TimerFd, TimerState};
    use tokio::io::unix::AsyncFd;

    let block = request_block(args.path, "localhost");
    let start = Instant::now();
    let total = (args.rate * args.duration).round() as u64;
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    let block = Arc::<[u8]>::from(block);
    let body = Arc::<[u8]>::from(args.body);
    for _ in 0..args.connections.max(1) {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        let (block, body) = (block.clone(), body.clone());
        let closed = args.closed.is_some();
        if let Some(path) = args.target.strip_prefix("unix:") {
            let io = tokio::net::UnixStream::connect(path).await.unwrap();
            tasks.push(tokio::spawn(async move {
                drive(io, &block, &body, start, rx, closed).await
            }));
        } else {
            let io = tokio::net::TcpStream::connect(args.target).await.unwrap();
            io.set_nodelay(true).unwrap();
            if let Some(config) = &args.tls {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let io = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, io)
                    .await
                    .unwrap();
                tasks.push(tokio::spawn(async move {
                    drive(io, &block, &body, start, rx, closed).await
                }));
            } else {
                tasks.push(tokio::spawn(async move {
                    drive(io, &block, &body, start, rx, closed).await
                }));
            }
        }
    }
    if let Some(per_connection) = args.closed {
        let started = Instant::now();
        for tx in &senders {
            let _ = tx.send(per_connection);
        }
        tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
        drop(senders);
        return collect(tasks, started).await;
    }

    let mut timer = TimerFd::new_custom(ClockId::Monotonic, true, true).unwrap();
    timer.set_state(
        TimerState::Periodic {
            current: args.tick,
            interval: args.tick,
        },
        SetTimeFlags::Default,
    );
    #[allow(
        deprecated,
        reason = "the safe constructor is deprecated in favour of an unsafe one, which this crate \
                  forbids; its contract holds: the TimerFd owns its fd and keeps it open, \
                  unchanged, for as long as the AsyncFd lives"
    )]
    let timer = AsyncFd::with_interest(timer, tokio::io::Interest::READABLE).unwrap();
    let started = Instant::now();
    let mut released = 0u64;
    let mut turn = 0usize;
    while released < total {
        let mut ready = timer.readable().await.unwrap();
        if ready.get_inner().read() == 0 {
            ready.clear_ready();
            continue;
        }
        let due = ((started.elapsed().as_secs_f64() * args.rate) as u64).min(total);
        // Spread what is due over the connections, one call at a time
        // round-robin from where the last release stopped.
        let n = due - released;
        let k = senders.len() as u64;
        for (j, tx) in senders.iter().enumerate() {
            let pos = (j + senders.len() - turn) as u64 % k;
            let share = n / k + u64::from(pos < n % k);
            if share > 0 {
                let _ = tx.send(share);
            }
        }
        turn = (turn + (n % k) as usize) % senders.len();
        released = due;
    }
    drop(senders);
    collect(tasks, started).await
}

/// Wait for every connection and merge what each saw.
async fn collect(tasks: Vec<tokio::task::JoinHandle<Report>>, started: Instant) -> Report {
    let mut report = Report::default();
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(10), t).await {
            Ok(Ok(r)) => {
                report.sent += r.sent;
                report.latencies.extend(r.latencies);
                report.shed += r.shed;
                report.errors.extend(r.errors);
                report.held += r.held;
            }
            Ok(Err(e)) => report.errors.push(format!("connection task: {e}")),
            Err(_) => report.errors.push("calls unanswered after 10 s".into()),
        }
    }
    report.elapsed = started.elapsed();
    report
}
