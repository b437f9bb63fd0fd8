//! Server plumbing shared by the three simulators: a loopback hyper accept loop, request-body and
//! query decoding.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The simulators never need request bodies larger than this.
const MAX_REQUEST_BODY: usize = 64 * 1024;

/// A loopback HTTP/1 server: an accept loop serving every connection with one handler. Dropping
/// it stops accepting; open connections run on, so an answer in flight is never cut off.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Server {
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Binds an ephemeral loopback port, so parallel tests never collide.
pub(crate) async fn bind_loopback() -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Serves `listener` with `handler` until the returned [`Server`] is dropped.
pub(crate) fn serve<H, F, E, B>(listener: TcpListener, handler: H) -> std::io::Result<Server>
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = listener.local_addr()?;
    let handler = Arc::new(handler);
    let accept = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let service = service_fn(move |req| handler(req));
                // Errors here are clients going away or deliberate drops; nothing to report.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Server { addr, accept })
}

/// Reads a whole request body; `None` when it is unreadable or larger than the simulators need.
pub(crate) async fn read_body(body: Incoming) -> Option<Bytes> {
    Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
        .ok()
        .map(|b| b.to_bytes())
}

/// Decodes a query string; `+` is a literal plus (the signing rules never produce it for space).
pub(crate) fn parse_query(q: &str) -> BTreeMap<String, String> {
    decode_pairs(q, false)
}

/// Decodes an `application/x-www-form-urlencoded` body, where `+` stands for a space: generic
/// HTTP clients encode forms that way, and a token's own `+` arrives as `%2B`.
pub(crate) fn parse_form(body: &str) -> BTreeMap<String, String> {
    decode_pairs(body, true)
}

fn decode_pairs(q: &str, plus_is_space: bool) -> BTreeMap<String, String> {
    let dec = |s: &str| {
        let s = if plus_is_space {
            s.replace('+', " ")
        } else {
            s.to_owned()
        };
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (dec(k), dec(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_keep_plus_and_forms_turn_it_into_space() {
        let q = parse_query("Token=CAIS%2Bab+cd&Empty=&Bare&Name=a%20b");
        assert_eq!(q.get("Token").map(String::as_str), Some("CAIS+ab+cd"));
        assert_eq!(q.get("Empty").map(String::as_str), Some(""));
        assert_eq!(q.get("Bare").map(String::as_str), Some(""));
        assert_eq!(q.get("Name").map(String::as_str), Some("a b"));
        let f = parse_form("Token=CAIS%2Bab+cd");
        assert_eq!(f.get("Token").map(String::as_str), Some("CAIS+ab cd"));
    }
}
