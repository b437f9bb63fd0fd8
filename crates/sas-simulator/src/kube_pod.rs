//! Pod objects for the [`KubeSimulator`](crate::KubeSimulator), shaped as a kubelet and the
//! controllers leave them: spec, status with container states, owner references and
//! `managedFields`, so that clients decode the sizes and fields real pods have.

use serde_json::{Map, Value, json};

/// What a container is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// `state.running` is set.
    Running,
    /// `state.waiting` is set (pulling, crash-looping).
    Waiting,
    /// `state.terminated` is set (a finished init container, a stopped one).
    Terminated,
}

#[derive(Clone, Debug)]
struct Container {
    name: String,
    image: String,
    image_id: Option<String>,
    state: ContainerState,
}

/// Builds a pod object; [`PodBuilder::build`] gives the JSON that
/// [`KubeSimulator::apply_pod`](crate::KubeSimulator::apply_pod) takes.
#[derive(Clone, Debug)]
pub struct PodBuilder {
    namespace: String,
    name: String,
    labels: Vec<(String, String)>,
    owner: Option<(String, String)>,
    phase: String,
    containers: Vec<Container>,
    init_containers: Vec<Container>,
    ephemeral_containers: Vec<Container>,
}

impl PodBuilder {
    /// A running pod `name` in `namespace`, without containers yet.
    pub fn new(namespace: &str, name: &str) -> Self {
        PodBuilder {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            labels: Vec::new(),
            owner: None,
            phase: "Running".to_owned(),
            containers: Vec::new(),
            init_containers: Vec::new(),
            ephemeral_containers: Vec::new(),
        }
    }

    /// Adds the label `key=value`.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets the controlling owner, e.g. `("ReplicaSet", "web-5d9c7f6b8d")`.
    pub fn owner(mut self, kind: &str, name: &str) -> Self {
        self.owner = Some((kind.to_owned(), name.to_owned()));
        self
    }

    /// A pod of Deployment `deployment` through its ReplicaSet with template hash `hash`: the
    /// owner and the `pod-template-hash` label as the Deployment controller sets them.
    pub fn deployment(self, deployment: &str, hash: &str) -> Self {
        self.owner("ReplicaSet", &format!("{deployment}-{hash}"))
            .label("pod-template-hash", hash)
    }

    /// Sets `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`).
    pub fn phase(mut self, phase: &str) -> Self {
        self.phase = phase.to_owned();
        self
    }

    /// Adds a container with spec `image`, status `imageID` (`None`: no status yet) and state.
    pub fn container(
        mut self,
        name: &str,
        image: &str,
        image_id: Option<&str>,
        state: ContainerState,
    ) -> Self {
        self.containers
            .push(container(name, image, image_id, state));
        self
    }

    /// Adds an init container, as [`PodBuilder::container`].
    pub fn init_container(
        mut self,
        name: &str,
        image: &str,
        image_id: Option<&str>,
        state: ContainerState,
    ) -> Self {
        self.init_containers
            .push(container(name, image, image_id, state));
        self
    }

    /// Adds an ephemeral (debug) container, as [`PodBuilder::container`].
    pub fn ephemeral_container(
        mut self,
        name: &str,
        image: &str,
        image_id: Option<&str>,
        state: ContainerState,
    ) -> Self {
        self.ephemeral_containers
            .push(container(name, image, image_id, state));
        self
    }

