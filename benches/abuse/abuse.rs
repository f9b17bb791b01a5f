//! The abuse run: every attack of the hardening work, at full volume,
//! against `target/release/verdict serve` with its default settings (build
//! it first), each on a fresh server on a Unix socket.
//!
//! `cargo run --release --example abuse` runs them all and prints a
//! Markdown table: the attack, its volume, how many of a legitimate
//! client's calls succeeded while it ran (one `Authorize` every 2 ms on a
//! connection of its own), their p99 latency, the server's RSS before, at
//! its peak and after, and what the server did. `--scale 0.05` runs every
//! attack at a twentieth of its volume and duration. It exits 1 when any
//! attack breaks a bound: legitimate calls under 99% successful or p99
//! over 50 ms, peak RSS over 512 MiB, or an outcome other than the one
//! expected (named in the row). Traffic goes only to the Unix socket.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark tool: failing loudly is the point"
)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use tonic::transport::Channel;
use verdict::proto::authorizer_client::AuthorizerClient;
use verdict::proto::{
    AuthorizeRequest, BatchAuthorizeRequest, BundleStatus, ContextValues, Decision,
    GetBundleStatusRequest,
};

#[derive(Parser)]
struct Args {
    /// Multiplies every attack's volume and duration.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Run only the attacks whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

#[path = "../support/harness.rs"]
mod harness;

use harness::{channel, copy_dir, root};

const KEY: &str = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const FRANK: &str = "arn:aws:iam::111122223333:user/frank";
const SECRET: &str = "TOP-SECRET-OUTSIDE-CONTENT";
const RSS_BOUND_MIB: f64 = 512.0;

fn frank() -> AuthorizeRequest {
    AuthorizeRequest {
        principal: FRANK.into(),
        action: "kms:Encrypt".into(),
        resource: KEY.into(),
        ..Default::default()
    }
}

/// How a server is started.
#[derive(Default)]
struct Start {
    env: Vec<(&'static str, &'static str)>,
    /// Open-file limit of the server process.
    nofile: Option<u32>,
    /// Serve the bundle packed as a .tar.gz.
    archive: bool,
    /// Pipe stdout and never read it (a stalled decision log).
    stall_stdout: bool,
    /// Do not wait for a bundle (the attack starts with the first load).
    no_wait: bool,
}

/// A `verdict serve` child with default settings, killed on drop.
struct Server {
    child: Child,
    sock: PathBuf,
    bundle: PathBuf,
    stderr: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(start: Start) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut bundle = dir.path().join("bundle");
        copy_dir(&root().join("examples/bundles/kms"), &bundle);
        if start.archive {
            let packed = dir.path().join("bundle.tar.gz");
            pack(&bundle, &packed);
            bundle = packed;
        }
        let sock = dir.path().join("verdict.sock");
        let stderr = dir.path().join("stderr.log");
        let binary = root().join("target/release/verdict");
        assert!(
            binary.exists(),
            "build the server first: cargo build --release"
        );
        let mut cmd = match start.nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        cmd.args(["serve", "--bundle", bundle.to_str().unwrap()])
            .args(["--uds", sock.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .stdout(if start.stall_stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in &start.env {
            cmd.env(k, v);
        }
        let server = Self {
            child: cmd.spawn().unwrap(),
            sock,
            bundle,
            stderr,
            dir,
        };
        if !start.no_wait {
            server.ready().await;
        }
        server
    }

    async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.sock.exists() {
            assert!(Instant::now() < deadline, "the socket never appeared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut c = self.client().await;
        while self.status_of(&mut c).await.revision.is_empty() {
            assert!(Instant::now() < deadline, "no bundle became active");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn client(&self) -> AuthorizerClient<Channel> {
        AuthorizerClient::new(channel(&self.sock).await)
    }

    async fn status_of(&self, c: &mut AuthorizerClient<Channel>) -> BundleStatus {
        c.get_bundle_status(GetBundleStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    fn sighup(&self) {
        assert!(
            Command::new("kill")
                .args(["-HUP", &self.pid().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for a reload outcome after `before`: the new revision `want`
    /// active, or (when `want` is `None`) one more failed reload.
    async fn outcome(
        &self,
        before: &BundleStatus,
        want: Option<&str>,
        within: Duration,
    ) -> Option<(Duration, BundleStatus)> {
        let mut c = self.client().await;
        let started = Instant::now();
        while started.elapsed() < within {
            let s = self.status_of(&mut c).await;
            let done = match want {
                Some(r) => s.revision == r,
                None => s.reloads_failed > before.reloads_failed,
            };
            if done {
                return Some((started.elapsed(), s));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

fn pack(dir: &Path, to: &Path) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(to).unwrap(),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(".", dir).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
}

/// A legitimate client on its own connection: one `Authorize` every 2 ms,
/// on a thread and runtime of its own, so that the attackers' work in this
/// process never delays it.
struct Legit {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, Vec<Duration>)>,
}

impl Legit {
    async fn start(server: &Server) -> Self {
        let sock = server.sock.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (started, connected) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut c = AuthorizerClient::new(channel(&sock).await);
                let _ = started.send(());
                let mut ok = 0;
                let mut latencies = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(2));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !flag.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let t = Instant::now();
                    let r =
                        tokio::time::timeout(Duration::from_secs(5), c.authorize(frank())).await;
                    latencies.push(t.elapsed());
                    if r.is_ok_and(|r| {
                        r.is_ok_and(|r| r.into_inner().decision() == Decision::Allow)
                    }) {
                        ok += 1;
                    }
                }
                (ok, latencies)
            })
        });
        connected.await.unwrap();
        Self { stop, thread }
    }

    async fn finish(self) -> (u64, u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let (ok, mut latencies) = tokio::task::spawn_blocking(move || self.thread.join().unwrap())
            .await
            .unwrap();
        latencies.sort();
        let p99 = latencies
            .get(latencies.len() * 99 / 100)
            .copied()
            .unwrap_or_default();
        (ok, latencies.len() as u64, p99)
    }
}

/// Samples a process's RSS every 50 ms and keeps the peak.
fn sample_peak(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<f64> {
    tokio::spawn(async move {
        let mut peak: f64 = 0.0;
        while !stop.load(Ordering::Relaxed) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let rss = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0);
            peak = peak.max(rss);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak
    })
}

/// What an attack reports: its volume, what the server did, and whether
/// that is what was expected.
struct Outcome {
    volume: String,
    result: String,
    expected: bool,
}

struct Row {
    attack: &'static str,
    outcome: Outcome,
    ok: u64,
    total: u64,
    p99: Duration,
    rss: (f64, f64, f64),
}

impl Row {
    fn pass(&self) -> bool {
        self.outcome.expected
            && self.total > 0
            && self.ok * 100 >= self.total * 99
            && self.p99 < Duration::from_millis(50)
            && self.rss.1 < RSS_BOUND_MIB
    }
}

/// A legitimate client and an RSS sampler, running while an attack does.
struct Probe {
    before: f64,
    stop: Arc<AtomicBool>,
    peak: tokio::task::JoinHandle<f64>,
    legit: Legit,
}

impl Probe {
    async fn start(server: &Server) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        Self {
            before: server.rss_mib(),
            peak: sample_peak(server.pid(), stop.clone()),
            stop,
            legit: Legit::start(server).await,
        }
    }

    async fn finish(self, attack: &'static str, server: &mut Server, mut outcome: Outcome) -> Row {
        let (ok, total, p99) = self.legit.finish().await;
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.peak.await.unwrap();
        if !server.alive() {
            outcome.expected = false;
            outcome.result += "; the server died";
        }
        Row {
            attack,
            outcome,
            ok,
            total,
            p99,
            rss: (self.before, peak.max(self.before), server.rss_mib()),
        }
    }
}

/// Runs the attack expression against a server with a [`Probe`] around it.
macro_rules! measure {
    ($name:expr, $server:expr, |$s:ident| $attack:expr) => {{
        let server = &mut $server;
        let probe = Probe::start(server).await;
        let outcome = {
            let $s: &Server = server;
            $attack.await
        };
        probe.finish($name, server, outcome).await
    }};
}

// ---------------------------------------------------------------- bundles

/// Cases 1, 2 and 8: a FIFO, two directory symlink loops, /dev/zero and a
/// symlink to a file outside the bundle, then the good bundle again.
async fn poisoned_directory(server: &Server) -> Outcome {
    let b = &server.bundle;
    let mut c = server.client().await;
    let before = server.status_of(&mut c).await;
    symlink(".", b.join("policies/l1")).unwrap();
    symlink(".", b.join("policies/l2")).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(b.join("policies/fifo.json"))
            .status()
            .unwrap()
            .success()
    );
    symlink("/dev/zero", b.join("policies/zero.json")).unwrap();
    let outside = server.dir.path().join("outside.json");
    std::fs::write(&outside, format!("\"{SECRET}\"")).unwrap();
    std::fs::remove_file(b.join("principals.json")).unwrap();
    symlink(&outside, b.join("principals.json")).unwrap();
    server.sighup();
    let failed = server.outcome(&before, None, Duration::from_secs(40)).await;
    for f in [
        "policies/l1",
        "policies/l2",
        "policies/fifo.json",
        "policies/zero.json",
        "principals.json",
    ] {
        std::fs::remove_file(b.join(f)).unwrap();
    }
    std::fs::copy(
        root().join("examples/bundles/kms/principals.json"),
        b.join("principals.json"),
    )
    .unwrap();
    std::fs::write(b.join("manifest.json"), r#"{"revision": "fixed"}"#).unwrap();
    server.sighup();
    let fixed = server
        .outcome(&before, Some("fixed"), Duration::from_secs(40))
        .await;
    let served = server.status_of(&mut c).await;
    let echoed = format!("{served:?}").contains(SECRET)
        || format!("{failed:?}").contains(SECRET)
        || server.log().contains(SECRET);
    let result = match (&failed, &fixed) {
        (Some((t, _)), Some((u, _))) => format!(
            "refused in {} ms; the good bundle active {} ms after it was put back; outside content {}",
            t.as_millis(),
            u.as_millis(),
            if echoed { "ECHOED" } else { "never echoed" }
        ),
        _ => "the poisoned or the good bundle was never reported".into(),
    };
    Outcome {
        volume: "1 reload: FIFO, 2 symlink loops, /dev/zero, symlink out".into(),
        expected: failed.is_some() && fixed.is_some() && !echoed,
        result,
    }
}

/// Case 9: a .tar.gz of symlink entries.
async fn archive_of_symlinks(server: &Server, entries: usize, evil: &Path) -> Outcome {
    let mut c = server.client().await;
    let before = server.status_of(&mut c).await;
    std::fs::rename(evil, &server.bundle).unwrap();
    let size = std::fs::metadata(&server.bundle).unwrap().len();
    server.sighup();
    let failed = server.outcome(&before, None, Duration::from_secs(40)).await;
    let named = failed.as_ref().is_some_and(|(_, s)| {
        s.last_error.as_ref().is_some_and(|e| {
            format!("{} {}", e.message, e.errors.join(" ")).contains("max_bundle_files")
        })
    });
    Outcome {
        volume: format!("{entries} entries, {:.1} MB", size as f64 / 1e6),
        result: match &failed {
            Some((t, _)) => format!("refused at max_bundle_files in {} ms", t.as_millis()),
            None => "never reported".into(),
        },
        expected: named,
    }
}

fn write_symlink_archive(to: &Path, entries: usize) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(to).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(std::io::BufWriter::new(gz));
    for i in 0..entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        tar.append_link(&mut header, format!("policies/l{i}"), "/etc/passwd")
            .unwrap();
    }
    tar.into_inner()
        .unwrap()
        .into_inner()
        .ok()
        .unwrap()
        .finish()
        .unwrap();
}

/// Case 11, first part: SIGHUPs from the moment the process has installed
/// its handlers and starts its first load (it logs "loading the first
/// bundle"; a signal before any process installs its handlers ends it)
/// until it serves. Returns the signals sent and when it served.
async fn first_load_storm(server: &Server) -> (u64, Option<Duration>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("loading the first bundle") {
        assert!(Instant::now() < deadline, "the first load never started");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(10) {
        let _ = hup(server.pid());
        sent += 1;
        if server.sock.exists()
            && let Ok(mut c) =
                tokio::time::timeout(Duration::from_millis(100), server.client()).await
            && c.get_bundle_status(GetBundleStatusRequest {})
                .await
                .is_ok_and(|s| !s.into_inner().revision.is_empty())
        {
            return (sent, Some(started.elapsed()));
        }
    }
    (sent, None)
}

/// Case 11, second part: SIGHUPs (each a reload) without pause while
/// clients call.
async fn serving_storm(server: &Server, seconds: f64, first: (u64, Option<Duration>)) -> Outcome {
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        let _ = hup(server.pid());
        sent += 1;
    }
    let mut c = server.client().await;
    let status = server.status_of(&mut c).await;
    Outcome {
        volume: format!(
            "{} SIGHUPs during the first load, {sent} over {seconds:.0} s while serving",
            first.0
        ),
        result: match first.1 {
            Some(t) => format!(
                "serving {} ms after the first load began; {} reloads, none failed",
                t.as_millis(),
                status.reloads_ok
            ),
            None => "never served".into(),
        },
        expected: first.1.is_some() && status.reloads_failed == 0,
    }
}

fn hup(pid: u32) -> std::io::Result<()> {
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .map(drop)
}

// --------------------------------------------------------------- requests

/// Case 3: distinct requests each small enough to be cached.
async fn distinct_cacheable(server: &Server, count: usize) -> Outcome {
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let sock = server.sock.clone();
            tokio::spawn(async move {
                let mut c = AuthorizerClient::new(channel(&sock).await);
                let mut ok = 0u64;
                for i in 0..count / 8 {
                    let mut r = frank();
                    let pad = "p".repeat(3500);
                    r.context.insert(
                        "app:pad".into(),
                        ContextValues {
                            values: vec![format!("{t}-{i}-{pad}"), pad],
                        },
                    );
                    ok += u64::from(c.authorize(r).await.is_ok());
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    Outcome {
        volume: format!("{count} distinct 7 KiB requests, 8 connections"),
        result: format!("{ok} decided"),
        expected: ok == count as u64 / 8 * 8,
    }
}

/// Case 3: batches whose items take ten times their wire size once decoded.
async fn wide_batches(server: &Server, per_connection: usize) -> Outcome {
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let sock = server.sock.clone();
            tokio::spawn(async move {
                let mut c = AuthorizerClient::new(channel(&sock).await);
                let requests: Vec<_> = (0..900)
                    .map(|n| {
                        let mut r = frank();
                        for k in 0..64 {
                            r.context.insert(
                                format!("app:k{t}-{n}-{k}"),
                                ContextValues {
                                    values: vec![String::new(); 26],
                                },
                            );
                        }
                        r
                    })
                    .collect();
                let batch = BatchAuthorizeRequest {
                    requests,
                    ..Default::default()
                };
                let mut decided = 0u64;
                let mut shed = 0u64;
                for _ in 0..per_connection {
                    match c.batch_authorize(batch.clone()).await {
                        Ok(r) if r.get_ref().responses.len() == 900 => decided += 1,
                        Err(s)
                            if s.code() == tonic::Code::ResourceExhausted
                                && s.message().contains("max_batch_decoded_bytes") =>
                        {
                            shed += 1
                        }
                        other => panic!("{:?}", other.map(|r| r.into_inner().responses.len())),
                    }
                }
                (decided, shed)
            })
        })
        .collect();
    let (mut decided, mut shed) = (0, 0);
    for t in tasks {
        let (d, s) = t.await.unwrap();
        decided += d;
        shed += s;
    }
    Outcome {
        volume: format!(
            "{} batches of 900 x 64 keys x 26 empty values (3.9 MB), 8 connections",
            per_connection * 8
        ),
        result: format!(
            "{decided} decided, {shed} refused as over max_batch_decoded_bytes before decoding"
        ),
        expected: decided + shed == per_connection as u64 * 8,
    }
}

/// Case 7: large distinct requests while nobody reads the decision log.
async fn stalled_log(server: &Server, count: usize) -> Outcome {
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let sock = server.sock.clone();
            tokio::spawn(async move {
                let mut c = AuthorizerClient::new(channel(&sock).await);
                let value = "v".repeat(4000);
                let mut late = 0u64;
                for i in 0..count / 4 {
                    let mut r = frank();
                    for k in 0..15 {
                        r.context.insert(
                            format!("app:k{k}"),
                            ContextValues {
                                values: vec![format!("{t}-{i}-{value}")],
                            },
                        );
                    }
                    let answer = tokio::time::timeout(Duration::from_secs(5), c.authorize(r)).await;
                    late += u64::from(!answer.is_ok_and(|a| a.is_ok()));
                }
                late
            })
        })
        .collect();
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    Outcome {
        volume: format!("{count} distinct 60 KiB requests, log stalled"),
        result: format!("{failed} not answered within 5 s"),
        expected: failed == 0,
    }
}

/// Case 4: the backtracking session policy, sent without pause.
async fn costly(server: &Server, seconds: f64) -> Outcome {
    let statement = serde_json::json!({
        "Effect": "Deny", "Action": "kms:*", "Resource": "*",
        "Condition": {"ForAnyValue:StringLike": {"app:tag": [format!("*{}b?", "a".repeat(2048))]}}
    });
    let policy =
        serde_json::json!({"Version": "2012-10-17", "Statement": vec![statement; 4]}).to_string();
    let request = AuthorizeRequest {
        principal: "arn:aws:sts::111122223333:assumed-role/KeyAdmin/ops".into(),
        action: "kms:DescribeKey".into(),
        resource: KEY.into(),
        session_policy: policy,
        context: [(
            "app:tag".to_owned(),
            ContextValues {
                values: vec!["a".repeat(4096); 14],
            },
        )]
        .into(),
        explain: false,
        min_serial: 0,
    };
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let sock = server.sock.clone();
            let request = request.clone();
            tokio::spawn(async move {
                let mut c = AuthorizerClient::new(channel(&sock).await);
                let started = Instant::now();
                let (mut refused, mut failed, mut latencies) = (0u64, 0u64, Vec::new());
                while started.elapsed().as_secs_f64() < seconds {
                    let t = Instant::now();
                    let r = c.authorize(request.clone()).await;
                    latencies.push(t.elapsed());
                    match r {
                        Ok(_) => {}
                        Err(e) if e.code() == tonic::Code::ResourceExhausted => refused += 1,
                        Err(_) => failed += 1,
                    }
                }
                (refused, failed, latencies)
            })
        })
        .collect();
    let (mut refused, mut failed, mut latencies) = (0, 0, Vec::new());
    for t in tasks {
        let (r, f, l) = t.await.unwrap();
        refused += r;
        failed += f;
        latencies.extend(l);
    }
    latencies.sort();
    let n = latencies.len();
    let p99 = latencies.get(n * 99 / 100).copied().unwrap_or_default();
    Outcome {
        volume: format!("{n} costly requests (57 KiB) over {seconds:.0} s, 2 connections"),
        // The attackers' own latency includes this process's scheduling on
        // the shared cores; the server's cost per request is what
        // benches/adversarial.rs measures.
        result: format!(
            "{refused} refused as too costly, {failed} other errors; their p99 {:.1} ms, slowest {:.1} ms",
            p99.as_secs_f64() * 1e3,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        ),
        expected: failed == 0 && p99 < Duration::from_millis(50),
    }
}

/// Cases 12 to 14: requests the server must refuse, each kind in turn.
async fn invalid(server: &Server, count: usize) -> Outcome {
    let mut c = server.client().await;
    let mut wrong = 0u64;
    let mut largest = 0usize;
    for i in 0..count {
        let mut r = frank();
        match i % 3 {
            0 => {
                r.context.insert(
                    format!("{}\u{1}", "k".repeat(4000)),
                    ContextValues { values: vec![] },
                );
            }
            1 => r.principal = "arn:aws:iam::111122223333:user/fr\0ank".into(),
            _ => r.action = "kms:Encr\u{7f}ypt".into(),
        }
        match c.authorize(r).await {
            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                largest = largest.max(s.message().len() + s.details().len());
            }
            _ => wrong += 1,
        }
    }
    let mut conn = h2_conn(&server.sock).await;
    let bodies = count / 3;
    for i in 0..bodies {
        conn = conn.ready().await.unwrap();
        let content_type = if i % 2 == 0 {
            "application/grpc"
        } else {
            "application/json"
        };
        let (response, mut send) = conn
            .send_request(
                grpc_post("/verdict.v1.Authorizer/Authorize", content_type),
                false,
            )
            .unwrap();
        send.send_data(
            Bytes::from_static(&[0, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]),
            true,
        )
        .unwrap();
        let (_, status) = grpc_status(response).await;
        if status.as_deref() != Some("3") {
            wrong += 1;
        }
    }
    Outcome {
        volume: format!(
            "{count} with control characters or 4 KiB keys, {bodies} undecodable or not gRPC"
        ),
        result: format!("all but {wrong} INVALID_ARGUMENT; largest status {largest} bytes"),
        expected: wrong == 0 && largest < 1024,
    }
}

// ------------------------------------------------------------ connections

async fn h2_conn(sock: &Path) -> h2::client::SendRequest<Bytes> {
    let io = tokio::net::UnixStream::connect(sock).await.unwrap();
    let (client, conn) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn grpc_post(path: &str, content_type: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(())
        .unwrap()
}

async fn grpc_status(response: h2::client::ResponseFuture) -> (u16, Option<String>) {
    let Ok(response) = response.await else {
        return (0, None);
    };
    let status = response.status().as_u16();
    if let Some(s) = response.headers().get("grpc-status") {
        return (status, Some(s.to_str().unwrap_or("?").to_owned()));
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        if chunk.is_err() {
            break;
        }
    }
    let trailers = body.trailers().await.ok().flatten();
    (
        status,
        trailers.and_then(|t| {
            t.get("grpc-status")
                .map(|s| s.to_str().unwrap_or("?").to_owned())
        }),
    )
}

/// How the attack's streams ended, by grpc-status ("reset" when the
/// stream ended without one: refused or reset by the server).
#[derive(Clone, Default)]
struct Statuses(Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>);

impl Statuses {
    fn record(&self, response: h2::client::ResponseFuture) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let key = grpc_status(response)
                .await
                .1
                .map_or_else(|| "reset".to_owned(), |s| format!("grpc-status {s}"));
            *this.0.lock().unwrap().entry(key).or_default() += 1;
        })
    }

    /// Whether every stream that ended did so with one of `allowed`.
    fn only(&self, allowed: &[&str]) -> bool {
        self.0
            .lock()
            .unwrap()
            .keys()
            .all(|k| allowed.contains(&k.as_str()))
    }

    fn summary(&self) -> String {
        let map = self.0.lock().unwrap();
        if map.is_empty() {
            return "none ended while the attack ran".into();
        }
        let parts: Vec<_> = map.iter().map(|(k, v)| format!("{v} {k}")).collect();
        format!("ended: {}", parts.join(", "))
    }
}

