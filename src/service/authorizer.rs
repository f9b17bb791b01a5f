//! The `verdict.v1.Authorizer` service: `Authorize`, `BatchAuthorize`,
//! `GetBundleStatus` and `GetUsage` over the active snapshot, the decision
//! cache and the statement-usage ledger.
//!
//! A request takes one `Arc` of the active snapshot at entry and decides with
//! it, so a reload never splits a call (a batch is decided by one snapshot).
//! Anything that goes wrong is an error status, never an `Allow`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use super::convert;
use crate::cache::Key;
use crate::service::stored::{Cache, RequestCopy};

/// A decision as the service holds it.
type Answer = crate::cache::Answer<RequestCopy>;
use crate::compile::Snapshot;
use crate::eval::{InvalidRequest, Request as DecisionRequest, RequestLimits, logic};
use crate::proto;
use crate::proto::reply::Reply;
use crate::proto::server::authorizer_server::Authorizer;
use crate::reload::{Reloader, rfc3339};
use crate::telemetry::{Call, DECISION_ID_LEN, DecisionId, Method, Served, Subject, Telemetry};

/// The service.
pub struct AuthorizerService {
    reloader: Arc<Reloader>,
    cache: Arc<Cache>,
    limits: RequestLimits,
    max_batch: usize,
    telemetry: Arc<Telemetry>,
    /// How long a call whose `min_serial` is above the active bundle's
    /// waits for a newer one (`min_serial_wait_ms`).
    min_serial_wait: Duration,
    /// The statement-usage ledger of the active snapshot (`GetUsage`).
    ledger: super::ledger::Ledger,
}

