//! The `sas_images` and `sas_containers` sources: every page of Security Center's listing,
//! through the account's token bucket, every `refresh`; rows re-checked against the filters
//! exactly, since the service may match them fuzzily.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::aliyun::client::{ApiError, CONTAINERS_ACTION, IMAGES_ACTION, SasClient};
use crate::aliyun::listing::{Criterion, ListQuery, Page, ScannedFilter};
use crate::aliyun::paging::{ListError, list_all};
use crate::aliyun::rows::{ContainerRow, ImageRow};
use crate::config::{DiscoveryConfig, Filter, ListingConfig, Scanned, SourceKind};
use crate::discovery::listing::{Finding, ImageFacts, Listing, Reporter, Workload};
use crate::poll::scheduler::Scheduler;
use crate::shutdown::Shutdown;

/// The least pause between two listings of one source.
const MIN_PAUSE: Duration = Duration::from_millis(100);

/// Lists the source every `refresh` until shutdown, reporting each complete listing (or why
/// there is none this time).
pub(crate) async fn run(
    config: DiscoveryConfig,
    scheduler: Scheduler,
    reporter: Reporter,
    mut shutdown: Shutdown,
) {
    let (listing, scanned, images) = match &config.kind {
        SourceKind::SasImages { listing, scanned } => (listing.clone(), *scanned, true),
        SourceKind::SasContainers { listing } => (listing.clone(), Scanned::Any, false),
        SourceKind::Kubernetes(_) => return,
    };
    let criteria: Vec<Criterion> = listing
        .filters
        .iter()
        .map(|f| Criterion {
            name: f.name.clone(),
            value: f.value.clone(),
        })
        .collect();
    loop {
        let started = Instant::now();
        let outcome = if images {
            list(
                &scheduler,
                &listing,
                &criteria,
                scanned,
                IMAGES_ACTION,
                &mut shutdown,
                |c, q| async move { c.describe_image_instances(&q).await },
            )
            .await
            .map(|r| r.map(Rows::Images))
        } else {
            list(
                &scheduler,
                &listing,
                &criteria,
                Scanned::Any,
                CONTAINERS_ACTION,
                &mut shutdown,
                |c, q| async move { c.describe_container_instances(&q).await },
            )
            .await
            .map(|r| r.map(Rows::Containers))
        };
        let outcome = match outcome {
            None => None,
            Some(Err(e)) => Some(Err(e.to_string())),
            Some(Ok(rows)) => {
                // Turning 10 000 rows into a listing is CPU work for the blocking pool.
                let filters = listing.filters.clone();
                match tokio::task::spawn_blocking(move || rows.into_listing(&filters)).await {
                    Ok(found) => Some(Ok(found)),
                    Err(e) => Some(Err(format!("building the listing failed: {e}"))),
                }
            }
        };
        match outcome {
            None => return,
            Some(Ok(found)) => {
                tracing::debug!(source = config.source_name(), account = %config.account, digests = found.len(), took = ?started.elapsed(), "listed");
                reporter.complete(found);
            }
            Some(Err(e)) => reporter.failed(e),
        }
        let wait = listing.refresh.saturating_sub(started.elapsed());
        // A floor, so a listing slower than its refresh still leaves room for the polls.
        if !shutdown.tick(wait.max(MIN_PAUSE)).await {
            return;
        }
    }
}

fn query<'a>(
    criteria: &'a [Criterion],
    page: u32,
    config: &ListingConfig,
    scanned: Scanned,
) -> ListQuery<'a> {
    ListQuery {
        page,
        page_size: config.page_size,
        criteria,
        logical_and: true,
        scanned: match scanned {
            Scanned::Any => ScannedFilter::Any,
            Scanned::Scanned => ScannedFilter::Scanned,
            Scanned::Unscanned => ScannedFilter::Unscanned,
        },
    }
}

/// What a page request answers once shutdown cut it short; the listing is abandoned anyway.
fn shutting_down() -> ApiError {
    ApiError::Connect("the exporter is shutting down".to_owned())
}

