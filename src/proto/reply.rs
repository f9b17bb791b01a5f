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
use crate::telemetry::DECISION_ID_LEN;

/// An `AuthorizeResponse` on its way out.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "moved once into the response; boxing the built message would allocate per call"
)]
pub enum Reply {
    /// Built for this call.
    Built(AuthorizeResponse),
    /// Already encoded (a cache entry's hit response, without a decision
    /// id), and this call's decision id, sent after it as field 8.
    Encoded(Bytes, [u8; DECISION_ID_LEN]),
}

/// The key of `decision_id` (field 8, length-delimited) and the length of
/// its value.
const DECISION_ID_KEY: [u8; 2] = [(8 << 3) | 2, DECISION_ID_LEN as u8];

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
            Self::Encoded(b, id) => {
                let mut r = AuthorizeResponse::decode(b)?;
                r.decision_id = String::from_utf8_lossy(&id).into_owned();
                Ok(r)
            }
        }
    }
}

impl Message for Reply {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            Self::Built(r) => r.encode_raw(buf),
            Self::Encoded(b, id) => {
                buf.put_slice(b);
                buf.put_slice(&DECISION_ID_KEY);
                buf.put_slice(id);
            }
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if let Self::Encoded(..) = self {
            // Decoding into an encoded reply: continue from its message.
            *self = Self::Built(std::mem::take(self).into_response()?);
        }
        match self {
            Self::Built(r) => r.merge_field(tag, wire_type, buf, ctx),
            Self::Encoded(..) => Ok(()),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Self::Built(r) => r.encoded_len(),
            Self::Encoded(b, _) => b.len() + DECISION_ID_KEY.len() + DECISION_ID_LEN,
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
            decision_id: String::new(),
            cached: true,
            explanation: None,
        }
    }

    const ID: &str = "019af3c2-7b1e-7c3a-9d2e-5f6a7b8c9d0e";

    fn with_id() -> AuthorizeResponse {
        AuthorizeResponse {
            decision_id: ID.into(),
            ..response()
        }
    }

    fn id() -> [u8; DECISION_ID_LEN] {
        ID.as_bytes().try_into().unwrap()
    }

    #[test]
    fn both_forms_put_the_same_bytes_on_the_wire() {
        let built = Reply::Built(with_id());
        let encoded = Reply::Encoded(Bytes::from(response().encode_to_vec()), id());
        assert_eq!(built.encoded_len(), encoded.encoded_len());
        assert_eq!(built.encode_to_vec(), encoded.encode_to_vec());
        assert_eq!(built.encode_to_vec(), with_id().encode_to_vec());
        assert_eq!(encoded.into_response().unwrap(), with_id());
    }

    #[test]
    fn decodes_as_the_generated_message() {
        let bytes = response().encode_to_vec();
        let reply = Reply::decode(bytes.as_slice()).unwrap();
        assert_eq!(reply, Reply::Built(response()));
        let mut merged = Reply::Encoded(Bytes::from(bytes.clone()), id());
        merged.merge(bytes.as_slice()).unwrap();
        let mut twice = with_id();
        twice.merge(bytes.as_slice()).unwrap();
        assert_eq!(merged, Reply::Built(twice));
    }
}
