//! The HTTP server: `/metrics`, the landing page, health and readiness.
//!
//! Every handler reads the published snapshot and returns at once; none of them touches the API.
//! Header size, header read time and the number of open connections are bounded so that slow or
//! hostile clients cannot tie the server up.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::exporter::Reloader;
use crate::metrics::{Exposition, accepts_gzip, negotiate};
use crate::shutdown::Shutdown;
use crate::state::Store;
use crate::status_page;
use crate::webconfig;

/// Most connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// A client must send its request headers within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head accepted (hyper answers 431 beyond it).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long open connections get to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the handlers serve from.
#[derive(Debug)]
pub struct App {
    /// Encodes `/metrics`.
    pub exposition: Exposition,
    /// The published state.
    pub store: Arc<Store>,
    /// Path of the metrics endpoint.
    pub telemetry_path: String,
    /// Serves `POST /-/reload` when lifecycle endpoints are enabled.
    pub reloader: Option<Arc<Reloader>>,
    /// TLS, basic auth and headers from `--web.config.file` (plain when not given).
    pub web: WebHandle,
}

/// The web settings in force, swapped when the web config file changes.
pub type WebHandle = Arc<arc_swap::ArcSwap<webconfig::WebSettings>>;

/// A response body made of shared chunks, sent without copying them.
#[derive(Debug, Default)]
pub struct ChunksBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl ChunksBody {
    /// A body of the given chunks in order.
    pub fn new(chunks: Vec<Bytes>) -> Self {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        ChunksBody {
            chunks: chunks.into(),
            remaining,
        }
    }
}

impl From<String> for ChunksBody {
    fn from(s: String) -> Self {
        ChunksBody::new(vec![Bytes::from(s)])
    }
}

impl From<&'static str> for ChunksBody {
    fn from(s: &'static str) -> Self {
        ChunksBody::new(vec![Bytes::from_static(s.as_bytes())])
    }
}

impl Body for ChunksBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Parses a Prometheus-style listen address: `:9847` means every interface.
pub fn parse_listen_address(s: &str) -> Result<Vec<SocketAddr>, String> {
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("invalid port in listen address {s:?}"))?;
        return Ok(vec![
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port)),
        ]);
    }
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .map(|a| a.collect())
        .map_err(|e| format!("invalid listen address {s:?}: {e}"))
}

/// Binds a listen address. For `:PORT` the dual-stack IPv6 socket is tried first and IPv4 alone
/// is the fallback on hosts without IPv6.
pub async fn bind(address: &str) -> Result<TcpListener, String> {
    let candidates = parse_listen_address(address)?;
    let mut last_err = None;
    for addr in candidates {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last_err = Some(e),
        }
    }
    Err(match last_err {
        Some(e) => format!("cannot listen on {address}: {e}"),
        None => format!("listen address {address} resolves to nothing"),
    })
}

/// Serves `app` on every listener until `shutdown` fires, then drains connections.
pub async fn serve(listeners: Vec<TcpListener>, app: Arc<App>, mut shutdown: Shutdown) {
    let graceful = Arc::new(GracefulShutdown::new());
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut accept_loops = tokio::task::JoinSet::new();
    for listener in listeners {
        accept_loops.spawn(accept_loop(
            listener,
            Arc::clone(&app),
            Arc::clone(&graceful),
            Arc::clone(&limit),
            shutdown.clone(),
        ));
    }
    shutdown.wait().await;
    while accept_loops.join_next().await.is_some() {}
    let Some(graceful) = Arc::into_inner(graceful) else {
        return;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open at shutdown were closed");
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Arc<App>,
    graceful: Arc<GracefulShutdown>,
    limit: Arc<Semaphore>,
    mut shutdown: Shutdown,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        // Queue the cached body chunks for vectored writes instead of copying megabytes into
        // hyper's write buffer on every scrape.
        .writev(true);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.wait() => return,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Typically EMFILE: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        // As Go's net/http does: the tail of a response goes out at once instead of waiting for
        // the client's ACK of the previous segment.
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        // The TLS setting that applies is the one current when the connection arrives.
        let tls = app.web.load().tls.clone();
        let service = service_fn(move |req| {
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(handle(&app, &req).await) }
        });
        match tls {
            None => {
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    // Errors are clients that went away or sent garbage; hyper answered if it could.
                    let _ = conn.await;
                    drop(permit);
                });
            }
            Some(acceptor) => {
                let builder = builder.clone();
                let graceful = Arc::clone(&graceful);
                tokio::spawn(async move {
                    // The handshake gets the same budget as the request head.
                    let tls_stream =
                        match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn =
                        graceful.watch(builder.serve_connection(TokioIo::new(tls_stream), service));
                    let _ = conn.await;
                    drop(permit);
                });
            }
        }
    }
}

