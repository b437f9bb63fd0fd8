//! Content negotiation for `/metrics`: the exposition format from `Accept`, gzip from
//! `Accept-Encoding`, both read with one parser of comma-separated, q-weighted lists.

use prometheus_client::encoding::prometheus_text;

/// The exposition format negotiated with the scraper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// A dense index, for per-format caches.
    pub(crate) fn index(self) -> usize {
        match self {
            Format::Text => 0,
            Format::OpenMetrics => 1,
        }
    }
}

/// The items of a header such as `a;q=0.5, b` with their weights (1 when absent or unreadable,
/// as lenient servers treat it).
fn weighted(header: &str) -> impl Iterator<Item = (&str, f32)> {
    header.split(',').filter_map(|item| {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().filter(|n| !n.is_empty())?;
        let q = parts
            .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .map_or(1.0, |q| q.parse::<f32>().unwrap_or(1.0));
        Some((name, q))
    })
}

/// The highest weight `header` gives to any item `matches` accepts, or `None` when none does.
fn best_weight(header: &str, matches: impl Fn(&str) -> bool) -> Option<f32> {
    weighted(header)
        .filter(|(name, _)| matches(name))
        .map(|(_, q)| q)
        .reduce(f32::max)
}

/// Picks OpenMetrics when `Accept` asks for it at least as strongly as for the text format (or
/// any type), else the text format.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let om = best_weight(accept, |m| {
        m.eq_ignore_ascii_case("application/openmetrics-text")
    });
    let text = best_weight(accept, |m| {
        m.eq_ignore_ascii_case("text/plain") || m == "*/*" || m.eq_ignore_ascii_case("text/*")
    });
    match om {
        Some(q) if q > 0.0 && text.is_none_or(|t| q >= t) => Format::OpenMetrics,
        _ => Format::Text,
    }
}

/// True when `Accept-Encoding` allows gzip (and does not give it q=0).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding
        .and_then(|a| best_weight(a, |c| c.eq_ignore_ascii_case("gzip") || c == "*"))
        .is_some_and(|q| q > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(negotiate(Some("text/plain")), Format::Text);
        assert_eq!(
            negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0, text/plain")),
            Format::Text
        );
        assert!(accepts_gzip(Some("gzip, deflate")));
        assert!(accepts_gzip(Some("br;q=1.0, GZIP;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn negotiation_follows_q_order() {
        assert_eq!(
            negotiate(Some("text/plain;q=1, application/openmetrics-text;q=0.5")),
            Format::Text
        );
        assert_eq!(
            negotiate(Some("text/plain;q=0.5, application/openmetrics-text;q=0.9")),
            Format::OpenMetrics
        );
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(negotiate(Some("")), Format::Text);
        // Prometheus 3's header: OpenMetrics first, the rest lower.
        assert_eq!(
            negotiate(Some(
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
            )),
            Format::OpenMetrics
        );
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
        assert!(accepts_gzip(Some("*")));
    }
}
