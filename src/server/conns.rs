//! Connection bookkeeping: which connections make progress, which stall, and which to shed when
//! the limit is reached.
//!
//! A client that stops reading must not hold a slot for ever, and a crowd of idle or stalled
//! connections must not lock out the next scrape. Every socket is wrapped in [`Watched`], which
//! records the last moment bytes moved and fails a write that makes no progress for
//! [`WRITE_STALL_TIMEOUT`]. At the limit, the connection that has been still the longest is
//! closed to make room; only when every connection is busy is the newcomer refused.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// A response write that moves no byte for this long closes its connection.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that moved bytes more recently than this is busy and never shed.
pub const BUSY_WITHIN: Duration = Duration::from_millis(250);

/// The open connections and when each last made progress.
#[derive(Debug)]
pub(crate) struct Registry {
    limit: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Entry>>,
}

#[derive(Debug)]
struct Entry {
    progress: Arc<AtomicU64>,
    close: Arc<Notify>,
}

/// One registered connection; leaving the registry when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    registry: Arc<Registry>,
    id: u64,
    /// Fires when the registry sheds this connection.
    pub(crate) close: Arc<Notify>,
    progress: Arc<AtomicU64>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.open.lock().remove(&self.id);
    }
}

impl Registry {
    /// A registry admitting at most `limit` connections at once.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Registry {
            limit,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Admits a new connection, shedding the stillest one at the limit; `None` when every open
    /// connection is busy and the newcomer must be refused.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let now = self.millis();
        let busy = u64::try_from(BUSY_WITHIN.as_millis()).unwrap_or(u64::MAX);
        let mut open = self.open.lock();
        if open.len() >= self.limit {
            let victim = open
                .iter()
                .map(|(id, e)| (e.progress.load(Relaxed), *id))
                .filter(|(last, _)| now.saturating_sub(*last) >= busy)
                .min()?;
            if let Some(e) = open.remove(&victim.1) {
                // notify_one stores a permit, so the shed connection sees it even if it is not
                // waiting at this instant.
                e.close.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Relaxed);
        let progress = Arc::new(AtomicU64::new(now));
        let close = Arc::new(Notify::new());
        open.insert(
            id,
            Entry {
                progress: Arc::clone(&progress),
                close: Arc::clone(&close),
            },
        );
        Some(Slot {
            registry: Arc::clone(self),
            id,
            close,
            progress,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.lock().len()
    }
}

/// A socket that reports progress to its [`Slot`] and fails writes that stall.
pub(crate) struct Watched<S> {
    inner: S,
    registry: Arc<Registry>,
    progress: Arc<AtomicU64>,
    stall: Option<Pin<Box<Sleep>>>,
}

impl<S> Watched<S> {
    /// Wraps `inner`, reporting to `slot`.
    pub(crate) fn new(inner: S, slot: &Slot) -> Self {
        Watched {
            inner,
            registry: Arc::clone(&slot.registry),
            progress: Arc::clone(&slot.progress),
            stall: None,
        }
    }

    /// The wrapped socket.
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    fn moved(&mut self) {
        self.progress.store(self.registry.millis(), Relaxed);
        self.stall = None;
    }

    /// On a write that cannot go on: arms the stall timer, or fails once it ran out.
    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let timer = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future as _;

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.progress.store(this.registry.millis(), Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.moved();
                Poll::Ready(r)
            }
            Poll::Pending => this.pending(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.moved();
                Poll::Ready(r)
            }
            Poll::Pending => this.pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => this.pending(cx).map_ok(|_| ()),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn at_the_limit_the_stillest_connection_is_shed_and_busy_ones_are_kept() {
        let r = Registry::new(2);
        let a = r.admit().expect("room");
        tokio::time::advance(Duration::from_secs(1)).await;
        let b = r.admit().expect("room");
        tokio::time::advance(Duration::from_secs(1)).await;
        // `a` has been still the longest: it goes.
        let c = r.admit().expect("shed one");
        assert_eq!(r.len(), 2);
        tokio::time::timeout(Duration::from_millis(1), a.close.notified())
            .await
            .expect("a was told to close");
        drop(a);
        assert_eq!(r.len(), 2);
        // Both left are busy (just moved bytes): the newcomer is refused.
        b.progress.store(r.millis(), Relaxed);
        c.progress.store(r.millis(), Relaxed);
        assert!(r.admit().is_none());
        drop((b, c));
        assert_eq!(r.len(), 0);
    }
}
