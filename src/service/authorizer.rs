//! The `verdict.v1.Authorizer` service: `Authorize`, `BatchAuthorize` and
//! `GetBundleStatus` over the active snapshot and the decision cache.
//!
//! A request takes one `Arc` of the active snapshot at entry and decides with
//! it, so a reload never splits a call (a batch is decided by one snapshot).
//! Anything that goes wrong is an error status, never an `Allow`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tonic::{Request, Response, Status};

use super::convert;
use crate::cache::DecisionCache;
use crate::compile::Snapshot;
use crate::eval::{Decision, RequestLimits, logic};
use crate::proto;
use crate::proto::authorizer_server::Authorizer;
use crate::reload::{Reloader, rfc3339};

/// Told about every decision (telemetry hooks in here).
pub trait DecisionObserver: Send + Sync {
    /// A decision was made (or served from the cache) in `elapsed`.
    fn decided(
        &self,
        req: &crate::eval::Request,
        decision: &Decision,
        cached: bool,
        elapsed: std::time::Duration,
    );
}

/// The service.
pub struct AuthorizerService {
    reloader: Arc<Reloader>,
    cache: Arc<DecisionCache>,
    limits: RequestLimits,
    max_batch: usize,
    observer: Option<Arc<dyn DecisionObserver>>,
}

impl AuthorizerService {
    /// A service deciding with `reloader`'s active snapshot.
    pub fn new(
        reloader: Arc<Reloader>,
        cache: Arc<DecisionCache>,
        limits: RequestLimits,
        max_batch: usize,
        observer: Option<Arc<dyn DecisionObserver>>,
    ) -> Self {
        Self {
            reloader,
            cache,
            limits,
            max_batch,
            observer,
        }
    }

    fn snapshot(&self) -> Result<Arc<Snapshot>, Status> {
        self.reloader
            .snapshot()
            .ok_or_else(|| Status::unavailable("no bundle is loaded yet"))
    }

    fn decide(&self, snap: &Snapshot, req: &crate::eval::Request) -> proto::AuthorizeResponse {
        let start = Instant::now();
        let (decision, cached) = match self.cache.get(snap.generation, req) {
            Some(d) => (d, true),
            None => {
                let d = logic::evaluate(snap, req, SystemTime::now());
                self.cache.insert(snap.generation, req, &d);
                (d, false)
            }
        };
        let elapsed = start.elapsed();
        if let Some(o) = &self.observer {
            o.decided(req, &decision, cached, elapsed);
        }
        convert::response(&decision, cached)
    }
}

#[tonic::async_trait]
impl Authorizer for AuthorizerService {
    async fn authorize(
        &self,
        request: Request<proto::AuthorizeRequest>,
    ) -> Result<Response<proto::AuthorizeResponse>, Status> {
        let req =
            convert::request(request.into_inner(), &self.limits).map_err(|e| Status::from(&e))?;
        let snap = self.snapshot()?;
        Ok(Response::new(self.decide(&snap, &req)))
    }

    async fn batch_authorize(
        &self,
        request: Request<proto::BatchAuthorizeRequest>,
    ) -> Result<Response<proto::BatchAuthorizeResponse>, Status> {
        let items = request.into_inner().requests;
        if self.max_batch > 0 && items.len() > self.max_batch {
            return Err(convert::invalid(
                "requests",
                &format!(
                    "{} requests, over the limit of {}",
                    items.len(),
                    self.max_batch
                ),
            ));
        }
        let mut reqs = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match convert::request(item, &self.limits) {
                Ok(r) => reqs.push(r),
                Err(e) => {
                    return Err(convert::invalid(
                        &format!("requests[{i}].{}", e.field),
                        &e.message,
                    ));
                }
            }
        }
        let snap = self.snapshot()?;
        let responses = reqs.iter().map(|r| self.decide(&snap, r)).collect();
        Ok(Response::new(proto::BatchAuthorizeResponse { responses }))
    }

    async fn get_bundle_status(
        &self,
        _request: Request<proto::GetBundleStatusRequest>,
    ) -> Result<Response<proto::BundleStatus>, Status> {
        let status = self.reloader.status();
        let snap = self.reloader.snapshot();
        Ok(Response::new(proto::BundleStatus {
            revision: snap
                .as_ref()
                .map(|s| s.revision.to_string())
                .unwrap_or_default(),
            name: snap
                .as_ref()
                .and_then(|s| s.name.clone())
                .unwrap_or_default(),
            source: snap.as_ref().map(|s| s.source.clone()).unwrap_or_default(),
            loaded_at: snap
                .as_ref()
                .map(|s| rfc3339(s.loaded_at))
                .unwrap_or_default(),
            generation: snap.as_ref().map_or(0, |s| s.generation),
            last_error: status.last_error.map(|e| proto::LoadError {
                at: rfc3339(e.at),
                message: e.message,
                errors: e.errors,
            }),
            reloads_ok: status.reloads_ok,
            reloads_failed: status.reloads_failed,
        }))
    }
}
