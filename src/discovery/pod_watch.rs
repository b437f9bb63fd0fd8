//! List, then watch, the pods of one scope (one namespace or all), as client-go's reflector
//! does: a paginated list gives the set and a resource version; a watch from that version
//! streams the changes; a watch that ends is resumed from the last version seen (bookmarks keep
//! it fresh); `410 Gone` means the history is compacted and the list starts over. Each step
//! goes out on a channel to the source, which keeps the cache.
//!
//! The loop is written here rather than taken from kube's runtime watcher because the source
//! must know the moment a watch is re-established after an error (to say it is in sync again),
//! which that watcher does not tell, and because decoding only the fields the source reads
//! (into [`PodView`]) keeps both the CPU per event and the transient memory small.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use kube::Client;
use kube::client::Body;
use kube::core::Request;
use kube::core::params::{ListParams, WatchParams};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::backoff::Backoff;

use super::pods::{PodKey, PodUse, PodView};

/// Pods per list page: the page size client-go and kube use.
const PAGE: u32 = 500;
/// Below the client's 295 s read timeout, so the server ends the watch first.
const WATCH_TIMEOUT_SECS: u32 = 290;
/// A list page or error body larger than this is refused: 500 real pods take a few MiB.
const MAX_BODY: usize = 256 * 1024 * 1024;
/// A single watch event larger than this is refused (an object is at most about 1.5 MiB).
const MAX_LINE: usize = 16 * 1024 * 1024;
/// A watch that ends sooner than this without any event is resumed only after a backoff, so a
/// server that closes every watch at once is not asked again in a tight loop.
const HEALTHY_WATCH: Duration = Duration::from_secs(10);
/// Retries after errors: about half a second at first, at most half a minute apart.
pub(crate) const RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

/// What one scope's loop tells the source.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// A complete list of the scope: every pod in it now (those without digests as `None`).
    Listed(Vec<(PodKey, Option<PodUse>)>),
    /// One pod changed; `None` when it was deleted, ended, or names no digest any more.
    Changed(PodKey, Option<PodUse>),
    /// After a failure, a watch is streaming again from where the cache is.
    InSync,
    /// Listing or watching failed, and why; the loop retries with backoff.
    Failed(String),
}

/// Why a list or watch request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// The request could not be built (a selector kube refuses).
    #[error("cannot build the request: {0}")]
    Build(#[from] kube::core::request::Error),
    /// No answer: connection, TLS, auth or timeout.
    #[error("{}", chain(.0))]
    Transport(#[from] kube::Error),
    /// The API server answered with an error status.
    #[error("the API server answered {code} {reason}: {message}")]
    Status {
        /// HTTP status or the `Status` object's code.
        code: u16,
        /// The `Status` reason (`Forbidden`, `Expired`, …).
        reason: String,
        /// The `Status` message.
        message: String,
    },
    /// The body was not what the API server sends.
    #[error("cannot decode the answer: {0}")]
    Decode(#[from] serde_json::Error),
    /// The body was larger than any real answer.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    /// A list without a resource version cannot be watched from.
    #[error("the pod list has no resourceVersion")]
    NoResourceVersion,
}

impl RequestError {
    /// `410 Gone`: the version asked for is compacted away; only a new list helps.
    fn is_gone(&self) -> bool {
        matches!(self, RequestError::Status { code: 410, .. })
    }
}

/// An error with its causes: kube's own text often names only the outermost layer.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        source = s.source();
    }
    text
}

/// Which pods one loop reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    /// One namespace, or all when `None`.
    pub(crate) namespace: Option<String>,
    /// The configured label selector.
    pub(crate) label_selector: Option<String>,
}

impl Scope {
    fn path(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("/api/v1/namespaces/{ns}/pods"),
            None => "/api/v1/pods".to_owned(),
        }
    }

    /// How the log and the failure reason name the scope.
    pub(crate) fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("pods in namespace {ns}"),
            None => "pods in all namespaces".to_owned(),
        }
    }
}

