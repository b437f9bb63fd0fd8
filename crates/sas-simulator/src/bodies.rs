//! Response bodies for the faults that misbehave on the wire: oversized, cut off mid-body, and
//! never-ending. Each produces its bytes a piece at a time, so the simulator itself never holds a
//! large body whole.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::Response;

use crate::response::{JSON, SimBody, respond};

/// What an endless body starts with: the opening of a task list that never closes.
const ENDLESS_PREFIX: &[u8] = br#"{"RequestId":"endless","Task":["#;

/// A 200 of `bytes` spaces; `chunked` leaves out `Content-Length`.
pub(crate) fn oversized_response(bytes: usize, chunked: bool) -> Response<SimBody> {
    let body = RepeatBody {
        remaining: bytes,
        announce: !chunked,
    };
    respond(200, JSON, None, body.boxed())
}

/// A 200 announcing `full`'s length that sends half of it and then breaks the connection.
pub(crate) fn truncated_response(full: String) -> Response<SimBody> {
    respond(200, JSON, None, TruncatedBody::new(full).boxed())
}

/// A 200 that sends the start of a task list, then `chunk` spaces every `every`, for ever.
pub(crate) fn endless_response(chunk: usize, every: Duration) -> Response<SimBody> {
    respond(200, JSON, None, EndlessBody::new(chunk, every).boxed())
}

/// A body of spaces produced 64 KiB at a time.
struct RepeatBody {
    remaining: usize,
    announce: bool,
}

impl Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        const CHUNK: usize = 64 * 1024;
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b' '; n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.announce {
            SizeHint::with_exact(self.remaining as u64)
        } else {
            SizeHint::default()
        }
    }
}

/// Announces `announced` bytes, sends `part`, then ends short of the announced length, which makes
/// hyper abort the connection.
struct TruncatedBody {
    announced: u64,
    part: Option<Bytes>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TruncatedBody {
    fn new(full: String) -> Self {
        let full = Bytes::from(full);
        TruncatedBody {
            announced: full.len() as u64,
            part: Some(full.slice(..full.len() / 2)),
            pause: None,
        }
    }
}

impl Body for TruncatedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(part) = self.part.take() {
            return Poll::Ready(Some(Ok(Frame::data(part))));
        }
        // A moment for hyper to flush the part before the short end closes the connection.
        let pause = self
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(20))));
        match pause.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.announced)
    }
}

/// A body that never ends. hyper polls it only when it can write, so a client that stops reading
/// stops it too, and one that disconnects drops it.
struct EndlessBody {
    prefix: Option<Bytes>,
    chunk: Bytes,
    every: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl EndlessBody {
    fn new(chunk: usize, every: Duration) -> Self {
        EndlessBody {
            prefix: Some(Bytes::from_static(ENDLESS_PREFIX)),
            chunk: Bytes::from(vec![b' '; chunk.max(1)]),
            every,
            timer: Box::pin(tokio::time::sleep(every)),
        }
    }
}

impl Body for EndlessBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let next = tokio::time::Instant::now() + self.every;
        self.timer.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data frames of `body` until it ends or `limit` frames have come.
    async fn frames<B>(mut body: B, limit: usize) -> Vec<Bytes>
    where
        B: Body<Data = Bytes, Error = Infallible> + Unpin,
    {
        let mut out = Vec::new();
        while out.len() < limit {
            match body.frame().await {
                Some(Ok(frame)) => out.extend(frame.into_data().ok()),
                Some(Err(never)) => match never {},
                None => break,
            }
        }
        out
    }

    #[tokio::test]
    async fn repeat_body_sends_exactly_its_length_in_bounded_pieces() {
        let body = RepeatBody {
            remaining: 200_000,
            announce: true,
        };
        assert_eq!(body.size_hint().exact(), Some(200_000));
        let pieces = frames(body, usize::MAX).await;
        assert_eq!(pieces.iter().map(Bytes::len).sum::<usize>(), 200_000);
        assert!(pieces.iter().all(|p| p.len() <= 64 * 1024));
        assert!(pieces.iter().flat_map(|p| p.iter()).all(|b| *b == b' '));

        let chunked = RepeatBody {
            remaining: 10,
            announce: false,
        };
        assert_eq!(chunked.size_hint().exact(), None);
    }

    #[tokio::test]
    async fn truncated_body_announces_everything_and_sends_half() {
        let body = TruncatedBody::new("0123456789".to_owned());
        assert_eq!(body.size_hint().exact(), Some(10));
        assert!(!body.is_end_stream());
        let pieces = frames(body, usize::MAX).await;
        assert_eq!(pieces, [Bytes::from_static(b"01234")]);
    }

    #[tokio::test]
    async fn endless_body_opens_a_task_list_and_keeps_sending() {
        let body = EndlessBody::new(8, Duration::from_millis(1));
        assert_eq!(body.size_hint().exact(), None);
        let pieces = frames(body, 20).await;
        assert_eq!(pieces.len(), 20);
        assert_eq!(pieces[0], ENDLESS_PREFIX);
        assert!(pieces[1..].iter().all(|p| p.as_ref() == b"        "));
        // A zero chunk size would spin without sending anything; it becomes one byte.
        let tiny = frames(EndlessBody::new(0, Duration::from_millis(1)), 2).await;
        assert_eq!(tiny[1].len(), 1);
    }
}
