//! Decisions: requests, the derived context, and the AWS evaluation logic
//! (evaluation.md §1, §5–§8).
//!
//! Evaluation is synchronous and pure: no I/O, no locks, no clock except the
//! one passed in.

pub mod decision;
pub mod env;
pub mod facts;
pub mod json;
pub mod kms;
pub mod logic;
pub mod reference;
pub mod request;

pub use decision::{Decision, Explanation, Gate, KindDecision, MatchedStatement, Outcome};
pub use request::{Caller, Context, InvalidRequest, Request, RequestLimits, RequestParts};

/// The evaluation settings, compiled into every snapshot (they live with
/// `compile`, which reads them first).
pub use crate::compile::EvalOptions;
