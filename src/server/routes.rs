//! The routes: `/metrics`, the landing page, health, readiness and reload. Every handler reads the
//! published snapshot and returns at once; none of them touches the API.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::exposition::encode::Exposition;
use crate::exposition::negotiate::{accepts_gzip, negotiate};
use crate::poll::store::Store;
use crate::server::body::ChunksBody;
use crate::server::status_page;
use crate::server::webconfig::WebHandle;
use crate::telemetry::ExporterMetrics;

/// A boxed future, so that [`Reload`] stays object-safe.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that reloads the configuration for `POST /-/reload`. The server only shows what it
/// says, so the typed error is erased here, at the edge.
pub(crate) trait Reload: Send + Sync {
    /// Reloads: `Ok` carries a summary of what applied, `Err` why the reload was rejected.
    fn reload(&self) -> BoxFuture<'_, Result<String, Box<dyn std::error::Error + Send + Sync>>>;
}

/// What the handlers serve from.
pub struct App {
    /// Encodes `/metrics`.
    pub exposition: Exposition,
    /// The published state.
    pub store: Arc<Store>,
    /// Path of the metrics endpoint.
    pub telemetry_path: String,
    /// Serves `POST /-/reload` when lifecycle endpoints are enabled.
    pub reloader: Option<Arc<dyn Reload>>,
    /// TLS, basic auth and headers from `--web.config.file` (plain when not given).
    pub web: WebHandle,
    /// The exporter's own metrics; the status page lists the target file problems they hold.
    pub metrics: Arc<ExporterMetrics>,
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
        && !auth
            .check(
                req.headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok()),
            )
            .await
    {
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
        return metrics(app, header(header::ACCEPT), header(header::ACCEPT_ENCODING)).await;
    }
    match path {
        "/-/healthy" => text(StatusCode::OK, "Healthy.\n"),
        // Ready once every discovery source has ended its first listing (complete or not: a
        // source that cannot list must not hold the pod back for ever) or the state file
        // brought back what it had found, and every target has been polled or restored.
        "/-/ready" if app.metrics.sources().iter().any(|s| s.pending) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: a discovery source has not ended its first listing yet.\n",
        ),
        "/-/ready" if app.store.load().ready => text(StatusCode::OK, "Ready.\n"),
        "/-/ready" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: not every target has been polled yet.\n",
        ),
        _ => response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            status_page::render(
                &app.store.load(),
                &app.telemetry_path,
                &app.metrics.target_file_problems(),
                &app.metrics.sources(),
            )
            .into(),
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
    // The reload runs to its end even when the client goes away: stopped halfway, it would leave
    // what it had taken apart.
    let reloader = Arc::clone(reloader);
    let outcome = tokio::spawn(async move { reloader.reload().await })
        .await
        .unwrap_or_else(|e| Err(Box::new(e)));
    match outcome {
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

async fn metrics(
    app: &App,
    accept: Option<&str>,
    accept_encoding: Option<&str>,
) -> Response<ChunksBody> {
    let format = negotiate(accept);
    let gzip = accepts_gzip(accept_encoding);
    // Encoding runs on the exposition's own thread; this only waits for it.
    match app.exposition.render(format, gzip).await {
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
        Err(e) => {
            tracing::error!(error = %e, "encoding /metrics failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
        }
    }
}