impl AuthorizerService {
    /// A service deciding with `reloader`'s active snapshot.
    pub fn new(
        reloader: Arc<Reloader>,
        cache: Arc<Cache>,
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
            min_serial_wait: Duration::ZERO,
            ledger: super::ledger::Ledger::default(),
        }
    }

    /// Calls demanding a newer bundle than the active one wait this long
    /// for it (0: they fail at once).
    pub fn min_serial_wait(mut self, wait: Duration) -> Self {
        self.min_serial_wait = wait;
        self
    }

    /// Before a call with `min_serial` above the active bundle's: wait for
    /// a newer bundle, within `min_serial_wait` (the gate itself is
    /// [`serial_at_least`]).
    async fn await_serial(&self, min_serial: u64) {
        if self.min_serial_wait.is_zero()
            || self
                .reloader
                .snapshot()
                .is_none_or(|s| s.serial >= min_serial)
        {
            return;
        }
        self.reloader
            .wait_for_serial(min_serial, self.min_serial_wait)
            .await;
    }

    /// Look a request up in the cache, or validate it for evaluation.
    /// `decided_next`: the evaluation follows at once (`Authorize`), so its
    /// timing runs on from here; otherwise (a batch, whose items are all
    /// checked first) the time spent here is kept apart.
    fn prepare(
        &self,
        snap: Option<&Snapshot>,
        r: proto::AuthorizeRequest,
        decided_next: bool,
    ) -> Result<Pending, InvalidRequest> {
        let start = self.telemetry.timing().then(Instant::now);
        let key = match snap {
            Some(snap) if self.cache.enabled() => {
                let key = self.cache.key(snap.generation, &r);
                if let Some(answer) = self.cache.get(key, snap.generation, &r) {
                    return Ok(Pending::Hit {
                        request: r,
                        answer,
                        spent: start.map(|s| s.elapsed()),
                    });
                }
                Some(key)
            }
            _ => None,
        };
        // When the answer may be stored, the request is decided from a copy
        // and kept whole for the entry, once it is found valid.
        let (request, copy) = match key.and_then(|_| self.cache.storable(&r)) {
            Some(bytes) => {
                let request = convert::request_copy(&r, &self.limits)?;
                (request, Some(RequestCopy::new(r, bytes)))
            }
            None => (convert::request(r, &self.limits)?, None),
        };
        let clock = match start {
            None => Clock::Off,
            Some(s) if decided_next => Clock::Running(s),
            Some(s) => Clock::Paused(s.elapsed()),
        };
        Ok(Pending::Miss {
            key,
            copy,
            request,
            clock,
        })
    }

    /// Decide a prepared request, make its response with `respond` (given
    /// the answer and whether it came from the cache), and hand the request
    /// and decision to telemetry.
    fn decide<R>(
        &self,
        call: &mut Call,
        snap: &Snapshot,
        pending: Pending,
        respond: impl FnOnce(&Answer, bool, DecisionId) -> R,
    ) -> Result<R, Status> {
        let id = DecisionId::new(call.now());
        match pending {
            Pending::Hit {
                request,
                answer,
                spent,
            } => {
                let response = respond(&answer, true, id);
                self.ledger.record(snap, &answer);
                self.telemetry.decided(
                    call,
                    id,
                    || {
                        let mut parts = convert::parts(request);
                        parts.canonicalize();
                        Subject::Received(parts)
                    },
                    answer,
                    Served {
                        cached: true,
                        cache_enabled: true,
                        elapsed: spent.unwrap_or_default(),
                    },
                );
                Ok(response)
            }
            Pending::Miss {
                key,
                copy,
                request,
                clock,
            } => {
                // (since, time spent before it)
                let timer = match clock {
                    Clock::Off => None,
                    Clock::Running(start) => Some((start, Duration::ZERO)),
                    Clock::Paused(spent) => Some((Instant::now(), spent)),
                };
                let decision =
                    logic::evaluate_within(snap, &request, call.now(), self.limits.max_match_steps)
                        .ok_or_else(|| too_costly(self.limits.max_match_steps))?;
                let answer = match key {
                    Some(key) => self.cache.insert(key, snap.generation, copy, decision),
                    None => Answer::Fresh(decision),
                };
                let elapsed =
                    timer.map_or(Duration::ZERO, |(since, spent)| spent + since.elapsed());
                let response = respond(&answer, false, id);
                self.ledger.record(snap, &answer);
                self.telemetry.decided(
                    call,
                    id,
                    || Subject::Checked(request),
                    answer,
                    Served {
                        cached: false,
                        cache_enabled: self.cache.enabled(),
                        elapsed,
                    },
                );
                Ok(response)
            }
        }
    }

    fn authorize_call(
        &self,
        call: &mut Call,
        request: proto::AuthorizeRequest,
    ) -> Result<Reply, Status> {
        let snap = self.reloader.snapshot();
        serial_at_least(snap.as_deref(), request.min_serial)?;
        let pending = self
            .prepare(snap.as_deref(), request, true)
            .map_err(|e| Status::from(&e))?;
        let snap = snap.ok_or_else(no_bundle)?;
        self.decide(call, &snap, pending, |answer, cached, id| match answer {
            // Every hit on an entry sends the same bytes, encoded once, and
            // then its own decision id.
            Answer::Shared(entry) if cached => {
                let mut text = [0u8; DECISION_ID_LEN];
                id.encode(&mut text);
                let hit = entry.hit_response(|d| {
                    prost::Message::encode_to_vec(&convert::response(d, true, None)).into()
                });
                Reply::Encoded(hit, text)
            }
            _ => Reply::Built(convert::response(answer, cached, Some(id))),
        })
    }

    /// Checks every item, then decides every one, giving the event loop
    /// back every [`BATCH_SLICE`] so that a large batch never stalls the
    /// other calls of its loop for longer.
    async fn batch_call(
        &self,
        call: &mut Call,
        batch: proto::BatchAuthorizeRequest,
    ) -> Result<proto::BatchAuthorizeResponse, Status> {
        let proto::BatchAuthorizeRequest {
            requests: items,
            min_serial,
        } = batch;
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
        // One snapshot for the whole batch; every item is checked before
        // any is decided (all or nothing).
        let snap = self.reloader.snapshot();
        let wanted = items
            .iter()
            .map(|i| i.min_serial)
            .fold(min_serial, u64::max);
        let snap = if snap.as_ref().is_some_and(|s| s.serial < wanted) {
            self.await_serial(wanted).await;
            self.reloader.snapshot()
        } else {
            snap
        };
        serial_at_least(snap.as_deref(), wanted)?;
        let mut pending = Vec::with_capacity(items.len());
        let mut slice = Slice::start();
        for (i, item) in items.into_iter().enumerate() {
            slice.pass().await;
            match self.prepare(snap.as_deref(), item, false) {
                Ok(p) => pending.push(p),
                Err(e) => {
                    return Err(convert::invalid(
                        &format!("requests[{i}].{}", e.field),
                        &e.message,
                    ));
                }
            }
        }
        let snap = snap.ok_or_else(no_bundle)?;
        let mut responses = Vec::with_capacity(pending.len());
        for p in pending {
            slice.pass().await;
            responses.push(self.decide(call, &snap, p, |a, cached, id| {
                convert::response(a, cached, Some(id))
            })?);
        }
        Ok(proto::BatchAuthorizeResponse { responses })
    }
}

/// How long a batch works before it lets the other calls of its event loop
/// run.
const BATCH_SLICE: Duration = Duration::from_micros(500);

/// Items between two looks at the clock.
const SLICE_CHECK_EVERY: u32 = 16;

/// A batch's time on its event loop since it last gave it back.
struct Slice {
    since: Instant,
    items: u32,
}

impl Slice {
    fn start() -> Self {
        Self {
            since: Instant::now(),
            items: 0,
        }
    }

    /// Before one more item: yields to the loop when the slice is used up.
    async fn pass(&mut self) {
        self.items += 1;
        if self.items.is_multiple_of(SLICE_CHECK_EVERY) && self.since.elapsed() >= BATCH_SLICE {
            tokio::task::yield_now().await;
            self.since = Instant::now();
        }
    }
}

