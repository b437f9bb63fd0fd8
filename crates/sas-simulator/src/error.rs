//! API errors as the real services send them: the [`Rejection`] a check produces, and the JSON
//! error body with `RequestId`, `HostId`, `Code`, `Message` and `Recommend`.

use hyper::Response;
use serde_json::json;

use crate::response::{SimBody, json_response, request_id};

/// A request refused with an API error: HTTP status, `Code` and `Message`.
pub(crate) struct Rejection {
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl Rejection {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status,
            code,
            message: message.into(),
        }
    }

    /// A mandatory parameter is absent.
    pub(crate) fn missing(name: &str) -> Self {
        Rejection::new(
            400,
            "MissingParameter",
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    /// The signature is well formed but wrong.
    pub(crate) fn mismatch() -> Self {
        Rejection::new(
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        )
    }

    /// The V3 `Authorization` header is malformed or leaves a header unsigned.
    pub(crate) fn incomplete() -> Self {
        Rejection::new(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.",
        )
    }

    /// The action or version names no API this service has.
    pub(crate) fn api_not_found() -> Self {
        Rejection::new(
            404,
            "InvalidApi.NotFound",
            "Specified api is not found, please check your url and method.",
        )
    }
}

/// Which API an error body claims to come from, as the real `HostId` and `Recommend` show.
pub(crate) struct Product {
    host: &'static str,
    name: &'static str,
}

impl Product {
    /// Security Center.
    pub(crate) const SAS: Product = Product {
        host: "tds.simulator.local",
        name: "Sas",
    };
    /// Security Token Service.
    pub(crate) const STS: Product = Product {
        host: "sts.simulator.local",
        name: "Sts",
    };
}

/// The error body `product` sends for `code`, with an optional `x-acs-retry-after`.
pub(crate) fn error_response(
    product: Product,
    status: u16,
    code: &str,
    message: &str,
    retry_after_ms: Option<u64>,
) -> Response<SimBody> {
    let body = json!({
        "RequestId": request_id(),
        "HostId": product.host,
        "Code": code,
        "Message": message,
        "Recommend": format!(
            "https://api.aliyun.com/troubleshoot?q={code}&product={}",
            product.name
        ),
    });
    json_response(status, body.to_string(), retry_after_ms)
}

/// The error body for a rejection.
pub(crate) fn rejection_response(product: Product, r: &Rejection) -> Response<SimBody> {
    error_response(product, r.status, r.code, &r.message, None)
}
