//! The rows of the two listing operations, `DescribeImageInstances` and
//! `DescribeContainerInstances`, with the SDK's field names, and how a Criteria name finds a
//! row's field.

use std::borrow::Cow;

use serde::Serialize;

/// One row of `DescribeImageInstances`: a container image Security Center knows, with its scan
/// state. Every field is optional, as in the SDK; absent ones are left out of the answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInstance {
    /// `Digest`: bare 64-hex digest, served as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `RepoNamespace`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_namespace: Option<String>,
    /// `RepoName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_name: Option<String>,
    /// `Tag`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `RegionId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_id: Option<String>,
    /// `InstanceId`: the registry instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// `RepoId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_id: Option<String>,
    /// `RegistryType` (`acr`, `harbor`, `quay`, `CI/CD`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_type: Option<String>,
    /// `RepoType`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_type: Option<String>,
    /// `ScaStatus`: the image's scan state (`INIT`, `START_RUN`, `SUCCESS`, `FAIL`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sca_status: Option<String>,
    /// `ScaProgress`: 0–100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sca_progress: Option<i64>,
    /// `ScaResult`: an error code such as `TASK_NOT_EXISTS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sca_result: Option<String>,
    /// `LastScanTime`: Unix milliseconds of the latest scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_scan_time: Option<i64>,
    /// `VulCount`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vul_count: Option<i64>,
    /// `VulStatus` (`YES`/`NO`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vul_status: Option<String>,
    /// `HcCount`: baseline risks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hc_count: Option<i64>,
    /// `HcStatus`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hc_status: Option<String>,
    /// `AlarmCount`: security alerts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm_count: Option<i64>,
    /// `AlarmStatus`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm_status: Option<String>,
    /// `RiskStatus` (`YES`/`NO`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_status: Option<String>,
    /// `Deployed`: 1 when a running container uses the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployed: Option<i64>,
    /// `ImageId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// `ImageCreate` (milliseconds, as a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_create: Option<String>,
    /// `ImageUpdate` (milliseconds, as a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_update: Option<String>,
    /// `ImageSize` (a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<String>,
    /// `Uuid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// `Status`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `Endpoints`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<String>,
    /// `SourceBizTag`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_biz_tag: Option<String>,
    /// Not an API field: when true, each answer takes `ScaStatus` and `LastScanTime` from the
    /// digest's latest scan task as `DescribeImageLatestScanTask` serves it, so a scan that
    /// starts or ends in the scenario changes the row.
    #[serde(skip)]
    pub follows_task: bool,
}

impl ImageInstance {
    /// A row naming only where the image lives.
    pub fn new(digest: &str, namespace: &str, name: &str, tag: &str) -> Self {
        ImageInstance {
            digest: Some(digest.to_owned()),
            repo_namespace: Some(namespace.to_owned()),
            repo_name: Some(name.to_owned()),
            tag: Some(tag.to_owned()),
            ..ImageInstance::default()
        }
    }

    /// The same row, taking its scan state from the digest's scan task.
    pub fn following_task(mut self) -> Self {
        self.follows_task = true;
        self
    }

    /// What identifies a row for an upsert: the digest and where the image lives.
    pub(crate) fn key(&self) -> (Option<String>, [Option<&str>; 3]) {
        (
            self.digest.as_deref().map(normalize_digest),
            [
                self.repo_namespace.as_deref(),
                self.repo_name.as_deref(),
                self.tag.as_deref(),
            ],
        )
    }

    /// The field a Criteria name (camelCase) refers to, as text.
    pub(crate) fn criteria_field(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "digest" => text(&self.digest),
            "repoNamespace" => text(&self.repo_namespace),
            "repoName" => text(&self.repo_name),
            "tag" => text(&self.tag),
            "regionId" => text(&self.region_id),
            "instanceId" => text(&self.instance_id),
            "repoId" => text(&self.repo_id),
            "registryType" => text(&self.registry_type),
            "repoType" => text(&self.repo_type),
            "scaStatus" => text(&self.sca_status),
            "scaProgress" => number(&self.sca_progress),
            "scaResult" => text(&self.sca_result),
            "lastScanTime" => number(&self.last_scan_time),
            "vulCount" => number(&self.vul_count),
            "vulStatus" => text(&self.vul_status),
            "hcCount" => number(&self.hc_count),
            "hcStatus" => text(&self.hc_status),
            "alarmCount" => number(&self.alarm_count),
            "alarmStatus" => text(&self.alarm_status),
            "riskStatus" => text(&self.risk_status),
            "deployed" => number(&self.deployed),
            "imageId" => text(&self.image_id),
            "imageCreate" => text(&self.image_create),
            "imageUpdate" => text(&self.image_update),
            "imageSize" => text(&self.image_size),
            "uuid" => text(&self.uuid),
            "status" => text(&self.status),
            "endpoints" => text(&self.endpoints),
            "sourceBizTag" => text(&self.source_biz_tag),
            _ => None,
        }
    }
}