#[derive(Deserialize)]
struct PodList {
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<PodView>,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ListMeta {
    resource_version: Option<String>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

/// A `Status` object, as error answers and `ERROR` watch events carry it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Status {
    code: u16,
    reason: String,
    message: String,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Bookmark {
    metadata: BookmarkMeta,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct BookmarkMeta {
    resource_version: String,
}

/// One line of a watch. The server writes `type` before `object`, so serde decodes the object
/// straight into its type without buffering it.
#[derive(Deserialize)]
#[serde(tag = "type", content = "object", rename_all = "UPPERCASE")]
enum WatchLine {
    Added(PodView),
    Modified(PodView),
    Deleted(PodView),
    Bookmark(Bookmark),
    Error(Status),
}

/// How a watch ended.
enum WatchEnd {
    /// The stream ended or broke; resume from this version.
    Resume { rv: String, healthy: bool },
    /// The version is gone (`410`), or an event could not be read: list again.
    Relist(Option<RequestError>),
    /// The watch could not start or the server reported an error; retry from this version.
    Failed { rv: String, error: RequestError },
    /// The source stopped listening.
    Closed,
}

/// Where one loop's events go: the source's channel, tagged with the loop's index.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    pub(crate) index: usize,
    pub(crate) tx: mpsc::Sender<(usize, StreamEvent)>,
}

impl Outbox {
    /// False once the source stopped listening.
    async fn send(&self, event: StreamEvent) -> bool {
        self.tx.send((self.index, event)).await.is_ok()
    }
}

/// Lists and watches `scope` until the source stops listening.
pub(crate) async fn list_and_watch(client: Client, scope: Scope, tx: Outbox) {
    let mut attempt = 0u32;
    let mut failing = false;
    let mut resume: Option<String> = None;
    let mut listed_at = Instant::now();
    loop {
        let rv = match resume.take() {
            Some(rv) => rv,
            None => match list(&client, &scope).await {
                Ok((pods, rv)) => {
                    if !tx.send(StreamEvent::Listed(pods)).await {
                        return;
                    }
                    failing = false;
                    listed_at = Instant::now();
                    rv
                }
                Err(error) => {
                    failing = true;
                    let why = format!("listing {}: {error}", scope.describe());
                    if !retry_later(&tx, why, &mut attempt).await {
                        return;
                    }
                    continue;
                }
            },
        };
        match watch(&client, &scope, rv, &tx, &mut failing).await {
            WatchEnd::Resume { rv, healthy } => {
                if healthy {
                    attempt = 0;
                } else {
                    tokio::time::sleep(RETRY.full_jitter(attempt)).await;
                    attempt = attempt.saturating_add(1);
                }
                resume = Some(rv);
            }
            WatchEnd::Relist(None) => {
                // A server that answers every fresh list's watch with 410 is not asked in a
                // tight loop.
                if listed_at.elapsed() < HEALTHY_WATCH {
                    tokio::time::sleep(RETRY.full_jitter(attempt)).await;
                    attempt = attempt.saturating_add(1);
                } else {
                    attempt = 0;
                }
            }
            WatchEnd::Relist(Some(error)) => {
                failing = true;
                let why = format!("watching {}: {error}", scope.describe());
                if !retry_later(&tx, why, &mut attempt).await {
                    return;
                }
            }
            WatchEnd::Failed { rv, error } => {
                failing = true;
                let why = format!("watching {}: {error}", scope.describe());
                if !retry_later(&tx, why, &mut attempt).await {
                    return;
                }
                resume = Some(rv);
            }
            WatchEnd::Closed => return,
        }
    }
}

/// Reports a failure, then waits out the backoff; false when the source stopped listening.
async fn retry_later(tx: &Outbox, why: String, attempt: &mut u32) -> bool {
    if !tx.send(StreamEvent::Failed(why)).await {
        return false;
    }
    tokio::time::sleep(RETRY.full_jitter(*attempt)).await;
    *attempt = attempt.saturating_add(1);
    true
}

/// Every page of the scope's pods, and the version to watch from. An expired `continue` token
/// (`410`) starts the list over once; a second one fails the attempt.
async fn list(
    client: &Client,
    scope: &Scope,
) -> Result<(Vec<(PodKey, Option<PodUse>)>, String), RequestError> {
    let mut restarted = false;
    'list: loop {
        let mut pods = Vec::new();
        let mut params = ListParams {
            label_selector: scope.label_selector.clone(),
            limit: Some(PAGE),
            ..ListParams::default()
        };
        loop {
            let request = Request::new(scope.path()).list(&params)?;
            let page: PodList = match get(client, request).await {
                Ok(body) => serde_json::from_slice(&body)?,
                Err(e) if e.is_gone() && params.continue_token.is_some() && !restarted => {
                    restarted = true;
                    continue 'list;
                }
                Err(e) => return Err(e),
            };
            pods.extend(
                page.items
                    .iter()
                    .filter_map(|p| Some((p.key()?, p.usage()))),
            );
            match page.metadata.continue_token.filter(|t| !t.is_empty()) {
                Some(token) => params.continue_token = Some(token),
                None => {
                    let rv = page.metadata.resource_version.filter(|v| !v.is_empty());
                    return Ok((pods, rv.ok_or(RequestError::NoResourceVersion)?));
                }
            }
        }
    }
}

/// One request whose whole body is wanted.
async fn get(client: &Client, request: http::Request<Vec<u8>>) -> Result<Bytes, RequestError> {
    let response = client.send(request.map(Body::from)).await?;
    let code = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| match e.downcast::<kube::Error>() {
            Ok(e) => RequestError::Transport(*e),
            Err(_) => RequestError::TooLarge(MAX_BODY),
        })?
        .to_bytes();
    if (200..300).contains(&code) {
        Ok(body)
    } else {
        Err(status_error(code, &body))
    }
}

