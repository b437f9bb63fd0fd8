//! One pod as the `kubernetes` source sees it: the few fields it decodes (everything else in the
//! object, `managedFields` included, is skipped unread), and what the pod contributes to the
//! listing: its workload and, per container, the registry digest, the image as the spec writes
//! it, and whether it runs.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

/// The label a Deployment's controller puts on its ReplicaSets and their pods.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// A registry manifest digest (`sha256:` and 64 hex digits), kept as its 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Digest(pub(crate) [u8; 32]);

impl Digest {
    /// Bare lower-case hex, as listings key digests.
    pub(crate) fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The registry digest in an `imageID` or a pinned spec image: the part after the last `@` when
/// it is `sha256:` and 64 hex digits. Without an `@` the value is a local image ID (a bare
/// `sha256:…` or `docker://sha256:…`), which names no registry manifest.
pub(crate) fn registry_digest(reference: &str) -> Option<Digest> {
    let (_, after) = reference.rsplit_once('@')?;
    let hex_part = after.strip_prefix("sha256:")?;
    if hex_part.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut bytes).ok()?;
    Some(Digest(bytes))
}

/// A field the server writes as `null` reads as its empty value, as an absent one does.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A pod object, decoded only as far as the source needs it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PodView {
    #[serde(deserialize_with = "nullable")]
    pub(crate) metadata: MetaView,
    #[serde(deserialize_with = "nullable")]
    spec: SpecView,
    #[serde(deserialize_with = "nullable")]
    status: StatusView,
}

/// The metadata fields the source reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct MetaView {
    #[serde(deserialize_with = "nullable")]
    pub(crate) name: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) namespace: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) resource_version: String,
    labels: TemplateHash,
    #[serde(deserialize_with = "nullable")]
    owner_references: Vec<OwnerView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OwnerView {
    #[serde(deserialize_with = "nullable")]
    kind: String,
    #[serde(deserialize_with = "nullable")]
    name: String,
    controller: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct SpecView {
    #[serde(deserialize_with = "nullable")]
    containers: Vec<SpecContainer>,
    #[serde(deserialize_with = "nullable")]
    init_containers: Vec<SpecContainer>,
    #[serde(deserialize_with = "nullable")]
    ephemeral_containers: Vec<SpecContainer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SpecContainer {
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "nullable")]
    image: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct StatusView {
    #[serde(deserialize_with = "nullable")]
    phase: String,
    #[serde(deserialize_with = "nullable")]
    container_statuses: Vec<ContainerStatus>,
    #[serde(deserialize_with = "nullable")]
    init_container_statuses: Vec<ContainerStatus>,
    #[serde(deserialize_with = "nullable")]
    ephemeral_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContainerStatus {
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "nullable")]
    image: String,
    #[serde(rename = "imageID")]
    #[serde(deserialize_with = "nullable")]
    image_id: String,
    #[serde(deserialize_with = "nullable")]
    state: StateView,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StateView {
    running: Option<IgnoredAny>,
}

/// Only the `pod-template-hash` label: a pod's other labels are skipped without allocating.
#[derive(Debug, Default)]
struct TemplateHash(Option<String>);

impl<'de> Deserialize<'de> for TemplateHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Labels;
        impl<'de> Visitor<'de> for Labels {
            type Value = TemplateHash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of labels")
            }
            fn visit_unit<E>(self) -> Result<TemplateHash, E> {
                Ok(TemplateHash(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TemplateHash, A::Error> {
                let mut hash = None;
                while let Some(key) = map.next_key::<LabelKey>()? {
                    match key {
                        LabelKey::TemplateHash => hash = Some(map.next_value::<String>()?),
                        LabelKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(TemplateHash(hash))
            }
        }
        deserializer.deserialize_any(Labels)
    }
}

enum LabelKey {
    TemplateHash,
    Other,
}

impl<'de> Deserialize<'de> for LabelKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Key;
        impl Visitor<'_> for Key {
            type Value = LabelKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a label name")
            }
            fn visit_str<E>(self, v: &str) -> Result<LabelKey, E> {
                Ok(if v == POD_TEMPLATE_HASH {
                    LabelKey::TemplateHash
                } else {
                    LabelKey::Other
                })
            }
        }
        deserializer.deserialize_str(Key)
    }
}

/// Where a pod is: its namespace and name.
pub(crate) type PodKey = (String, String);

/// What a live pod contributes to the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodUse {
    /// The controlling workload's name.
    pub(crate) workload: String,
    /// The pod's containers that name a registry digest.
    pub(crate) containers: Vec<ContainerUse>,
}

/// One container with a registry digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContainerUse {
    pub(crate) digest: Digest,
    /// The image as the pod spec writes it.
    pub(crate) image: String,
    /// Whether the container runs now (`state.running` is set).
    pub(crate) running: bool,
}

