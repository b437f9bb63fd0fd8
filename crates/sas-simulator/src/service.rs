//! The Security Center operations themselves: one request in, authenticated, then answered from
//! the scenario or by the fault queued for its digest, page or action, and counted.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

use crate::auth::{authenticate, requested_action};
use crate::bodies::{endless_response, oversized_response, truncated_response};
use crate::error::{Product, Rejection, error_response, rejection_response};
use crate::fault::{Fault, FaultAction, FaultScope};
use crate::listing::{self, Listing};
use crate::log::{RecordedRequest, Subject};
use crate::operation::Operation;
use crate::response::{SimBody, json_response};
use crate::server::{parse_query, read_body};
use crate::state::{Shared, State};

/// An error that makes hyper close the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("simulated dropped connection")]
pub(crate) struct DropConnection;

/// Counts a request as in flight for as long as it lives.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        let mut st = shared.lock();
        st.in_flight += 1;
        st.max_in_flight = st.max_in_flight.max(st.in_flight);
        InFlight(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
    }
}

/// What the simulator decided for one request, before any delay.
enum Decision {
    Reject(Rejection),
    Answer(Value),
    Fault(Fault, Value),
}

impl Decision {
    fn outcome(&self) -> String {
        match self {
            Decision::Reject(r) => r.code.to_owned(),
            Decision::Answer(_) => "ok".to_owned(),
            Decision::Fault(f, _) => f.action.outcome(),
        }
    }
}

fn record(parts: &hyper::http::request::Parts) -> RecordedRequest {
    RecordedRequest {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    }
}

/// Serves one Security Center request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, DropConnection> {
    let _in_flight = InFlight::enter(&shared);
    let (parts, body) = req.into_parts();
    let Some(body) = read_body(body).await else {
        return Ok(error_response(
            Product::SAS,
            400,
            "InvalidParameter",
            "The request body is too large or unreadable.",
            None,
        ));
    };
    let recorded = record(&parts);
    let query: BTreeMap<String, String> = parse_query(parts.uri.query().unwrap_or(""));
    let action = requested_action(&recorded, &query).map(str::to_owned);
    let digest = query
        .get("Digest")
        .map(|d| d.strip_prefix("sha256:").unwrap_or(d).to_ascii_lowercase());
    // The page is logged for listing requests whatever their outcome, so a test sees which pages
    // were asked for even when they were refused.
    let page = action
        .as_deref()
        .and_then(Operation::from_action)
        .filter(|op| matches!(op, Operation::List(_)))
        .and_then(|_| listing::requested_page(&query));

    let decision = {
        let mut st = shared.lock();
        let st = &mut *st;
        st.last_request = Some(recorded.clone());
        let authenticated = authenticate(
            &st.scenario.keys,
            &mut st.nonces,
            &recorded,
            &query,
            &body,
            Utc::now(),
        );
        let decision = match authenticated {
            Err(rejection) => Decision::Reject(rejection),
            Ok(Operation::LatestScanTask) => scan_task(st, digest.as_deref()),
            Ok(Operation::List(listing)) => list(st, listing, &query),
        };
        let subject = Subject {
            action,
            digest,
            page,
        };
        st.log.record(subject, decision.outcome());
        decision
    };

    match decision {
        Decision::Reject(r) => Ok(rejection_response(Product::SAS, &r)),
        Decision::Answer(body) => Ok(json_response(200, body.to_string(), None)),
        Decision::Fault(fault, body) => answer_with_fault(fault, body).await,
    }
}

/// `DescribeImageLatestScanTask`: the digest's fault, else its answer.
fn scan_task(st: &mut State, digest: Option<&str>) -> Decision {
    let Some(d) = digest else {
        return Decision::Reject(Rejection::missing("Digest"));
    };
    let scopes = [
        FaultScope::Digest(d.to_owned()),
        FaultScope::Action(crate::ACTION.to_owned()),
        FaultScope::Global,
    ];
    let body = st.scenario.reply_body(d);
    match st.faults.take(&scopes) {
        Some(f) => Decision::Fault(f, body),
        None => Decision::Answer(body),
    }
}

/// A listing: its parameters checked first (a refused request uses up no fault), then the
/// page's fault, else the page.
fn list(st: &mut State, listing: Listing, query: &BTreeMap<String, String>) -> Decision {
    let req = match listing::parse_request(listing, query, st.scenario.max_page_size) {
        Ok(req) => req,
        Err(rejection) => return Decision::Reject(rejection),
    };
    let action = listing.action();
    let scopes = [
        FaultScope::page(action, req.page),
        FaultScope::Action(action.to_owned()),
        FaultScope::Global,
    ];
    let body = listing::page_body(listing, &st.scenario, &req);
    match st.faults.take(&scopes) {
        Some(f) => Decision::Fault(f, body),
        None => Decision::Answer(body),
    }
}

/// Waits out the fault's delay, then answers as it says; `body` is the normal answer.
async fn answer_with_fault(fault: Fault, body: Value) -> Result<Response<SimBody>, DropConnection> {
    if let Some(d) = fault.delay {
        tokio::time::sleep(d).await;
    }
    let ra = fault.retry_after_ms;
    Ok(match fault.action {
        FaultAction::None => json_response(200, body.to_string(), ra),
        FaultAction::Error {
            status,
            code,
            message,
        } => error_response(Product::SAS, status, &code, &message, ra),
        FaultAction::Raw { status, body } => json_response(status, body, ra),
        FaultAction::MalformedJson => json_response(
            200,
            "{\"RequestId\": \"x\", \"Task\": [{\"Status\": ".into(),
            ra,
        ),
        FaultAction::Oversized { bytes, chunked } => oversized_response(bytes, chunked),
        FaultAction::Drop => return Err(DropConnection),
        FaultAction::ResetMidBody => truncated_response(body.to_string()),
        FaultAction::Endless { chunk, every } => endless_response(chunk, every),
    })
}
