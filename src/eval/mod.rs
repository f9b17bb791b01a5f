//! Decisions: requests, the derived context, and the AWS evaluation logic
//! (docs/evaluation.md §1, §5–§8).
//!
//! Evaluation is synchronous and pure: no I/O, no locks, no clock except the
//! one passed in.

pub(crate) mod decision;
pub(crate) mod env;
pub(crate) mod facts;
pub(crate) mod json;
pub(crate) mod kms;
pub mod logic;
#[cfg(feature = "reference")]
pub mod reference;
pub(crate) mod request;
pub mod usage;

pub use decision::{
    Decision, Explanation, Failed, Gate, KindDecision, MatchedStatement, NearMiss, Outcome,
};
pub use json::MatchedStatements;
pub use request::{Caller, Context, InvalidRequest, Request, RequestLimits, RequestParts};

/// The evaluation settings, compiled into every snapshot (they live with
/// `compile`, which reads them first).
pub use crate::compile::EvalOptions;
