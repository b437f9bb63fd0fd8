//! The rows of the two listings, `DescribeImageInstances` and `DescribeContainerInstances`, read
//! leniently: numbers may come as strings, any field may be missing, unknown fields are ignored.
//! A field that cannot be read is left out and reported; a row without a usable digest is skipped
//! and reported, since a digest is what a row is for. Strings are capped like label values.

use std::fmt;

use serde_json::{Map, Value};

use crate::aliyun::lenient::{
    lenient_bool, lenient_i64, lenient_string, lenient_u64, preview, take_field,
};
use crate::aliyun::scan::cap_label;

/// A row, or one field of a row, that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    /// The page the row came from (`CurrentPage`, from 1).
    pub page: u32,
    /// The row's index in that page's list, from 0.
    pub row: usize,
    /// The field left out; `None` when the whole row was skipped.
    pub field: Option<&'static str>,
    /// Why it could not be read.
    pub reason: String,
}

impl RowProblem {
    /// True when the whole row was skipped, not just one field.
    pub fn row_skipped(&self) -> bool {
        self.field.is_none()
    }
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            None => write!(
                f,
                "page {} row {}: {} (row skipped)",
                self.page, self.row, self.reason
            ),
            Some(field) => write!(
                f,
                "page {} row {} {field}: {} (field left out)",
                self.page, self.row, self.reason
            ),
        }
    }
}

/// Where a row sits, for the problems it reports.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowAt {
    pub(crate) page: u32,
    pub(crate) row: usize,
}

/// Takes the fields of one row object, setting aside the ones that cannot be read.
struct Fields<'a> {
    obj: Map<String, Value>,
    at: RowAt,
    problems: &'a mut Vec<RowProblem>,
}

impl Fields<'_> {
    fn take<T>(
        &mut self,
        field: &'static str,
        read: fn(Value) -> Result<Option<T>, String>,
    ) -> Option<T> {
        let (at, problems) = (self.at, &mut *self.problems);
        take_field(&mut self.obj, field, read, |reason| {
            problems.push(RowProblem {
                page: at.page,
                row: at.row,
                field: Some(field),
                reason,
            })
        })
    }

    fn label(&mut self, field: &'static str) -> Option<String> {
        self.take(field, lenient_string).map(cap_label)
    }

    /// The row's digest, or why the row has none and is skipped.
    fn digest(&mut self, field: &'static str) -> Result<String, String> {
        match self.obj.remove(field).map(lenient_string) {
            None | Some(Ok(None)) => Err(format!("{field}: missing")),
            Some(Err(reason)) => Err(format!("{field}: {reason}")),
            Some(Ok(Some(raw))) => normalize_digest(&raw)
                .ok_or_else(|| format!("{field}: {} is not a sha256 digest", preview(&raw))),
        }
    }
}

/// A digest as the exporter keys targets: 64 lower-case hex characters, from the bare form or
/// `sha256:` + hex, in any case.
pub(crate) fn normalize_digest(raw: &str) -> Option<String> {
    let t = raw.trim();
    let hex = match t.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("sha256:") => &t[7..],
        _ => t,
    };
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// One `DescribeImageInstances` row: a container image Security Center knows, with its scan
/// state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageRow {
    /// `Digest`, bare lower-case 64 hex.
    pub digest: String,
    /// `RepoNamespace`.
    pub repo_namespace: Option<String>,
    /// `RepoName`.
    pub repo_name: Option<String>,
    /// `Tag`.
    pub tag: Option<String>,
    /// `RegionId`.
    pub region_id: Option<String>,
    /// `InstanceId`: the registry instance.
    pub instance_id: Option<String>,
    /// `RepoId`.
    pub repo_id: Option<String>,
    /// `RegistryType` (`acr`, `harbor`, ...).
    pub registry_type: Option<String>,
    /// `ScaStatus`: the image's scan state, in its own vocabulary (not the task's).
    pub sca_status: Option<String>,
    /// `ScaProgress`: 0–100.
    pub sca_progress: Option<i64>,
    /// `ScaResult`: an error code such as `TASK_NOT_EXISTS`.
    pub sca_result: Option<String>,
    /// `LastScanTime`: Unix milliseconds of the latest scan.
    pub last_scan_time_ms: Option<i64>,
    /// `VulCount`.
    pub vul_count: Option<u64>,
    /// `HcCount`: baseline risks.
    pub hc_count: Option<u64>,
    /// `AlarmCount`: security alerts.
    pub alarm_count: Option<u64>,
    /// `VulStatus`.
    pub vul_status: Option<String>,
    /// `HcStatus`.
    pub hc_status: Option<String>,
    /// `AlarmStatus`.
    pub alarm_status: Option<String>,
    /// `RiskStatus`.
    pub risk_status: Option<String>,
    /// `Deployed`: a running container uses the image.
    pub deployed: Option<bool>,
}