/// A request on its way to a decision.
#[expect(
    clippy::large_enum_variant,
    reason = "held briefly, one per request; boxing would allocate per request"
)]
enum Pending {
    /// Answered by the cache.
    Hit {
        request: proto::AuthorizeRequest,
        answer: Answer,
        spent: Option<Duration>,
    },
    /// Validated, to be evaluated (and cached under `key`).
    Miss {
        key: Option<Key>,
        copy: Option<RequestCopy>,
        request: DecisionRequest,
        clock: Clock,
    },
}

/// The timing of a decision between its preparation and its evaluation
/// (a clock read is not free, so it is not repeated when the evaluation
/// follows at once).
#[derive(Clone, Copy)]
enum Clock {
    /// Decisions are not timed.
    Off,
    /// Started at this instant, evaluated next.
    Running(Instant),
    /// Prepared in this long; evaluated later.
    Paused(Duration),
}

/// A request whose wildcard matching would take more than the budget: it is
/// refused, never decided (fail closed).
fn too_costly(steps: u64) -> Status {
    Status::resource_exhausted(format!(
        "deciding this request needs more than {steps} wildcard-matching steps (max_match_steps); it is refused"
    ))
}

/// A caller's `min_serial` against the active bundle: below it the call
/// fails, naming what is active, and is never answered from that bundle.
/// (With no bundle at all, the call fails as UNAVAILABLE later.)
fn serial_at_least(snap: Option<&Snapshot>, min_serial: u64) -> Result<(), Status> {
    match snap {
        Some(s) if s.serial < min_serial => Err(Status::failed_precondition(format!(
            "the active bundle has serial {} (revision {}), below min_serial {min_serial}; it does not answer this call",
            s.serial,
            crate::policy::err::cut(&s.revision, 128)
        ))),
        _ => Ok(()),
    }
}

fn no_bundle() -> Status {
    Status::unavailable("no bundle is loaded yet")
}

#[tonic::async_trait]
impl Authorizer for AuthorizerService {
    async fn authorize(
        &self,
        request: Request<proto::AuthorizeRequest>,
    ) -> Result<Response<Reply>, Status> {
        let mut call = self
            .telemetry
            .call(Method::Authorize, request.metadata(), || caller(&request));
        let request = request.into_inner();
        self.await_serial(request.min_serial).await;
        let result = self.authorize_call(&mut call, request);
        self.telemetry.finish(call, result.as_ref().map(|_| ()));
        result.map(Response::new)
    }

    async fn batch_authorize(
        &self,
        request: Request<proto::BatchAuthorizeRequest>,
    ) -> Result<Response<proto::BatchAuthorizeResponse>, Status> {
        let mut call = self
            .telemetry
            .call(Method::BatchAuthorize, request.metadata(), || {
                caller(&request)
            });
        let result = self.batch_call(&mut call, request.into_inner()).await;
        self.telemetry.finish(call, result.as_ref().map(|_| ()));
        result.map(Response::new)
    }

    async fn get_usage(
        &self,
        _request: Request<proto::GetUsageRequest>,
    ) -> Result<Response<proto::UsageReport>, Status> {
        let snap = self.reloader.snapshot().ok_or_else(no_bundle)?;
        let usage = self.ledger.of(&snap);
        let statements = usage
            .report(&snap)
            .into_iter()
            .map(|u| proto::StatementUsage {
                policy_id: u.policy_id.to_string(),
                index: u.index,
                sid: u.sid.map(|s| s.to_string()),
                allow: u.allow,
                deny: u.deny,
            })
            .collect();
        Ok(Response::new(proto::UsageReport {
            revision: snap.revision.to_string(),
            serial: snap.serial,
            generation: snap.generation,
            since: rfc3339(snap.loaded_at),
            decisions: usage.decisions(),
            statements,
        }))
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
            signature: snap
                .as_ref()
                .map(|s| s.signature.to_string())
                .unwrap_or_default(),
            serial: snap.as_ref().map_or(0, |s| s.serial),
            source_status: Some(source_status(self.reloader.source_status())),
        }))
    }
}

/// The source's status on the wire.
fn source_status(s: crate::reload::SourceStatus) -> proto::SourceStatus {
    let time = |t: Option<std::time::SystemTime>| t.map(rfc3339).unwrap_or_default();
    proto::SourceStatus {
        kind: s.kind.to_owned(),
        address: s.address,
        tag: s.tag.unwrap_or_default(),
        last_poll: time(s.last_poll.map(|(t, _)| t)),
        last_poll_result: s
            .last_poll
            .map(|(_, r)| r.as_str().to_owned())
            .unwrap_or_default(),
        last_success: time(s.last_success),
        last_error: s.last_error.unwrap_or_default(),
        consecutive_failures: s.failures,
        next_poll: time(s.next_poll),
        persisted: s.persisted,
    }
}

/// Who sent `request` (see [`crate::conn::ConnInfo::caller`]).
fn caller<T>(request: &Request<T>) -> Option<std::sync::Arc<str>> {
    request
        .extensions()
        .get::<crate::conn::ConnInfo>()
        .and_then(crate::conn::ConnInfo::caller)
}
