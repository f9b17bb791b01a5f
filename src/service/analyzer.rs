//! `verdict.v1.Analyzer`: access analysis of the active bundle over gRPC
//! (docs/analysis.md), for internal tooling. Off unless `analyzer = true`,
//! which also keeps each snapshot's loaded bundle (the universe is read
//! from the policies as written).
//!
//! One analysis runs at a time, on a blocking thread; a second call while
//! one runs gets RESOURCE_EXHAUSTED. Entries are streamed as they are
//! found (an analysis whose client takes no entry for 30 s is abandoned,
//! so a client that stops reading cannot hold the analyzer); a call that would decide more than `analyzer_max_decisions`
//! requests ends, after what it found, with RESOURCE_EXHAUSTED.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tonic::{Request, Response, Status};

use crate::analysis::{self, Access, Bounds, Universe};
use crate::proto::server::analyzer_server::Analyzer;
use crate::proto::{AccessEntry, MatchedStatement, WhatCanRequest, WhoCanRequest};
use crate::reload::Reloader;

/// The service.
pub(crate) struct AnalyzerService {
    reloader: Arc<Reloader>,
    max_decisions: u64,
    running: Arc<Semaphore>,
}

impl AnalyzerService {
    /// Analyses of `reloader`'s active snapshot, each within `max_decisions`.
    pub(crate) fn new(reloader: Arc<Reloader>, max_decisions: u64) -> Self {
        Self {
            reloader,
            max_decisions,
            running: Arc::new(Semaphore::new(1)),
        }
    }
}

/// How long an entry may wait for the client to take it before the
/// analysis is abandoned.
const SEND_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A streamed answer.
type Entries = Pin<Box<dyn tokio_stream::Stream<Item = Result<AccessEntry, Status>> + Send>>;

fn entry(a: Access) -> AccessEntry {
    let path = a.path();
    let matched = a
        .allowed_by
        .iter()
        .map(|m| MatchedStatement {
            policy_id: m.policy_id.to_string(),
            kind: m.kind.as_str().to_owned(),
            index: m.index,
            sid: m.sid.as_deref().map(str::to_owned),
            effect: m.effect.as_str().to_owned(),
            level: m.level,
            line: None,
            column: None,
        })
        .collect();
    AccessEntry {
        principal: a.principal,
        action: a.action,
        resource: a.resource,
        unconditional: a.unconditional,
        allowed_when: a.allowed_when,
        path,
        allowed_by: matched,
        same_for: a.same_for,
        denied_when: a.denied_when.into_iter().map(|d| d.context).collect(),
    }
}

impl AnalyzerService {
    /// Run `work` on a blocking thread, streaming what it emits.
    fn stream(
        &self,
        work: impl FnOnce(&mut dyn FnMut(Access) -> bool) -> Result<(), analysis::Exhausted>
        + Send
        + 'static,
    ) -> Result<Response<Entries>, Status> {
        let permit = self.running.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted("an analysis is running; retry when it ends")
        })?;
        let (tx, rx) = mpsc::channel(64);
        let limit = self.max_decisions;
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // A client that stops reading holds the analysis no longer than
            // SEND_WAIT per entry: then it ends and frees its place.
            let send = |item: Result<AccessEntry, Status>| {
                runtime
                    .block_on(tokio::time::timeout(SEND_WAIT, tx.send(item)))
                    .is_ok_and(|sent| sent.is_ok())
            };
            let mut emit = |a: Access| send(Ok(entry(a)));
            if work(&mut emit).is_err() {
                send(Err(Status::resource_exhausted(format!(
                    "the analysis needs more than {limit} decisions (analyzer_max_decisions); narrow it (fewer actions, a resource pattern)"
                ))));
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    fn snapshot_model(
        &self,
    ) -> Result<(Arc<crate::compile::Snapshot>, Arc<crate::bundle::Bundle>), Status> {
        let snap = self
            .reloader
            .snapshot()
            .ok_or_else(|| Status::unavailable("no bundle is loaded yet"))?;
        let model = snap
            .model
            .clone()
            .ok_or_else(|| Status::unavailable("the active bundle was loaded before the analyzer was on; it is analysed after the next load"))?;
        Ok((snap, model))
    }
}

#[tonic::async_trait]
impl Analyzer for AnalyzerService {
    type WhoCanStream = Entries;
    type WhatCanStream = Entries;

    async fn who_can(&self, request: Request<WhoCanRequest>) -> Result<Response<Entries>, Status> {
        let WhoCanRequest { resource, actions } = request.into_inner();
        if resource.is_empty() {
            return Err(crate::service::convert::invalid("resource", "required"));
        }
        let (snap, model) = self.snapshot_model()?;
        let limit = self.max_decisions;
        self.stream(move |emit| {
            let u = Universe::of_with(&model, Bounds::default(), std::slice::from_ref(&resource));
            analysis::who_can_each(
                &snap,
                &u,
                &resource,
                &actions,
                &mut analysis::Budget::new(limit),
                emit,
            )
        })
    }

    async fn what_can(
        &self,
        request: Request<WhatCanRequest>,
    ) -> Result<Response<Entries>, Status> {
        let WhatCanRequest {
            principal,
            resource_pattern,
        } = request.into_inner();
        if principal.is_empty() {
            return Err(crate::service::convert::invalid("principal", "required"));
        }
        let (snap, model) = self.snapshot_model()?;
        let limit = self.max_decisions;
        self.stream(move |emit| {
            let u = Universe::of(&model, Bounds::default());
            let pattern = (!resource_pattern.is_empty()).then_some(resource_pattern.as_str());
            analysis::what_can_each(
                &snap,
                &u,
                &principal,
                pattern,
                &mut analysis::Budget::new(limit),
                emit,
            )
        })
    }
}
