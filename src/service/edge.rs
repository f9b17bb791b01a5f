//! What every call passes through before its method: the content-type
//! check, a separate queue for `BatchAuthorize` calls, the whole request
//! body read within a size limit and a deadline, and only then a place
//! under the concurrency limit (or RESOURCE_EXHAUSTED at once when there is
//! none). Together with the HTTP/2 settings of the server these bound what
//! a client can hold: a call whose body has not arrived holds no place of
//! the concurrency limit, so streams that never send one cannot crowd out
//! other clients' calls, and no call buffers more than its method's limit.

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

use super::observe::CallTimer;
use crate::conn::ConnInfo;
use crate::telemetry::{RpcMetrics, Shed};

/// The `BatchAuthorize` path.
const BATCH_PATH: &str = "/verdict.v1.Authorizer/BatchAuthorize";

/// The bytes of a gRPC message's length prefix.
const PREFIX_BYTES: usize = 5;

/// The limits the edge enforces.
#[derive(Clone, Debug)]
pub(crate) struct EdgeLimits {
    /// Largest request body of any method but `BatchAuthorize`, as messages.
    pub(crate) max_request_bytes: usize,
    /// Largest `BatchAuthorize` request body, as messages.
    pub(crate) max_batch_bytes: usize,
    /// A body not fully received this long after its headers fails the call.
    pub(crate) body_timeout: Duration,
    /// `BatchAuthorize` calls in flight at once, bodies included.
    pub(crate) batch_concurrency: usize,
    /// Largest `BatchAuthorize` request once decoded, as measured on its
    /// bytes before it is decoded.
    pub(crate) max_batch_decoded_bytes: u64,
    /// Clients of TLS connections allowed to call (empty: any).
    pub(crate) allowed_clients: crate::conn::Allowlist,
}

/// The layer of one server (one event loop); the concurrency limit is
/// shared by all of them.
#[derive(Clone)]
pub(crate) struct EdgeLayer {
    limits: Arc<EdgeLimits>,
    batches: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
    /// Where calls are timed and shed calls counted (none: metrics off).
    rpc: Option<Arc<RpcMetrics>>,
}

impl EdgeLayer {
    /// A layer enforcing `limits`, with calls past their body counted
    /// against `in_flight` (the process-wide concurrency limit), and every
    /// call recorded on `rpc`.
    pub(crate) fn new(
        limits: EdgeLimits,
        in_flight: Arc<Semaphore>,
        rpc: Option<Arc<RpcMetrics>>,
    ) -> Self {
        Self {
            batches: Arc::new(Semaphore::new(limits.batch_concurrency)),
            limits: Arc::new(limits),
            in_flight,
            rpc,
        }
    }

    fn shed(&self, why: Shed) {
        if let Some(rpc) = &self.rpc {
            rpc.shed(why);
        }
    }
}

