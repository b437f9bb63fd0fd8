//! What discovery learned about a target, carried in its state so the free per-image series and
//! the status page need no extra request.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::UnixSeconds;

/// Where a running container belongs: the `cluster`, `namespace` and `workload` labels of
/// `sas_image_running_containers`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workload {
    /// `ClusterName` (or `ClusterId`) for `sas_containers`, the configured name for `kubernetes`.
    pub cluster: String,
    /// The pod's namespace.
    pub namespace: String,
    /// `AppName`, or the pod's controlling owner (a Deployment behind its ReplicaSet).
    pub workload: String,
}

/// The scan facts of a `sas_images` row, as of the latest complete listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// `ScaStatus`, the image's scan state in the listing's own vocabulary (`""` when absent).
    pub sca_status: String,
    /// `LastScanTime`, Unix milliseconds.
    pub last_scan_ms: Option<i64>,
    /// `VulCount`.
    pub vulnerabilities: Option<u64>,
    /// `HcCount`.
    pub baseline_risks: Option<u64>,
    /// `AlarmCount`.
    pub security_alerts: Option<u64>,
}

impl ImageFacts {
    /// True when the scan changed between two listings: another `ScaStatus` or `LastScanTime`.
    pub fn scan_changed(&self, before: &ImageFacts) -> bool {
        self.sca_status != before.sca_status || self.last_scan_ms != before.last_scan_ms
    }
}

/// A discovered target's facts: which sources name it, the label set they give it, its latest
/// image row and where it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Discovered {
    /// The `source` names that list the digest now (sorted); empty while it lingers for
    /// `keep_for` after the last source dropped it.
    pub sources: Vec<&'static str>,
    /// The label set the sources give it (`account`, `digest`, then sorted), used when no
    /// static target configures the digest.
    pub labels: Arc<[(Arc<str>, Arc<str>)]>,
    /// The latest `sas_images` row, when a `sas_images` source lists it.
    pub image: Option<ImageFacts>,
    /// Running containers per workload (sorted), from `sas_containers` and `kubernetes`.
    pub running: Vec<(Workload, u32)>,
    /// How long the digest keeps its series once no source lists it: the largest `keep_for`
    /// among the sources that listed it.
    pub keep_for: Duration,
    /// While it lingers: when it leaves (Unix seconds). `None` while a source lists it.
    pub leaves_at: Option<UnixSeconds>,
}

/// Shared between every version of a target's state until discovery changes it.
pub type SharedDiscovered = Arc<Discovered>;

/// Maps a saved or configured source name back to the one static name.
pub fn source_name(name: &str) -> Option<&'static str> {
    SOURCE_NAMES.iter().copied().find(|n| *n == name)
}

/// Every `source` label value.
pub const SOURCE_NAMES: [&str; 3] = ["sas_images", "sas_containers", "kubernetes"];
