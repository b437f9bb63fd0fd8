//! The fake API server's requests: routing and auth, paginated lists, and watches streamed as
//! newline-delimited JSON events.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::kube_select::Selector;
use crate::kube_state::{Change, EventType, KubeState, MAX_SNAPSHOTS, Shared, Snapshot};
use crate::server::parse_form;

/// Bodies of the fake API server: whole answers, and watches that may be cut with an error.
pub(crate) type KubeBody = BoxBody<Bytes, std::io::Error>;

/// The real server ends a watch after a random 30 to 60 minutes unless `timeoutSeconds` says.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// Which pods a request reads.
struct Scope {
    namespace: Option<String>,
    selector: Selector,
}

impl Scope {
    fn matches(&self, object: &Value) -> bool {
        let in_namespace = self.namespace.as_deref().is_none_or(|ns| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                == Some(ns)
        });
        in_namespace && self.selector.matches(object)
    }

    /// How a change looks through this scope: an object that starts matching is added, one that
    /// stops matching is deleted, as the real server's filtered watches report them.
    fn event<'a>(&self, change: &'a Change) -> Option<(&'static str, &'a Value)> {
        let now = self.matches(&change.object);
        let before = change.old.as_deref().is_some_and(|o| self.matches(o));
        let kind = match (change.kind, before, now) {
            (EventType::Added, _, true) => EventType::Added,
            (EventType::Modified, true, true) => EventType::Modified,
            (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, false) => EventType::Deleted,
            (EventType::Deleted, _, true) => EventType::Deleted,
            _ => return None,
        };
        Some((kind.as_str(), &change.object))
    }
}

/// Answers one request.
pub(crate) fn route(shared: Arc<Shared>, req: &Request<Incoming>) -> Response<KubeBody> {
    let path = req.uri().path();
    let namespace = match path
        .strip_prefix("/api/v1/namespaces/")
        .and_then(|rest| rest.strip_suffix("/pods"))
    {
        Some(ns) if !ns.is_empty() && !ns.contains('/') => Some(ns.to_owned()),
        Some(_) => return not_found(),
        None if path == "/api/v1/pods" => None,
        None => return not_found(),
    };
    if req.method() != Method::GET {
        return status(
            405,
            "the server does not allow this method on the requested resource",
        );
    }
    let query = parse_form(req.uri().query().unwrap_or(""));
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = if watching { "watch" } else { "list" };
    let failure = {
        let mut state = shared.lock();
        if watching {
            state.watch_requests += 1;
        } else {
            state.list_requests += 1;
        }
        let bearer = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer != Some(shared.token.as_str()) {
            return status(401, "Unauthorized");
        }
        state.take_failure()
    };
    if let Some(code) = failure {
        let message = if code == 403 {
            let scope = match &namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".to_owned(),
            };
            format!(
                "pods is forbidden: User \"system:serviceaccount:monitoring:sas-exporter\" \
                 cannot {verb} resource \"pods\" in API group \"\" {scope}"
            )
        } else {
            "simulated failure".to_owned()
        };
        return status(code, &message);
    }
    let selector = match Selector::parse(query.get("labelSelector").map_or("", String::as_str)) {
        Ok(s) => s,
        Err(why) => return status(400, &format!("unable to parse requirement: {why}")),
    };
    let scope = Scope {
        namespace,
        selector,
    };
    let get = |k: &str| query.get(k).map(String::as_str).unwrap_or("");
    if watching {
        let from = match get("resourceVersion") {
            "" | "0" => None,
            rv => match rv.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => return status(400, &format!("invalid resource version {rv:?}")),
            },
        };
        let timeout = get("timeoutSeconds")
            .parse()
            .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
        let bookmarks = matches!(get("allowWatchBookmarks"), "true" | "1");
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(stream(shared, scope, from, bookmarks, timeout, tx));
        respond(200, ChannelBody(rx).boxed())
    } else {
        let limit = get("limit").parse::<usize>().ok().filter(|&l| l > 0);
        list(&mut shared.lock(), &scope, limit, get("continue"))
    }
}