    /// The pod object (the simulator adds `resourceVersion` and `uid` when it stores it).
    pub fn build(&self) -> Value {
        let labels: Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        let mut metadata = json!({
            "name": self.name,
            "namespace": self.namespace,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": labels,
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"},
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                 "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:labels": {".": {}}, "f:ownerReferences": {".": {}}},
                              "f:spec": {"f:containers": {}, "f:dnsPolicy": {}, "f:restartPolicy": {}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
                 "time": "2025-01-01T00:00:05Z", "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {},
                              "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:startTime": {}}}}
            ]
        });
        if let Some((kind, name)) = &self.owner {
            metadata["ownerReferences"] = json!([{
                "apiVersion": if kind == "Job" { "batch/v1" } else { "apps/v1" },
                "kind": kind, "name": name, "uid": "00000000-0000-4000-8000-000000000001",
                "controller": true, "blockOwnerDeletion": true
            }]);
            if let Some(base) = name.rsplit_once('-').map(|(b, _)| b) {
                metadata["generateName"] = Value::from(format!("{base}-"));
            }
        }
        let running = self.phase == "Running";
        json!({
            "metadata": metadata,
            "spec": {
                "containers": self.containers.iter().map(spec_of).collect::<Vec<_>>(),
                "initContainers": self.init_containers.iter().map(spec_of).collect::<Vec<_>>(),
                "ephemeralContainers": self.ephemeral_containers.iter().map(spec_of).collect::<Vec<_>>(),
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": "default",
                "nodeName": "node-1",
                "schedulerName": "default-scheduler",
                "enableServiceLinks": true,
                "preemptionPolicy": "PreemptLowerPriority",
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                ]
            },
            "status": {
                "phase": self.phase,
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastTransitionTime": "2025-01-01T00:00:01Z"},
                    {"type": "Ready", "status": if running { "True" } else { "False" }, "lastTransitionTime": "2025-01-01T00:00:05Z"},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}
                ],
                "hostIP": "10.0.0.1",
                "podIP": "10.1.0.1",
                "podIPs": [{"ip": "10.1.0.1"}],
                "startTime": "2025-01-01T00:00:00Z",
                "qosClass": "Burstable",
                "containerStatuses": statuses_of(&self.containers),
                "initContainerStatuses": statuses_of(&self.init_containers),
                "ephemeralContainerStatuses": statuses_of(&self.ephemeral_containers)
            }
        })
    }
}

fn container(name: &str, image: &str, image_id: Option<&str>, state: ContainerState) -> Container {
    Container {
        name: name.to_owned(),
        image: image.to_owned(),
        image_id: image_id.map(str::to_owned),
        state,
    }
}

fn spec_of(c: &Container) -> Value {
    json!({
        "name": c.name,
        "image": c.image,
        "imagePullPolicy": "IfNotPresent",
        "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [{"name": "kube-api-access", "readOnly": true,
                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    })
}

/// Statuses of the containers that have one: a container without an `imageID` has not been
/// created yet, so the kubelet reports it waiting without an image ID.
fn statuses_of(containers: &[Container]) -> Vec<Value> {
    containers
        .iter()
        .map(|c| {
            let state = match c.state {
                ContainerState::Running => {
                    json!({"running": {"startedAt": "2025-01-01T00:00:04Z"}})
                }
                ContainerState::Waiting => {
                    json!({"waiting": {"reason": "ContainerCreating"}})
                }
                ContainerState::Terminated => json!({"terminated": {
                    "exitCode": 0, "reason": "Completed",
                    "startedAt": "2025-01-01T00:00:02Z", "finishedAt": "2025-01-01T00:00:03Z"}}),
            };
            let running = c.state == ContainerState::Running;
            json!({
                "name": c.name,
                "image": c.image,
                "imageID": c.image_id.clone().unwrap_or_default(),
                "containerID": if c.image_id.is_some() {
                    format!("containerd://{:064x}", c.name.len())
                } else {
                    String::new()
                },
                "ready": running,
                "started": running,
                "restartCount": 0,
                "lastState": {},
                "state": state
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_pod_has_its_owner_label_and_container_fields() {
        let pod = PodBuilder::new("prod", "web-5d9c-abcde")
            .deployment("web", "5d9c")
            .label("app", "web")
            .container(
                "app",
                "nginx:1",
                Some("nginx@sha256:00"),
                ContainerState::Running,
            )
            .init_container("init", "busybox", None, ContainerState::Waiting)
            .build();
        assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], "5d9c");
        assert_eq!(pod["metadata"]["labels"]["app"], "web");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["name"], "web-5d9c");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:1");
        let status = &pod["status"]["containerStatuses"][0];
        assert_eq!(status["imageID"], "nginx@sha256:00");
        assert!(status["state"]["running"].is_object());
        let init = &pod["status"]["initContainerStatuses"][0];
        assert_eq!(init["imageID"], "");
        assert!(init["state"]["waiting"].is_object());
    }
}
