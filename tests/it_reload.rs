//! Hot reload under load: clients call Authorize continuously while the
//! bundle is replaced 50 times (on disk as Kubernetes updates a ConfigMap
//! volume: a new version directory, then an atomic swap of `..data`; and
//! on an HTTPS server polled by verdict),
//! alternating two revisions with different decisions and some broken
//! bundles. No call fails, every response's decision is the one its
//! reported revision gives, and a broken bundle never becomes active.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::remote;
use support::*;
use verdict::proto::{self, AuthorizeRequest};

const USER: &str = "arn:aws:iam::111122223333:user/u";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    Allow,
    Deny,
    Broken,
}

/// Version `i` of the bundle: its revision and files.
fn version(i: usize, v: Version) -> (String, Vec<(String, Vec<u8>)>) {
    let revision = match v {
        Version::Allow => format!("allow-{i}"),
        Version::Deny => format!("deny-{i}"),
        Version::Broken => format!("broken-{i}"),
    };
    let effect = if v == Version::Deny { "Deny" } else { "Allow" };
    let principals = if v == Version::Broken {
        r#"{"principals": {"arn:aws:iam::111122223333:user/u": {"policies": ["p"]}"#.to_owned()
    } else {
        format!(r#"{{"principals": {{"{USER}": {{"policies": ["p"]}}}}}}"#)
    };
    let files = vec![
        (
            "manifest.json".to_owned(),
            format!(r#"{{"revision": "{revision}"}}"#).into_bytes(),
        ),
        (
            "policies/p.json".to_owned(),
            format!(r#"{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}, {{"Effect": "{effect}", "Action": "s3:GetObject", "Resource": "*"}}]}}"#).into_bytes(),
        ),
        ("principals.json".to_owned(), principals.into_bytes()),
    ];
    (revision, files)
}

/// Write version `i` as Kubernetes updates a ConfigMap volume.
fn write_version(dir: &Path, i: usize, v: Version) -> String {
    let (revision, files) = version(i, v);
    let vdir = dir.join(format!("..v{i:03}"));
    std::fs::create_dir_all(vdir.join("policies")).unwrap();
    for (path, bytes) in files {
        std::fs::write(vdir.join(path), bytes).unwrap();
    }
    // Swap `..data` atomically, as the kubelet does.
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..v{i:03}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_never_fails_a_call_nor_mixes_revisions() {
    let dir = tempfile::tempdir().unwrap();
    write_version(dir.path(), 0, Version::Allow);
    for name in ["manifest.json", "policies", "principals.json"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.path().join(name)).unwrap();
    }
    let config = config(
        dir.path(),
        None,
        &[
            ("VERDICT_RELOAD_DEBOUNCE_MS", "5"),
            ("VERDICT_POLL_INTERVAL_MS", "50"),
        ],
    );
    under_load(&config, |i, v| write_version(dir.path(), i, v)).await;
}

/// The same, with the bundle fetched over HTTPS from nginx (polled every
/// 50 ms with `If-None-Match`) instead of read from a directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_from_an_https_source() {
    let dir = tempfile::tempdir().unwrap();
    let ca = remote::TestCa::new(dir.path());
    let mut nginx = remote::Nginx::start(&dir.path().join("nginx"), &ca);
    let (_, files) = version(0, Version::Allow);
    nginx.publish("b.tar.gz", &remote::tar_gz(&files));
    let url = nginx.https_url("b.tar.gz");
    let config = config(
        Path::new(&url),
        None,
        &[
            ("VERDICT_POLL_INTERVAL_MS", "50"),
            ("VERDICT_BUNDLE_BACKOFF_MAX_MS", "100"),
            ("VERDICT_BUNDLE_CA_FILE", ca.ca.to_str().unwrap()),
        ],
    );
    under_load(&config, |i, v| {
        let (revision, files) = version(i, v);
        nginx.publish("b.tar.gz", &remote::tar_gz(&files));
        revision
    })
    .await;
}

/// Call Authorize from four clients while `publish` puts out 50 versions.
async fn under_load(
    config: &verdict::config::Config,
    mut publish: impl FnMut(usize, Version) -> String,
) {
    let running = start(config).await;
    let channel = tcp_channel(&running).await;
    let stop = Arc::new(AtomicBool::new(false));
    let request = AuthorizeRequest {
        principal: USER.into(),
        action: "s3:GetObject".into(),
        resource: "arn:aws:s3:::b/k".into(),
        ..Default::default()
    };
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut c = proto::authorizer_client::AuthorizerClient::new(channel.clone());
        let stop = stop.clone();
        let request = request.clone();
        clients.push(tokio::spawn(async move {
            let mut seen: BTreeMap<String, (usize, usize)> = BTreeMap::new();
            let mut failures = Vec::new();
            let mut calls = 0usize;
            while !stop.load(Ordering::Relaxed) {
                calls += 1;
                match c.authorize(request.clone()).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        let e = seen.entry(r.bundle_revision.clone()).or_default();
                        match r.decision() {
                            proto::Decision::Allow => e.0 += 1,
                            _ => e.1 += 1,
                        }
                        let want = if r.bundle_revision.starts_with("allow-") {
                            proto::Decision::Allow
                        } else {
                            proto::Decision::ExplicitDeny
                        };
                        if r.decision() != want || r.bundle_revision.starts_with("broken-") {
                            failures.push(format!(
                                "{} answered {:?}",
                                r.bundle_revision,
                                r.decision()
                            ));
                        }
                    }
                    Err(e) => failures.push(format!("call failed: {e}")),
                }
            }
            (calls, seen, failures)
        }));
    }

    for i in 1..=50 {
        let v = match i % 5 {
            0 => Version::Broken,
            1 | 3 => Version::Deny,
            _ => Version::Allow,
        };
        publish(i, v);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // A last, good version (a poll may have missed the one before the
    // broken 50th); wait until it is active.
    let last_good = publish(51, Version::Allow);
    let mut c = client(&running).await;
    let mut active = String::new();
    for _ in 0..200 {
        active = c
            .get_bundle_status(proto::GetBundleStatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .revision;
        if active == last_good {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut revisions = BTreeMap::new();
    let mut total = 0;
    for h in clients {
        let (calls, seen, failures) = h.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        total += calls;
        for (rev, counts) in seen {
            let e: &mut (usize, usize) = revisions.entry(rev).or_default();
            e.0 += counts.0;
            e.1 += counts.1;
        }
    }
    assert_eq!(active, last_good, "the last good bundle becomes active");
    let status = running.reloader.status();
    assert!(
        status.reloads_failed >= 1,
        "broken bundles were seen and refused"
    );
    assert!(!revisions.keys().any(|r| r.starts_with("broken-")));
    assert!(
        revisions.len() >= 10,
        "reloads happened under load: {revisions:?}"
    );
    assert!(total > 1000, "{total} calls");
    running.shutdown().await;
}

/// A `.tar.gz` in a ConfigMap volume (the Kubernetes manifests' layout:
/// `bundle.tar.gz` a link through `..data`): the kubelet's swap of `..data`
/// is seen by the file watch alone (the periodic check is off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_in_a_configmap_volume_reloads_on_the_data_swap() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let swap = |i: usize| {
        let (revision, files) = version(i, Version::Allow);
        let stamp = d.join(format!("..v{i:03}"));
        std::fs::create_dir_all(&stamp).unwrap();
        std::fs::write(stamp.join("bundle.tar.gz"), remote::tar_gz(&files)).unwrap();
        let tmp = d.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("..v{i:03}"), &tmp).unwrap();
        std::fs::rename(&tmp, d.join("..data")).unwrap();
        revision
    };
    swap(0);
    std::os::unix::fs::symlink("..data/bundle.tar.gz", d.join("bundle.tar.gz")).unwrap();
    let config = config(
        &d.join("bundle.tar.gz"),
        None,
        &[
            ("VERDICT_RELOAD_DEBOUNCE_MS", "5"),
            ("VERDICT_POLL_INTERVAL_MS", "0"),
        ],
    );
    let running = start(&config).await;
    let mut c = client(&running).await;
    for i in 1..=3 {
        let want = swap(i);
        let mut active = String::new();
        for _ in 0..200 {
            active = c
                .get_bundle_status(proto::GetBundleStatusRequest {})
                .await
                .unwrap()
                .into_inner()
                .revision;
            if active == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(active, want);
    }
    running.shutdown().await;
}