/// One page of a list. The first page of a paginated list takes a snapshot, so later pages are
/// consistent with it however the pods change meanwhile.
fn list(
    state: &mut KubeState,
    scope: &Scope,
    limit: Option<usize>,
    token: &str,
) -> Response<KubeBody> {
    let (mut id, rv, items, start) = if token.is_empty() {
        let items: Vec<Arc<Value>> = state
            .pods
            .values()
            .filter(|o| scope.matches(o))
            .cloned()
            .collect();
        (None, state.rv, Arc::new(items), 0)
    } else {
        let found = token.split_once(':').and_then(|(id, offset)| {
            let id: u64 = id.parse().ok()?;
            let offset: usize = offset.parse().ok()?;
            let snap = state.snapshots.iter().find(|s| s.id == id)?;
            Some((Some(id), snap.rv, Arc::clone(&snap.items), offset))
        });
        match found {
            Some(found) => found,
            None => {
                return status(
                    410,
                    "The provided continue parameter is too old to display a consistent list \
                     result. You can start a new list without the continue parameter.",
                );
            }
        }
    };
    let start = start.min(items.len());
    let end = limit.map_or(items.len(), |l| start.saturating_add(l).min(items.len()));
    let mut out = Vec::with_capacity(256 + (end - start) * 2048);
    out.extend_from_slice(
        br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":""#,
    );
    out.extend_from_slice(rv.to_string().as_bytes());
    out.push(b'"');
    if end < items.len() {
        let snapshot = *id.get_or_insert_with(|| {
            let id = state.next_snapshot;
            state.next_snapshot += 1;
            state.snapshots.push_back(Snapshot {
                id,
                rv,
                items: Arc::clone(&items),
            });
            if state.snapshots.len() > MAX_SNAPSHOTS {
                state.snapshots.pop_front();
            }
            id
        });
        let rest = items.len() - end;
        out.extend_from_slice(
            format!(r#","continue":"{snapshot}:{end}","remainingItemCount":{rest}"#).as_bytes(),
        );
    }
    out.extend_from_slice(br#"},"items":["#);
    for (i, item) in items[start..end].iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &**item);
    }
    out.extend_from_slice(b"]}");
    respond(200, full(out))
}

/// Streams the events of `scope` after `from` (all current pods as `ADDED` first when `None`)
/// until the timeout, a drop, or the client going away.
async fn stream(
    shared: Arc<Shared>,
    scope: Scope,
    from: Option<u64>,
    bookmarks: bool,
    timeout: Duration,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let _open = OpenWatch::new(&shared);
    let mut changes = shared.changes.subscribe();
    let mut drops = shared.drops.subscribe();
    let mut marks = shared.bookmarks.subscribe();
    drops.borrow_and_update();
    marks.borrow_and_update();
    let deadline = Instant::now() + timeout;
    let (mut cursor, initial, every) = {
        let state = shared.lock();
        let initial: Vec<Arc<Value>> = match from {
            Some(_) => Vec::new(),
            None => state
                .pods
                .values()
                .filter(|o| scope.matches(o))
                .cloned()
                .collect(),
        };
        (from.unwrap_or(state.rv), initial, state.bookmark_every)
    };
    for object in initial {
        if tx.send(Ok(event_line("ADDED", &object))).await.is_err() {
            return;
        }
    }
    let mut next_bookmark = Instant::now() + every;
    loop {
        changes.borrow_and_update();
        let lines = {
            let state = shared.lock();
            if cursor < state.compacted {
                let message = format!("too old resource version: {cursor} ({})", state.compacted);
                Err(error_line(410, "Expired", &message))
            } else {
                let first = state.history.partition_point(|c| c.rv <= cursor);
                let lines: Vec<Bytes> = state
                    .history
                    .range(first..)
                    .filter_map(|c| scope.event(c))
                    .map(|(kind, object)| event_line(kind, object))
                    .collect();
                cursor = cursor.max(state.rv);
                Ok(lines)
            }
        };
        let lines = match lines {
            Ok(lines) => lines,
            Err(gone) => {
                let _ = tx.send(Ok(gone)).await;
                return;
            }
        };
        for line in lines {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let bookmark = tokio::select! {
            _ = changes.changed() => false,
            _ = drops.changed() => {
                let _ = tx.send(Err(std::io::Error::other("watch cut by the simulator"))).await;
                return;
            }
            _ = marks.changed(), if bookmarks => true,
            _ = tokio::time::sleep_until(next_bookmark), if bookmarks => {
                next_bookmark = Instant::now() + every;
                true
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tx.closed() => return,
        };
        if bookmark {
            let line = json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                "metadata": {"resourceVersion": cursor.to_string()}}});
            if tx.send(Ok(line_of(&line))).await.is_err() {
                return;
            }
        }
    }
}

