//! Reading a whole listing page by page: pages 1, 2, … until one comes back short or the rows
//! seen reach `TotalCount`, with a hard stop. Every page is one call of the caller's `fetch`,
//! which owns retries and the token bucket; here a page that still fails ends the listing, since
//! a listing with a page missing is incomplete and must not replace a complete one.

use std::future::Future;

use crate::aliyun::client::ApiError;
use crate::aliyun::listing::Page;
use crate::aliyun::rows::RowProblem;

/// The most pages one listing reads; a service that keeps answering full pages past it is
/// broken, and the listing fails rather than grow without end.
pub const MAX_PAGES: u32 = 10_000;

/// A complete listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed<R> {
    /// Every row read, page after page.
    pub rows: Vec<R>,
    /// How many pages were read.
    pub pages: u32,
    /// The rows skipped and fields left out on every page.
    pub skipped: Vec<RowProblem>,
}

/// Why a listing is incomplete.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// A page failed (after whatever retries the caller made).
    #[error("listing page {page} failed: {source}")]
    Page {
        /// The page that failed, from 1.
        page: u32,
        /// Why.
        #[source]
        source: ApiError,
    },
    /// The service refused the configured page size: a configuration problem, not an outage.
    #[error(
        "discovery page_size {page_size} refused by the service ({code}: {message}): lower page_size"
    )]
    PageSizeRefused {
        /// The page size asked for.
        page_size: u32,
        /// The service's error `Code`.
        code: String,
        /// The service's `Message`.
        message: String,
    },
    /// Pages kept coming full past [`MAX_PAGES`].
    #[error("listing still not finished after {MAX_PAGES} pages")]
    TooManyPages,
}

/// Reads every page of a listing with `fetch(page)`, asking `page_size` rows a page.
pub async fn list_all<R, F, Fut>(page_size: u32, mut fetch: F) -> Result<Listed<R>, ListError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Page<R>, ApiError>>,
{
    // A zero page size would make every page look full, so paging could only end at the stop.
    let full = page_size.max(1) as usize;
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut seen: u64 = 0;
    for page in 1..=MAX_PAGES {
        let answer = match fetch(page).await {
            Ok(answer) => answer,
            Err(source) => return Err(page_error(page, page_size, source)),
        };
        let listed = answer.listed();
        seen += listed as u64;
        rows.extend(answer.rows);
        skipped.extend(answer.skipped);
        let short = listed < full;
        let all_seen = answer.total_count.is_some_and(|total| seen >= total);
        if short || all_seen {
            return Ok(Listed {
                rows,
                pages: page,
                skipped,
            });
        }
    }
    Err(ListError::TooManyPages)
}

/// The error for a failed page: a refusal of the page size when it can only be that, else the
/// page's own error.
fn page_error(page: u32, page_size: u32, source: ApiError) -> ListError {
    match source {
        ApiError::Service { code, message, .. }
            if page == 1 && refuses_page_size(&code, &message) =>
        {
            ListError::PageSizeRefused {
                page_size,
                code,
                message,
            }
        }
        source => ListError::Page { page, source },
    }
}

