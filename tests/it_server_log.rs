//! The server log of the real binary with `log_format = "json"`: flat JSON
//! lines (`time`, `level`, `msg`, `target`, then fields), no Rust debug
//! text, and a client's refused HTTP/2 named once per connection with the
//! peer and a hint: a request on the Unix socket whose `:authority` is the
//! socket's path (what grpcio sends by default), and a client that speaks
//! HTTP/1.1 to the gRPC port.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

/// An HPACK literal header field without indexing, with a literal name.
fn literal(name: &str, value: &str) -> Vec<u8> {
    assert!(name.len() < 127 && value.len() < 127);
    let mut b = vec![0x00, name.len() as u8];
    b.extend(name.as_bytes());
    b.push(value.len() as u8);
    b.extend(value.as_bytes());
    b
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// A gRPC request's HEADERS on `stream` with `authority`, ending the stream.
fn headers(stream: u32, authority: &str) -> Vec<u8> {
    // :method POST, :scheme http (static table entries 3 and 6).
    let mut block = vec![0x83, 0x86];
    block.extend(literal(":path", "/verdict.v1.Authorizer/Authorize"));
    block.extend(literal(":authority", authority));
    block.extend(literal("content-type", "application/grpc"));
    block.extend(literal("te", "trailers"));
    // END_HEADERS | END_STREAM
    frame(0x1, 0x5, stream, &block)
}

/// Read frames until a RST_STREAM on `stream`; its error code.
fn reset_code(conn: &mut std::os::unix::net::UnixStream, stream: u32) -> u32 {
    loop {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head).unwrap();
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0; len];
        conn.read_exact(&mut payload).unwrap();
        let on = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if head[3] == 0x3 && on == stream {
            return u32::from_be_bytes(payload[..4].try_into().unwrap());
        }
    }
}

/// Open a connection on the socket and send requests with the socket's
/// path as their authority; each is reset with PROTOCOL_ERROR.
fn bad_authority(sock: &Path, requests: u32) {
    let mut conn = std::os::unix::net::UnixStream::connect(sock).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    conn.write_all(&frame(0x4, 0, 0, &[])).unwrap();
    for i in 0..requests {
        let stream = 1 + 2 * i;
        conn.write_all(&headers(stream, sock.to_str().unwrap()))
            .unwrap();
        assert_eq!(reset_code(&mut conn, stream), 1, "PROTOCOL_ERROR");
    }
}

/// The server's log lines as they come, on a channel.
fn lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Lines until one whose `msg` contains `msg` (all of them, that one last).
fn until(rx: &mpsc::Receiver<String>, msg: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line with {msg:?}; saw {seen:#?}"));
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let done = value["msg"].as_str().is_some_and(|m| m.contains(msg));
        seen.push(value);
        if done {
            return seen;
        }
    }
}

#[test]
fn json_lines_are_flat_and_refused_http2_is_named_once_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("verdict.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .current_dir(root())
        .env_remove("RUST_LOG")
        .args(["serve", "--bundle", KMS, "--listen", "127.0.0.1:0", "--uds"])
        .arg(&sock)
        .env("VERDICT_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let start = until(&rx, "verdict is serving");
    for line in &start {
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in ["time", "level", "msg", "target"] {
            assert!(keys.contains(&key), "{key} missing: {line}");
        }
        for value in line.as_object().unwrap().values() {
            assert!(!value.is_object(), "nested: {line}");
            let text = value.to_string();
            assert!(!text.contains("Some(") && !text.contains("None"), "{line}");
        }
    }
    let serving = start.last().unwrap();
    assert_eq!(serving["level"], "info");
    assert_eq!(serving["target"], "verdict::app");
    assert!(serving["time"].as_str().unwrap().ends_with('Z'));
    let tcp: std::net::SocketAddr = serving["tcp"].as_str().unwrap().parse().unwrap();

    // Two bad requests on one connection: one line.
    bad_authority(&sock, 2);
    let refused = until(&rx, "PROTOCOL_ERROR");
    let line = refused.last().unwrap();
    assert_eq!(line["level"], "warn");
    assert_eq!(line["peer"], "the Unix socket");
    assert!(
        line["hint"]
            .as_str()
            .unwrap()
            .contains("grpc.default_authority"),
        "{line}"
    );
    // HTTP/1.1 to the gRPC port, then another bad connection: the
    // HTTP/1.1 client is named, and the second connection gets its own
    // line (so the first connection logged exactly one).
    let mut http1 = std::net::TcpStream::connect(tcp).unwrap();
    http1
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let after_first = until(&rx, "HTTP/2 preface");
    let http1_line = after_first.last().unwrap();
    assert_eq!(http1_line["sent"], "GET / HTTP/1.1..");
    assert!(
        http1_line["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    bad_authority(&sock, 1);
    let between = until(&rx, "PROTOCOL_ERROR");
    assert!(
        after_first
            .iter()
            .chain(&between[..between.len() - 1])
            .all(|l| !l["msg"].as_str().unwrap().contains("PROTOCOL_ERROR")),
        "{after_first:#?} {between:#?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