impl PodView {
    /// The pod's namespace and name; `None` for an object without a name, which no server sends.
    pub(crate) fn key(&self) -> Option<PodKey> {
        let m = &self.metadata;
        (!m.name.is_empty()).then(|| (m.namespace.clone(), m.name.clone()))
    }

    /// What the pod contributes: `None` once it has ended (phase `Succeeded` or `Failed`: its
    /// containers will not run again, so it neither counts nor names its digests) or when none
    /// of its containers names a registry digest.
    pub(crate) fn usage(&self) -> Option<PodUse> {
        if matches!(self.status.phase.as_str(), "Succeeded" | "Failed") {
            return None;
        }
        let mut containers = Vec::new();
        let s = &self.spec;
        let st = &self.status;
        containers_of(&s.containers, &st.container_statuses, &mut containers);
        containers_of(
            &s.init_containers,
            &st.init_container_statuses,
            &mut containers,
        );
        containers_of(
            &s.ephemeral_containers,
            &st.ephemeral_container_statuses,
            &mut containers,
        );
        (!containers.is_empty()).then(|| PodUse {
            workload: self.workload().to_owned(),
            containers,
        })
    }

    /// The controlling owner's name (a ReplicaSet's without its `pod-template-hash` suffix, which
    /// names the Deployment without reading ReplicaSets), else the pod's own name.
    fn workload(&self) -> &str {
        let m = &self.metadata;
        let Some(owner) = m
            .owner_references
            .iter()
            .find(|o| o.controller == Some(true) && !o.name.is_empty())
        else {
            return &m.name;
        };
        if owner.kind == "ReplicaSet" {
            let deployment = m.labels.0.as_deref().and_then(|hash| {
                owner
                    .name
                    .strip_suffix(hash)
                    .and_then(|rest| rest.strip_suffix('-'))
            });
            if let Some(name) = deployment.filter(|n| !n.is_empty()) {
                return name;
            }
        }
        &owner.name
    }
}

