//! What the demo's Security Center lists: an image row per story (its scan state following the
//! story's task, so scans visibly start and end), one image that leaves the registry for part
//! of every cycle, and the containers that run some of the images.

use std::time::Duration;

use sas_simulator::{ContainerInstance, ImageInstance, Simulator};

/// What the listings need of one demo story: its digest, image and team.
pub(super) struct Listed {
    pub(super) digest: String,
    pub(super) image: &'static str,
    pub(super) team: &'static str,
}

/// How long one listing cycle is: the last story's image is missing for its final part.
const LISTED_PERIOD_SECS: u64 = 600;
/// For how much of each period the leaving image is listed.
const LISTED_FOR_SECS: u64 = 420;
/// The stories whose images run in the demo cluster, with their replica counts.
const RUNNING: [(usize, u32); 7] = [(0, 3), (1, 2), (2, 2), (3, 4), (5, 2), (6, 1), (7, 3)];
/// The demo cluster's name.
const CLUSTER: &str = "ack-demo";

/// `registry.example.com/shop/cart:1.4.2` → (`shop`, `cart`, `1.4.2`).
fn parts(image: &str) -> (&str, &str, &str) {
    let path = image.split_once('/').map_or(image, |(_, p)| p);
    let (repo, tag) = path.rsplit_once(':').unwrap_or((path, ""));
    let (namespace, name) = repo.split_once('/').unwrap_or(("", repo));
    (namespace, name, tag)
}

/// True while the image of story `i` of `n` is in the registry at `scaled` demo time.
fn listed_at(i: usize, n: usize, scaled: Duration) -> bool {
    i + 1 != n || scaled.as_secs() % LISTED_PERIOD_SECS < LISTED_FOR_SECS
}

/// The image rows at `scaled` demo time.
fn image_rows(stories: &[Listed], scaled: Duration) -> Vec<ImageInstance> {
    stories
        .iter()
        .enumerate()
        .filter(|(i, _)| listed_at(*i, stories.len(), scaled))
        .map(|(i, s)| {
            let (namespace, name, tag) = parts(s.image);
            let n = i as i64;
            ImageInstance {
                vul_count: Some((n * 7) % 23),
                hc_count: Some(n % 4),
                alarm_count: Some(i64::from(i == 4)),
                region_id: Some("cn-hangzhou".to_owned()),
                registry_type: Some("acr".to_owned()),
                ..ImageInstance::new(&s.digest, namespace, name, tag)
            }
            .following_task()
        })
        .collect()
}

/// The running containers: one row per replica.
fn container_rows(stories: &[Listed]) -> Vec<ContainerInstance> {
    let mut rows = Vec::new();
    for (i, replicas) in RUNNING {
        let Some(s) = stories.get(i) else { continue };
        let (namespace, name, tag) = parts(s.image);
        for r in 0..replicas {
            let pod = format!("{name}-7d4b9c-{r}");
            rows.push(ContainerInstance {
                cluster_id: Some("c-demo0001".to_owned()),
                cluster_name: Some(CLUSTER.to_owned()),
                namespace: Some(s.team.to_owned()),
                app_name: Some(name.to_owned()),
                container_id: Some(format!("{pod}-main")),
                pod: Some(pod),
                image: Some(s.image.to_owned()),
                image_digest: Some(format!("sha256:{}", s.digest)),
                image_repo_namespace: Some(namespace.to_owned()),
                image_repo_name: Some(name.to_owned()),
                image_repo_tag: Some(tag.to_owned()),
                ..ContainerInstance::default()
            });
        }
    }
    rows
}

/// Pushes the listings at `scaled` demo time into the simulator.
pub(super) fn apply(simulator: &Simulator, stories: &[Listed], scaled: Duration) {
    simulator.set_images(image_rows(stories, scaled));
    simulator.set_containers(container_rows(stories));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_into_the_row_fields() {
        assert_eq!(
            parts("registry.example.com/shop/cart:1.4.2"),
            ("shop", "cart", "1.4.2")
        );
        assert_eq!(
            parts("registry.example.com/data/legacy-batch:2016.4"),
            ("data", "legacy-batch", "2016.4")
        );
    }

    fn stories(n: usize) -> Vec<Listed> {
        (0..n)
            .map(|i| Listed {
                digest: format!("{i:064x}"),
                image: "registry.example.com/shop/cart:1.4.2",
                team: "shop",
            })
            .collect()
    }

    #[test]
    fn the_last_image_leaves_for_part_of_every_period() {
        let s = stories(12);
        assert!(listed_at(11, 12, Duration::from_secs(0)));
        assert!(!listed_at(11, 12, Duration::from_secs(LISTED_FOR_SECS)));
        assert!(listed_at(11, 12, Duration::from_secs(LISTED_PERIOD_SECS)));
        assert!(listed_at(0, 12, Duration::from_secs(LISTED_FOR_SECS)));
        assert_eq!(image_rows(&s, Duration::ZERO).len(), 12);
        assert_eq!(image_rows(&s, Duration::from_secs(500)).len(), 11);
        assert_eq!(container_rows(&s).len(), 17);
        assert_eq!(container_rows(&s)[0].namespace.as_deref(), Some("shop"));
    }
}