/// Counts a watch as open while it streams.
struct OpenWatch(Arc<Shared>);

impl OpenWatch {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.lock().open_watches += 1;
        OpenWatch(Arc::clone(shared))
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.open_watches = state.open_watches.saturating_sub(1);
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut out = Vec::with_capacity(2048);
    out.extend_from_slice(br#"{"type":""#);
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(br#"","object":"#);
    // Writing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

fn line_of(v: &Value) -> Bytes {
    let mut text = v.to_string();
    text.push('\n');
    Bytes::from(text)
}

fn error_line(code: u16, reason: &str, message: &str) -> Bytes {
    line_of(&json!({"type": "ERROR", "object": status_object(code, reason, message)}))
}

fn status_object(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// An error answer with the `Status` body the real server writes.
fn status(code: u16, message: &str) -> Response<KubeBody> {
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        410 => "Expired",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    };
    let body = status_object(code, reason, message).to_string();
    respond(code, full(body.into_bytes()))
}

fn not_found() -> Response<KubeBody> {
    status(404, "the server could not find the requested resource")
}

fn respond(code: u16, body: KubeBody) -> Response<KubeBody> {
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn full(bytes: Vec<u8>) -> KubeBody {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

/// A watch body fed by its streaming task; an error item cuts the connection mid-body.
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use crate::{ContainerState, KubeSimulator, PodBuilder};

    async fn get(sim: &KubeSimulator, path: &str) -> (u16, String) {
        let res = reqwest::Client::new()
            .get(format!("{}{path}", sim.url()))
            .bearer_auth(sim.token())
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// The first `n` lines of a watch.
    async fn watch_lines(sim: &KubeSimulator, path: &str, n: usize) -> Vec<Value> {
        let mut res = reqwest::Client::new()
            .get(format!("{}{path}", sim.url()))
            .bearer_auth(sim.token())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let mut text = String::new();
        while text.matches('\n').count() < n {
            let chunk = tokio::time::timeout(Duration::from_secs(5), res.chunk())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        text.lines()
            .take(n)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn pod(ns: &str, name: &str, app: &str) -> Value {
        PodBuilder::new(ns, name)
            .label("app", app)
            .container(
                "c",
                "nginx",
                Some("nginx@sha256:00"),
                ContainerState::Running,
            )
            .build()
    }

    #[tokio::test]
    async fn lists_page_by_page_from_one_snapshot() {
        let sim = KubeSimulator::start().await.unwrap();
        sim.apply_pods((0..5).map(|i| pod("n", &format!("p{i}"), "web")));
        let (code, body) = get(&sim, "/api/v1/namespaces/n/pods?limit=2").await;
        assert_eq!(code, 200);
        let page: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(page["kind"], "PodList");
        assert_eq!(page["metadata"]["resourceVersion"], "6");
        assert_eq!(page["metadata"]["remainingItemCount"], 3);
        assert_eq!(page["items"][1]["metadata"]["name"], "p1");
        assert_eq!(page["items"][1]["metadata"]["resourceVersion"], "3");
        let token = page["metadata"]["continue"].as_str().unwrap().to_owned();
        // A change after the first page does not show in the later ones.
        sim.delete_pod("n", "p4");
        let (_, body) = get(
            &sim,
            &format!("/api/v1/namespaces/n/pods?limit=9&continue={token}"),
        )
        .await;
        let page: Value = serde_json::from_str(&body).unwrap();
        let names: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["p2", "p3", "p4"]);
        assert_eq!(page["metadata"]["resourceVersion"], "6");
        assert!(page["metadata"].get("continue").is_none());
        sim.expire_history();
        let (code, body) = get(&sim, &format!("/api/v1/namespaces/n/pods?continue={token}")).await;
        assert_eq!(code, 410);
        let status: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (status["kind"].as_str(), status["reason"].as_str()),
            (Some("Status"), Some("Expired"))
        );
        assert_eq!(sim.list_requests(), 3);
    }

    #[tokio::test]
    async fn watches_resume_filter_bookmark_and_expire() {
        let sim = KubeSimulator::start().await.unwrap();
        let rv = sim.apply_pod(pod("n", "a", "web"));
        sim.apply_pod(pod("n", "b", "db"));
        sim.apply_pod(pod("n", "b", "web"));
        sim.apply_pod(pod("m", "c", "web"));
        sim.apply_pod(pod("n", "a", "db"));
        let path = |rv: u64| {
            format!(
                "/api/v1/namespaces/n/pods?watch=true&labelSelector=app%3Dweb&resourceVersion={rv}&allowWatchBookmarks=true"
            )
        };
        let mut lines = watch_lines(&sim, &path(rv), 2).await;
        let summary: Vec<(String, String)> = lines
            .drain(..)
            .map(|l| {
                (
                    l["type"].as_str().unwrap().into(),
                    l["object"]["metadata"]["name"].as_str().unwrap().into(),
                )
            })
            .collect();
        // b starts matching (ADDED), a stops (DELETED); c is in another namespace.
        assert_eq!(
            summary,
            [("ADDED".into(), "b".into()), ("DELETED".into(), "a".into())]
        );

        let sim2 = std::sync::Arc::new(sim);
        let bookmarker = std::sync::Arc::clone(&sim2);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            bookmarker.send_bookmarks();
        });
        let lines = watch_lines(&sim2, &path(6), 1).await;
        assert_eq!(lines[0]["type"], "BOOKMARK");
        assert_eq!(lines[0]["object"]["metadata"]["resourceVersion"], "6");

        sim2.expire_history();
        let lines = watch_lines(&sim2, &path(rv), 1).await;
        assert_eq!(lines[0]["type"], "ERROR");
        assert_eq!(lines[0]["object"]["code"], 410);
        assert_eq!(lines[0]["object"]["reason"], "Expired");
        assert_eq!(
            lines[0]["object"]["message"],
            "too old resource version: 2 (7)"
        );
        assert_eq!(sim2.watch_requests(), 3);
    }

    #[tokio::test]
    async fn requests_need_the_token_and_fail_on_demand() {
        let sim = KubeSimulator::start().await.unwrap();
        let res = reqwest::get(format!("{}/api/v1/pods", sim.url()))
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        sim.fail_requests(403, Some(1));
        let (code, body) = get(&sim, "/api/v1/namespaces/x/pods").await;
        assert_eq!(code, 403);
        assert!(
            body.contains(
                r#"cannot list resource \"pods\" in API group \"\" in the namespace \"x\""#
            ),
            "{body}"
        );
        assert_eq!(get(&sim, "/api/v1/pods").await.0, 200);
        assert_eq!(get(&sim, "/api/v1/pods?labelSelector=a+in+(b").await.0, 400);
        assert_eq!(get(&sim, "/api/v1/services").await.0, 404);
    }
}