/// Re-reads the web config when it or a file it names changes; a broken change keeps the old one.
pub async fn watch_web_config(path: PathBuf, web: WebHandle, mut shutdown: Shutdown) {
    // The on-disk state of a rejected change, so its error is logged once, not every few seconds.
    let mut rejected = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            _ = shutdown.wait() => return,
        }
        let current = web.load_full();
        if !current.changed_on_disk() {
            rejected = None;
            continue;
        }
        let disk = current.disk_state();
        if rejected.as_ref() == Some(&disk) {
            continue;
        }
        let p = path.clone();
        match tokio::task::spawn_blocking(move || webconfig::load(&p)).await {
            Ok(Ok(settings)) => {
                web.store(Arc::new(settings));
                rejected = None;
                tracing::info!(file = %path.display(), "web config reloaded");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "web config change rejected; the previous settings stay");
                rejected = Some(disk);
            }
            Err(e) => tracing::error!(error = %e, "web config reload failed"),
        }
    }
}

fn response(status: StatusCode, content_type: &str, body: ChunksBody) -> Response<ChunksBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<ChunksBody> {
    response(status, "text/plain; charset=utf-8", body.into())
}

/// Routes one request, behind basic auth when configured (except `/-/healthy`, for probes).
pub async fn handle(app: &App, req: &Request<Incoming>) -> Response<ChunksBody> {
    let web = app.web.load_full();
    let mut response = if req.uri().path() != "/-/healthy"
        && let Some(auth) = &web.auth
        && !auth.check(
            req.headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        ) {
        let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"sas-image-scan-exporter\""),
        );
        r
    } else {
        route(app, req).await
    };
    for (name, value) in &web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

async fn route(app: &App, req: &Request<Incoming>) -> Response<ChunksBody> {
    let path = req.uri().path();
    if path == "/-/reload" {
        return reload(app, req.method()).await;
    }
    let known = path == app.telemetry_path || matches!(path, "/" | "/-/healthy" | "/-/ready");
    if !known {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    if path == app.telemetry_path {
        return metrics(app, header(header::ACCEPT), header(header::ACCEPT_ENCODING));
    }
    match path {
        "/-/healthy" => text(StatusCode::OK, "Healthy.\n"),
        "/-/ready" if app.store.load().ready => text(StatusCode::OK, "Ready.\n"),
        "/-/ready" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: not every target has been polled yet.\n",
        ),
        _ => response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            status_page::render(&app.store.load(), &app.telemetry_path).into(),
        ),
    }
}

async fn reload(app: &App, method: &Method) -> Response<ChunksBody> {
    let Some(reloader) = &app.reloader else {
        return text(
            StatusCode::FORBIDDEN,
            "Lifecycle APIs are not enabled; start with --web.enable-lifecycle.\n",
        );
    };
    if method != Method::POST && method != Method::PUT {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, PUT"));
        return r;
    }
    match reloader.reload().await {
        Ok(summary) => response(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            format!("reloaded: {summary}\n").into(),
        ),
        Err(e) => response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("reload rejected; the previous configuration stays in effect:\n{e}\n").into(),
        ),
    }
}

fn metrics(app: &App, accept: Option<&str>, accept_encoding: Option<&str>) -> Response<ChunksBody> {
    let format = negotiate(accept);
    let gzip = accepts_gzip(accept_encoding);
    match app.exposition.render(format, gzip) {
        Ok(chunks) => {
            let mut r = response(
                StatusCode::OK,
                format.content_type(),
                ChunksBody::new(chunks),
            );
            if gzip {
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            r.headers_mut().insert(
                header::VARY,
                HeaderValue::from_static("Accept, Accept-Encoding"),
            );
            r
        }
        Err(_) => {
            tracing::error!("encoding /metrics failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen_address(":9847").map(|a| a.len()), Ok(2));
        assert_eq!(
            parse_listen_address("127.0.0.1:80"),
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], 80))])
        );
        assert!(parse_listen_address(":x").is_err());
        assert!(parse_listen_address("nonsense").is_err());
    }
}
