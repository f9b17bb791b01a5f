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
use crate::eval::{Request as DecisionRequest, RequestLimits, logic};
use crate::proto;
use crate::proto::authorizer_server::Authorizer;
use crate::reload::{Reloader, rfc3339};
use crate::telemetry::{Call, Method, Telemetry};

/// The service.
pub struct AuthorizerService {
    reloader: Arc<Reloader>,
    cache: Arc<DecisionCache>,
    limits: RequestLimits,
    max_batch: usize,
    telemetry: Arc<Telemetry>,
}

impl AuthorizerService {
    /// A service deciding with `reloader`'s active snapshot.
    pub fn new(
        reloader: Arc<Reloader>,
        cache: Arc<DecisionCache>,
        limits: RequestLimits,
        max_batch: usize,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self {
            reloader,
            cache,
            limits,
            max_batch,
            telemetry,
        }
    }

    fn snapshot(&self) -> Result<Arc<Snapshot>, Status> {
        self.reloader
            .snapshot()
            .ok_or_else(|| Status::unavailable("no bundle is loaded yet"))
    }

    /// Decide one request (from the cache when it has the answer), reply,
    /// and hand the request and decision to telemetry.
    fn decide(
        &self,
        call: &mut Call,
        snap: &Snapshot,
        req: DecisionRequest,
    ) -> proto::AuthorizeResponse {
        let start = Instant::now();
        let (decision, cached) = match self.cache.get(snap.generation, &req) {
            Some(d) => (d, true),
            None => {
                let d = logic::evaluate(snap, &req, SystemTime::now());
                self.cache.insert(snap.generation, &req, &d);
                (d, false)
            }
        };
        let elapsed = start.elapsed();
        let response = convert::response(&decision, cached);
        self.telemetry
            .decided(call, req, decision, cached, self.cache.enabled(), elapsed);
        response
    }

    fn authorize_call(
        &self,
        call: &mut Call,
        request: proto::AuthorizeRequest,
    ) -> Result<proto::AuthorizeResponse, Status> {
        let req = convert::request(request, &self.limits).map_err(|e| Status::from(&e))?;
        let snap = self.snapshot()?;
        Ok(self.decide(call, &snap, req))
    }

    fn batch_call(
        &self,
        call: &mut Call,
        items: Vec<proto::AuthorizeRequest>,
    ) -> Result<proto::BatchAuthorizeResponse, Status> {
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
        let responses = reqs
            .into_iter()
            .map(|r| self.decide(call, &snap, r))
            .collect();
        Ok(proto::BatchAuthorizeResponse { responses })
    }
}

#[tonic::async_trait]
impl Authorizer for AuthorizerService {
    async fn authorize(
        &self,
        request: Request<proto::AuthorizeRequest>,
    ) -> Result<Response<proto::AuthorizeResponse>, Status> {
        let mut call = self.telemetry.call(Method::Authorize, request.metadata());
        let result = self.authorize_call(&mut call, request.into_inner());
        self.telemetry.finish(call, result.as_ref().map(|_| ()));
        result.map(Response::new)
    }

    async fn batch_authorize(
        &self,
        request: Request<proto::BatchAuthorizeRequest>,
    ) -> Result<Response<proto::BatchAuthorizeResponse>, Status> {
        let mut call = self
            .telemetry
            .call(Method::BatchAuthorize, request.metadata());
        let result = self.batch_call(&mut call, request.into_inner().requests);
        self.telemetry.finish(call, result.as_ref().map(|_| ()));
        result.map(Response::new)
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
