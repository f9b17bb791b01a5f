//! What the soak and abuse harnesses share: the repository root, a copy of
//! a bundle directory, a gRPC channel over a Unix socket, and a process's
//! resident memory.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "a harness helper: each harness uses what it needs, and fails loudly"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copy a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A channel over the Unix socket at `sock`.
pub async fn channel(sock: &Path) -> Channel {
    let sock = sock.to_path_buf();
    Endpoint::try_from("http://localhost")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            // The socket's file appears when it is bound, a moment before
            // it listens: a refused connection is tried again.
            async move {
                for _ in 0..400 {
                    match tokio::net::UnixStream::connect(&sock).await {
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        other => return other.map(TokioIo::new),
                    }
                }
                tokio::net::UnixStream::connect(&sock)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
        .unwrap()
}

/// The resident memory of process `pid`, in MiB (0 when it is gone).
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