/// Case 5: connections opening streams that send headers and never a body.
async fn headers_only(
    server: &Server,
    connections: usize,
    per_second: u64,
    seconds: f64,
) -> Outcome {
    let opened = Arc::new(AtomicU64::new(0));
    let statuses = Statuses::default();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let sock = server.sock.clone();
            let opened = opened.clone();
            let statuses = statuses.clone();
            tokio::spawn(async move {
                let mut conn = h2_conn(&sock).await;
                let started = Instant::now();
                let mut held = Vec::new();
                let mut tick =
                    tokio::time::interval(Duration::from_micros(1_000_000 / per_second.max(1)));
                while started.elapsed().as_secs_f64() < seconds {
                    tick.tick().await;
                    let Ok(Ok(ready)) =
                        tokio::time::timeout(Duration::from_millis(100), conn.clone().ready())
                            .await
                    else {
                        continue;
                    };
                    conn = ready;
                    if let Ok((response, send)) = conn.send_request(
                        grpc_post("/verdict.v1.Authorizer/Authorize", "application/grpc"),
                        false,
                    ) {
                        opened.fetch_add(1, Ordering::Relaxed);
                        held.push((statuses.record(response), send));
                    }
                    held.retain(|(r, _)| !r.is_finished());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let n = opened.load(Ordering::Relaxed);
    Outcome {
        volume: format!(
            "{n} headers-only streams attempted over {seconds:.0} s, {connections} connection(s)"
        ),
        // DEADLINE_EXCEEDED at request_body_timeout_ms, or refused over
        // max_concurrent_streams.
        result: statuses.summary(),
        expected: statuses.only(&["grpc-status 4", "reset"]),
    }
}

/// Case 6: batch bodies declaring 4 MiB that send all but the last byte,
/// as fast as flow control allows, on `connections` connections.
async fn slow_bodies(server: &Server, connections: usize, seconds: f64) -> Outcome {
    let opened = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let statuses = Statuses::default();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let sock = server.sock.clone();
            let (opened, sent) = (opened.clone(), sent.clone());
            let statuses = statuses.clone();
            tokio::spawn(async move {
                let mut conn = h2_conn(&sock).await;
                let started = Instant::now();
                let mut streams = tokio::task::JoinSet::new();
                while started.elapsed().as_secs_f64() < seconds {
                    if streams.len() >= 100 {
                        let _ =
                            tokio::time::timeout(Duration::from_millis(50), streams.join_next())
                                .await;
                        continue;
                    }
                    let Ok(Ok(ready)) =
                        tokio::time::timeout(Duration::from_millis(100), conn.clone().ready())
                            .await
                    else {
                        continue;
                    };
                    conn = ready;
                    let Ok((response, send)) = conn.send_request(
                        grpc_post("/verdict.v1.Authorizer/BatchAuthorize", "application/grpc"),
                        false,
                    ) else {
                        break;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    let sent = sent.clone();
                    let left = Duration::from_secs_f64(seconds).saturating_sub(started.elapsed());
                    let ended = statuses.record(response);
                    streams.spawn(async move {
                        let _ = tokio::time::timeout(left, trickle(send, &sent)).await;
                        ended.abort();
                    });
                }
                streams.abort_all();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    Outcome {
        volume: format!(
            "{} bodies declaring 4 MiB attempted, {:.0} MiB sent over {seconds:.0} s, {connections} connections",
            opened.load(Ordering::Relaxed),
            sent.load(Ordering::Relaxed) as f64 / 1048576.0
        ),
        // DEADLINE_EXCEEDED at request_body_timeout_ms, RESOURCE_EXHAUSTED
        // when no batch turn came, or refused over max_concurrent_streams.
        result: statuses.summary(),
        expected: statuses.only(&["grpc-status 4", "grpc-status 8", "reset"]),
    }
}

/// Sends a 4 MiB gRPC message but its last byte, as flow control allows.
async fn trickle(mut send: h2::SendStream<Bytes>, sent: &AtomicU64) {
    let total: usize = 4 * 1024 * 1024;
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&u32::try_from(total).unwrap().to_be_bytes());
    if send.send_data(Bytes::from(prefix), false).is_err() {
        return;
    }
    let chunk = Bytes::from(vec![0x0a; 16 * 1024]);
    let mut left = total - 1;
    while left > 0 {
        send.reserve_capacity(left.min(chunk.len()));
        let Some(Ok(room)) = std::future::poll_fn(|cx| send.poll_capacity(cx)).await else {
            return;
        };
        let n = room.min(left).min(chunk.len());
        if n == 0 {
            continue;
        }
        if send.send_data(chunk.slice(..n), false).is_err() {
            return;
        }
        sent.fetch_add(n as u64, Ordering::Relaxed);
        left -= n;
    }
    std::future::pending::<()>().await;
}

/// Case 10: connections that never speak and connections that go quiet
/// after their handshake; afterwards a new client must be served.
async fn idle_connections(server: &Server, silent: usize, quiet: usize) -> Outcome {
    let mut held = Vec::new();
    for _ in 0..silent {
        held.push(tokio::net::UnixStream::connect(&server.sock).await.unwrap());
    }
    let mut quiet_conns = Vec::new();
    for _ in 0..quiet {
        let io = tokio::net::UnixStream::connect(&server.sock).await.unwrap();
        if let Ok(Ok((client, conn))) =
            tokio::time::timeout(Duration::from_secs(2), h2::client::handshake(io)).await
        {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            quiet_conns.push(client);
        }
    }
    let handshaken = quiet_conns.len();
    // The default handshake timeout is 10 s.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let mut closed = 0;
    for mut s in held {
        let mut buf = [0u8; 256];
        let gone = tokio::time::timeout(Duration::from_millis(50), async {
            loop {
                match tokio::io::AsyncReadExt::read(&mut s, &mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        closed += usize::from(gone.is_ok());
    }
    let mut fresh = server.client().await;
    let served = fresh.authorize(frank()).await.is_ok();
    Outcome {
        volume: format!("{silent} silent connections, {handshaken} idle after their handshake"),
        result: format!(
            "{closed} silent closed at the 10 s handshake timeout; a new client {}",
            if served { "served" } else { "NOT served" }
        ),
        expected: closed == silent && served,
    }
}

/// Case 10 at the open-file limit: silent connections past it while a
/// revocation is published.
async fn fd_limit_revocation(server: &Server, silent: usize) -> Outcome {
    const ERIN: &str = "arn:aws:iam::111122223333:user/erin";
    let mut c = server.client().await;
    let erin = || AuthorizeRequest {
        principal: ERIN.into(),
        ..frank()
    };
    assert_eq!(
        c.authorize(erin()).await.unwrap().into_inner().decision(),
        Decision::Allow
    );
    let mut held = Vec::new();
    for _ in 0..silent {
        if let Ok(s) = tokio::net::UnixStream::connect(&server.sock).await {
            held.push(s);
        }
    }
    let principals = server.bundle.join("principals.json");
    let text = std::fs::read_to_string(&principals).unwrap();
    std::fs::write(
        &principals,
        text.replace(
            r#""policies": ["kms/encrypt-decrypt-any-key-in-account-and-region"]"#,
            r#""policies": []"#,
        ),
    )
    .unwrap();
    server.sighup();
    let started = Instant::now();
    let mut took = None;
    while started.elapsed() < Duration::from_secs(5) {
        let r = c.authorize(erin()).await.unwrap().into_inner();
        if r.decision() != Decision::Allow {
            took = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(held);
    Outcome {
        volume: format!("{silent} silent connections at a 1,024-file limit"),
        result: match took {
            Some(t) => format!("revocation in effect after {} ms", t.as_millis()),
            None => "revocation NOT in effect".into(),
        },
        expected: took.is_some(),
    }
}

// -------------------------------------------------------------------- run

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let scale = args.scale;
    let n = |full: usize| ((full as f64 * scale).ceil() as usize).max(1);
    let secs = |full: f64| (full * scale).max(1.0);
    let wanted = |name: &str| args.only.as_deref().is_none_or(|o| name.contains(o));
    let mut rows = Vec::new();

    if wanted("poisoned-directory") {
        let mut s = Server::start(Start::default()).await;
        rows.push(measure!("poisoned-directory (1, 2, 8)", s, |s| {
            poisoned_directory(s)
        }));
    }
    if wanted("archive-of-symlinks") {
        let entries = n(4_096_000);
        let scratch = tempfile::tempdir().unwrap();
        let evil = scratch.path().join("evil.tar.gz");
        write_symlink_archive(&evil, entries);
        let mut s = Server::start(Start {
            archive: true,
            ..Start::default()
        })
        .await;
        rows.push(measure!("archive-of-symlinks (9)", s, |s| {
            archive_of_symlinks(s, entries, &evil)
        }));
    }
    if wanted("sighup-storm") {
        let mut s = Server::start(Start {
            no_wait: true,
            ..Start::default()
        })
        .await;
        let first = first_load_storm(&s).await;
        rows.push(measure!("sighup-storm (11)", s, |s| serving_storm(
            s,
            secs(10.0),
            first
        )));
    }
    if wanted("distinct-cacheable") {
        let mut s = Server::start(Start::default()).await;
        rows.push(measure!("distinct-cacheable (3)", s, |s| {
            distinct_cacheable(s, n(100_000))
        }));
    }
    if wanted("wide-batches") {
        let mut s = Server::start(Start::default()).await;
        rows.push(measure!("wide-batches (3)", s, |s| wide_batches(s, n(20))));
    }
    if wanted("costly-evaluation") {
        let mut s = Server::start(Start::default()).await;
        rows.push(measure!("costly-evaluation (4)", s, |s| costly(
            s,
            secs(20.0)
        )));
    }
    if wanted("headers-only") {
        let mut s = Server::start(Start::default()).await;
        rows.push(measure!("headers-only, one connection (5)", s, |s| {
            headers_only(s, 1, 1100, secs(20.0))
        }));
        let mut s = Server::start(Start::default()).await;
        rows.push(measure!("headers-only, 20 connections (5)", s, |s| {
            headers_only(s, 20, 1100, secs(20.0))
        }));
    }
    if wanted("slow-bodies") {
        let mut s = Server::start(Start::default()).await;
        rows.push(measure!("slow-bodies, 3 connections (6)", s, |s| {
            slow_bodies(s, 3, secs(20.0))
        }));
        let mut s = Server::start(Start::default()).await;
        rows.push(measure!("slow-bodies, 200 connections (6)", s, |s| {
            slow_bodies(s, 200, secs(20.0))
        }));
    }
    if wanted("stalled-log") {
        let mut s = Server::start(Start {
            env: vec![("VERDICT_DECISION_LOG", "stdout")],
            stall_stdout: true,
            ..Start::default()
        })
        .await;
        rows.push(measure!("stalled-log (7)", s, |s| stalled_log(s, n(5_000))));
    }
    if wanted("idle-connections") {
        let mut s = Server::start(Start::default()).await;
        rows.push(measure!("idle-connections (10)", s, |s| {
            idle_connections(s, n(5_000), n(2_000))
        }));
    }
    if wanted("fd-limit") {
        let mut s = Server::start(Start {
            nofile: Some(1024),
            ..Start::default()
        })
        .await;
        rows.push(measure!("fd-limit revocation (10)", s, |s| {
            fd_limit_revocation(s, n(3_000).max(1100))
        }));
    }
    if wanted("invalid") {
        let mut s = Server::start(Start::default()).await;
        rows.push(measure!("invalid requests (12, 13, 14)", s, |s| {
            invalid(s, n(30_000))
        }));
    }

    println!(
        "| attack (cases) | volume | legitimate calls ok | p99 | RSS before / peak / after (MiB) | what the server did |"
    );
    println!("|---|---|---|---|---|---|");
    let mut failed = 0;
    for r in &rows {
        let mark = if r.pass() { "" } else { " **FAILED**" };
        failed += usize::from(!r.pass());
        println!(
            "| {}{mark} | {} | {} / {} ({:.2}%) | {:.1} ms | {:.0} / {:.0} / {:.0} | {} |",
            r.attack,
            r.outcome.volume,
            r.ok,
            r.total,
            r.ok as f64 * 100.0 / r.total.max(1) as f64,
            r.p99.as_secs_f64() * 1e3,
            r.rss.0,
            r.rss.1,
            r.rss.2,
            r.outcome.result
        );
    }
    if failed > 0 {
        eprintln!("{failed} attack(s) broke a bound");
        std::process::exit(1);
    }
}