/// Every page of one listing through the account's scheduler (its bucket, limits and retries);
/// `call` asks for one page. `None` once shutdown fires.
async fn list<'a, R, F, Fut>(
    scheduler: &Scheduler,
    config: &ListingConfig,
    criteria: &'a [Criterion],
    scanned: Scanned,
    action: &'static str,
    shutdown: &mut Shutdown,
    call: F,
) -> Option<Result<Vec<R>, ListError>>
where
    F: Fn(Arc<SasClient>, ListQuery<'a>) -> Fut,
    Fut: Future<Output = Result<Page<R>, ApiError>>,
{
    let mut stop = shutdown.clone();
    let call = &call;
    tokio::select! {
        biased;
        _ = stop.wait() => None,
        r = list_all(config.page_size, |page| {
            let mut shutdown = shutdown.clone();
            async move {
                let q = query(criteria, page, config, scanned);
                scheduler
                    .request(action, action, &mut shutdown, |client| call(client, q))
                    .await
                    .unwrap_or_else(|| Err(shutting_down()))
            }
        }) => Some(r.map(|listed| {
            if let Some(first) = listed.skipped.first() {
                // Rows the parser could not use; their digests are not in this listing.
                tracing::warn!(action, problems = listed.skipped.len(), first = %first, "listing rows or fields left out");
            }
            listed.rows
        })),
    }
}

/// The rows of one complete listing, before they become a [`Listing`].
enum Rows {
    Images(Vec<ImageRow>),
    Containers(Vec<ContainerRow>),
}

impl Rows {
    fn into_listing(self, filters: &[Filter]) -> Listing {
        match self {
            Rows::Images(rows) => images_listing(rows, filters),
            Rows::Containers(rows) => containers_listing(rows, filters),
        }
    }
}

/// True when every filter equals the row's field exactly. A filter on a field the rows do not
/// carry (`fields` does not name it) cannot be re-checked and is left to the service; a row
/// without a field it does carry does not match.
fn matches<'r>(
    filters: &[Filter],
    fields: &[&str],
    field: impl Fn(&str) -> Option<&'r str>,
) -> bool {
    filters.iter().all(|f| {
        if !fields.contains(&f.name.as_str()) {
            return true;
        }
        let Some(v) = field(&f.name) else {
            return false;
        };
        if matches!(f.name.as_str(), "digest" | "imageDigest") {
            // Rows carry the bare lower-case form; a filter may be written with `sha256:`.
            let want = f.value.strip_prefix("sha256:").unwrap_or(&f.value);
            v.eq_ignore_ascii_case(want)
        } else {
            v == f.value
        }
    })
}

/// `namespace/name:tag`, leaving out what the row does not say.
fn image_name(namespace: &str, name: &str, tag: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let mut s = String::new();
    if !namespace.is_empty() {
        s.push_str(namespace);
        s.push('/');
    }
    s.push_str(name);
    if !tag.is_empty() {
        s.push(':');
        s.push_str(tag);
    }
    Some(s)
}

/// One finding per digest; of the rows that share a digest (one per tag), the scan facts of
/// the latest scan.
pub(crate) fn images_listing(rows: Vec<ImageRow>, filters: &[Filter]) -> Listing {
    let mut out = Listing::new();
    for row in rows {
        if !matches(filters, ImageRow::FIELDS, |name| row.field(name)) {
            continue;
        }
        let name = image_name(
            row.repo_namespace.as_deref().unwrap_or(""),
            row.repo_name.as_deref().unwrap_or(""),
            row.tag.as_deref().unwrap_or(""),
        );
        // Moved, not copied: a listing is 10 000 rows.
        let ImageRow {
            digest,
            sca_status,
            last_scan_time_ms,
            vul_count,
            hc_count,
            alarm_count,
            ..
        } = row;
        let facts = ImageFacts {
            sca_status: sca_status.unwrap_or_default(),
            last_scan_ms: last_scan_time_ms,
            vulnerabilities: vul_count,
            baseline_risks: hc_count,
            security_alerts: alarm_count,
        };
        let finding: &mut Finding = out.entry(digest).or_default();
        if let Some(name) = name {
            finding.images.insert(name);
        }
        let later = finding
            .row
            .as_ref()
            .is_none_or(|f| facts.last_scan_ms > f.last_scan_ms);
        if later {
            finding.row = Some(facts);
        }
    }
    out
}

/// One finding per digest, counting each row (a running container) under its workload.
pub(crate) fn containers_listing(rows: Vec<ContainerRow>, filters: &[Filter]) -> Listing {
    let mut out = Listing::new();
    for row in rows {
        if !matches(filters, ContainerRow::FIELDS, |name| row.field(name)) {
            continue;
        }
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let cluster = row
            .cluster_name
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| text(&row.cluster_id));
        let workload = row
            .app_name
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| text(&row.pod));
        let finding = out.entry(row.image_digest.clone()).or_default();
        let name = image_name(
            row.image_repo_namespace.as_deref().unwrap_or(""),
            row.image_repo_name.as_deref().unwrap_or(""),
            row.image_repo_tag.as_deref().unwrap_or(""),
        )
        .or_else(|| row.image.clone().filter(|i| !i.is_empty()));
        if let Some(name) = name {
            finding.images.insert(name);
        }
        let w = Workload {
            cluster,
            namespace: text(&row.namespace),
            workload,
        };
        *finding.running.entry(w).or_insert(0) += 1;
    }
    out
}
