//! The AWS IAM JSON policy language: documents as written, the validated
//! model, and the parser between them.
//!
//! Nothing here knows about bundles, requests or decisions; it turns text
//! into [`model::PolicyDocument`]s and says precisely what is wrong when it
//! cannot.

pub(crate) mod catalogue;
pub(crate) mod document;
pub(crate) mod err;
pub(crate) mod glob;
pub mod locate;
pub(crate) mod model;
pub(crate) mod parse;
pub(crate) mod principal;
pub mod template;
pub mod value;

pub(crate) use err::{PolicyError, PolicyErrorKind, PolicyWarning, PolicyWarningKind};
pub use model::*;
pub use parse::{Parsed, check_place, parse_document};
