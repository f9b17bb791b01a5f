//! What every call passes through before its method: the content-type
//! check, a size limit and a deadline on the request body, and a separate
//! limit on `BatchAuthorize` calls in flight. Together with the HTTP/2
//! settings of the server these bound what a client can hold: a permit of
//! the concurrency limit is never held past the body deadline by a body that
//! does not arrive, and no call buffers more than its method's limit.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tonic::Status;
use tonic::body::Body;

use crate::conn::ConnInfo;

/// The `BatchAuthorize` path.
const BATCH_PATH: &str = "/verdict.v1.Authorizer/BatchAuthorize";

/// The bytes of a gRPC message's length prefix.
const PREFIX_BYTES: usize = 5;

/// The limits the edge enforces.
#[derive(Clone, Debug)]
pub struct EdgeLimits {
    /// Largest request body of any method but `BatchAuthorize`, as messages.
    pub max_request_bytes: usize,
    /// Largest `BatchAuthorize` request body, as messages.
    pub max_batch_bytes: usize,
    /// A body not fully received this long after its headers fails the call.
    pub body_timeout: Duration,
    /// `BatchAuthorize` calls in flight at once, bodies included.
    pub batch_concurrency: usize,
}

/// The layer, shared by every listener and event loop.
#[derive(Clone)]
pub struct EdgeLayer {
    limits: Arc<EdgeLimits>,
    batches: Arc<Semaphore>,
}

impl EdgeLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: EdgeLimits) -> Self {
        Self {
            batches: Arc::new(Semaphore::new(limits.batch_concurrency)),
            limits: Arc::new(limits),
        }
    }
}

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`EdgeLayer`].
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

type Response = http::Response<Body>;

/// Whether a content-type names gRPC with protocol buffers.
fn is_grpc_proto(content_type: Option<&http::HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(rest) = ct.strip_prefix("application/grpc") else {
        return false;
    };
    rest.is_empty() || rest.starts_with(';') || rest.starts_with("+proto")
}

fn refuse(status: Status, http_status: http::StatusCode) -> Response {
    let mut response = status.into_http::<Body>();
    *response.status_mut() = http_status;
    response
}

impl<S> tower::Service<http::Request<Body>> for Edge<S>
where
    S: tower::Service<http::Request<Body>, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if !is_grpc_proto(request.headers().get(http::header::CONTENT_TYPE)) {
            let refused = refuse(
                Status::invalid_argument(
                    "content-type must be application/grpc or application/grpc+proto",
                ),
                http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            );
            return Box::pin(std::future::ready(Ok(refused)));
        }
        let limits = &self.layer.limits;
        let batch = request.uri().path() == BATCH_PATH;
        let (limit, setting) = if batch {
            (limits.max_batch_bytes, "max_batch_bytes")
        } else {
            (limits.max_request_bytes, "max_request_bytes")
        };
        let call_guard = request
            .extensions()
            .get::<ConnInfo>()
            .map(|c| c.activity.call());
        // A batch may first wait its turn as long as its body may take to
        // arrive; its body's deadline runs from the end of that wait at most.
        let queue = batch.then(|| (self.layer.batches.clone(), limits.body_timeout));
        let body_deadline = Instant::now()
            + limits.body_timeout
            + queue.as_ref().map_or(Duration::ZERO, |(_, wait)| *wait);
        let request = request.map(|body| {
            Body::new(Guarded {
                inner: body,
                received: 0,
                limit: limit + PREFIX_BYTES,
                setting,
                deadline: body_deadline,
                timer: None,
            })
        });
        // The call's future reads the body only once polled: a batch
        // waiting for its turn holds no more than the connection's window.
        let call = self.inner.call(request);
        let batch_limit = limits.batch_concurrency;
        Box::pin(async move {
            let permit = match queue {
                None => None,
                Some((batches, wait)) => {
                    match tokio::time::timeout(wait, batches.acquire_owned()).await {
                        Ok(Ok(permit)) => Some(permit),
                        _ => {
                            return Ok(Status::resource_exhausted(format!(
                            "{batch_limit} BatchAuthorize calls stayed in flight longer than request_body_timeout_ms (batch_concurrency_limit); retry"
                        ))
                        .into_http());
                        }
                    }
                }
            };
            let response = call.await;
            drop((permit, call_guard));
            response
        })
    }
}

/// A request body with a size limit and a deadline.
struct Guarded {
    inner: Body,
    received: usize,
    limit: usize,
    setting: &'static str,
    deadline: Instant,
    /// Made only when the body is not all there at once.
    timer: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received = this.received.saturating_add(data.len());
                    if this.received > this.limit {
                        return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                            "the request is over {} bytes ({})",
                            this.limit - PREFIX_BYTES,
                            this.setting
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Status::deadline_exceeded(
                        "the request body did not arrive within request_body_timeout_ms",
                    )))),
                    Poll::Pending => Poll::Pending,
                }
            }
            other => other,
        }
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
    use super::is_grpc_proto;

    #[test]
    fn content_types() {
        let ok = |s: &str| is_grpc_proto(Some(&http::HeaderValue::from_str(s).unwrap()));
        assert!(ok("application/grpc"));
        assert!(ok("application/grpc+proto"));
        assert!(ok("application/grpc; charset=utf-8"));
        assert!(!ok("application/grpc+json"));
        assert!(!ok("application/json"));
        assert!(!ok("application/grpcx"));
        assert!(!is_grpc_proto(None));
    }
}
