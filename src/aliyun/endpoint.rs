//! Endpoint overrides: absolute URLs checked once and reduced to `scheme://host[:port]`.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

use url::{Host, ParseError, SyntaxViolation, Url};

/// Where an endpoint may be reached over plain `http://`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlainHttp {
    /// Only at a loopback host, so signed requests and credentials never cross a network in clear.
    LoopbackOnly,
    /// Anywhere, for the ECS metadata service, which speaks nothing else.
    Anywhere,
}

impl PlainHttp {
    /// The accepted forms, as a problem states them.
    fn expected(self) -> &'static str {
        match self {
            PlainHttp::LoopbackOnly => "https://host[:port] (http:// only for a loopback host)",
            PlainHttp::Anywhere => "http://host[:port] or https://host[:port]",
        }
    }
}

/// A base URL `scheme://host[:port]`: http or https, with neither user information, path, query
/// nor fragment, and plain http only where its [`PlainHttp`] rule allowed it.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]` without a trailing slash, as the URL crate normalises it.
    base: String,
    /// Where `host[:port]` starts in `base`.
    authority_at: usize,
    /// `localhost` or a loopback address.
    loopback: bool,
}

impl Endpoint {
    /// Checks `text` and reduces it to `scheme://host[:port]`; a lone trailing `/` is dropped.
    pub fn parse(text: &str, plain_http: PlainHttp) -> Result<Endpoint, EndpointError> {
        let fail = |fault| {
            Err(EndpointError {
                text: text.to_owned(),
                plain_http,
                fault,
            })
        };
        // Without "://" the URL parser reads `localhost:8080` as scheme "localhost".
        if !text.contains("://") {
            return fail(Fault::NoScheme);
        }
        let violation = Cell::new(None);
        let record = |v| {
            if violation.get().is_none() {
                violation.set(Some(v));
            }
        };
        let url = match Url::options()
            .syntax_violation_callback(Some(&record))
            .parse(text)
        {
            Ok(url) => url,
            Err(e) => return fail(Fault::from(e)),
        };
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return fail(Fault::UnsupportedScheme),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return fail(Fault::UserInfo);
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return fail(Fault::NotBare);
        }
        if url.port() == Some(0) {
            return fail(Fault::InvalidPort);
        }
        // The parser repairs some mistakes silently (a tab, a backslash, a stray `@`); what would
        // be used must be what was written.
        match violation.get() {
            Some(SyntaxViolation::EmbeddedCredentials | SyntaxViolation::UnencodedAtSign) => {
                return fail(Fault::UserInfo);
            }
            Some(v) => return fail(Fault::Repaired(v)),
            None => {}
        }
        let (host, loopback) = match url.host() {
            Some(Host::Domain(name)) => (name.to_owned(), name == "localhost"),
            Some(Host::Ipv4(ip)) => (ip.to_string(), ip.is_loopback()),
            Some(Host::Ipv6(ip)) => (format!("[{ip}]"), ip.is_loopback()),
            None => return fail(Fault::InvalidHost),
        };
        if !https && !loopback && plain_http == PlainHttp::LoopbackOnly {
            return fail(Fault::PlainHttp);
        }
        let scheme = url.scheme();
        let base = match url.port() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        Ok(Endpoint {
            base,
            authority_at: scheme.len() + "://".len(),
            loopback,
        })
    }

    /// An https endpoint for a public host name written into the program.
    pub(crate) fn public_https(host: &'static str) -> Endpoint {
        Endpoint {
            base: format!("https://{host}"),
            authority_at: "https://".len(),
            loopback: false,
        }
    }

    /// `scheme://host[:port]`, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        &self.base[..self.authority_at - "://".len()]
    }

    /// `host[:port]`, as the `Host` header carries it (an IPv6 address in brackets).
    pub fn authority(&self) -> &str {
        &self.base[self.authority_at..]
    }

    /// Whether the host is `localhost` or a loopback address (127.0.0.0/8, ::1).
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }
}

/// https anywhere, plain http only at a loopback host.
impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Endpoint, EndpointError> {
        Endpoint::parse(text, PlainHttp::LoopbackOnly)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Endpoint").field(&self.base).finish()
    }
}

/// Why text is not an endpoint; the message quotes the text and says what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointError {
    text: String,
    plain_http: PlainHttp,
    fault: Fault,
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expected an absolute URL {}, got {:?}: {}",
            self.plain_http.expected(),
            self.text,
            self.fault
        )
    }
}

impl std::error::Error for EndpointError {}

/// What is wrong with an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    NoScheme,
    UnsupportedScheme,
    UserInfo,
    NotBare,
    InvalidHost,
    InvalidIpv6,
    InvalidPort,
    PlainHttp,
    /// The URL parser would have used something other than what was written.
    Repaired(SyntaxViolation),
    /// A parse error none of the above describes.
    Unparsable(ParseError),
}