impl ImageRow {
    /// The Criteria names [`ImageRow::field`] answers for; for any other name the row carries no
    /// value to check, and only the service's own matching applies.
    pub const FIELDS: &'static [&'static str] = &[
        "digest",
        "repoNamespace",
        "repoName",
        "tag",
        "regionId",
        "instanceId",
        "repoId",
        "registryType",
        "scaStatus",
        "scaResult",
        "vulStatus",
        "hcStatus",
        "alarmStatus",
        "riskStatus",
    ];

    /// The row's value for a camelCase Criteria name (see [`ImageRow::FIELDS`]), to check a
    /// filter exactly where the service matched it fuzzily.
    pub fn field(&self, criteria_name: &str) -> Option<&str> {
        match criteria_name {
            "digest" => Some(&self.digest),
            "repoNamespace" => self.repo_namespace.as_deref(),
            "repoName" => self.repo_name.as_deref(),
            "tag" => self.tag.as_deref(),
            "regionId" => self.region_id.as_deref(),
            "instanceId" => self.instance_id.as_deref(),
            "repoId" => self.repo_id.as_deref(),
            "registryType" => self.registry_type.as_deref(),
            "scaStatus" => self.sca_status.as_deref(),
            "scaResult" => self.sca_result.as_deref(),
            "vulStatus" => self.vul_status.as_deref(),
            "hcStatus" => self.hc_status.as_deref(),
            "alarmStatus" => self.alarm_status.as_deref(),
            "riskStatus" => self.risk_status.as_deref(),
            _ => None,
        }
    }
}

/// Reads one image row; `None` (with the problem recorded) when it has no usable digest.
pub(crate) fn read_image_row(
    obj: Map<String, Value>,
    at: RowAt,
    problems: &mut Vec<RowProblem>,
) -> Option<ImageRow> {
    let mut f = Fields { obj, at, problems };
    let digest = skip_without(f.digest("Digest"), at, f.problems)?;
    Some(ImageRow {
        digest,
        repo_namespace: f.label("RepoNamespace"),
        repo_name: f.label("RepoName"),
        tag: f.label("Tag"),
        region_id: f.label("RegionId"),
        instance_id: f.label("InstanceId"),
        repo_id: f.label("RepoId"),
        registry_type: f.label("RegistryType"),
        sca_status: f.label("ScaStatus"),
        sca_progress: f.take("ScaProgress", lenient_i64),
        sca_result: f.label("ScaResult"),
        last_scan_time_ms: f.take("LastScanTime", lenient_i64),
        vul_count: f.take("VulCount", lenient_u64),
        hc_count: f.take("HcCount", lenient_u64),
        alarm_count: f.take("AlarmCount", lenient_u64),
        vul_status: f.label("VulStatus"),
        hc_status: f.label("HcStatus"),
        alarm_status: f.label("AlarmStatus"),
        risk_status: f.label("RiskStatus"),
        deployed: f.take("Deployed", lenient_bool),
    })
}

