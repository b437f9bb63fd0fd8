//! The accept loop: listen addresses, connection limits, header and handshake budgets, TLS, and
//! the graceful drain at shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::server::conns::{Registry, Watched};
use crate::server::handshake::HandshakeLog;
use crate::server::routes::{App, handle};
use crate::shutdown::Shutdown;

/// Most connections served at once; beyond it the stillest idle or stalled one is shed.
pub const MAX_CONNECTIONS: usize = 1024;
/// A client must send its request headers within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head accepted (hyper answers 431 beyond it).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long open connections get to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    let limit = Registry::new(MAX_CONNECTIONS);
    let handshakes = Arc::new(HandshakeLog::default());
    let mut accept_loops = tokio::task::JoinSet::new();
    for listener in listeners {
        accept_loops.spawn(accept_loop(
            listener,
            Arc::clone(&app),
            Arc::clone(&graceful),
            Arc::clone(&limit),
            Arc::clone(&handshakes),
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
    limit: Arc<Registry>,
    handshakes: Arc<HandshakeLog>,
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
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Typically EMFILE: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        // Never waiting before accept: a crowd of stalled clients would otherwise lock out the
        // next scrape. At the limit the stillest connection makes room; if all are busy, this
        // one is refused.
        let Some(slot) = limit.admit() else {
            tracing::debug!("connection refused: every connection is busy");
            continue;
        };
        let stream = Watched::new(stream, &slot);
        // As Go's net/http does: the tail of a response goes out at once instead of waiting for
        // the client's ACK of the previous segment.
        let _ = stream.get_ref().set_nodelay(true);
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
                    // Errors are clients that went away, stalled or sent garbage; hyper answered
                    // if it could.
                    tokio::select! {
                        _ = conn => {}
                        _ = slot.close.notified() => {}
                    }
                });
            }
            Some(acceptor) => {
                let builder = builder.clone();
                let graceful = Arc::clone(&graceful);
                let handshakes = Arc::clone(&handshakes);
                tokio::spawn(async move {
                    // The handshake gets the same budget as the request head.
                    let handshake =
                        tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
                    let tls_stream = match tokio::select! {
                        r = handshake => r,
                        _ = slot.close.notified() => return,
                    } {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            handshakes.failed(peer, &e);
                            return;
                        }
                        Err(_) => {
                            handshakes.timed_out(peer, HEADER_READ_TIMEOUT);
                            return;
                        }
                    };
                    let conn =
                        graceful.watch(builder.serve_connection(TokioIo::new(tls_stream), service));
                    tokio::select! {
                        _ = conn => {}
                        _ = slot.close.notified() => {}
                    }
                });
            }
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