impl From<ParseError> for Fault {
    fn from(e: ParseError) -> Fault {
        match e {
            ParseError::RelativeUrlWithoutBase => Fault::NoScheme,
            ParseError::EmptyHost
            | ParseError::IdnaError
            | ParseError::InvalidIpv4Address
            | ParseError::InvalidDomainCharacter => Fault::InvalidHost,
            ParseError::InvalidIpv6Address => Fault::InvalidIpv6,
            ParseError::InvalidPort => Fault::InvalidPort,
            other => Fault::Unparsable(other),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::NoScheme => f.write_str("no scheme"),
            Fault::UnsupportedScheme => f.write_str("unsupported scheme"),
            Fault::UserInfo => f.write_str("user information is not allowed"),
            Fault::NotBare => f.write_str("a path, query or fragment is not allowed"),
            Fault::InvalidHost => f.write_str("invalid host"),
            Fault::InvalidIpv6 => f.write_str("invalid IPv6 address"),
            Fault::InvalidPort => f.write_str("invalid port"),
            Fault::PlainHttp => f.write_str(
                "plain http to a host that is not loopback (127.0.0.0/8, ::1, localhost)",
            ),
            Fault::Repaired(v) => write!(f, "it would not be used as written ({v})"),
            Fault::Unparsable(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
        Endpoint::parse(s, PlainHttp::LoopbackOnly).map_err(|e| e.to_string())
    }

    fn parse_metadata_endpoint(s: &str) -> Result<Endpoint, String> {
        Endpoint::parse(s, PlainHttp::Anywhere).map_err(|e| e.to_string())
    }

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
            ("https://Example.COM", "https://example.com"),
            ("https://example.com:443/", "https://example.com"),
            ("https://example.com:", "https://example.com"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("http://127.9.8.7", "http://127.9.8.7"),
            ("http://localhost:1/", "http://localhost:1"),
            ("http://LocalHost", "http://localhost"),
            ("http://localhost:80", "http://localhost"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[0:0::1]", "http://[::1]"),
            ("https://[2001:db8::1]", "https://[2001:db8::1]"),
        ];
        for (input, want) in ok {
            assert_eq!(
                parse_endpoint(input).as_ref().map(Endpoint::as_str),
                Ok(want),
                "{input}"
            );
        }
    }

    #[test]
    fn endpoint_rejects_everything_else() {
        let bad = [
            ("tds.aliyuncs.com", "no scheme"),
            ("localhost:8080", "no scheme"),
            ("http:/example.com", "no scheme"),
            ("ftp://example.com", "unsupported scheme"),
            ("http://example.com", "plain http to a host"),
            ("http://128.0.0.1", "plain http to a host"),
            ("http://[2001:db8::1]", "plain http to a host"),
            ("http://localhost.example.com", "plain http to a host"),
            ("https://example.com/api", "a path, query or fragment"),
            ("https://example.com?x=1", "a path, query or fragment"),
            ("https://example.com/?", "a path, query or fragment"),
            ("https://example.com/#f", "a path, query or fragment"),
            ("https://u:p@example.com", "user information"),
            ("https://u@example.com", "user information"),
            ("https://@example.com", "user information"),
            ("https://", "invalid host"),
            ("https://exa mple.com", "invalid host"),
            ("https://1.2.3.4.5", "invalid host"),
            ("https://[::1", "invalid IPv6"),
            ("https://[zz]", "invalid IPv6"),
            ("https://[::1]x", "invalid IPv6"),
            ("https://example.com:0", "invalid port"),
            ("https://example.com:65536", "invalid port"),
            ("https://example.com:+1", "invalid port"),
            ("https://a:1:2", "invalid port"),
            ("https://exa\tmple.com", "it would not be used as written"),
            (" https://example.com", "it would not be used as written"),
            ("https://example.com\\", "it would not be used as written"),
        ];
        for (input, why) in bad {
            match parse_endpoint(input) {
                Err(e) => assert!(e.contains(&format!("got {input:?}: {why}")), "{input}: {e}"),
                Ok(v) => panic!("{input} accepted as {v}"),
            }
        }
    }

    #[test]
    fn metadata_endpoints_may_use_plain_http_anywhere() {
        let e = parse_metadata_endpoint("http://100.100.100.200/").expect("plain http");
        assert_eq!(e.as_str(), "http://100.100.100.200");
        assert!(!e.is_loopback());
        assert_eq!(
            parse_metadata_endpoint("ftp://100.100.100.200"),
            Err("expected an absolute URL http://host[:port] or https://host[:port], got \"ftp://100.100.100.200\": unsupported scheme".to_owned())
        );
    }

    #[test]
    fn parts_of_an_endpoint() {
        let e: Endpoint = "http://[::1]:8080/".parse().expect("loopback");
        assert_eq!(
            (e.scheme(), e.authority(), e.is_loopback()),
            ("http", "[::1]:8080", true)
        );
        let e: Endpoint = "https://127.0.0.1".parse().expect("https");
        assert_eq!(
            (e.scheme(), e.authority(), e.is_loopback()),
            ("https", "127.0.0.1", true)
        );
        let e = Endpoint::public_https("tds.cn-shanghai.aliyuncs.com");
        assert_eq!(
            Ok(&e),
            "https://tds.cn-shanghai.aliyuncs.com".parse().as_ref()
        );
        assert_eq!(e.authority(), "tds.cn-shanghai.aliyuncs.com");
        assert_eq!(
            format!("{e} {e:?}"),
            "https://tds.cn-shanghai.aliyuncs.com Endpoint(\"https://tds.cn-shanghai.aliyuncs.com\")"
        );
    }
}
