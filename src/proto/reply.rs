//! The server's `AuthorizeResponse`: built for this call, or the encoding a
//! cache entry keeps for its hits.
//!
//! A cache hit's answer is the same message every time (the decision, with
//! `cached` set), so the entry encodes it once, on its first hit, and later
//! hits send those bytes: no response strings are built, encoded or freed
//! per hit. On the wire both are the one `verdict.v1.AuthorizeResponse`;
//! clients see the generated type (`crate::proto::AuthorizeResponse`).

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::proto::AuthorizeResponse;

/// An `AuthorizeResponse` on its way out.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "moved once into the response; boxing the built message would allocate per call"
)]
pub enum Reply {
    /// Built for this call.
    Built(AuthorizeResponse),
    /// Already encoded (a cache entry's hit response).
    Encoded(Bytes),
}

impl Default for Reply {
    fn default() -> Self {
        Self::Built(AuthorizeResponse::default())
    }
}

impl Reply {
    /// The message, decoding it if it is held encoded.
    pub fn into_response(self) -> Result<AuthorizeResponse, DecodeError> {
        match self {
            Self::Built(r) => Ok(r),
            Self::Encoded(b) => AuthorizeResponse::decode(b),
        }
    }
}

impl Message for Reply {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            Self::Built(r) => r.encode_raw(buf),
            Self::Encoded(b) => buf.put_slice(b),
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if let Self::Encoded(b) = self {
            // Decoding into an encoded reply: continue from its message.
            *self = Self::Built(AuthorizeResponse::decode(b.clone())?);
        }
        match self {
            Self::Built(r) => r.merge_field(tag, wire_type, buf, ctx),
            Self::Encoded(_) => Ok(()),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Self::Built(r) => r.encoded_len(),
            Self::Encoded(b) => b.len(),
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::proto::{Decision, MatchedStatement};

    fn response() -> AuthorizeResponse {
        AuthorizeResponse {
            decision: Decision::Allow.into(),
            matched: vec![MatchedStatement {
                policy_id: "keys/default-key-policy".into(),
                kind: "key_policy".into(),
                index: Some(0),
                sid: Some("Enable IAM User Permissions".into()),
                effect: "Allow".into(),
                level: None,
                line: None,
                column: None,
            }],
            missing_context_keys: vec!["kms:ViaService".into()],
            bundle_revision: "2026-11-28.1".into(),
            bundle_serial: 0,
            cached: true,
            explanation: None,
        }
    }

    #[test]
    fn both_forms_put_the_same_bytes_on_the_wire() {
        let built = Reply::Built(response());
        let encoded = Reply::Encoded(Bytes::from(response().encode_to_vec()));
        assert_eq!(built.encoded_len(), encoded.encoded_len());
        assert_eq!(built.encode_to_vec(), encoded.encode_to_vec());
        assert_eq!(built.encode_to_vec(), response().encode_to_vec());
        assert_eq!(encoded.into_response().unwrap(), response());
    }

    #[test]
    fn decodes_as_the_generated_message() {
        let bytes = response().encode_to_vec();
        let reply = Reply::decode(bytes.as_slice()).unwrap();
        assert_eq!(reply, Reply::Built(response()));
        let mut merged = Reply::Encoded(Bytes::from(bytes.clone()));
        merged.merge(bytes.as_slice()).unwrap();
        let mut twice = response();
        twice.merge(bytes.as_slice()).unwrap();
        assert_eq!(merged, Reply::Built(twice));
    }
}
