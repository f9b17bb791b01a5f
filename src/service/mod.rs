//! The gRPC edge: conversions between proto and engine types, and the
//! `Authorizer` service.

pub(crate) mod authorizer;
pub mod convert;
pub(crate) mod edge;
mod measure;
pub mod stored;

pub use authorizer::AuthorizerService;