/// The error of a non-2xx answer, from its `Status` body when it has one.
fn status_error(code: u16, body: &[u8]) -> RequestError {
    match serde_json::from_slice::<Status>(body) {
        Ok(s) if !s.message.is_empty() || !s.reason.is_empty() => RequestError::Status {
            code: if s.code == 0 { code } else { s.code },
            reason: s.reason,
            message: s.message,
        },
        _ => RequestError::Status {
            code,
            reason: http::StatusCode::from_u16(code)
                .ok()
                .and_then(|c| c.canonical_reason())
                .unwrap_or("")
                .to_owned(),
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

/// Watches from `rv`, sending each change, until the stream ends or fails.
async fn watch(
    client: &Client,
    scope: &Scope,
    mut rv: String,
    tx: &Outbox,
    failing: &mut bool,
) -> WatchEnd {
    let params = WatchParams {
        label_selector: scope.label_selector.clone(),
        timeout: Some(WATCH_TIMEOUT_SECS),
        bookmarks: true,
        ..WatchParams::default()
    };
    let request = match Request::new(scope.path()).watch(&params, &rv) {
        Ok(r) => r,
        Err(e) => {
            return WatchEnd::Failed {
                rv,
                error: e.into(),
            };
        }
    };
    let response = match client.send(request.map(Body::from)).await {
        Ok(r) => r,
        Err(e) => {
            return WatchEnd::Failed {
                rv,
                error: e.into(),
            };
        }
    };
    let code = response.status().as_u16();
    if !(200..300).contains(&code) {
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let error = status_error(code, &body);
        return if error.is_gone() {
            WatchEnd::Relist(None)
        } else {
            WatchEnd::Failed { rv, error }
        };
    }
    if *failing {
        if !tx.send(StreamEvent::InSync).await {
            return WatchEnd::Closed;
        }
        *failing = false;
    }
    let started = Instant::now();
    let mut events = 0u64;
    let mut body = response.into_body();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = match body.frame().await {
            Some(Ok(frame)) => frame,
            // A cut connection is how watches usually end (API server restarts, proxies'
            // idle timeouts); resuming from the last version loses nothing.
            Some(Err(e)) => {
                tracing::debug!(scope = %scope.describe(), error = %chain(&e), "pod watch cut");
                break;
            }
            None => break,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        // Only the new bytes can hold the end of the line begun before them.
        let mut from = buf.len();
        buf.extend_from_slice(&data);
        let mut start = 0;
        while let Some(n) = buf[from..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..from + n];
            start = from + n + 1;
            from = start;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            events += 1;
            match read_event(line, &mut rv) {
                Event::Change(key, pod) => {
                    if !tx.send(StreamEvent::Changed(key, pod)).await {
                        return WatchEnd::Closed;
                    }
                }
                Event::Nothing => {}
                Event::Gone => return WatchEnd::Relist(None),
                // An event that cannot be read may be a change the cache misses.
                Event::Unreadable(e) => return WatchEnd::Relist(Some(e.into())),
                Event::Failed(error) => return WatchEnd::Failed { rv, error },
            }
        }
        buf.drain(..start);
        if buf.len() > MAX_LINE {
            return WatchEnd::Relist(Some(RequestError::TooLarge(MAX_LINE)));
        }
    }
    WatchEnd::Resume {
        rv,
        healthy: events > 0 || started.elapsed() >= HEALTHY_WATCH,
    }
}

/// What one watch line says.
enum Event {
    /// A pod changed.
    Change(PodKey, Option<PodUse>),
    /// Nothing for the cache (a bookmark, an object without a name).
    Nothing,
    /// `410`: the version is compacted away.
    Gone,
    /// An `ERROR` event other than `410`.
    Failed(RequestError),
    /// A line that is not a watch event.
    Unreadable(serde_json::Error),
}

/// Decodes one watch line, moving `rv` past it.
fn read_event(line: &[u8], rv: &mut String) -> Event {
    let event = match serde_json::from_slice::<WatchLine>(line) {
        Ok(event) => event,
        Err(e) => return Event::Unreadable(e),
    };
    let change = match event {
        WatchLine::Added(pod) | WatchLine::Modified(pod) => {
            advance(rv, &pod.metadata.resource_version);
            pod.key().map(|key| (key, pod.usage()))
        }
        WatchLine::Deleted(pod) => {
            advance(rv, &pod.metadata.resource_version);
            pod.key().map(|key| (key, None))
        }
        WatchLine::Bookmark(mark) => {
            advance(rv, &mark.metadata.resource_version);
            None
        }
        WatchLine::Error(status) if status.code == 410 => return Event::Gone,
        WatchLine::Error(status) => {
            return Event::Failed(RequestError::Status {
                code: status.code,
                reason: status.reason,
                message: status.message,
            });
        }
    };
    match change {
        Some((key, pod)) => Event::Change(key, pod),
        None => Event::Nothing,
    }
}

/// Takes an event's version as the one to resume from; an event without one (which no real
/// server sends) keeps the last, since resuming from "" would skip deletions.
fn advance(rv: &mut String, event: &str) {
    if !event.is_empty() {
        event.clone_into(rv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "repo@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn pod_line(kind: &str, rv: &str) -> String {
        format!(
            r#"{{"type":"{kind}","object":{{"kind":"Pod","metadata":{{"name":"p","namespace":"n","resourceVersion":"{rv}"}},"spec":{{"containers":[{{"name":"c","image":"img"}}]}},"status":{{"containerStatuses":[{{"name":"c","imageID":"{ID}","state":{{"running":{{}}}}}}]}}}}}}"#
        )
    }

    #[test]
    fn watch_events_move_the_version_and_say_what_changed() {
        let mut rv = "1".to_owned();
        let key = ("n".to_owned(), "p".to_owned());
        match read_event(pod_line("MODIFIED", "7").as_bytes(), &mut rv) {
            Event::Change(k, Some(pod)) => {
                assert_eq!(k, key);
                assert_eq!(pod.containers.len(), 1);
                assert!(pod.containers[0].running);
            }
            _ => panic!("a change"),
        }
        assert_eq!(rv, "7");
        assert!(matches!(
            read_event(pod_line("DELETED", "8").as_bytes(), &mut rv),
            Event::Change(k, None) if k == key
        ));
        let bookmark =
            br#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"12"}}}"#;
        assert!(matches!(read_event(bookmark, &mut rv), Event::Nothing));
        assert_eq!(rv, "12");
        // An event without a version keeps the last one.
        assert!(matches!(
            read_event(pod_line("ADDED", "").as_bytes(), &mut rv),
            Event::Change(..)
        ));
        assert_eq!(rv, "12");
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"too old resource version: 5 (9)","reason":"Expired","code":410}}"#;
        assert!(matches!(read_event(gone, &mut rv), Event::Gone));
        let other = br#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"etcd is down","reason":"InternalError","code":500}}"#;
        match read_event(other, &mut rv) {
            Event::Failed(e) => assert_eq!(
                e.to_string(),
                "the API server answered 500 InternalError: etcd is down"
            ),
            _ => panic!("a failure"),
        }
        for bad in [
            &b"{\"type\":\"ADDED\"}"[..],
            b"{\"type\":\"NEW\",\"object\":{}}",
            b"not json",
        ] {
            assert!(matches!(read_event(bad, &mut rv), Event::Unreadable(_)));
        }
        assert_eq!(rv, "12");
    }

    #[test]
    fn error_answers_read_their_status_or_their_text() {
        let e = status_error(
            403,
            br#"{"kind":"Status","status":"Failure","message":"pods is forbidden","reason":"Forbidden","code":403}"#,
        );
        assert_eq!(
            e.to_string(),
            "the API server answered 403 Forbidden: pods is forbidden"
        );
        let e = status_error(502, b"<html>Bad Gateway</html>");
        assert_eq!(
            e.to_string(),
            "the API server answered 502 Bad Gateway: <html>Bad Gateway</html>"
        );
        assert!(status_error(410, br#"{"reason":"Expired","code":410}"#).is_gone());
    }
}
