//! The gRPC edge: conversions between proto and engine types, and the
//! `Authorizer` service.

pub(crate) mod analyzer;
pub(crate) mod authorizer;
pub mod convert;
pub(crate) mod edge;
mod ledger;
mod measure;
mod observe;
pub mod stored;

pub use authorizer::AuthorizerService;

use std::time::Duration;

use crate::eval::RequestLimits;

/// What a call may be, and how many run at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSettings {
    /// What one request may hold.
    pub request_limits: RequestLimits,
    /// Requests per `BatchAuthorize` (0: unbounded).
    pub max_batch: usize,
    /// Calls decided at once; more get `RESOURCE_EXHAUSTED`.
    pub(crate) concurrency_limit: usize,
    /// Longest a call may take (a shorter `grpc-timeout` wins).
    pub(crate) request_timeout: Duration,
    /// Largest `Authorize` request message, in bytes.
    pub(crate) max_request_bytes: usize,
    /// Largest `BatchAuthorize` request message, in bytes.
    pub(crate) max_batch_bytes: usize,
    /// Largest `BatchAuthorize` request once decoded, measured before decoding.
    pub(crate) max_batch_decoded_bytes: u64,
    /// `BatchAuthorize` calls in flight at once (their bodies included).
    pub(crate) batch_concurrency_limit: usize,
    /// How long a call whose `min_serial` is above the active bundle's
    /// waits for a newer one.
    pub(crate) min_serial_wait: Duration,
    /// `verdict.v1.Analyzer`, with the most requests one call may decide
    /// (`analyzer`, `analyzer_max_decisions`); none: not served.
    pub(crate) analyzer: Option<u64>,
}
