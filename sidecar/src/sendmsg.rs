//! A TCP stream whose gathered writes are one `sendmsg(2)`.
//!
//! hyper writes a message's head and its body's pieces with one vectored
//! write, and tokio's `TcpStream` makes that `writev(2)`: a file system
//! call, which on a socket passes through the VFS (`vfs_writev`,
//! `rw_verify_area`, the iterator's import) before it reaches the socket.
//! `sendmsg(2)` hands the same buffers to the socket directly, without
//! first gathering them into one buffer of our own. Under load that path
//! cost about 1.0 µs of kernel time a request for the two vectored writes a
//! request makes (one to the upstream, one to the client), and about 0.8 µs
//! by `sendmsg(2)` (`perf record` with kernel symbols, docs/benchmark.md
//! "Below hyper"). Everything else is tokio's stream as it is: reads,
//! single writes (`send(2)` already), flush, shutdown, readiness.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rustix::net::{SendAncillaryBuffer, SendFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// At most this many buffers go to one call: Linux's `IOV_MAX` (std's
/// vectored writes cap theirs the same way; hyper sends at most 64).
const MAX_BUFS: usize = 1024;

/// `MSG_NOSIGNAL`: a peer gone gives `EPIPE`, never `SIGPIPE` (which Rust's
/// runtime ignores anyway), where the platform has it.
#[cfg(not(target_vendor = "apple"))]
const FLAGS: SendFlags = SendFlags::NOSIGNAL;
#[cfg(target_vendor = "apple")]
const FLAGS: SendFlags = SendFlags::empty();

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
        let bufs = &bufs[..bufs.len().min(MAX_BUFS)];
        loop {
            ready!(stream.poll_write_ready(cx))?;
            // `try_io` clears the readiness when the call would block, so
            // the next `poll_write_ready` waits for the socket again.
            let sent = stream.try_io(Interest::WRITABLE, || {
                let mut control = SendAncillaryBuffer::default();
                rustix::net::sendmsg(stream, bufs, &mut control, FLAGS).map_err(io::Error::from)
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
    use tokio::net::{TcpListener, TcpSocket};

    use super::*;

    /// A connected pair; with `small`, both ends' socket buffers are 64 KiB,
    /// so a write of a few MB cannot fit.
    async fn pair(small: bool) -> (Stream, TcpStream) {
        let listening = TcpSocket::new_v4().unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        if small {
            // An accepted socket's receive buffer is the listener's.
            listening.set_recv_buffer_size(64 << 10).unwrap();
            socket.set_send_buffer_size(64 << 10).unwrap();
        }
        listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener: TcpListener = listening.listen(1).unwrap();
        let address = listener.local_addr().unwrap();
        let (connected, accepted) = tokio::join!(socket.connect(address), listener.accept());
        (Stream::new(connected.unwrap()), accepted.unwrap().0)
    }

    /// One gathered write: what it reported sent.
    async fn write_gathered(stream: &mut Stream, pieces: &[&[u8]]) -> io::Result<usize> {
        let slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
        poll_fn(|cx| Pin::new(&mut *stream).poll_write_vectored(cx, &slices)).await
    }

    #[tokio::test]
    async fn pieces_arrive_joined_in_order() {
        let (mut stream, mut peer) = pair(false).await;
        assert!(stream.is_write_vectored());
        let pieces: [&[u8]; 3] = [b"HTTP/1.1 200 OK\r\n\r\n", b"", b"{\"ok\":1}"];
        let sent = write_gathered(&mut stream, &pieces).await.unwrap();
        assert_eq!(sent, 27);
        let mut got = vec![0; sent];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\n{\"ok\":1}");
    }

    /// More than the sockets hold: a write is partial, the next one waits
    /// until the peer reads, and every byte arrives once, in order. The
    /// test's runtime has one thread, so the reader runs only while the
    /// writer waits: a write that returned `WouldBlock` instead of waiting
    /// fails the test.
    #[tokio::test]
    async fn a_full_socket_waits_for_the_peer() {
        let (mut stream, mut peer) = pair(true).await;
        let whole: Vec<u8> = (0..4u32 << 20).map(|j| (j % 251) as u8).collect();
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
            offset += write_gathered(&mut stream, &pieces).await.unwrap();
            writes += 1;
        }
        drop(stream);
        assert!(writes > 1, "one write took all {} bytes", whole.len());
        let got = reader.await.unwrap();
        assert_eq!(got.len(), whole.len());
        let first_wrong = got.iter().zip(&whole).position(|(a, b)| a != b);
        assert_eq!(first_wrong, None);
    }

    /// A peer that reset the connection: the write fails, it does not hang.
    #[tokio::test]
    async fn a_reset_peer_is_an_error() {
        let (mut stream, peer) = pair(false).await;
        peer.set_zero_linger().unwrap();
        drop(peer);
        let error = loop {
            match write_gathered(&mut stream, &[b"head", b"body"]).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{error}"
        );
    }
}
