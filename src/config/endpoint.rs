//! Endpoint overrides: absolute URLs reduced to `scheme://host[:port]`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Checks an endpoint override by hand (no URL crate) and returns it as `scheme://host[:port]`.
pub(super) fn parse_endpoint(s: &str) -> Result<String, String> {
    parse_url(
        s,
        "https://host[:port] (http:// only for a loopback host)",
        false,
    )
}

/// Like [`parse_endpoint`], but plain http is fine: the metadata service speaks nothing else.
pub(super) fn parse_metadata_endpoint(s: &str) -> Result<String, String> {
    parse_url(s, "http://host[:port] or https://host[:port]", true)
}

pub(super) fn parse_url(s: &str, expected: &str, http_anywhere: bool) -> Result<String, String> {
    let fail = |why: &str| {
        Err(format!(
            "expected an absolute URL {expected}, got {s:?}: {why}"
        ))
    };
    let Some((scheme, rest)) = s.split_once("://") else {
        return fail("no scheme");
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return fail("unsupported scheme");
    }
    let authority = match rest.find(['/', '?', '#']) {
        Some(i) if &rest[i..] == "/" => &rest[..i],
        Some(_) => return fail("a path, query or fragment is not allowed"),
        None => rest,
    };
    if authority.contains('@') {
        return fail("user information is not allowed");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((inner, after)) = bracketed.split_once(']') else {
            return fail("unterminated IPv6 address");
        };
        if inner.parse::<Ipv6Addr>().is_err() {
            return fail("invalid IPv6 address");
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return fail("invalid host"),
            },
        };
        (inner, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && (host.parse::<Ipv6Addr>().is_ok()
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !host_ok {
        return fail("invalid host");
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !valid {
            return fail("invalid port");
        }
    }
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    if scheme == "http" && !loopback && !http_anywhere {
        return fail("plain http to a host that is not loopback (127.0.0.0/8, ::1, localhost)");
    }
    Ok(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_accepts_https_and_loopback_http() {
        let ok = [
            (
                "https://tds.ap-southeast-1.aliyuncs.com",
                "https://tds.ap-southeast-1.aliyuncs.com",
            ),
            (
                "https://tds.ap-southeast-1.aliyuncs.com/",
                "https://tds.ap-southeast-1.aliyuncs.com",
            ),
            ("HTTPS://example.com:8443", "https://example.com:8443"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("http://127.9.8.7", "http://127.9.8.7"),
            ("http://localhost:1/", "http://localhost:1"),
            ("http://LocalHost", "http://LocalHost"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("https://[2001:db8::1]", "https://[2001:db8::1]"),
        ];
        for (input, want) in ok {
            assert_eq!(parse_endpoint(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn endpoint_rejects_everything_else() {
        let bad = [
            ("tds.aliyuncs.com", "no scheme"),
            ("ftp://example.com", "unsupported scheme"),
            ("http://example.com", "plain http to a host"),
            ("http://128.0.0.1", "plain http to a host"),
            ("http://[2001:db8::1]", "plain http to a host"),
            ("https://example.com/api", "a path, query or fragment"),
            ("https://example.com?x=1", "a path, query or fragment"),
            ("https://example.com/#f", "a path, query or fragment"),
            ("https://u:p@example.com", "user information"),
            ("https://", "invalid host"),
            ("https://exa mple.com", "invalid host"),
            ("https://[::1", "unterminated IPv6"),
            ("https://[zz]", "invalid IPv6"),
            ("https://[::1]x", "invalid host"),
            ("https://example.com:", "invalid port"),
            ("https://example.com:0", "invalid port"),
            ("https://example.com:65536", "invalid port"),
            ("https://example.com:+1", "invalid port"),
            ("https://a:1:2", "invalid port"),
        ];
        for (input, why) in bad {
            match parse_endpoint(input) {
                Err(e) => assert!(e.contains(&format!("got {input:?}: {why}")), "{input}: {e}"),
                Ok(v) => panic!("{input} accepted as {v}"),
            }
        }
    }
}
