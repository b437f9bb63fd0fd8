//! What a valid `discovery` section becomes: the sources and their settings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::problem::Location;

/// The Criteria names `DescribeImageInstances` understands, in snake_case as the config writes
/// them.
pub const IMAGE_FILTERS: &[&str] = &[
    "instance_id",
    "repo_name",
    "repo_namespace",
    "region_id",
    "tag",
    "digest",
    "repo_id",
    "vul_status",
    "risk_status",
    "registry_type",
];

/// The Criteria names `DescribeContainerInstances` understands, in snake_case.
pub const CONTAINER_FILTERS: &[&str] = &[
    "cluster_id",
    "cluster_name",
    "region_id",
    "instance_id",
    "image",
    "image_repo_name",
    "image_repo_namespace",
    "image_repo_tag",
    "image_digest",
    "cluster_type",
    "host_ip",
    "pod",
    "pod_ip",
    "container_id",
    "vul_status",
    "alarm_status",
    "risk_status",
    "risk_level",
    "container_scope",
    "namespace",
    "app_name",
];

pub(super) const MIN_REFRESH: Duration = Duration::from_secs(10);
pub(super) const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
pub(super) const DEFAULT_REFRESH: Duration = Duration::from_secs(60);
/// Rows per page when `page_size` is not written: more than the API's default of 20, and a
/// size the service is known to accept.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub(super) const MAX_PAGE_SIZE: u32 = 500;
/// How long a digest no source lists any more keeps its series, unless `keep_for` says.
pub const DEFAULT_KEEP_FOR: Duration = Duration::from_secs(3600);
pub(super) const MAX_KEEP_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// The `cluster` label of the `kubernetes` source when none is configured.
pub const DEFAULT_CLUSTER: &str = "kubernetes";

/// One discovery source as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscoveryConfig {
    /// The account whose Security Center is asked about the digests this source finds.
    pub account: String,
    /// What the source reads, with its own settings.
    pub kind: SourceKind,
    /// Added to every digest this source finds.
    pub labels: BTreeMap<String, String>,
    /// How long a digest this source no longer lists keeps its series.
    pub keep_for: Duration,
    /// Where the source was written.
    pub location: Location,
}

impl DiscoveryConfig {
    /// The `source` label value.
    pub fn source_name(&self) -> &'static str {
        self.kind.name()
    }
}

/// The kinds of source, each with its settings.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    /// Every image Security Center knows (`DescribeImageInstances`).
    SasImages {
        /// Paging, refresh and filters.
        listing: ListingConfig,
        /// The `Scanned` parameter.
        scanned: Scanned,
    },
    /// Containers running in clusters connected to Security Center (`DescribeContainerInstances`).
    SasContainers {
        /// Paging, refresh and filters.
        listing: ListingConfig,
    },
    /// Pods of a Kubernetes cluster, watched with the Kubernetes API.
    Kubernetes(KubernetesConfig),
}

impl SourceKind {
    /// The `source` label value.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::SasImages { .. } => "sas_images",
            SourceKind::SasContainers { .. } => "sas_containers",
            SourceKind::Kubernetes(_) => "kubernetes",
        }
    }
}

/// How a Security Center listing is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingConfig {
    /// How often the whole list is read.
    pub refresh: Duration,
    /// Rows asked for per page.
    pub page_size: u32,
    /// AND-ed filters, sent as `Criteria` and checked again on every row.
    pub filters: Vec<Filter>,
}

/// One filter: a Criteria name (camelCase, as the API spells it) and the value it must equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The Criteria name, e.g. `repoNamespace`.
    pub name: String,
    /// The value the row's field must equal.
    pub value: String,
}

/// Which images a `sas_images` listing returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scanned {
    /// All images (no `Scanned` parameter).
    #[default]
    Any,
    /// Scanned images only.
    Scanned,
    /// Unscanned images only.
    Unscanned,
}

impl fmt::Display for Scanned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scanned::Any => "any",
            Scanned::Scanned => "scanned",
            Scanned::Unscanned => "unscanned",
        })
    }
}

/// How the `kubernetes` source reaches its cluster and which pods it reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// A kubeconfig file; `None` means the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// The `cluster` label value.
    pub cluster: String,
    /// The namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// A label selector on pods; `None` means every pod.
    pub label_selector: Option<String>,
}

/// `cluster_id` → `clusterId`.
pub fn criteria_name(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