/// Each container of one kind (regular, init or ephemeral) with its status, matched by name. The
/// status's `imageID` gives the digest; a spec image pinned by digest stands in while the status
/// has none (not pulled yet, or a local image ID).
fn containers_of(
    spec: &[SpecContainer],
    statuses: &[ContainerStatus],
    out: &mut Vec<ContainerUse>,
) {
    for c in spec {
        let status = statuses.iter().find(|s| s.name == c.name);
        let digest = status
            .and_then(|s| registry_digest(&s.image_id))
            .or_else(|| registry_digest(&c.image));
        if let Some(digest) = digest {
            out.push(ContainerUse {
                digest,
                image: c.image.clone(),
                running: status.is_some_and(|s| s.state.running.is_some()),
            });
        }
    }
    // A status without its spec entry does not occur in objects the API server stores; should
    // one arrive, the status's own image name keeps its digest from being lost.
    for s in statuses {
        if spec.iter().any(|c| c.name == s.name) {
            continue;
        }
        if let Some(digest) = registry_digest(&s.image_id) {
            out.push(ContainerUse {
                digest,
                image: s.image.clone(),
                running: s.state.running.is_some(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn pod(v: serde_json::Value) -> PodView {
        serde_json::from_value(v).unwrap()
    }

    fn digest(hex: &str) -> Digest {
        let mut b = [0u8; 32];
        hex::decode_to_slice(hex, &mut b).unwrap();
        Digest(b)
    }

    #[test]
    fn digests_from_every_image_id_form() {
        let d = Some(digest(A));
        assert_eq!(
            registry_digest(&format!("docker-pullable://nginx@sha256:{A}")),
            d
        );
        assert_eq!(
            registry_digest(&format!("registry.example:5000/team/app@sha256:{A}")),
            d
        );
        // The last `@` counts, and upper-case hex reads as the same digest.
        assert_eq!(
            registry_digest(&format!("x@y@sha256:{}", A.to_uppercase())),
            d
        );
        // Local image IDs, other algorithms, wrong lengths and non-hex name no registry digest.
        for local in [
            format!("sha256:{A}"),
            format!("docker://sha256:{A}"),
            format!("nginx@sha512:{A}"),
            format!("nginx@sha256:{}", &A[..63]),
            format!("nginx@sha256:{A}0"),
            format!("nginx@sha256:{}g", &A[..63]),
            "nginx:1.25".to_owned(),
            String::new(),
        ] {
            assert_eq!(registry_digest(&local), None, "{local}");
        }
        assert_eq!(digest(A).hex(), A);
    }

    #[test]
    fn containers_of_every_kind_with_spec_images_and_running_state() {
        let p = pod(json!({
            "metadata": {"name": "web-5d9c7f6b8d-x2x9k", "namespace": "prod",
                "labels": {"app": "web", "pod-template-hash": "5d9c7f6b8d"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d9c7f6b8d", "controller": true}],
                "managedFields": [{"manager": "kube-controller-manager"}]},
            "spec": {
                "containers": [{"name": "app", "image": "nginx:1.25"},
                               {"name": "pinned", "image": format!("envoy@sha256:{B}")},
                               {"name": "local", "image": "tool:dev"}],
                "initContainers": [{"name": "init", "image": "busybox"}],
                "ephemeralContainers": [{"name": "debug", "image": "alpine"}]},
            "status": {"phase": "Running",
                "containerStatuses": [
                    {"name": "app", "image": "docker.io/library/nginx:1.25",
                     "imageID": format!("docker-pullable://nginx@sha256:{A}"),
                     "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}},
                    {"name": "pinned", "imageID": "", "state": {"waiting": {"reason": "ContainerCreating"}}},
                    {"name": "local", "imageID": format!("docker://sha256:{A}"), "state": {"running": {}}}],
                "initContainerStatuses": [
                    {"name": "init", "imageID": format!("docker.io/library/busybox@sha256:{B}"),
                     "state": {"terminated": {"exitCode": 0}}}],
                "ephemeralContainerStatuses": [
                    {"name": "debug", "imageID": format!("docker.io/library/alpine@sha256:{A}"),
                     "state": {"running": {}}}]}
        }));
        assert_eq!(
            p.key(),
            Some(("prod".into(), "web-5d9c7f6b8d-x2x9k".into()))
        );
        let c = |h: &str, image: &str, running| ContainerUse {
            digest: digest(h),
            image: image.to_owned(),
            running,
        };
        assert_eq!(
            p.usage(),
            Some(PodUse {
                workload: "web".into(),
                containers: vec![
                    c(A, "nginx:1.25", true),
                    c(B, &format!("envoy@sha256:{B}"), false),
                    c(B, "busybox", false),
                    c(A, "alpine", true),
                ],
            })
        );
    }

    #[test]
    fn workloads_from_the_controlling_owner() {
        let with = |owners: serde_json::Value, labels: serde_json::Value| {
            pod(json!({
                "metadata": {"name": "p-1", "namespace": "n", "labels": labels, "ownerReferences": owners},
                "spec": {"containers": [{"name": "c", "image": format!("i@sha256:{A}")}]}
            }))
            .usage()
            .map(|u| u.workload)
        };
        let rs = json!([{"kind": "ReplicaSet", "name": "api-7f9c", "controller": true}]);
        assert_eq!(
            with(rs.clone(), json!({"pod-template-hash": "7f9c"})).as_deref(),
            Some("api")
        );
        // A ReplicaSet of its own (no hash label, or one its name does not end with) keeps its name.
        assert_eq!(with(rs.clone(), json!({})).as_deref(), Some("api-7f9c"));
        assert_eq!(
            with(rs, json!({"pod-template-hash": "0000"})).as_deref(),
            Some("api-7f9c")
        );
        let owners = json!([
            {"kind": "Node", "name": "n1"},
            {"kind": "StatefulSet", "name": "db", "controller": true}
        ]);
        assert_eq!(with(owners, json!(null)).as_deref(), Some("db"));
        let not_controlling = json!([{"kind": "ReplicaSet", "name": "x-1", "controller": false}]);
        assert_eq!(with(not_controlling, json!({})).as_deref(), Some("p-1"));
        assert_eq!(with(json!(null), json!(null)).as_deref(), Some("p-1"));
    }

    #[test]
    fn ended_pods_and_pods_without_digests_contribute_nothing() {
        let spec = json!({"containers": [{"name": "c", "image": format!("i@sha256:{A}")}]});
        for phase in ["Succeeded", "Failed"] {
            let p =
                pod(json!({"metadata": {"name": "p"}, "spec": spec, "status": {"phase": phase}}));
            assert_eq!(p.usage(), None, "{phase}");
        }
        for phase in ["Pending", "Running", "Unknown", ""] {
            let p =
                pod(json!({"metadata": {"name": "p"}, "spec": spec, "status": {"phase": phase}}));
            assert_eq!(p.usage().map(|u| u.containers.len()), Some(1), "{phase}");
        }
        let unpinned = pod(json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Pending"}}));
        assert_eq!(unpinned.usage(), None);
        assert_eq!(pod(json!({"metadata": {"namespace": "n"}})).key(), None);
    }

    #[test]
    fn a_status_without_its_spec_entry_keeps_its_digest() {
        let p = pod(json!({"metadata": {"name": "p"},
            "status": {"containerStatuses": [{"name": "ghost", "image": "ghost:1",
                "imageID": format!("ghost@sha256:{A}"), "state": {"running": {}}}]}}));
        let u = p.usage().unwrap();
        assert_eq!(
            u.containers,
            vec![ContainerUse {
                digest: digest(A),
                image: "ghost:1".into(),
                running: true
            }]
        );
    }
}
