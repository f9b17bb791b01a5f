//! Telling an operator why a client's HTTP/2 was refused. The HTTP/2 server
//! answers a malformed request with a bare PROTOCOL_ERROR and logs nothing
//! an operator sees; the commonest cause is a gRPC client on the Unix
//! socket that sends the socket's path as `:authority`, which is not a
//! valid authority. The frames the server writes are scanned (frame
//! headers only; payloads are skipped by length) for a RST_STREAM or
//! GOAWAY carrying PROTOCOL_ERROR, and the first of a connection is logged
//! at warn with the peer and a hint. The first bytes a client sends are
//! checked against the HTTP/2 preface, so that a client speaking HTTP/1.1
//! (or TLS to the plaintext port) is named too.

/// The bytes every HTTP/2 client sends first.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const HEADER: usize = 9;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const PROTOCOL_ERROR: u32 = 0x1;

/// Where the scan of the server's frames is.
#[derive(Debug, Default)]
pub(crate) struct FrameScan {
    /// The frame header being read, and how much of it is read.
    header: [u8; HEADER],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    left: usize,
    /// Payload bytes read so far of the current frame.
    at: usize,
    /// The current frame's type.
    kind: u8,
    /// The error code being read (RST_STREAM: payload 0..4; GOAWAY: 4..8).
    code: u32,
    /// A PROTOCOL_ERROR was found (and reported); the scan stops.
    found: bool,
}

impl FrameScan {
    /// Pass `bytes` the server wrote; true the first time they complete a
    /// RST_STREAM or GOAWAY with PROTOCOL_ERROR.
    pub(crate) fn written(&mut self, mut bytes: &[u8]) -> bool {
        let before = self.found;
        while !bytes.is_empty() && !self.found {
            if self.have < HEADER {
                let take = (HEADER - self.have).min(bytes.len());
                let (head, rest) = bytes.split_at(take);
                if let Some(dst) = self.header.get_mut(self.have..self.have + take) {
                    dst.copy_from_slice(head);
                }
                self.have += take;
                bytes = rest;
                if self.have == HEADER {
                    let [a, b, c, kind, ..] = self.header;
                    self.left = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                    self.kind = kind;
                    self.at = 0;
                    self.code = 0;
                    if self.left == 0 {
                        self.have = 0;
                    }
                }
                continue;
            }
            let code_at = match self.kind {
                RST_STREAM => Some(0..4),
                GOAWAY => Some(4..8),
                _ => None,
            };
            let take = match &code_at {
                // Read the code's bytes one at a time; skip the rest.
                Some(range) if range.contains(&self.at) => 1,
                Some(range) if self.at < range.start => range.start - self.at,
                _ => self.left,
            }
            .min(bytes.len())
            .min(self.left);
            if let (Some(range), Some(&byte)) = (&code_at, bytes.first())
                && range.contains(&self.at)
            {
                self.code = self.code << 8 | u32::from(byte);
                if self.at + 1 == range.end && self.code == PROTOCOL_ERROR {
                    self.found = true;
                }
            }
            self.at += take;
            self.left -= take;
            bytes = bytes.get(take..).unwrap_or_default();
            if self.left == 0 {
                self.have = 0;
            }
        }
        self.found && !before
    }
}

/// What a client sent first, when it is not the HTTP/2 preface: its
/// printable start (16 bytes at most, others as `.`).
pub(crate) fn not_preface(first: &[u8]) -> Option<String> {
    let n = first.len().min(PREFACE.len());
    let (got, want) = (first.get(..n)?, PREFACE.get(..n)?);
    if got == want {
        return None;
    }
    Some(
        got.iter()
            .take(16)
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    char::from(b)
                } else {
                    '.'
                }
            })
            .collect(),
    )
}

/// The hint logged with a refused request: on the Unix socket, the
/// authority; elsewhere, a client's malformed headers.
pub(crate) fn hint(unix_socket: bool) -> &'static str {
    if unix_socket {
        "a client on the Unix socket must send a valid :authority (such as localhost), not the socket's path: grpcio takes the channel option grpc.default_authority=localhost, grpcurl -authority localhost, grpc-go and grpc-java set it on the dialer/channel"
    } else {
        "the client sent malformed HTTP/2 headers (an invalid :authority, :path or header name); check its gRPC library and any proxy in between"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, 0];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn finds_a_protocol_error_reset_once_whatever_the_write_boundaries() {
        let mut out = frame(0x4, 0, &[0, 3, 0, 0, 0, 100]); // SETTINGS
        out.extend(frame(0x1, 1, &[0x88; 40])); // HEADERS
        out.extend(frame(0x0, 1, &[7; 300])); // DATA
        out.extend(frame(RST_STREAM, 1, &0x8u32.to_be_bytes())); // CANCEL
        out.extend(frame(RST_STREAM, 3, &PROTOCOL_ERROR.to_be_bytes()));
        out.extend(frame(RST_STREAM, 5, &PROTOCOL_ERROR.to_be_bytes()));
        for chunk in [1, 2, 5, 9, 10, 64, out.len()] {
            let mut scan = FrameScan::default();
            let found: usize = out
                .chunks(chunk)
                .map(|c| usize::from(scan.written(c)))
                .sum();
            assert_eq!(found, 1, "chunks of {chunk}");
        }
    }

    #[test]
    fn finds_a_goaway_with_protocol_error_but_not_other_codes() {
        let goaway = |code: u32| {
            let mut p = 7u32.to_be_bytes().to_vec();
            p.extend(code.to_be_bytes());
            p.extend(b"debug data");
            frame(GOAWAY, 0, &p)
        };
        let mut scan = FrameScan::default();
        assert!(!scan.written(&goaway(0)));
        assert!(!scan.written(&frame(0x6, 0, &[0; 8]))); // PING
        assert!(scan.written(&goaway(PROTOCOL_ERROR)));
        let mut scan = FrameScan::default();
        assert!(!scan.written(&frame(RST_STREAM, 1, &0x2u32.to_be_bytes())));
    }

    #[test]
    fn names_a_client_that_does_not_send_the_preface() {
        assert_eq!(not_preface(PREFACE), None);
        assert_eq!(not_preface(b"PRI * HT"), None);
        assert_eq!(
            not_preface(b"GET / HTTP/1.1\r\nHost: x\r\n").as_deref(),
            Some("GET / HTTP/1.1..")
        );
        assert_eq!(not_preface(&[0x16, 3, 1, 2]).as_deref(), Some("....")); // TLS
    }
}
