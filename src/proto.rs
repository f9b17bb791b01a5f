//! Generated gRPC types for `verdict.v1` and the descriptor set served by
//! reflection. No hand-written logic lives here.

#![allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::allow_attributes_without_reason,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "generated code"
)]

tonic::include_proto!("verdict.v1");

/// The server side of `verdict.v1.Authorizer`, on the message types above
/// except for `Authorize`'s response (`crate::service::reply::Reply`, the
/// same message on the wire).
pub mod server {
    include!(concat!(env!("OUT_DIR"), "/server/verdict.v1.rs"));
}

/// The encoded `FileDescriptorSet` of `proto/verdict/v1/authorizer.proto`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("verdict_descriptor");
