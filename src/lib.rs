//! verdict: a policy decision point for AWS IAM and KMS JSON policies.
//!
//! The crate is a pipeline (see `STYLE.md` of the project): [`policy`] parses
//! and validates documents, [`bundle`] loads a whole bundle of them with its
//! attachments, and [`eval`] decides requests exactly as AWS's evaluation
//! logic does. [`cli`] wires these into the `verdict` binary.

pub mod analysis;
pub mod app;
pub mod bundle;
pub mod cache;
pub mod cli;
pub mod compile;
pub mod config;
pub(crate) mod conn;
pub mod eval;
pub mod import;
pub mod policy;
pub mod proto;
pub mod reload;
pub(crate) mod runtime;
pub mod service;
pub mod suite;
pub mod telemetry;
