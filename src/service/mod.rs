//! The gRPC edge: conversions between proto and engine types, and the
//! `Authorizer` service.

pub mod authorizer;
pub mod codec;
pub mod convert;
pub mod edge;
mod measure;
pub mod reply;

pub use authorizer::AuthorizerService;
