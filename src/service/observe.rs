//! Timing each call for `rpc.server.call.duration`, with the gRPC status it
//! ended with.
//!
//! A unary call ends when its response is ready: tonic sends a unary
//! method's error as a trailers-only response (the status in its headers),
//! and a response without a status in its headers is a message followed by
//! OK. A streaming response is timed to its trailers. A call dropped before
//! it ends (the client went away, or `request_timeout_ms` passed) counts as
//! CANCELLED, the status the client is given.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;

use crate::telemetry::{RpcMethod, RpcMetrics};

/// `grpc-status` of CANCELLED.
const CANCELLED: i32 = 1;

/// One call being timed; records itself once, when it ends or is dropped.
pub(crate) struct CallTimer {
    metrics: Arc<RpcMetrics>,
    method: RpcMethod,
    start: Instant,
    done: bool,
}

/// The status in a header map, if it has one.
fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

impl CallTimer {
    /// Start timing a call to `path`.
    pub(crate) fn start(metrics: &Arc<RpcMetrics>, path: &str) -> Self {
        Self {
            metrics: metrics.clone(),
            method: RpcMethod::of_path(path),
            start: Instant::now(),
            done: false,
        }
    }

    fn record(&mut self, code: i32) {
        if !self.done {
            self.done = true;
            self.metrics.call(self.method, code, self.start.elapsed());
        }
    }

    /// The call's response: recorded now, or (a stream) when its body ends.
    pub(crate) fn finish(mut self, response: http::Response<Body>) -> http::Response<Body> {
        if let Some(code) = grpc_status(response.headers()) {
            self.record(code);
            return response;
        }
        if !self.method.streams() {
            self.record(0);
            return response;
        }
        response.map(|inner| Body::new(TimedBody { inner, timer: self }))
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        self.record(CANCELLED);
    }
}

/// A streaming response body whose trailers end its call's timing.
struct TimedBody {
    inner: Body,
    timer: CallTimer,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.timer.record(grpc_status(trailers).unwrap_or(0));
                }
            }
            Poll::Ready(Some(Err(status))) => this.timer.record(status.code() as i32),
            Poll::Ready(None) => this.timer.record(0),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::grpc_status;

    #[test]
    fn status_is_read_from_headers() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        assert_eq!(grpc_status(&headers), Some(8));
        headers.insert("grpc-status", http::HeaderValue::from_static("x"));
        assert_eq!(grpc_status(&headers), None);
    }
}
