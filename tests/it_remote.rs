//! Remote bundle sources against real servers on 127.0.0.1: nginx over
//! HTTPS (a test CA) and HTTP, and a distribution registry. `verdict
//! serve` polls with `If-None-Match` (nginx logs the 304s, verdict does
//! not reload), takes a new bundle within a poll, refuses every kind of bad
//! download while the last good bundle keeps serving, starts cold from its
//! persisted copy while the source is down (and refuses a tampered copy),
//! and pulls from an OCI registry what `verdict bundle push` published.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::remote::{self, Nginx, Registry, TestCa, tar_gz, untar};
use support::*;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use verdict::proto::{self, AuthorizeRequest};

type Client = proto::authorizer_client::AuthorizerClient<tonic::transport::Channel>;

fn verdict() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_verdict"));
    c.current_dir(root()).env_remove("RUST_LOG");
    c
}

fn run(args: &[&str]) -> String {
    let o = verdict().args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// A `verdict serve` child, killed and reaped when dropped.
struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Serving {
    /// Stop with SIGTERM and wait.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Serve `bundle` on the Unix socket `sock`, polling every 200 ms.
async fn serve(bundle: &str, sock: &Path, env: &[(&str, &str)]) -> (Serving, Client) {
    let _ = std::fs::remove_file(sock);
    let child = verdict()
        .args(["serve", "--bundle", bundle, "--uds", sock.to_str().unwrap()])
        .env("VERDICT_POLL_INTERVAL_MS", "200")
        .env("VERDICT_BUNDLE_BACKOFF_MAX_MS", "400")
        .envs(env.iter().copied())
        .stderr(Stdio::null())
        .spawn()
        .map(Serving)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the socket never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (child, Client::new(uds_channel(sock).await))
}

async fn status(c: &Client) -> proto::BundleStatus {
    c.clone()
        .get_bundle_status(proto::GetBundleStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn status_until(
    c: &Client,
    what: &str,
    ready: impl Fn(&proto::BundleStatus) -> bool,
) -> proto::BundleStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(c).await;
        if ready(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn source(s: &proto::BundleStatus) -> proto::SourceStatus {
    s.source_status.clone().unwrap_or_default()
}

async fn health(sock: &Path) -> ServingStatus {
    let mut h = HealthClient::new(uds_channel(sock).await);
    let r = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: "verdict.v1.Authorizer".into(),
        })
        .await
        .unwrap()
        .into_inner();
    r.status()
}

/// frank's `kms:Encrypt` on the example key: the revision that answered,
/// or the call's error code.
async fn frank_encrypts(c: &Client) -> Result<String, tonic::Code> {
    c.clone()
        .authorize(AuthorizeRequest {
            principal: "arn:aws:iam::111122223333:user/frank".into(),
            action: "kms:Encrypt".into(),
            resource: KEY.into(),
            ..Default::default()
        })
        .await
        .map(|r| {
            let r = r.into_inner();
            assert_eq!(r.decision(), proto::Decision::Allow);
            r.bundle_revision
        })
        .map_err(|s| s.code())
}

/// Signing keys: `signer` (configured) and `stranger` (not).
struct Keys {
    private: PathBuf,
    public: PathBuf,
    stranger: PathBuf,
}

impl Keys {
    fn new(d: &Path) -> Self {
        let k = Self {
            private: d.join("signer.key"),
            public: d.join("signer.pub"),
            stranger: d.join("stranger.key"),
        };
        for (private, public) in [
            (&k.private, &k.public),
            (&k.stranger, &d.join("stranger.pub")),
        ] {
            run(&[
                "bundle",
                "keygen",
                "--private",
                private.to_str().unwrap(),
                "--public",
                public.to_str().unwrap(),
            ]);
        }
        k
    }
}

/// The example bundle as revision `r<serial>`, built by `verdict bundle
/// build`, signed with `key` when given.
fn archive(d: &Path, serial: u64, key: Option<&Path>) -> Vec<u8> {
    let dir = d.join(format!("src-{serial}"));
    if !dir.exists() {
        copy_dir(&root().join(KMS), &dir);
        std::fs::write(
            dir.join("manifest.json"),
            format!(r#"{{"revision": "r{serial}", "serial": {serial}}}"#),
        )
        .unwrap();
    }
    let signer = key
        .and_then(Path::file_stem)
        .map_or("unsigned".into(), |s| s.to_string_lossy());
    let out = d.join(format!("r{serial}-{signer}.tar.gz"));
    let mut args = vec![
        "bundle",
        "build",
        dir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    if let Some(key) = key {
        args.extend(["--sign", key.to_str().unwrap()]);
    }
    run(&args);
    std::fs::read(out).unwrap()
}

/// `entries` with `f` applied, as a new archive.
fn altered(bytes: &[u8], f: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> Vec<u8> {
    let mut entries = untar(bytes);
    f(&mut entries);
    tar_gz(&entries)
}

/// Over HTTPS with a test CA and keys configured: unchanged polls are 304s
/// (nginx logs them with the ETag sent; verdict does not reload), a new
/// bundle is active within a poll, and each bad download is refused with
/// its error reported while the last good revision keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_polls_use_etags_and_bad_downloads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new(d);
    let mut nginx = Nginx::start(&d.join("nginx"), &ca);
    let keys = Keys::new(d);
    nginx.publish("bundle.tar.gz", &archive(d, 1, Some(&keys.private)));
    let url = nginx.https_url("bundle.tar.gz");
    let sock = d.join("v.sock");
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", remote::free_port())
        .parse()
        .unwrap();
    let (serving, c) = serve(
        &url,
        &sock,
        &[
            ("VERDICT_METRICS_LISTEN", &metrics.to_string()),
            ("VERDICT_BUNDLE_CA_FILE", ca.ca.to_str().unwrap()),
            ("VERDICT_BUNDLE_PUBLIC_KEYS", keys.public.to_str().unwrap()),
            ("VERDICT_MAX_BUNDLE_DOWNLOAD_BYTES", "200000"),
        ],
    )
    .await;
    let s = status_until(&c, "r1 loads", |s| s.revision == "r1").await;
    let src = source(&s);
    assert_eq!(src.kind, "https");
    assert_eq!(src.address, url);
    assert!(!src.tag.is_empty(), "{src:?}");
    assert!(
        s.signature.starts_with("verified by key"),
        "{}",
        s.signature
    );
    assert_eq!(health(&sock).await, ServingStatus::Serving);

    // Unchanged: 304s with the ETag, no reload.
    let etag = src.tag.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let not_modified = nginx
            .access_log()
            .iter()
            .filter(|l| l.contains(" 304 ") && l.contains(&etag))
            .count();
        if not_modified >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", nginx.access_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = status(&c).await;
    assert_eq!((s.reloads_ok, s.generation), (1, 1), "a 304 never reloads");
    assert_eq!(source(&s).last_poll_result, "not_modified");
    assert_eq!(
        nginx
            .access_log()
            .iter()
            .filter(|l| l.contains(" 200 "))
            .count(),
        1,
        "one download"
    );
    let (_, text) = http_get(metrics, "/metrics").await;
    let polls = |result: &str| {
        text.lines()
            .filter(|l| {
                l.starts_with("verdict_bundle_polls_total")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    assert_eq!(polls("loaded"), 1, "{text}");
    assert!(polls("not_modified") >= 3, "{text}");

    // A new revision is active within a poll interval (200 ms; the bound
    // here leaves room for a loaded machine).
    nginx.publish("bundle.tar.gz", &archive(d, 2, Some(&keys.private)));
    let published = Instant::now();
    status_until(&c, "r2 loads", |s| s.revision == "r2").await;
    assert!(published.elapsed() < Duration::from_secs(3));

    let good = archive(d, 3, Some(&keys.private));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "signature file removed",
            altered(&good, |e| e.retain(|(p, _)| p != ".signatures.json")),
            "`.signatures.json` is missing",
        ),
        (
            "signed with an unknown key",
            archive(d, 3, Some(&keys.stranger)),
            "which no configured public key has",
        ),
        (
            "one file modified",
            altered(&good, |e| {
                let (_, m) = e.iter_mut().find(|(p, _)| p == "manifest.json").unwrap();
                *m = br#"{"revision": "r3-modified", "serial": 3}"#.to_vec();
            }),
            "differs from the signed file",
        ),
        (
            "a file added that is not listed",
            altered(&good, |e| {
                e.push((
                    "policies/extra.json".into(),
                    br#"{"Version": "2012-10-17", "Statement": []}"#.to_vec(),
                ))
            }),
            "is in the bundle but not in `.signatures.json`",
        ),
        (
            "a listed file removed",
            altered(&good, |e| e.retain(|(p, _)| p != "grants.json")),
            "is listed in `.signatures.json` but not in the bundle",
        ),
        (
            "a truncated download",
            good[..good.len() / 2].to_vec(),
            "archive",
        ),
        (
            "a body over the size limit",
            vec![0u8; 300_000],
            "max_bundle_download_bytes",
        ),
    ];
    for (what, bytes, needle) in cases {
        nginx.publish("bundle.tar.gz", &bytes);
        let s = status_until(&c, what, |s| source(s).last_error.contains(needle)).await;
        assert_eq!(s.revision, "r2", "{what}: the last good revision serves");
        assert_eq!(frank_encrypts(&c).await, Ok("r2".into()), "{what}");
    }
    nginx.publish("bundle.tar.gz", &good);
    let s = status_until(&c, "r3 loads", |s| s.revision == "r3").await;
    assert!(source(&s).last_error.is_empty(), "{s:?}");
    serving.stop();
}

/// Over HTTP (allowed), with `bundle_cache_dir`: a restart while nginx is
/// down serves the persisted copy within a second, and the first poll
/// after nginx returns sends the persisted ETag and picks up the newer
/// bundle. A tampered persisted copy is refused: NOT_SERVING, Authorize
/// UNAVAILABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_serves_the_persisted_copy_and_refuses_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new(d);
    let mut nginx = Nginx::start(&d.join("nginx"), &ca);
    let keys = Keys::new(d);
    nginx.publish("bundle.tar.gz", &archive(d, 1, Some(&keys.private)));
    let url = nginx.http_url("bundle.tar.gz");
    let cache = d.join("cache");
    let sock = d.join("v.sock");
    let env = [
        ("VERDICT_ALLOW_INSECURE_BUNDLE_SOURCE", "true"),
        ("VERDICT_BUNDLE_CACHE_DIR", cache.to_str().unwrap()),
        ("VERDICT_BUNDLE_PUBLIC_KEYS", keys.public.to_str().unwrap()),
    ];
    let (serving, c) = serve(&url, &sock, &env).await;
    let s = status_until(&c, "r1 persisted", |s| {
        s.revision == "r1" && source(s).persisted.starts_with("written")
    })
    .await;
    assert_eq!(source(&s).kind, "http");
    let etag = source(&s).tag;
    serving.stop();

    // Cold start with the source down.
    nginx.stop();
    let started = Instant::now();
    let (serving, c) = serve(&url, &sock, &env).await;
    while health(&sock).await != ServingStatus::Serving {
        assert!(started.elapsed() < Duration::from_secs(5), "never SERVING");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let serving_after = started.elapsed();
    let s = status(&c).await;
    assert_eq!(s.revision, "r1");
    assert!(source(&s).persisted.starts_with("served at start"), "{s:?}");
    assert_eq!(frank_encrypts(&c).await, Ok("r1".into()));
    assert!(
        serving_after < Duration::from_secs(1),
        "SERVING after {serving_after:?}"
    );

    // The source returns with a newer bundle; the first request carries
    // the persisted ETag.
    nginx.publish("bundle.tar.gz", &archive(d, 2, Some(&keys.private)));
    let requests_before = nginx.access_log().len();
    nginx.resume();
    status_until(&c, "r2 loads", |s| s.revision == "r2").await;
    let log = nginx.access_log();
    let first = &log[requests_before];
    assert!(
        first.contains(&format!("\"{etag}\"")) || first.contains(&etag),
        "{first}"
    );
    assert!(first.contains(" 200 "), "{first}");
    serving.stop();

    // A tampered copy whose record was rewritten to match: the signature
    // check refuses it.
    nginx.stop();
    let copy = cache.join("bundle.tar.gz");
    let tampered = altered(&std::fs::read(&copy).unwrap(), |e| {
        let (_, m) = e.iter_mut().find(|(p, _)| p == "manifest.json").unwrap();
        *m = br#"{"revision": "evil", "serial": 9}"#.to_vec();
    });
    std::fs::write(&copy, &tampered).unwrap();
    let record = cache.join("bundle.json");
    let mut r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    r["sha256"] = sha256_hex(&tampered).into();
    std::fs::write(&record, serde_json::to_vec(&r).unwrap()).unwrap();
    let (serving, c) = serve(&url, &sock, &env).await;
    let s = status_until(&c, "the copy is refused", |s| {
        source(s).persisted.starts_with("refused")
    })
    .await;
    assert!(s.revision.is_empty(), "{s:?}");
    assert!(
        source(&s)
            .persisted
            .contains("differs from the signed file"),
        "{s:?}"
    );
    assert_eq!(health(&sock).await, ServingStatus::NotServing);
    assert_eq!(frank_encrypts(&c).await, Err(tonic::Code::Unavailable));
    // When the source returns, its bundle loads and the server reports
    // SERVING.
    nginx.resume();
    status_until(&c, "r2 loads from the source", |s| s.revision == "r2").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while health(&sock).await != ServingStatus::Serving {
        assert!(
            Instant::now() < deadline,
            "never SERVING after the source returned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(frank_encrypts(&c).await, Ok("r2".into()));
    serving.stop();
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `verdict bundle push` publishes to a registry; `serve --bundle oci://…`
/// loads it, picks up a retagged push, and an unchanged tag costs no
/// download (the registry serves the layer once per digest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_registry_push_and_pull() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let registry = Registry::start(&d.join("registry"));
    let reference = format!("oci://127.0.0.1:{}/verdict/kms:live", registry.port);
    let push = |serial: u64| {
        let file = d.join(format!("push-{serial}.tar.gz"));
        std::fs::write(&file, archive(d, serial, None)).unwrap();
        let out = run(&[
            "bundle",
            "push",
            file.to_str().unwrap(),
            &reference,
            "--allow-insecure",
        ]);
        let digest = out.trim().rsplit('@').next().unwrap().to_owned();
        assert!(digest.starts_with("sha256:"), "{out}");
        digest
    };
    let first = push(1);
    let sock = d.join("v.sock");
    let (serving, c) = serve(
        &reference,
        &sock,
        &[("VERDICT_ALLOW_INSECURE_BUNDLE_SOURCE", "true")],
    )
    .await;
    let s = status_until(&c, "r1 loads", |s| s.revision == "r1").await;
    assert_eq!(source(&s).kind, "oci");
    assert_eq!(source(&s).tag, first);
    assert_eq!(frank_encrypts(&c).await, Ok("r1".into()));
    // Unchanged: several polls, no new download, no reload.
    status_until(&c, "polls go on", |s| {
        source(s).last_poll_result == "not_modified"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s = status(&c).await;
    assert_eq!(s.reloads_ok, 1, "{s:?}");
    let blob_gets = |log: &str| {
        log.lines()
            .filter(|l| l.contains("\"GET /v2/verdict/kms/blobs/sha256:"))
            .count()
    };
    assert_eq!(blob_gets(&registry.log()), 1, "{}", registry.log());

    let second = push(2);
    let s = status_until(&c, "r2 loads", |s| s.revision == "r2").await;
    assert_eq!(source(&s).tag, second);
    assert_eq!(blob_gets(&registry.log()), 2);
    serving.stop();

    // Pinned by digest: the first push, though the tag has moved on.
    let pinned = format!("oci://127.0.0.1:{}/verdict/kms@{first}", registry.port);
    let (serving, c) = serve(
        &pinned,
        &d.join("pinned.sock"),
        &[("VERDICT_ALLOW_INSECURE_BUNDLE_SOURCE", "true")],
    )
    .await;
    let s = status_until(&c, "the pinned r1 loads", |s| s.revision == "r1").await;
    assert_eq!(source(&s).tag, first);
    serving.stop();
}