/// One `DescribeContainerInstances` row: a container running in a cluster connected to Security
/// Center.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerRow {
    /// `ImageDigest`, bare lower-case 64 hex.
    pub image_digest: String,
    /// `ClusterId`.
    pub cluster_id: Option<String>,
    /// `ClusterName`.
    pub cluster_name: Option<String>,
    /// `ClusterType`, when the service sends it.
    pub cluster_type: Option<String>,
    /// `Namespace`.
    pub namespace: Option<String>,
    /// `Pod`.
    pub pod: Option<String>,
    /// `AppName`: the workload.
    pub app_name: Option<String>,
    /// `Image`: the image as the pod names it.
    pub image: Option<String>,
    /// `ImageRepoName`.
    pub image_repo_name: Option<String>,
    /// `ImageRepoNamespace`.
    pub image_repo_namespace: Option<String>,
    /// `ImageRepoTag`.
    pub image_repo_tag: Option<String>,
    /// `RegionId`.
    pub region_id: Option<String>,
    /// `InstanceId`: the node's instance.
    pub instance_id: Option<String>,
    /// `ContainerId`.
    pub container_id: Option<String>,
    /// `HostIp`.
    pub host_ip: Option<String>,
    /// `PodIp`.
    pub pod_ip: Option<String>,
    /// `NodeName`.
    pub node_name: Option<String>,
    /// `VulStatus`.
    pub vul_status: Option<String>,
    /// `AlarmStatus`.
    pub alarm_status: Option<String>,
    /// `RiskStatus`.
    pub risk_status: Option<String>,
}

impl ContainerRow {
    /// The Criteria names [`ContainerRow::field`] answers for; for any other name (`riskLevel`,
    /// `containerScope`, ...) the row carries no value to check.
    pub const FIELDS: &'static [&'static str] = &[
        "imageDigest",
        "clusterId",
        "clusterName",
        "clusterType",
        "namespace",
        "pod",
        "appName",
        "image",
        "imageRepoName",
        "imageRepoNamespace",
        "imageRepoTag",
        "regionId",
        "instanceId",
        "containerId",
        "hostIp",
        "podIp",
        "nodeName",
        "vulStatus",
        "alarmStatus",
        "riskStatus",
    ];

    /// The row's value for a camelCase Criteria name (see [`ContainerRow::FIELDS`]).
    pub fn field(&self, criteria_name: &str) -> Option<&str> {
        match criteria_name {
            "imageDigest" => Some(&self.image_digest),
            "clusterId" => self.cluster_id.as_deref(),
            "clusterName" => self.cluster_name.as_deref(),
            "clusterType" => self.cluster_type.as_deref(),
            "namespace" => self.namespace.as_deref(),
            "pod" => self.pod.as_deref(),
            "appName" => self.app_name.as_deref(),
            "image" => self.image.as_deref(),
            "imageRepoName" => self.image_repo_name.as_deref(),
            "imageRepoNamespace" => self.image_repo_namespace.as_deref(),
            "imageRepoTag" => self.image_repo_tag.as_deref(),
            "regionId" => self.region_id.as_deref(),
            "instanceId" => self.instance_id.as_deref(),
            "containerId" => self.container_id.as_deref(),
            "hostIp" => self.host_ip.as_deref(),
            "podIp" => self.pod_ip.as_deref(),
            "nodeName" => self.node_name.as_deref(),
            "vulStatus" => self.vul_status.as_deref(),
            "alarmStatus" => self.alarm_status.as_deref(),
            "riskStatus" => self.risk_status.as_deref(),
            _ => None,
        }
    }
}

/// Reads one container row; `None` (with the problem recorded) when it has no usable digest.
pub(crate) fn read_container_row(
    obj: Map<String, Value>,
    at: RowAt,
    problems: &mut Vec<RowProblem>,
) -> Option<ContainerRow> {
    let mut f = Fields { obj, at, problems };
    let image_digest = skip_without(f.digest("ImageDigest"), at, f.problems)?;
    Some(ContainerRow {
        image_digest,
        cluster_id: f.label("ClusterId"),
        cluster_name: f.label("ClusterName"),
        cluster_type: f.label("ClusterType"),
        namespace: f.label("Namespace"),
        pod: f.label("Pod"),
        app_name: f.label("AppName"),
        image: f.label("Image"),
        image_repo_name: f.label("ImageRepoName"),
        image_repo_namespace: f.label("ImageRepoNamespace"),
        image_repo_tag: f.label("ImageRepoTag"),
        region_id: f.label("RegionId"),
        instance_id: f.label("InstanceId"),
        container_id: f.label("ContainerId"),
        host_ip: f.label("HostIp"),
        pod_ip: f.label("PodIp"),
        node_name: f.label("NodeName"),
        vul_status: f.label("VulStatus"),
        alarm_status: f.label("AlarmStatus"),
        risk_status: f.label("RiskStatus"),
    })
}

