//! The sync protocol's codec: CBOR (libp2p's codec) with a decoding cap per kind of answer.
//!
//! libp2p reads an answer on the codec copy that wrote its request, so the codec remembers what
//! it asked for: an answer to a header request is read up to [`MAX_HEADERS_RESPONSE_BYTES`], any
//! other up to [`MAX_RESPONSE_BYTES`]. An answer over its cap, or one that does not decode, fails
//! with an [`Undecodable`] error, which the requester tells apart from a network failure
//! ([`RequestFailure`]): the first is the peer's doing, the second may not be.

use std::io;

use futures_util::io::{AsyncRead, AsyncReadExt, AsyncWrite, Cursor};
use libp2p::request_response::{self, cbor, OutboundFailure};
use libp2p::StreamProtocol;

use crate::network::protocol::{
    SyncRequest, SyncResponse, MAX_HEADERS_RESPONSE_BYTES, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
};

/// An answer that is over its cap or does not decode.
#[derive(Debug)]
pub struct Undecodable(pub String);

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "undecodable sync answer: {}", self.0)
    }
}

impl std::error::Error for Undecodable {}

/// Why a sync request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFailure {
    /// The answer came but is over its cap or does not decode: the peer's fault.
    Undecodable(String),
    /// The network failed (dial, timeout, closed connection, stream error).
    Network(String),
}

impl std::fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Undecodable(e) => write!(f, "undecodable sync answer: {e}"),
            Self::Network(e) => write!(f, "sync request failed: {e}"),
        }
    }
}

impl From<OutboundFailure> for RequestFailure {
    fn from(failure: OutboundFailure) -> Self {
        if let OutboundFailure::Io(e) = &failure {
            if let Some(u) = e.get_ref().and_then(|inner| inner.downcast_ref::<Undecodable>()) {
                return Self::Undecodable(u.0.clone());
            }
        }
        Self::Network(failure.to_string())
    }
}

/// The sync protocol's codec (see the module documentation).
#[derive(Clone)]
pub struct SyncCodec {
    inner: cbor::codec::Codec<SyncRequest, SyncResponse>,
    /// Whether the request this copy wrote asked for headers.
    asked_headers: bool,
}

impl Default for SyncCodec {
    fn default() -> Self {
        let inner = cbor::codec::Codec::default()
            .set_request_size_maximum(MAX_REQUEST_BYTES)
            // The cap is applied while reading, below; the inner codec decodes from memory.
            .set_response_size_maximum(u64::MAX);
        Self { inner, asked_headers: false }
    }
}

impl SyncCodec {
    /// The decoding cap of the answer to the request this copy wrote.
    fn response_cap(&self) -> u64 {
        if self.asked_headers {
            MAX_HEADERS_RESPONSE_BYTES
        } else {
            MAX_RESPONSE_BYTES
        }
    }
}

fn undecodable(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Undecodable(reason))
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, protocol: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.inner.read_request(protocol, io).await
    }

    async fn read_response<T>(&mut self, protocol: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let cap = self.response_cap();
        let mut bytes = Vec::new();
        // One byte more than the cap tells an answer at the cap from one over it.
        io.take(cap + 1).read_to_end(&mut bytes).await?;
        if bytes.len() as u64 > cap {
            return Err(undecodable(format!("the answer is over the {cap}-byte cap for its kind")));
        }
        self.inner
            .read_response(protocol, &mut Cursor::new(bytes))
            .await
            .map_err(|e| undecodable(e.to_string()))
    }

    async fn write_request<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        request: SyncRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.asked_headers = matches!(request, SyncRequest::Headers { .. });
        self.inner.write_request(protocol, io, request).await
    }

    async fn write_response<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        response: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.inner.write_response(protocol, io, response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Bytes;
    use request_response::Codec;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    fn encoded(response: &SyncResponse) -> Vec<u8> {
        let mut out = Vec::new();
        block_on(SyncCodec::default().write_response(&StreamProtocol::new("/t"), &mut out, response.clone()))
            .unwrap();
        out
    }

    fn read(asked: SyncRequest, bytes: Vec<u8>) -> io::Result<SyncResponse> {
        let mut codec = SyncCodec::default();
        let p = StreamProtocol::new("/t");
        block_on(async {
            codec.write_request(&p, &mut Vec::new(), asked).await?;
            codec.read_response(&p, &mut Cursor::new(bytes)).await
        })
    }

    /// A header answer whose encoding is exactly `len` bytes.
    fn header_answer_of(len: usize) -> Vec<u8> {
        let answer = |payload: usize| encoded(&SyncResponse::Headers(vec![Bytes::from(vec![7u8; payload])]));
        let framing = answer(100_000).len() - 100_000;
        let bytes = answer(len - framing);
        assert_eq!(bytes.len(), len);
        bytes
    }

    #[test]
    fn header_answers_are_capped_under_at_and_over_their_own_limit() {
        let headers = || SyncRequest::Headers { from: 1, count: 1 };
        let cap = MAX_HEADERS_RESPONSE_BYTES as usize;
        assert!(matches!(read(headers(), header_answer_of(cap - 1)), Ok(SyncResponse::Headers(_))));
        assert!(matches!(read(headers(), header_answer_of(cap)), Ok(SyncResponse::Headers(_))));
        let over = read(headers(), header_answer_of(cap + 1)).unwrap_err();
        let failure = RequestFailure::from(OutboundFailure::Io(over));
        assert!(matches!(&failure, RequestFailure::Undecodable(m) if m.contains("cap")), "{failure}");
        // The same bytes answering a block request are under that request's cap.
        assert!(read(SyncRequest::Blocks { from: 1, count: 1 }, header_answer_of(cap + 1)).is_ok());
    }

    #[test]
    fn garbage_is_undecodable_and_network_failures_are_not() {
        let e = read(SyncRequest::Status, vec![0xff, 0x00, 0x13]).unwrap_err();
        assert!(matches!(RequestFailure::from(OutboundFailure::Io(e)), RequestFailure::Undecodable(_)));
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert!(matches!(RequestFailure::from(OutboundFailure::Io(reset)), RequestFailure::Network(_)));
        assert!(matches!(RequestFailure::from(OutboundFailure::Timeout), RequestFailure::Network(_)));
    }
}
