//! One page of a listing, `DescribeImageInstances` or `DescribeContainerInstances`: the query
//! parameters it is asked with and the page it answers. Rows are read leniently (see `rows`); the
//! page itself must be a JSON object that carries its list, since an answer without the list
//! cannot be told from a broken one, and taking it as empty would drop every digest it held.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::aliyun::lenient::{kind, lenient_u64};
use crate::aliyun::rows::{
    ContainerRow, ImageRow, RowAt, RowProblem, read_container_row, read_image_row,
};
use crate::aliyun::scan::{ParseError, request_id, top_object};

/// One `Criteria` entry: a camelCase Criteria name and the value the service matches with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Criterion {
    /// The Criteria name, e.g. `repoNamespace`.
    pub name: String,
    /// The value; the service may match it fuzzily.
    pub value: String,
}

/// Which images `DescribeImageInstances` lists (its `Scanned` parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScannedFilter {
    /// Every image: no `Scanned` parameter.
    #[default]
    Any,
    /// Scanned images only: `Scanned=true`.
    Scanned,
    /// Unscanned images only: `Scanned=false`.
    Unscanned,
}

/// What one page is asked for.
#[derive(Clone, Copy, Debug)]
pub struct ListQuery<'a> {
    /// `CurrentPage`, from 1.
    pub page: u32,
    /// `PageSize`.
    pub page_size: u32,
    /// Sent as `Criteria`; none: no `Criteria` parameter.
    pub criteria: &'a [Criterion],
    /// `LogicalExp`: true for `AND` (every criterion), false for `OR`.
    pub logical_and: bool,
    /// `Scanned`; only the image listing sends it.
    pub scanned: ScannedFilter,
}

impl ListQuery<'_> {
    /// The business parameters of an image listing request.
    pub(crate) fn image_params(&self) -> BTreeMap<String, String> {
        let mut params = self.common_params();
        let scanned = match self.scanned {
            ScannedFilter::Any => None,
            ScannedFilter::Scanned => Some("true"),
            ScannedFilter::Unscanned => Some("false"),
        };
        if let Some(s) = scanned {
            params.insert("Scanned".to_owned(), s.to_owned());
        }
        params
    }

    /// The business parameters of a container listing request (it has no `Scanned`).
    pub(crate) fn container_params(&self) -> BTreeMap<String, String> {
        self.common_params()
    }

    fn common_params(&self) -> BTreeMap<String, String> {
        let mut params = BTreeMap::from([
            ("CurrentPage".to_owned(), self.page.to_string()),
            ("PageSize".to_owned(), self.page_size.to_string()),
        ]);
        if !self.criteria.is_empty() {
            let exp = if self.logical_and { "AND" } else { "OR" };
            let entries: Vec<Value> = self
                .criteria
                .iter()
                .map(|c| json!({"name": c.name, "value": c.value, "logicalExp": exp}))
                .collect();
            params.insert("Criteria".to_owned(), Value::Array(entries).to_string());
            params.insert("LogicalExp".to_owned(), exp.to_owned());
        }
        params
    }
}

/// One page as the service answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<R> {
    /// The rows that could be read, in the service's order.
    pub rows: Vec<R>,
    /// `PageInfo.TotalCount`: rows in the whole listing, when the service said.
    pub total_count: Option<u64>,
    /// `RequestId`, for support tickets.
    pub request_id: Option<String>,
    /// Rows skipped and fields left out, with why.
    pub skipped: Vec<RowProblem>,
}

impl<R> Page<R> {
    /// How many rows the page's list held, skipped ones included: what paging counts, so a
    /// skipped row cannot make a full page look like the last one.
    pub fn listed(&self) -> usize {
        self.rows.len() + self.skipped.iter().filter(|p| p.row_skipped()).count()
    }
}

/// Parses one `DescribeImageInstances` page; `page` is the `CurrentPage` it was asked for.
pub(crate) fn parse_image_page(body: &[u8], page: u32) -> Result<Page<ImageRow>, ParseError> {
    parse_page(body, page, "ImageInstanceList", read_image_row)
}

/// Parses one `DescribeContainerInstances` page; `page` is the `CurrentPage` it was asked for.
pub(crate) fn parse_container_page(
    body: &[u8],
    page: u32,
) -> Result<Page<ContainerRow>, ParseError> {
    parse_page(body, page, "ContainerInstanceList", read_container_row)
}

type ReadRow<R> = fn(Map<String, Value>, RowAt, &mut Vec<RowProblem>) -> Option<R>;

