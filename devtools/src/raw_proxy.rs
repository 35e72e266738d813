//! A measuring stick, not a proxy to use: HTTP/1.1 forwarding without
//! hyper — `httparse` for both heads, bytes copied through one buffer a
//! direction, one upstream connection per client connection, on tokio's
//! current-thread runtime and mimalloc like the floor (`bare_proxy`). It
//! reads only `Content-Length` bodies (what `bench/run.sh`'s chat requests
//! and nginx's answers are) and forwards heads as they came. What it costs
//! a request is what an HTTP layer of the sidecar's own could cost, next to
//! hyper's floor and nginx's proxy (docs/benchmark.md, "The budget").
//! With `--work-ns N` it also spends N ns of CPU on each request before
//! forwarding it: a stand-in for the sidecar's own work on a layer this lean.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use http::Uri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::serve;

/// Headers read from one head; a head with more is refused.
const MAX_HEADERS: usize = 64;
/// Bytes a head may take.
const MAX_HEAD: usize = 64 * 1024;
/// Bytes a body may take: it is held whole.
const MAX_BODY: usize = 16 << 20;

/// Forwards every request on `listen` to `upstream` (`http://host:port`)
/// until SIGTERM or ctrl-c, spending `work` of CPU on each.
pub async fn run(listen: SocketAddr, upstream: Uri, work: Duration) -> std::io::Result<()> {
    serve::forward(
        "raw proxy",
        listen,
        upstream,
        move |stream, origin| async move {
            if let Err(e) = connection(stream, &origin, work).await {
                tracing::debug!(error = %e, "connection ended");
            }
        },
    )
    .await
}

/// One client connection and its upstream connection, a request at a time.
async fn connection(mut client: TcpStream, origin: &str, work: Duration) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let mut upstream: Option<TcpStream> = None;
    let mut from_client = BytesMut::with_capacity(8 * 1024);
    let mut from_upstream = BytesMut::with_capacity(8 * 1024);
    loop {
        let Some(length) = read_message(&mut client, &mut from_client, Head::Request).await? else {
            return Ok(());
        };
        spin(work);
        let server = match &mut upstream {
            Some(server) => server,
            None => {
                let server = TcpStream::connect(origin).await?;
                let _ = server.set_nodelay(true);
                upstream.insert(server)
            }
        };
        server.write_all(&from_client[..length]).await?;
        from_client.advance(length);
        let Some(length) = read_message(server, &mut from_upstream, Head::Response).await? else {
            return Err(std::io::Error::other("the upstream closed the connection"));
        };
        client.write_all(&from_upstream[..length]).await?;
        from_upstream.advance(length);
    }
}

/// Keeps the CPU busy for `work` (a loop on the clock, which the vDSO reads
/// without a system call).
fn spin(work: Duration) {
    if work.is_zero() {
        return;
    }
    let end = Instant::now() + work;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

#[derive(Clone, Copy)]
enum Head {
    Request,
    Response,
}

/// Reads one whole message (head and `Content-Length` body) into `buffer`;
/// its length, or `None` at a clean end before a message starts.
async fn read_message(
    stream: &mut TcpStream,
    buffer: &mut BytesMut,
    head: Head,
) -> std::io::Result<Option<usize>> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    loop {
        if let Some((head_len, body_len)) = parse(buffer, head).map_err(invalid)? {
            let total = head_len + body_len;
            while buffer.len() < total {
                buffer.reserve(total - buffer.len());
                if stream.read_buf(buffer).await? == 0 {
                    return Err(invalid("the message ended early".into()));
                }
            }
            return Ok(Some(total));
        }
        if buffer.len() > MAX_HEAD {
            return Err(invalid("the head is too large".into()));
        }
        buffer.reserve(4096);
        if stream.read_buf(buffer).await? == 0 {
            return if buffer.is_empty() {
                Ok(None)
            } else {
                Err(invalid("the head ended early".into()))
            };
        }
    }
}

/// The head's length and the body's, once the head is whole.
fn parse(buffer: &[u8], head: Head) -> Result<Option<(usize, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (parsed, found) = match head {
        Head::Request => {
            let mut request = httparse::Request::new(&mut headers);
            let parsed = request.parse(buffer);
            (parsed, request.headers.len())
        }
        Head::Response => {
            let mut response = httparse::Response::new(&mut headers);
            let parsed = response.parse(buffer);
            (parsed, response.headers.len())
        }
    };
    let head_len = match parsed.map_err(|e| e.to_string())? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let mut body_len = 0;
    for header in headers.iter().take(found) {
        if header.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or("a content-length that is not a number")?;
            if body_len > MAX_BODY {
                return Err(format!("a body of more than {MAX_BODY} bytes"));
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked bodies are not read here".into());
        }
    }
    Ok(Some((head_len, body_len)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn a_head_is_measured_once_whole_with_its_content_length_body() {
        let request =
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nContent-Length: 4\r\n\r\nbody";
        assert_eq!(
            parse(request, Head::Request),
            Ok(Some((request.len() - 4, 4)))
        );
        assert_eq!(parse(&request[..30], Head::Request), Ok(None));
        let response = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            parse(response, Head::Response),
            Ok(Some((response.len(), 0)))
        );
        let get = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
        assert_eq!(parse(get, Head::Request), Ok(Some((get.len(), 0))));
    }

    #[test]
    fn what_it_cannot_forward_is_refused() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(parse(chunked, Head::Response).is_err());
        let bad_length = b"POST / HTTP/1.1\r\ncontent-length: ten\r\n\r\n";
        assert!(parse(bad_length, Head::Request).is_err());
        let huge = format!(
            "POST / HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(parse(huge.as_bytes(), Head::Request).is_err());
        assert!(parse(b"NOT HTTP\r\n\r\n", Head::Response).is_err());
    }

    const WORK: Duration = Duration::from_millis(3);

    /// Two requests on one client connection reach a loopback upstream on
    /// one connection of the forwarder's, and their answers come back, each
    /// after the work it was told to spend on a request.
    #[tokio::test]
    async fn requests_are_forwarded_in_turn_on_one_upstream_connection() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = upstream.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut socket, _) = upstream.accept().await.unwrap();
            let mut buffer = BytesMut::new();
            for answer in ["one", "two"] {
                let length = read_message(&mut socket, &mut buffer, Head::Request)
                    .await
                    .unwrap()
                    .unwrap();
                assert!(buffer[..length].ends_with(b"\r\n\r\nhi"));
                buffer.advance(length);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                    answer.len()
                );
                socket.write_all(head.as_bytes()).await.unwrap();
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = proxy.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = proxy.accept().await.unwrap();
            connection(stream, &origin, WORK).await
        });
        let mut client = TcpStream::connect(address).await.unwrap();
        let mut buffer = BytesMut::new();
        let started = Instant::now();
        for answer in ["one", "two"] {
            let request = "POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi";
            client.write_all(request.as_bytes()).await.unwrap();
            let length = read_message(&mut client, &mut buffer, Head::Response)
                .await
                .unwrap()
                .unwrap();
            assert!(buffer[..length].ends_with(answer.as_bytes()));
            buffer.advance(length);
        }
        assert!(started.elapsed() >= 2 * WORK);
        server.await.unwrap();
    }
}
