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

/// Evaluation settings (api.md "Configuration").
#[derive(Clone, Debug, Default)]
pub struct EvalOptions {
    /// Caller-sent `aws:PrincipalTag/*` values count for session callers (U4).
    pub trust_session_tags: bool,
    /// Fixed context keys added to every request that lacks them.
    pub default_context: Vec<(String, Vec<String>)>,
}