fn parse_page<R>(
    body: &[u8],
    page: u32,
    list: &'static str,
    read_row: ReadRow<R>,
) -> Result<Page<R>, ParseError> {
    let mut top = top_object(body)?;
    let items = match top.remove(list) {
        Some(Value::Array(items)) => items,
        None => return Err(ParseError(format!("{list}: missing"))),
        Some(other) => {
            return Err(ParseError(format!(
                "{list}: expected an array of rows, got {}",
                kind(&other)
            )));
        }
    };
    let request_id = request_id(&mut top);
    // An unreadable TotalCount only costs the early stop it allows: paging still ends on the
    // first short page, so it is not worth failing the page over.
    let total_count = top
        .get_mut("PageInfo")
        .and_then(Value::as_object_mut)
        .and_then(|info| info.remove("TotalCount"))
        .or_else(|| top.remove("TotalCount"))
        .and_then(|v| lenient_u64(v).ok().flatten());
    let mut rows = Vec::with_capacity(items.len());
    let mut skipped = Vec::new();
    for (row, item) in items.into_iter().enumerate() {
        let at = RowAt { page, row };
        match item {
            Value::Object(obj) => rows.extend(read_row(obj, at, &mut skipped)),
            other => skipped.push(RowProblem {
                page,
                row,
                field: None,
                reason: format!("expected an object, got {}", kind(&other)),
            }),
        }
    }
    Ok(Page {
        rows,
        total_count,
        request_id,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd";
    const D2: &str = "0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a";

    fn query<'a>(criteria: &'a [Criterion], scanned: ScannedFilter) -> ListQuery<'a> {
        ListQuery {
            page: 3,
            page_size: 50,
            criteria,
            logical_and: true,
            scanned,
        }
    }

    fn pairs(params: BTreeMap<String, String>) -> Vec<(String, String)> {
        params.into_iter().collect()
    }

    #[test]
    fn parameters_carry_paging_criteria_as_json_and_scanned_for_images_only() {
        let criteria = [
            Criterion {
                name: "repoNamespace".into(),
                value: "pay\"ments".into(),
            },
            Criterion {
                name: "tag".into(),
                value: "1.4.2".into(),
            },
        ];
        let q = query(&criteria, ScannedFilter::Scanned);
        let want_criteria = r#"[{"logicalExp":"AND","name":"repoNamespace","value":"pay\"ments"},{"logicalExp":"AND","name":"tag","value":"1.4.2"}]"#;
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            pairs(q.image_params()),
            [
                s("Criteria", want_criteria),
                s("CurrentPage", "3"),
                s("LogicalExp", "AND"),
                s("PageSize", "50"),
                s("Scanned", "true"),
            ]
        );
        assert_eq!(
            pairs(q.container_params()),
            [
                s("Criteria", want_criteria),
                s("CurrentPage", "3"),
                s("LogicalExp", "AND"),
                s("PageSize", "50"),
            ]
        );
        let or = ListQuery {
            logical_and: false,
            ..query(&criteria[..1], ScannedFilter::Unscanned)
        };
        let params = or.image_params();
        assert_eq!(params.get("LogicalExp").map(String::as_str), Some("OR"));
        assert_eq!(
            params.get("Criteria").map(String::as_str),
            Some(r#"[{"logicalExp":"OR","name":"repoNamespace","value":"pay\"ments"}]"#)
        );
        assert_eq!(params.get("Scanned").map(String::as_str), Some("false"));
        assert_eq!(
            pairs(query(&[], ScannedFilter::Any).image_params()),
            [s("CurrentPage", "3"), s("PageSize", "50")]
        );
    }

    #[test]
    fn a_page_keeps_good_rows_and_reports_bad_ones() {
        let body = format!(
            r#"{{"RequestId":"R1","PageInfo":{{"Count":4,"CurrentPage":2,"PageSize":4,"TotalCount":"9"}},
            "ImageInstanceList":[{{"Digest":"{D1}","Tag":"a","Unknown":{{"x":[1]}}}},"oops",
            {{"Digest":"nope"}},{{"Digest":"sha256:{D2}","VulCount":"x"}}],"Extra":1}}"#
        );
        let page = parse_image_page(body.as_bytes(), 2).unwrap_or_else(|e| panic!("{e}"));
        let digests: Vec<&str> = page.rows.iter().map(|r| r.digest.as_str()).collect();
        assert_eq!(digests, [D1, D2]);
        assert_eq!(page.total_count, Some(9));
        assert_eq!(page.request_id.as_deref(), Some("R1"));
        assert_eq!(page.listed(), 4);
        let shown: Vec<String> = page.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "page 2 row 1: expected an object, got a string (row skipped)",
                "page 2 row 2: Digest: \"nope\" is not a sha256 digest (row skipped)",
                "page 2 row 3 VulCount: \"x\" is not an integer (field left out)",
            ]
        );
    }

    #[test]
    fn total_count_is_optional_and_may_sit_at_the_top_level() {
        let page = |body: &str| parse_container_page(body.as_bytes(), 1);
        let none = page(r#"{"ContainerInstanceList":[]}"#).map(|p| (p.total_count, p.listed()));
        assert_eq!(none, Ok((None, 0)));
        let top = page(r#"{"TotalCount":3,"ContainerInstanceList":[]}"#).map(|p| p.total_count);
        assert_eq!(top, Ok(Some(3)));
        let bad = page(r#"{"PageInfo":{"TotalCount":"lots"},"ContainerInstanceList":[]}"#);
        assert_eq!(bad.map(|p| p.total_count), Ok(None));
        let row = format!(r#"{{"ContainerInstanceList":[{{"ImageDigest":"{D1}","Pod":"p"}}]}}"#);
        let rows = page(&row).map(|p| p.rows);
        assert_eq!(
            rows.ok()
                .and_then(|r| r.into_iter().next())
                .and_then(|r| r.pod),
            Some("p".to_owned())
        );
    }

    #[test]
    fn a_body_that_is_not_a_listing_is_an_error() {
        let err = |body: &str| parse_image_page(body.as_bytes(), 1).err().map(|e| e.0);
        assert_eq!(
            err(r#"{"RequestId":"R","PageInfo":{}}"#).as_deref(),
            Some("ImageInstanceList: missing")
        );
        assert_eq!(
            err(r#"{"ImageInstanceList":null}"#).as_deref(),
            Some("ImageInstanceList: expected an array of rows, got null")
        );
        assert_eq!(
            err("[]").as_deref(),
            Some("expected a JSON object at the top level, got an array")
        );
        assert!(
            err("{\"ImageInstanceList\": [")
                .is_some_and(|e| e.starts_with("response is not valid JSON"))
        );
        // The other listing's key is not this listing.
        assert_eq!(
            err(r#"{"ContainerInstanceList":[]}"#).as_deref(),
            Some("ImageInstanceList: missing")
        );
    }
}
