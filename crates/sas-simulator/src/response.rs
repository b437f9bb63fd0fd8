//! Building answers: every simulator response goes through [`respond`], so status, content type
//! and `x-acs-retry-after` are set the same way everywhere.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Response, StatusCode};

/// The body type of every simulator answer: whole buffers and streaming fault bodies alike.
pub(crate) type SimBody = BoxBody<Bytes, Infallible>;

/// The content type the real service answers with.
pub(crate) const JSON: &str = "application/json;charset=utf-8";

/// A response with this status, content type, optional retry-after (milliseconds) and body.
pub(crate) fn respond(
    status: u16,
    content_type: &str,
    retry_after_ms: Option<u64>,
    body: SimBody,
) -> Response<SimBody> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type);
    if let Some(ms) = retry_after_ms {
        builder = builder.header("x-acs-retry-after", ms.to_string());
    }
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// A plain-text answer, as the metadata service gives.
pub(crate) fn text_response(status: u16, body: String) -> Response<SimBody> {
    respond(
        status,
        "text/plain;charset=utf-8",
        None,
        Full::new(Bytes::from(body)).boxed(),
    )
}

/// A JSON answer whose body is sent verbatim.
pub(crate) fn json_response(
    status: u16,
    body: String,
    retry_after_ms: Option<u64>,
) -> Response<SimBody> {
    respond(
        status,
        JSON,
        retry_after_ms,
        Full::new(Bytes::from(body)).boxed(),
    )
}

/// A request ID in the service's format (an upper-case UUID).
pub(crate) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_ascii_uppercase()
}
