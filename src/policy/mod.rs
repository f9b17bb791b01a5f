//! The AWS IAM JSON policy language: documents as written, the validated
//! model, and the parser between them.
//!
//! Nothing here knows about bundles, requests or decisions; it turns text
//! into [`model::PolicyDocument`]s and says precisely what is wrong when it
//! cannot.

pub mod document;
pub mod err;
pub mod glob;
pub mod locate;
pub mod model;
pub mod parse;
pub mod principal;
pub mod template;
pub mod value;

pub use err::{PolicyError, PolicyErrorKind, PolicyWarning, PolicyWarningKind};
pub use model::*;
pub use parse::{Parsed, check_place, parse_document};
