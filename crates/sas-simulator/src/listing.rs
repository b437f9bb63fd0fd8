//! The two listing operations, `DescribeImageInstances` and `DescribeContainerInstances`: their
//! parameters, the rows that match them, and one page of those rows as the service answers it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::criteria::{Criteria, invalid};
use crate::error::Rejection;
use crate::instances::{ImageInstance, normalize_digest};
use crate::response::request_id;
use crate::scenario::Scenario;

/// `PageSize` when a request leaves it out, as the real service defaults it.
pub(crate) const DEFAULT_PAGE_SIZE: u32 = 20;

/// Which listing a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listing {
    Images,
    Containers,
}

impl Listing {
    /// The action name that asks for this listing.
    pub(crate) fn action(self) -> &'static str {
        match self {
            Listing::Images => crate::IMAGES_ACTION,
            Listing::Containers => crate::CONTAINERS_ACTION,
        }
    }
}

/// The parameters of one listing request, checked.
#[derive(Debug)]
pub(crate) struct ListRequest {
    pub(crate) page: u32,
    page_size: u32,
    criteria: Criteria,
    /// `Scanned`: `Some(true)` only scanned images, `Some(false)` only unscanned ones.
    scanned: Option<bool>,
}

/// The page a request names, for the log and for page-scoped faults, before anything else is
/// checked: `None` when it is not a positive number.
pub(crate) fn requested_page(query: &BTreeMap<String, String>) -> Option<u32> {
    match query.get("CurrentPage") {
        None => Some(1),
        Some(p) => p.trim().parse::<u32>().ok().filter(|p| *p >= 1),
    }
}

/// Checks a listing request's parameters as the service would; `max_page_size` is the largest
/// `PageSize` the scenario accepts.
pub(crate) fn parse_request(
    listing: Listing,
    query: &BTreeMap<String, String>,
    max_page_size: Option<u32>,
) -> Result<ListRequest, Rejection> {
    let page = requested_page(query).ok_or_else(|| invalid("CurrentPage", "expected 1 or more"))?;
    let page_size = match query.get("PageSize") {
        None => DEFAULT_PAGE_SIZE,
        Some(s) => s
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|s| *s >= 1)
            .ok_or_else(|| invalid("PageSize", "expected 1 or more"))?,
    };
    // The real service's limit and its exact answer for a larger size are not documented; a
    // parameter error naming `PageSize` is the stand-in, shaped like its other parameter errors.
    if let Some(max) = max_page_size.filter(|max| page_size > *max) {
        return Err(invalid(
            "PageSize",
            &format!("{page_size} is larger than the maximum of {max}"),
        ));
    }
    let criteria = Criteria::parse(
        query.get("Criteria").map(String::as_str),
        query.get("LogicalExp").map(String::as_str),
    )?;
    // `Scanned` is a parameter of the image listing only; the container listing ignores it like
    // any parameter it does not know.
    let scanned = match (listing, query.get("Scanned").map(|s| s.trim())) {
        (Listing::Containers, _) | (Listing::Images, None) => None,
        (Listing::Images, Some(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        (Listing::Images, Some(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        (Listing::Images, Some(_)) => return Err(invalid("Scanned", "expected true or false")),
    };
    Ok(ListRequest {
        page,
        page_size,
        criteria,
        scanned,
    })
}

/// The success body of one page of `listing`.
pub(crate) fn page_body(listing: Listing, scenario: &Scenario, req: &ListRequest) -> Value {
    match listing {
        Listing::Images => {
            let rows = scenario.images.iter().map(|r| current_row(scenario, r));
            let matching = rows.filter(|r| {
                req.scanned.is_none_or(|s| r.last_scan_time.is_some() == s)
                    && req.criteria.matches(|n| r.criteria_field(n))
            });
            body(req, "ImageInstanceList", matching)
        }
        Listing::Containers => {
            let matching = scenario
                .containers
                .iter()
                .filter(|r| req.criteria.matches(|n| r.criteria_field(n)));
            body(req, "ContainerInstanceList", matching)
        }
    }
}

/// `{"RequestId", "PageInfo", <list>}` for the page `req` names out of `rows`.
fn body<R: serde::Serialize>(
    req: &ListRequest,
    list: &str,
    rows: impl Iterator<Item = R>,
) -> Value {
    let size = req.page_size as usize;
    let skip = (req.page as usize - 1).saturating_mul(size);
    let mut total = 0_u64;
    let mut page = Vec::new();
    for (i, row) in rows.enumerate() {
        total += 1;
        if i >= skip && page.len() < size {
            page.push(serde_json::to_value(row).unwrap_or(Value::Null));
        }
    }
    json!({
        "RequestId": request_id(),
        "PageInfo": {
            "Count": page.len(),
            "CurrentPage": req.page,
            "PageSize": req.page_size,
            "TotalCount": total,
        },
        list: page,
    })
}

/// The row as it stands now: a row that follows its digest's scan task takes the task's state.
fn current_row<'a>(scenario: &Scenario, row: &'a ImageInstance) -> Cow<'a, ImageInstance> {
    let task = row
        .digest
        .as_deref()
        .filter(|_| row.follows_task)
        .and_then(|d| scenario.latest_task(&normalize_digest(d)));
    let Some(task) = task else {
        return Cow::Borrowed(row);
    };
    let mut row = row.clone();
    if let Some(status) = task
        .get("Status")
        .and_then(Value::as_str)
        .and_then(sca_status)
    {
        row.sca_status = Some(status.to_owned());
    }
    if let Some(finish) = task.get("FinishTime").and_then(millis) {
        row.last_scan_time = Some(finish);
    }
    Cow::Owned(row)
}

/// The image's `ScaStatus` while its latest task has this `Status`; `None` keeps the row's own.
fn sca_status(task_status: &str) -> Option<&'static str> {
    Some(match task_status {
        "START" => "START",
        "MESSAGE_SEND" => "MESSAGE_SEND",
        "PRE_ANALYZER" => "PRE_ANALYZER",
        "PROCESSING" => "START_RUN",
        "SUCCESS" => "SUCCESS",
        "FAIL" => "FAIL",
        "TIMOUT" | "TIMEOUT" => "TIMEOUT",
        _ => return None,
    })
}

