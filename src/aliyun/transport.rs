//! What every Alibaba Cloud call shares below the API logic: the one way to build a reqwest
//! client, reading a response body under a size cap, the RPC error body, and error text that
//! never carries a signed URL.

use std::net::IpAddr;
use std::time::Duration;

use crate::aliyun::scan::{MAX_LABEL_BYTES, cap_label};

/// The longest API error `Code` kept as it is; longer or odd ones are not a code at all.
const MAX_CODE_BYTES: usize = 64;

/// An error `Code` from a response body as a safe label value: the service's codes are short
/// dotted words, so anything longer or with other characters becomes `other`.
pub(crate) fn sanitize_code(code: String) -> String {
    let plain = code
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if plain && code.len() <= MAX_CODE_BYTES {
        code
    } else {
        "other".to_owned()
    }
}

/// Text from an error body (`Message`, `RequestId`) as it may be logged and shown: capped like a
/// label value, and with any `SecurityToken` value cut out, since some services echo the string
/// they signed, which carries the token of temporary credentials.
pub(crate) fn sanitize_text(text: String) -> String {
    const KEY: &str = "SecurityToken";
    let mut out = String::with_capacity(text.len().min(MAX_LABEL_BYTES));
    let mut rest = text.as_str();
    while let Some(at) = rest.find(KEY) {
        let (before, after) = rest.split_at(at + KEY.len());
        out.push_str(before);
        // The separator: `=`, its URL encoding `%3D`, or JSON's `":"` with spaces.
        let mut value = after;
        loop {
            if let Some(v) = value
                .strip_prefix("%3D")
                .or_else(|| value.strip_prefix("%3d"))
            {
                value = v;
            } else if let Some(v) = value.strip_prefix(['=', ':', '"', ' ']) {
                value = v;
            } else {
                break;
            }
        }
        out.push_str(&after[..after.len() - value.len()]);
        let end = value
            .find(|c: char| matches!(c, '&' | ',' | '"' | ')' | ';') || c.is_whitespace())
            .unwrap_or(value.len());
        if end > 0 {
            out.push_str("[redacted]");
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    cap_label(out)
}

/// Responses larger than this are rejected while streaming, before they are buffered whole.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The builder every Alibaba Cloud client starts from: a total timeout, no redirects (a redirect
/// would resend signed parameters elsewhere), our user agent, and no proxy for loopback targets.
pub(crate) fn http_client(timeout: Duration, loopback: bool) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "sas-image-scan-exporter/",
            env!("CARGO_PKG_VERSION")
        ));
    if loopback {
        builder.no_proxy()
    } else {
        builder
    }
}

/// An HTTP error with all its causes (reqwest's top-level text alone only says "error sending
/// request"), without the request URL: a V1-signed URL carries the STS token.
pub(crate) fn error_chain(e: reqwest::Error) -> String {
    chain(&e.without_url())
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

/// Why a capped body read failed.
#[derive(Debug)]
pub(crate) enum CappedReadError {
    /// The body is larger than the cap.
    TooLarge,
    /// The connection failed or timed out while reading (the URL already stripped).
    Transport(reqwest::Error),
}

impl std::fmt::Display for CappedReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CappedReadError::TooLarge => f.write_str("the answer is larger than allowed"),
            CappedReadError::Transport(e) => f.write_str(&chain(e)),
        }
    }
}

/// Reads a response body, failing as soon as it would exceed `cap` bytes: a hostile or broken
/// server cannot make us allocate more than the cap.
pub(crate) async fn read_body_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, CappedReadError> {
    let declared = response.content_length().unwrap_or(0);
    if declared > cap as u64 {
        return Err(CappedReadError::TooLarge);
    }
    let mut body = Vec::with_capacity(declared as usize);
    // The URL may carry a signed token: strip it where the error enters our types.
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CappedReadError::Transport(e.without_url()))?
    {
        if body.len() + chunk.len() > cap {
            return Err(CappedReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// True for `localhost` and loopback IP literals (brackets around IPv6 allowed).
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The error body every Alibaba Cloud RPC API answers with (Security Center, STS).
#[derive(serde::Deserialize, Default)]
pub(crate) struct ErrorBody {
    #[serde(rename = "Code")]
    pub(crate) code: Option<String>,
    #[serde(rename = "Message")]
    pub(crate) message: Option<String>,
    #[serde(rename = "RequestId")]
    pub(crate) request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_never_carries_a_token_and_codes_stay_codes() {
        assert_eq!(
            sanitize_text(
                "server string to sign is: GET&%2F&AccessKeyId%3DSTS.x%26SecurityToken%3DCAISabc%26Version".into()
            ),
            "server string to sign is: GET&%2F&AccessKeyId%3DSTS.x%26SecurityToken%3D[redacted]"
        );
        assert_eq!(
            sanitize_text("a SecurityToken=CAIS.secret&b=1, {\"SecurityToken\": \"CAIS2\"}".into()),
            "a SecurityToken=[redacted]&b=1, {\"SecurityToken\": \"[redacted]\"}"
        );
        assert_eq!(sanitize_text("plain message".into()), "plain message");
        assert!(sanitize_text("x".repeat(1 << 20)).len() <= MAX_LABEL_BYTES);
        assert_eq!(sanitize_code("Throttling.User".into()), "Throttling.User");
        assert_eq!(
            sanitize_code("InvalidTimeStamp.Expired".into()),
            "InvalidTimeStamp.Expired"
        );
        assert_eq!(sanitize_code("x".repeat(65)), "other");
        assert_eq!(sanitize_code("evil\"label".into()), "other");
    }
}
