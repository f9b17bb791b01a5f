//! The wire: the generated gRPC types for `verdict.v1`, the codec and the
//! `Authorize` reply the generated server is built on, and the descriptor
//! set served by reflection.

pub(crate) mod codec;
pub(crate) mod reply;

/// The generated messages and client.
mod generated {
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
}

pub use generated::*;

/// The server side of `verdict.v1.Authorizer`, on the message types above
/// except for `Authorize`'s response ([`reply::Reply`], the same message on
/// the wire), with [`codec::Codec`].
pub mod server {
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

    include!(concat!(env!("OUT_DIR"), "/server/verdict.v1.rs"));
}

/// The encoded `FileDescriptorSet` of `proto/verdict/v1/authorizer.proto`.
pub(crate) const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("verdict_descriptor");