/// Milliseconds written as a number or a numeric string, as scenarios write task times.
fn millis(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instances::ContainerInstance;

    fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn digest(n: u32) -> String {
        format!("{n:08x}").repeat(8)
    }

    fn images(n: u32) -> Scenario {
        Scenario::default().with_images(
            (0..n)
                .map(|i| ImageInstance::new(&digest(i), &format!("ns{}", i % 3), "app", "1"))
                .collect(),
        )
    }

    fn page(listing: Listing, s: &Scenario, q: &[(&str, &str)]) -> Value {
        match parse_request(listing, &query(q), s.max_page_size) {
            Ok(req) => page_body(listing, s, &req),
            Err(r) => json!({"Code": r.code, "Message": r.message}),
        }
    }

    fn digests(body: &Value) -> Vec<String> {
        body["ImageInstanceList"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r["Digest"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn pages_default_to_twenty_rows_and_count_every_match() {
        let s = images(45);
        let first = page(Listing::Images, &s, &[]);
        assert_eq!(
            first["PageInfo"],
            json!({"Count": 20, "CurrentPage": 1, "PageSize": 20, "TotalCount": 45})
        );
        assert_eq!(digests(&first)[0], digest(0));
        let last = page(Listing::Images, &s, &[("CurrentPage", "3")]);
        assert_eq!(digests(&last), (40..45).map(digest).collect::<Vec<_>>());
        let beyond = page(Listing::Images, &s, &[("CurrentPage", "4")]);
        assert_eq!(beyond["PageInfo"]["Count"], 0);
        assert_eq!(beyond["ImageInstanceList"], json!([]));
        let q = [
            ("Criteria", r#"[{"name":"repoNamespace","value":"ns1"}]"#),
            ("PageSize", "10"),
        ];
        let filtered = page(Listing::Images, &s, &q);
        assert_eq!(filtered["PageInfo"]["TotalCount"], 15);
        assert_eq!(digests(&filtered)[..2], [digest(1), digest(4)]);
    }

    #[test]
    fn bad_parameters_and_a_page_size_over_the_limit_are_refused() {
        let mut s = images(1);
        s.max_page_size = Some(100);
        for q in [
            [("PageSize", "101")],
            [("PageSize", "0")],
            [("CurrentPage", "0")],
            [("CurrentPage", "x")],
            [("Scanned", "maybe")],
            [("Criteria", "[")],
        ] {
            assert_eq!(
                page(Listing::Images, &s, &q)["Code"],
                "InvalidParameter",
                "{q:?}"
            );
        }
        assert_eq!(
            page(Listing::Images, &s, &[("PageSize", "101")])["Message"],
            "The specified parameter \"PageSize\" is not valid: 101 is larger than the maximum of 100."
        );
        assert_eq!(
            page(Listing::Images, &s, &[("PageSize", "100")])["PageInfo"]["Count"],
            1
        );
        // The container listing has no `Scanned` parameter and ignores it.
        assert_eq!(
            page(Listing::Containers, &s, &[("Scanned", "maybe")])["PageInfo"]["TotalCount"],
            0
        );
    }

    #[test]
    fn rows_that_follow_their_task_change_with_it() {
        let mut s = images(2);
        s.images[0].follows_task = true;
        s.images[1].last_scan_time = Some(5);
        let d0 = digest(0);
        let scanned = |s: &Scenario, v| digests(&page(Listing::Images, s, &[("Scanned", v)]));
        assert_eq!(scanned(&s, "true"), [digest(1)]);
        assert_eq!(scanned(&s, "false"), std::slice::from_ref(&d0));

        s = s.with_tasks(&d0, vec![json!({"Status": "PROCESSING", "StartTime": 10})]);
        let rows = page(Listing::Images, &s, &[]);
        assert_eq!(rows["ImageInstanceList"][0]["ScaStatus"], "START_RUN");
        assert!(rows["ImageInstanceList"][0].get("LastScanTime").is_none());

        s = s.with_tasks(
            &d0,
            vec![
                json!({"Status": "FAIL", "StartTime": 5, "FinishTime": 6}),
                json!({"Status": "TIMOUT", "StartTime": 10, "FinishTime": "1700000000000"}),
            ],
        );
        let rows = page(Listing::Images, &s, &[]);
        assert_eq!(rows["ImageInstanceList"][0]["ScaStatus"], "TIMEOUT");
        assert_eq!(
            rows["ImageInstanceList"][0]["LastScanTime"],
            1_700_000_000_000_i64
        );
        assert_eq!(scanned(&s, "true"), [d0.clone(), digest(1)]);
        // A row that does not follow its task keeps what the scenario wrote.
        s = s.with_tasks(
            &digest(1),
            vec![json!({"Status": "SUCCESS", "FinishTime": 9})],
        );
        assert_eq!(
            page(Listing::Images, &s, &[])["ImageInstanceList"][1]["LastScanTime"],
            5
        );
    }

    #[test]
    fn containers_page_and_filter_on_their_own_fields() {
        let s = Scenario::default().with_containers(
            (0..5)
                .map(|i| {
                    ContainerInstance::new(&format!("c{}", i % 2), "prod", &format!("p{i}"), "d")
                })
                .collect(),
        );
        let q = [
            ("Criteria", r#"[{"name":"clusterId","value":"c1"}]"#),
            ("PageSize", "1"),
            ("CurrentPage", "2"),
        ];
        let body = page(Listing::Containers, &s, &q);
        assert_eq!(body["PageInfo"]["TotalCount"], 2);
        assert_eq!(body["ContainerInstanceList"][0]["Pod"], "p3");
    }
}
