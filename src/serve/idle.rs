//! Closing connections that say nothing. hyper bounds how long an HTTP/1.1 client may take to
//! send a request's headers, but not how long a client may stay silent before its first byte
//! (the protocol is not known yet) or how long an HTTP/2 connection may sit with nothing on it;
//! each such connection holds a socket and a task, so a few thousand of them would use up the
//! server's file descriptors. [`Tracked`] notes when bytes last moved either way and
//! [`silence`] resolves when a connection has been still for too long.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How long a new connection may take to send its first byte.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may move no byte either way once it has spoken. An event stream
/// writes a keep-alive every 15 s, so only a connection with nothing in flight goes quiet.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// When bytes last moved on a connection (in ms since it was accepted), and whether any has
/// been read yet.
#[derive(Clone)]
pub struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
    spoke: Arc<AtomicBool>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: Arc::default(),
            spoke: Arc::default(),
        }
    }

    fn touch(&self, read: bool) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
        if read {
            self.spoke.store(true, Ordering::Relaxed);
        }
    }

    /// When the connection counts as silent, given what has moved so far.
    fn deadline(&self) -> Instant {
        let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        if !self.spoke.load(Ordering::Relaxed) {
            self.start + FIRST_BYTE_TIMEOUT
        } else {
            last + IDLE_TIMEOUT
        }
    }
}

/// An accepted stream that records its traffic in an [`Activity`].
pub struct Tracked<I> {
    io: I,
    activity: Activity,
}

impl<I> Tracked<I> {
    /// `io`, tracked from now on; the [`Activity`] is for [`silence`].
    pub fn new(io: I) -> (Tracked<I>, Activity) {
        let activity = Activity::new();
        (
            Tracked {
                io,
                activity: activity.clone(),
            },
            activity,
        )
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch(true);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch(false);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Resolves once the connection has been silent past its deadline: no first byte within
/// [`FIRST_BYTE_TIMEOUT`], or nothing either way for [`IDLE_TIMEOUT`].
pub async fn silence(activity: Activity) {
    loop {
        let deadline = activity.deadline();
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn near(elapsed: Duration, want: Duration) -> bool {
        elapsed.abs_diff(want) <= Duration::from_millis(5)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_silent_without_a_first_byte_or_once_nothing_moves() {
        // Connected, never a byte.
        let (_client, server) = tokio::io::duplex(64);
        let (_server, activity) = Tracked::new(server);
        let started = Instant::now();
        silence(activity).await;
        assert!(near(started.elapsed(), FIRST_BYTE_TIMEOUT));

        // A request, a reply half the idle time later, then nothing.
        let (mut client, server) = tokio::io::duplex(64);
        let (mut server, activity) = Tracked::new(server);
        client.write_all(b"GET").await.unwrap();
        server.read_exact(&mut [0u8; 3]).await.unwrap();
        let watched = tokio::spawn(silence(activity));
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        server.write_all(b"200").await.unwrap();
        let replied = Instant::now();
        watched.await.unwrap();
        assert!(
            near(replied.elapsed(), IDLE_TIMEOUT),
            "{:?}",
            replied.elapsed()
        );
    }
}