/// Whether an error answer refuses the page size. The service has no known maximum and no known
/// code for exceeding it, so this asks for two things: a parameter-error code (`InvalidParameter…`,
/// `IllegalParam…`, or a code naming the page size itself), and the page size named in the code
/// or the message. The code alone is not enough: `Criteria` comes from the configuration too,
/// and blaming the page size for a refused filter would send the operator the wrong way. Only
/// page 1 is asked, because every page carries the same `PageSize` and a refusal shows there
/// first.
fn refuses_page_size(code: &str, message: &str) -> bool {
    let names_page_size = |s: &str| {
        let s = s.to_ascii_lowercase();
        s.contains("pagesize") || s.contains("page_size") || s.contains("page size")
    };
    let parameter_code = code.starts_with("InvalidParam")
        || code.starts_with("IllegalParam")
        || names_page_size(code);
    parameter_code && (names_page_size(code) || names_page_size(message))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn page(rows: std::ops::Range<u32>, total: Option<u64>) -> Page<u32> {
        Page {
            rows: rows.collect(),
            total_count: total,
            request_id: None,
            skipped: Vec::new(),
        }
    }

    fn service(code: &str, message: &str) -> ApiError {
        ApiError::Service {
            status: 400,
            code: code.to_owned(),
            message: message.to_owned(),
            request_id: None,
            retry_after: None,
        }
    }

    /// Lists `total` rows `size` a page, answering `TotalCount` when `with_total`; returns the
    /// outcome and the pages asked for.
    async fn run(
        size: u32,
        total: u32,
        with_total: bool,
    ) -> (Result<Listed<u32>, String>, Vec<u32>) {
        let asked = RefCell::new(Vec::new());
        let result = list_all(size, |p| {
            asked.borrow_mut().push(p);
            let start = (p - 1) * size;
            let end = (start + size).min(total);
            let t = with_total.then_some(u64::from(total));
            std::future::ready(Ok(page(start.min(end)..end, t)))
        })
        .await;
        (result.map_err(|e| e.to_string()), asked.into_inner())
    }

    #[tokio::test]
    async fn a_short_page_ends_the_listing() {
        let (listed, asked) = run(20, 45, false).await;
        assert_eq!(asked, [1, 2, 3]);
        let listed = listed.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed.rows, (0..45).collect::<Vec<_>>());
        assert_eq!(listed.pages, 3);
    }

    #[tokio::test]
    async fn an_exact_multiple_needs_one_empty_page_without_total_count_and_none_with_it() {
        let (listed, asked) = run(20, 40, false).await;
        assert_eq!(asked, [1, 2, 3]);
        assert_eq!(listed.map(|l| (l.rows.len(), l.pages)), Ok((40, 3)));
        let (listed, asked) = run(20, 40, true).await;
        assert_eq!(asked, [1, 2]);
        assert_eq!(listed.map(|l| (l.rows.len(), l.pages)), Ok((40, 2)));
        let (listed, asked) = run(20, 0, false).await;
        assert_eq!(asked, [1]);
        assert_eq!(listed.map(|l| (l.rows.len(), l.pages)), Ok((0, 1)));
    }

    #[tokio::test]
    async fn total_count_stops_early_and_skipped_rows_still_count() {
        // The service says 3 rows in all, though page 1 comes full: no second request.
        let asked = RefCell::new(Vec::new());
        let result = list_all(3, |p| {
            asked.borrow_mut().push(p);
            let mut answer = page(0..2, Some(3));
            answer.skipped.push(RowProblem {
                page: p,
                row: 2,
                field: None,
                reason: "Digest: missing".into(),
            });
            std::future::ready(Ok::<_, ApiError>(answer))
        })
        .await;
        assert_eq!(asked.into_inner(), [1]);
        let listed = result.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((listed.rows, listed.pages), (vec![0, 1], 1));
        assert_eq!(listed.skipped.len(), 1);
    }

    #[tokio::test]
    async fn pages_that_never_end_stop_at_the_hard_limit() {
        let asked = RefCell::new(0_u32);
        let result = list_all(1, |_| {
            *asked.borrow_mut() += 1;
            std::future::ready(Ok::<_, ApiError>(page(0..1, None)))
        })
        .await;
        assert_eq!(*asked.borrow(), MAX_PAGES);
        assert!(matches!(result, Err(ListError::TooManyPages)), "{result:?}");
        assert_eq!(
            result.err().map(|e| e.to_string()).as_deref(),
            Some("listing still not finished after 10000 pages")
        );
    }

    #[tokio::test]
    async fn a_failed_page_names_its_number() {
        let result = list_all(2, |p| {
            std::future::ready(match p {
                3 => Err(service("ServiceUnavailable", "busy")),
                _ => Ok(page(0..2, None)),
            })
        })
        .await;
        assert_eq!(
            result.err().map(|e| e.to_string()).as_deref(),
            Some("listing page 3 failed: ServiceUnavailable (HTTP 400): busy")
        );
    }

    #[tokio::test]
    async fn a_parameter_error_naming_the_page_size_on_page_one_is_a_configuration_problem() {
        async fn first(e: ApiError) -> Option<String> {
            let mut e = Some(e);
            let listed = list_all(500, move |_| {
                let e = e
                    .take()
                    .unwrap_or(ApiError::Timeout(std::time::Duration::ZERO));
                std::future::ready(Err::<Page<u32>, _>(e))
            })
            .await;
            listed.err().map(|e| e.to_string())
        }
        assert_eq!(
            first(service("InvalidParameter", "PageSize must be at most 100"))
                .await
                .as_deref(),
            Some(
                "discovery page_size 500 refused by the service (InvalidParameter: PageSize must be at most 100): lower page_size"
            )
        );
        assert!(
            first(service("InvalidPageSize", "too large"))
                .await
                .is_some_and(|e| e.starts_with("discovery page_size 500 refused"))
        );
        assert!(
            first(service("IllegalParam.Page", "the page size is too big"))
                .await
                .is_some_and(|e| e.starts_with("discovery page_size 500 refused"))
        );
        // A parameter error about something else, or no parameter error, is the page's own.
        for (code, message) in [
            ("InvalidParameter", "Criteria is not valid"),
            ("Throttling.User", "PageSize requests too fast"),
            ("Forbidden.RAM", "no permission"),
        ] {
            let e = list_all(500, move |_| {
                std::future::ready(Err::<Page<u32>, _>(service(code, message)))
            })
            .await;
            assert!(
                matches!(e, Err(ListError::Page { page: 1, .. })),
                "{code}: {e:?}"
            );
        }
        // The same refusal on a later page cannot be the page size, which page 1 accepted.
        let later = list_all(2, |p| {
            std::future::ready(match p {
                1 => Ok(page(0..2, None)),
                _ => Err(service("InvalidParameter", "PageSize")),
            })
        })
        .await;
        assert!(
            matches!(later, Err(ListError::Page { page: 2, .. })),
            "{later:?}"
        );
    }
}
