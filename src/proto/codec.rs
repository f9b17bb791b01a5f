//! The protobuf codec of `verdict.v1.Authorizer`: prost's, except that a
//! request body that does not decode is the caller's error
//! (`INVALID_ARGUMENT`), not the server's (`INTERNAL`, tonic's default).

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// The codec named in the generated server.
#[derive(Debug)]
pub(crate) struct Codec<T, U> {
    prost: ProstCodec<T, U>,
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self {
            prost: ProstCodec::default(),
            _types: PhantomData,
        }
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = Decoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.prost.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        Decoder(self.prost.decoder())
    }
}

/// prost's decoder with its errors turned into `INVALID_ARGUMENT`.
#[derive(Debug)]
pub(crate) struct Decoder<U>(ProstDecoder<U>);

impl<U> tonic::codec::Decoder for Decoder<U>
where
    U: prost::Message + Default + Send + 'static,
{
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|e| {
            Status::invalid_argument(format!(
                "the request body is not a valid protobuf message: {}",
                crate::policy::err::cut(e.message(), 128)
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
