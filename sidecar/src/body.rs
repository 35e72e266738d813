//! Body types shared by the server, the request path and the upstream client.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Body, Frame, SizeHint};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the proxy sends, to the client or to an upstream.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

pub(crate) fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A body made of pieces, most of them slices of one buffer: what a spliced
/// request is. Cloning it clones reference counts, not bytes.
#[derive(Clone, Debug, Default)]
pub struct Rope {
    chunks: VecDeque<Bytes>,
    len: u64,
}

impl Rope {
    pub(crate) fn new(mut chunks: Vec<Bytes>) -> Rope {
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        chunks.retain(|c| !c.is_empty());
        Rope {
            // Takes the list's buffer as it is: no copy, no allocation.
            chunks: VecDeque::from(chunks),
            len,
        }
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub fn len(&self) -> u64 {
        self.len
    }

    #[cfg(feature = "fuzzing")]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All the pieces as one contiguous buffer.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn to_bytes(&self) -> Bytes {
        let mut out = bytes::BytesMut::with_capacity(self.len as usize);
        self.chunks.iter().for_each(|c| out.extend_from_slice(c));
        out.freeze()
    }
}

impl Body for Rope {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.len -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}
