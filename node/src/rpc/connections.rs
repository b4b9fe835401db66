//! The server's accept loop with a cap on open connections (`--rpc-max-connections`).
//!
//! warp's own server cannot take a custom listener, so the routes are served here the way warp
//! serves them (hyper-util's HTTP/1 and HTTP/2 connection with upgrades, graceful shutdown). Each
//! accepted socket holds a permit of a semaphore for as long as it is open, WebSocket upgrades
//! included (the permit lives inside the socket wrapper that the upgrade takes over). A connection
//! over the cap is answered `503 Service Unavailable` with a JSON-RPC error naming the flag, and
//! closed. A connection that sends nothing for 30 s after connecting, or no request head for
//! 120 s later (idle keep-alive included), is closed by the server, so idle or slow clients cannot
//! hold the places for ever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most connections over the cap being answered 503 at once; past it they are dropped at once.
const MAX_REFUSING: usize = 64;

/// How long a new connection may stay silent before its first byte (after it, hyper's header
/// read timeout takes over).
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// A socket that holds its place under the connection cap until it is dropped.
pub struct Counted {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Until the first byte arrives: when the connection is given up.
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        let got_bytes = buf.filled().len() > before;
        if let Some(deadline) = self.first_byte.as_mut() {
            match &read {
                Poll::Ready(Ok(())) if got_bytes => self.first_byte = None,
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within 30 s of connecting",
                    )));
                }
                _ => {}
            }
        }
        read
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The cap on open connections.
#[derive(Clone)]
pub struct ConnectionCap {
    open: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    max: usize,
}

impl ConnectionCap {
    /// A cap of `max` open connections (at least 1).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self { open: Arc::new(Semaphore::new(max)), refusing: Arc::new(Semaphore::new(MAX_REFUSING)), max }
    }

    /// Admits `io` under the cap, or answers it 503 (on a task of its own) and returns `None`.
    pub fn admit(&self, io: TcpStream) -> Option<Counted> {
        match self.open.clone().try_acquire_owned() {
            Ok(permit) => Some(Counted {
                io,
                _permit: permit,
                first_byte: Some(Box::pin(tokio::time::sleep(FIRST_BYTE_TIMEOUT))),
            }),
            Err(_) => {
                tracing::debug!(max = self.max, "refused a JSON-RPC connection over --rpc-max-connections");
                if let Ok(slot) = self.refusing.clone().try_acquire_owned() {
                    let max = self.max;
                    tokio::spawn(async move {
                        refuse(io, max).await;
                        drop(slot);
                    });
                }
                None
            }
        }
    }
}

/// The answer to a connection over the cap.
pub fn over_cap_response(max: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": -32005,
            "message": format!(
                "too many connections: the server holds at most {max} open connections \
                 (--rpc-max-connections); close idle ones or retry later"
            ),
        },
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads the request's head (for at most a second and 16 KiB: a client must have sent its request
/// before an answer can come), writes the 503 answer, then reads and drops what the client still
/// sends (at most a second and 64 KiB), so that it reads the answer rather than a reset connection.
async fn refuse(mut io: TcpStream, max: usize) {
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, io.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let answer = over_cap_response(max);
    let wrote = tokio::time::timeout(Duration::from_secs(1), io.write_all(&answer)).await;
    if !matches!(wrote, Ok(Ok(()))) {
        return;
    }
    let _ = io.shutdown().await;
    let mut left: usize = 64 * 1024;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while left > 0 {
        match tokio::time::timeout_at(deadline, io.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
}
