//! A TCP stream whose gathered writes are one `sendmsg(2)`.
//!
//! hyper writes a message's head and its body's pieces with one vectored
//! write, and tokio's `TcpStream` makes that `writev(2)`: a file system
//! call, which on a socket passes through the VFS (the file position lock,
//! `rw_verify_area`, the iterator import) before it reaches the socket.
//! `sendmsg(2)` sends the same buffers straight to the socket, without a
//! copy. Under load the VFS part was about half a microsecond of kernel
//! time a request for the two vectored writes a request makes (one to the
//! upstream, one to the client; `perf record` of the sidecar against a
//! proxy that sends with `send(2)`, docs/benchmark.md "Where the sidecar's
//! CPU goes"). Everything else is tokio's stream as it is: reads, single
//! writes (`send(2)` already), flush, shutdown, readiness.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rustix::net::{SendAncillaryBuffer, SendFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A connected TCP stream that sends gathered writes with `sendmsg(2)`.
#[derive(Debug)]
pub(crate) struct Stream(TcpStream);

impl Stream {
    pub(crate) fn new(stream: TcpStream) -> Stream {
        Stream(stream)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let stream = &self.0;
        loop {
            ready!(stream.poll_write_ready(cx))?;
            // `try_io` clears the readiness when the call would block, so
            // the next `poll_write_ready` waits for the socket again.
            let sent = stream.try_io(Interest::WRITABLE, || {
                let mut control = SendAncillaryBuffer::default();
                rustix::net::sendmsg(stream, bufs, &mut control, SendFlags::NOSIGNAL)
                    .map_err(io::Error::from)
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                sent => return Poll::Ready(sent),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (connected, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        (Stream::new(connected.unwrap()), accepted.unwrap().0)
    }

    /// One gathered write: what it reported sent, in order.
    async fn write_gathered(stream: &mut Stream, pieces: &[&[u8]]) -> usize {
        let slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
        poll_fn(|cx| Pin::new(&mut *stream).poll_write_vectored(cx, &slices))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn pieces_arrive_joined_in_order() {
        let (mut stream, mut peer) = pair().await;
        assert!(stream.is_write_vectored());
        let sent = write_gathered(
            &mut stream,
            &[b"HTTP/1.1 200 OK\r\n\r\n", b"", b"{\"ok\":1}"],
        )
        .await;
        assert_eq!(sent, 27);
        let mut got = vec![0; sent];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\n{\"ok\":1}");
    }

    /// More than the socket holds: the first write is partial, the next
    /// one waits until the peer reads, and every byte arrives once.
    #[tokio::test]
    async fn a_full_socket_waits_for_the_peer() {
        let (mut stream, mut peer) = pair().await;
        let whole: Vec<u8> = (0..32u32 << 20).map(|j| (j % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut offset = 0;
        let mut writes = 0;
        while offset < whole.len() {
            // What is left, in two pieces, as a head and a body would be.
            let middle = offset + (whole.len() - offset) / 2;
            let pieces: [&[u8]; 2] = [&whole[offset..middle], &whole[middle..]];
            offset += write_gathered(&mut stream, &pieces).await;
            writes += 1;
        }
        drop(stream);
        // 32 MB does not fit a loopback socket's buffers: some write was partial.
        assert!(writes > 1, "one write took all {} bytes", whole.len());
        assert_eq!(reader.await.unwrap(), whole);
    }
}