/// One row of `DescribeContainerInstances`: a container running in a cluster connected to
/// Security Center. Every field is optional, as in the SDK; absent ones are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInstance {
    /// `ClusterId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// `ClusterName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// `ClusterType`: a Criteria name the SDK's row model does not declare; served when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_type: Option<String>,
    /// `Namespace`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `Pod`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// `PodIp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    /// `ContainerId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// `AppName`: the workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
    /// `Image`: the image as the pod names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `ImageDigest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// `ImageId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// `ImageRepoName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_repo_name: Option<String>,
    /// `ImageRepoNamespace`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_repo_namespace: Option<String>,
    /// `ImageRepoTag`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_repo_tag: Option<String>,
    /// `ImageUuid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_uuid: Option<String>,
    /// `InstanceId`: the node's ECS instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// `NodeName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// `NodeInfo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_info: Option<String>,
    /// `HostIp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// `RegionId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_id: Option<String>,
    /// `VulCount`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vul_count: Option<i64>,
    /// `VulStatus`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vul_status: Option<String>,
    /// `RiskCount` (a string in the SDK).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_count: Option<String>,
    /// `RiskStatus`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_status: Option<String>,
    /// `AlarmCount`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm_count: Option<i64>,
    /// `AlarmStatus`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm_status: Option<String>,
    /// `HcCount`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hc_count: Option<i64>,
    /// `HcStatus`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hc_status: Option<String>,
    /// `Exposed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed: Option<i64>,
    /// `ExposedDetail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_detail: Option<String>,
    /// `CreateTimestamp`: Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_timestamp: Option<i64>,
    /// `UpdateMark`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_mark: Option<String>,
}

impl ContainerInstance {
    /// A row naming the container's place and the digest of its image.
    pub fn new(cluster_id: &str, namespace: &str, pod: &str, image_digest: &str) -> Self {
        ContainerInstance {
            cluster_id: Some(cluster_id.to_owned()),
            namespace: Some(namespace.to_owned()),
            pod: Some(pod.to_owned()),
            image_digest: Some(image_digest.to_owned()),
            ..ContainerInstance::default()
        }
    }

    /// What identifies a row for an upsert: the container's place.
    pub(crate) fn key(&self) -> [Option<&str>; 4] {
        [
            self.cluster_id.as_deref(),
            self.namespace.as_deref(),
            self.pod.as_deref(),
            self.container_id.as_deref(),
        ]
    }

    /// The field a Criteria name (camelCase) refers to, as text.
    pub(crate) fn criteria_field(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "clusterId" => text(&self.cluster_id),
            "clusterName" => text(&self.cluster_name),
            "clusterType" => text(&self.cluster_type),
            "namespace" => text(&self.namespace),
            "pod" => text(&self.pod),
            "podIp" => text(&self.pod_ip),
            "containerId" => text(&self.container_id),
            "appName" => text(&self.app_name),
            "image" => text(&self.image),
            "imageDigest" => text(&self.image_digest),
            "imageId" => text(&self.image_id),
            "imageRepoName" => text(&self.image_repo_name),
            "imageRepoNamespace" => text(&self.image_repo_namespace),
            "imageRepoTag" => text(&self.image_repo_tag),
            "imageUuid" => text(&self.image_uuid),
            "instanceId" => text(&self.instance_id),
            "nodeName" => text(&self.node_name),
            "nodeInfo" => text(&self.node_info),
            "hostIp" => text(&self.host_ip),
            "regionId" => text(&self.region_id),
            "vulCount" => number(&self.vul_count),
            "vulStatus" => text(&self.vul_status),
            "riskCount" => text(&self.risk_count),
            "riskStatus" => text(&self.risk_status),
            "alarmCount" => number(&self.alarm_count),
            "alarmStatus" => text(&self.alarm_status),
            "hcCount" => number(&self.hc_count),
            "hcStatus" => text(&self.hc_status),
            "exposed" => number(&self.exposed),
            "exposedDetail" => text(&self.exposed_detail),
            "createTimestamp" => number(&self.create_timestamp),
            "updateMark" => text(&self.update_mark),
            _ => None,
        }
    }
}

fn text(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(Cow::Borrowed)
}

fn number(n: &Option<i64>) -> Option<Cow<'_, str>> {
    n.map(|n| Cow::Owned(n.to_string()))
}

/// A digest as the simulator compares them: lower-case, without `sha256:`.
pub(crate) fn normalize_digest(d: &str) -> String {
    let d = d.trim();
    d.strip_prefix("sha256:").unwrap_or(d).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_serialize_with_the_sdk_names_and_leave_out_absent_fields() {
        let row = ImageInstance {
            last_scan_time: Some(1_700_000_000_000),
            sca_status: Some("SUCCESS".into()),
            ..ImageInstance::new("ab", "payments", "cart", "1.4.2")
        }
        .following_task();
        assert_eq!(
            serde_json::to_value(&row).ok(),
            Some(
                json!({"Digest": "ab", "RepoNamespace": "payments", "RepoName": "cart",
                "Tag": "1.4.2", "ScaStatus": "SUCCESS", "LastScanTime": 1_700_000_000_000_i64})
            )
        );
        let c = ContainerInstance {
            app_name: Some("cart".into()),
            ..ContainerInstance::new("c1", "prod", "cart-1", "cd")
        };
        assert_eq!(
            serde_json::to_value(&c).ok(),
            Some(
                json!({"ClusterId": "c1", "Namespace": "prod", "Pod": "cart-1",
                "ImageDigest": "cd", "AppName": "cart"})
            )
        );
    }

    #[test]
    fn criteria_names_find_the_pascal_case_fields() {
        let row = ImageInstance {
            vul_count: Some(3),
            ..ImageInstance::new("ab", "payments", "cart", "1.4.2")
        };
        assert_eq!(
            row.criteria_field("repoNamespace").as_deref(),
            Some("payments")
        );
        assert_eq!(row.criteria_field("vulCount").as_deref(), Some("3"));
        assert_eq!(row.criteria_field("regionId"), None);
        assert_eq!(row.criteria_field("RepoNamespace"), None);
        let c = ContainerInstance::new("c1", "prod", "cart-1", "cd");
        assert_eq!(c.criteria_field("clusterId").as_deref(), Some("c1"));
        assert_eq!(c.criteria_field("imageDigest").as_deref(), Some("cd"));
        assert_eq!(normalize_digest(" sha256:AB "), "ab");
    }
}