/// The response, recorded on the call's timer when there is one.
fn finish(timer: Option<CallTimer>, response: Response) -> Response {
    match timer {
        Some(t) => t.finish(response),
        None => response,
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
pub(crate) struct Edge<S> {
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
    S: tower::Service<http::Request<Body>, Response = Response> + Clone + Send + 'static,
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
        let timer = self
            .layer
            .rpc
            .as_ref()
            .map(|m| CallTimer::start(m, request.uri().path()));
        if !is_grpc_proto(request.headers().get(http::header::CONTENT_TYPE)) {
            let refused = refuse(
                Status::invalid_argument(
                    "content-type must be application/grpc or application/grpc+proto",
                ),
                http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            );
            return Box::pin(std::future::ready(Ok(finish(timer, refused))));
        }
        if let Some(refused) = self.layer.not_allowed(&request) {
            return Box::pin(std::future::ready(Ok(finish(timer, refused))));
        }
        // The service that was made ready serves this call; its clone
        // waits for the next one.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let serving = self.layer.clone().serve(inner, request);
        Box::pin(async move { Ok(finish(timer, serving.await?)) })
    }
}

impl EdgeLayer {
    /// PERMISSION_DENIED for a call over TLS from a client that
    /// `tls_allowed_clients` does not name (health checks excepted; calls
    /// on the Unix socket are governed by its file mode).
    fn not_allowed(&self, request: &http::Request<Body>) -> Option<Response> {
        let allowed = &self.limits.allowed_clients;
        if allowed.is_empty() || request.uri().path().starts_with("/grpc.health.v1.") {
            return None;
        }
        let conn = request.extensions().get::<ConnInfo>()?;
        if !conn.tls {
            return None;
        }
        let who = conn.identity.as_deref();
        if who.is_some_and(|w| allowed.allows(w)) {
            return None;
        }
        let named = who.map_or_else(
            || "a client without a certificate".to_owned(),
            |w| format!("client {}", crate::policy::err::cut(&w.display(), 256)),
        );
        Some(
            Status::permission_denied(format!("{named} is not in tls_allowed_clients")).into_http(),
        )
    }

    /// One call: its batch turn, its whole body, a place under the
    /// concurrency limit, then the method.
    async fn serve<S>(
        self,
        mut inner: S,
        request: http::Request<Body>,
    ) -> Result<Response, S::Error>
    where
        S: tower::Service<http::Request<Body>, Response = Response>,
    {
        let limits = &self.limits;
        let batch = request.uri().path() == BATCH_PATH;
        let (limit, setting) = if batch {
            (limits.max_batch_bytes, "max_batch_bytes")
        } else {
            (limits.max_request_bytes, "max_request_bytes")
        };
        let _call = request
            .extensions()
            .get::<ConnInfo>()
            .map(|c| c.activity.call());
        // A batch first waits its turn, at most as long as its body may
        // take to arrive; until then its body is not read, so it holds no
        // more than the connection's flow-control window.
        let _batch_turn = if batch {
            let wait = limits.body_timeout;
            match tokio::time::timeout(wait, self.batches.clone().acquire_owned()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    self.shed(Shed::BatchConcurrencyLimit);
                    return Ok(Status::resource_exhausted(format!(
                        "{} BatchAuthorize calls stayed in flight longer than request_body_timeout_ms (batch_concurrency_limit); retry",
                        limits.batch_concurrency
                    ))
                    .into_http());
                }
            }
        } else {
            None
        };
        let (parts, body) = request.into_parts();
        let guarded = Guarded {
            inner: body,
            received: 0,
            limit: limit + PREFIX_BYTES,
            setting,
            deadline: Instant::now() + limits.body_timeout,
            timer: None,
        };
        let body = match http_body_util::BodyExt::collect(guarded).await {
            Ok(collected) => collected.to_bytes(),
            Err(status) => return Ok(status.into_http()),
        };
        if batch && let Some(decoded) = over_decoded_limit(&body, limits.max_batch_decoded_bytes) {
            return Ok(Status::resource_exhausted(format!(
                "the batch would take {decoded} bytes once decoded, over max_batch_decoded_bytes ({})",
                limits.max_batch_decoded_bytes
            ))
            .into_http());
        }
        let Ok(_in_flight) = self.in_flight.clone().try_acquire_owned() else {
            self.shed(Shed::ConcurrencyLimit);
            return Ok(
                Status::resource_exhausted("verdict is at its concurrency limit; retry")
                    .into_http(),
            );
        };
        let request = http::Request::from_parts(parts, Body::new(http_body_util::Full::new(body)));
        inner.call(request).await
    }
}

/// The decoded size of the uncompressed gRPC messages of `body`, when it is
/// over `limit`. Messages that cannot be measured are left to the decoder.
fn over_decoded_limit(body: &[u8], limit: u64) -> Option<u64> {
    let mut rest = body;
    let mut total = 0u64;
    while let Some((header, after)) = rest.split_first_chunk::<PREFIX_BYTES>() {
        let [compressed, len @ ..] = *header;
        let len = usize::try_from(u32::from_be_bytes(len)).ok()?;
        let message = after.get(..len)?;
        rest = after.get(len..)?;
        if compressed == 0 {
            total = total.saturating_add(super::measure::decoded_bytes(message)?);
        }
    }
    (total > limit).then_some(total)
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