/// The digest, or `None` with the row recorded as skipped.
fn skip_without(
    digest: Result<String, String>,
    at: RowAt,
    problems: &mut Vec<RowProblem>,
) -> Option<String> {
    digest
        .map_err(|reason| {
            problems.push(RowProblem {
                page: at.page,
                row: at.row,
                field: None,
                reason,
            })
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliyun::scan::{MAX_LABEL_BYTES, TRUNCATED_MARKER};
    use serde_json::json;

    const D: &str = "8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd";
    const AT: RowAt = RowAt { page: 2, row: 5 };

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn image(v: Value) -> (Option<ImageRow>, Vec<RowProblem>) {
        let mut problems = Vec::new();
        (read_image_row(obj(v), AT, &mut problems), problems)
    }

    #[test]
    fn an_image_row_with_every_field_as_the_sdk_declares_it() {
        let (row, problems) = image(json!({
            "Digest": D, "RepoNamespace": "payments", "RepoName": "cart", "Tag": "1.4.2",
            "RegionId": "cn-hangzhou", "InstanceId": "cri-abc123", "RepoId": "crr-1",
            "RegistryType": "acr", "RepoType": "private", "ScaStatus": "SUCCESS",
            "ScaProgress": 100, "ScaResult": "", "LastScanTime": 1_700_000_000_000_i64,
            "VulCount": 3, "VulStatus": "YES", "HcCount": 0, "HcStatus": "NO", "AlarmCount": 1,
            "AlarmStatus": "YES", "RiskStatus": "YES", "Deployed": 1, "ImageSize": "123",
        }));
        assert_eq!(problems, []);
        let want = ImageRow {
            digest: D.into(),
            repo_namespace: Some("payments".into()),
            repo_name: Some("cart".into()),
            tag: Some("1.4.2".into()),
            region_id: Some("cn-hangzhou".into()),
            instance_id: Some("cri-abc123".into()),
            repo_id: Some("crr-1".into()),
            registry_type: Some("acr".into()),
            sca_status: Some("SUCCESS".into()),
            sca_progress: Some(100),
            sca_result: Some(String::new()),
            last_scan_time_ms: Some(1_700_000_000_000),
            vul_count: Some(3),
            hc_count: Some(0),
            alarm_count: Some(1),
            vul_status: Some("YES".into()),
            hc_status: Some("NO".into()),
            alarm_status: Some("YES".into()),
            risk_status: Some("YES".into()),
            deployed: Some(true),
        };
        assert_eq!(row, Some(want));
    }

    #[test]
    fn numbers_may_come_as_strings_and_missing_fields_are_absent() {
        let (row, problems) = image(json!({
            "Digest": format!("sha256:{}", D.to_uppercase()), "LastScanTime": "1700000000000",
            "VulCount": " 12 ", "Deployed": "0", "ScaProgress": "", "Tag": 7,
        }));
        assert_eq!(problems, []);
        let want = ImageRow {
            digest: D.into(),
            tag: Some("7".into()),
            last_scan_time_ms: Some(1_700_000_000_000),
            vul_count: Some(12),
            deployed: Some(false),
            ..ImageRow::default()
        };
        assert_eq!(row, Some(want));
    }

    #[test]
    fn an_unreadable_field_is_left_out_and_reported_and_the_row_kept() {
        let (row, problems) = image(json!({
            "Digest": D, "VulCount": -2, "LastScanTime": "soon", "RepoName": {"x": 1},
            "Tag": "x".repeat(2000),
        }));
        let row = row.unwrap_or_default();
        assert_eq!(row.digest, D);
        assert_eq!(
            (row.vul_count, row.last_scan_time_ms, row.repo_name),
            (None, None, None)
        );
        assert_eq!(row.tag.as_ref().map(String::len), Some(MAX_LABEL_BYTES));
        assert!(row.tag.is_some_and(|t| t.ends_with(TRUNCATED_MARKER)));
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "page 2 row 5 RepoName: invalid type: an object, expected a string (field left out)",
                "page 2 row 5 LastScanTime: \"soon\" is not an integer (field left out)",
                "page 2 row 5 VulCount: -2 is negative (field left out)",
            ]
        );
        assert!(problems.iter().all(|p| !p.row_skipped()));
    }

    #[test]
    fn a_row_without_a_valid_digest_is_skipped_and_reported() {
        for (v, reason) in [
            (json!({"RepoName": "cart"}), "Digest: missing"),
            (json!({"Digest": null}), "Digest: missing"),
            (
                json!({"Digest": "sha256:abc"}),
                "Digest: \"sha256:abc\" is not a sha256 digest",
            ),
            (json!({"Digest": format!("{D}0")}), "is not a sha256 digest"),
            (
                json!({"Digest": D.replace('a', "g")}),
                "is not a sha256 digest",
            ),
            (
                json!({"Digest": [D]}),
                "Digest: invalid type: an array, expected a string",
            ),
        ] {
            let (row, problems) = image(v.clone());
            assert_eq!(row, None, "{v}");
            assert_eq!(problems.len(), 1, "{v}");
            assert!(problems[0].row_skipped());
            assert!(problems[0].reason.contains(reason), "{v}: {}", problems[0]);
        }
        assert_eq!(
            image(json!({})).1[0].to_string(),
            "page 2 row 5: Digest: missing (row skipped)"
        );
    }

    #[test]
    fn a_container_row_reads_its_own_fields_and_needs_an_image_digest() {
        let mut problems = Vec::new();
        let row = read_container_row(
            obj(json!({
                "ClusterId": "c1234", "ClusterName": "prod", "ClusterType": "ManagedKubernetes",
                "Namespace": "payments", "Pod": "cart-7d9f-abcde", "AppName": "cart",
                "Image": "registry.example.com/payments/cart:1.4.2",
                "ImageDigest": format!("sha256:{D}"), "ImageRepoName": "cart",
                "ImageRepoNamespace": "payments", "ImageRepoTag": "1.4.2", "RegionId": "cn-hangzhou",
                "InstanceId": "i-1", "ContainerId": "docker://1", "HostIp": "10.0.0.1",
                "PodIp": "172.16.0.9", "NodeName": "node-1", "VulCount": "2", "Exposed": 0,
                "RiskStatus": "NO",
            })),
            AT,
            &mut problems,
        );
        assert_eq!(problems, []);
        let row = row.unwrap_or_default();
        assert_eq!(row.image_digest, D);
        for name in ContainerRow::FIELDS {
            let set = !matches!(*name, "vulStatus" | "alarmStatus");
            assert_eq!(row.field(name).is_some(), set, "{name}");
        }
        assert_eq!(row.field("clusterId"), Some("c1234"));
        assert_eq!(row.field("appName"), Some("cart"));
        assert_eq!(row.field("riskLevel"), None);
        let none = read_container_row(obj(json!({"Digest": D})), AT, &mut problems);
        assert_eq!(none, None);
        assert_eq!(problems[0].reason, "ImageDigest: missing");
    }

    #[test]
    fn every_listed_image_field_is_answered() {
        let row = ImageRow {
            digest: D.into(),
            repo_namespace: Some("a".into()),
            repo_name: Some("b".into()),
            tag: Some("c".into()),
            region_id: Some("d".into()),
            instance_id: Some("e".into()),
            repo_id: Some("f".into()),
            registry_type: Some("g".into()),
            sca_status: Some("h".into()),
            sca_result: Some("i".into()),
            vul_status: Some("j".into()),
            hc_status: Some("k".into()),
            alarm_status: Some("l".into()),
            risk_status: Some("m".into()),
            ..ImageRow::default()
        };
        let values: Vec<Option<&str>> = ImageRow::FIELDS.iter().map(|n| row.field(n)).collect();
        assert!(values.iter().all(Option::is_some), "{values:?}");
        assert_eq!(row.field("repoNamespace"), Some("a"));
        assert_eq!(row.field("digest"), Some(D));
        assert_eq!(row.field("RepoNamespace"), None);
        assert_eq!(
            normalize_digest(&format!(" SHA256:{} ", D.to_uppercase())),
            Some(D.into())
        );
    }
}
