//! The `kubernetes` source's memory of the pods it watches: per pod only its workload and, per
//! container with a registry digest, the digest, the spec image and whether it runs. Strings
//! that repeat across pods (namespaces, workloads, images) are one shared allocation each. From
//! it the source builds its complete listing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::listing::{Finding, Listing, Workload};
use super::pods::{Digest, PodKey, PodUse};

/// Interned strings are swept of those no pod holds any more after as many changes as there are
/// strings (at least this many), so a sweep costs O(1) per change.
const MIN_SWEEP: usize = 1024;

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    workload: Arc<str>,
    containers: Box<[Container]>,
}

#[derive(Debug, PartialEq, Eq)]
struct Container {
    digest: Digest,
    image: Arc<str>,
    running: bool,
}

/// The watched pods that name at least one registry digest.
#[derive(Debug, Default)]
pub(crate) struct PodCache {
    pods: HashMap<(Arc<str>, Box<str>), Entry>,
    strings: HashSet<Arc<str>>,
    changes_since_sweep: usize,
}

impl PodCache {
    /// Records what the pod at `key` contributes now; `None` forgets it (deleted, ended, or no
    /// digest). Returns whether the listing changes.
    pub(crate) fn apply(&mut self, key: PodKey, pod: Option<PodUse>) -> bool {
        let (namespace, name) = key;
        let changed = match pod {
            None => {
                // A lookup by borrowed parts would need the namespace interned first; an owned
                // key costs one small allocation per deletion only.
                let key = (self.intern(namespace), name.into_boxed_str());
                self.pods.remove(&key).is_some()
            }
            Some(pod) => {
                let entry = self.entry(pod);
                let key = (self.intern(namespace), name.into_boxed_str());
                match self.pods.get_mut(&key) {
                    Some(old) if *old == entry => false,
                    Some(old) => {
                        *old = entry;
                        true
                    }
                    None => {
                        self.pods.insert(key, entry);
                        true
                    }
                }
            }
        };
        self.maybe_sweep();
        changed
    }

    /// Replaces every pod of `namespace` (of all namespaces when `None`) with `pods`, as a
    /// relist of that scope found them.
    pub(crate) fn replace(
        &mut self,
        namespace: Option<&str>,
        pods: impl IntoIterator<Item = (PodKey, Option<PodUse>)>,
    ) {
        match namespace {
            None => self.pods.clear(),
            Some(ns) => self.pods.retain(|(n, _), _| &**n != ns),
        }
        for (key, pod) in pods {
            self.apply(key, pod);
        }
        self.pods.shrink_to_fit();
    }

    /// Pods held.
    pub(crate) fn len(&self) -> usize {
        self.pods.len()
    }

    /// The complete listing: each digest with its spec images and, per workload of a pod that
    /// has it, the number of those containers running (0 while they wait or restart, so the
    /// series of a crash-looping workload stays instead of flapping).
    pub(crate) fn listing(&self, cluster: &str) -> Listing {
        type Uses<'a> = (BTreeSet<&'a str>, BTreeMap<(&'a str, &'a str), u32>);
        let mut by_digest: BTreeMap<Digest, Uses<'_>> = BTreeMap::new();
        for ((namespace, _), pod) in &self.pods {
            for c in &pod.containers {
                let (images, running) = by_digest.entry(c.digest).or_default();
                images.insert(&c.image);
                *running.entry((namespace, &pod.workload)).or_default() += u32::from(c.running);
            }
        }
        by_digest
            .into_iter()
            .map(|(digest, (images, running))| {
                let finding = Finding {
                    images: images.into_iter().map(str::to_owned).collect(),
                    row: None,
                    running: running
                        .into_iter()
                        .map(|((namespace, workload), n)| {
                            let w = Workload {
                                cluster: cluster.to_owned(),
                                namespace: namespace.to_owned(),
                                workload: workload.to_owned(),
                            };
                            (w, n)
                        })
                        .collect(),
                };
                (digest.hex(), finding)
            })
            .collect()
    }

    fn entry(&mut self, pod: PodUse) -> Entry {
        let workload = self.intern(pod.workload);
        let containers = pod
            .containers
            .into_iter()
            .map(|c| Container {
                digest: c.digest,
                image: self.intern(c.image),
                running: c.running,
            })
            .collect();
        Entry {
            workload,
            containers,
        }
    }

    fn intern(&mut self, s: String) -> Arc<str> {
        if let Some(shared) = self.strings.get(s.as_str()) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(s);
        self.strings.insert(Arc::clone(&shared));
        shared
    }

    fn maybe_sweep(&mut self) {
        self.changes_since_sweep += 1;
        if self.changes_since_sweep < self.strings.len().max(MIN_SWEEP) {
            return;
        }
        self.changes_since_sweep = 0;
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        self.strings.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::pods::ContainerUse;

    fn d(byte: u8) -> Digest {
        Digest([byte; 32])
    }

    fn uses(workload: &str, containers: &[(u8, &str, bool)]) -> Option<PodUse> {
        Some(PodUse {
            workload: workload.to_owned(),
            containers: containers
                .iter()
                .map(|&(b, image, running)| ContainerUse {
                    digest: d(b),
                    image: image.to_owned(),
                    running,
                })
                .collect(),
        })
    }

    fn key(ns: &str, name: &str) -> PodKey {
        (ns.to_owned(), name.to_owned())
    }

    fn w(ns: &str, workload: &str) -> Workload {
        Workload {
            cluster: "c1".into(),
            namespace: ns.into(),
            workload: workload.into(),
        }
    }

    #[test]
    fn listing_counts_running_containers_per_workload() {
        let mut cache = PodCache::default();
        assert!(cache.apply(
            key("prod", "web-1"),
            uses("web", &[(1, "web:1", true), (2, "sidecar", true)])
        ));
        assert!(cache.apply(
            key("prod", "web-2"),
            uses("web", &[(1, "web:1", false), (2, "sidecar", true)])
        ));
        assert!(cache.apply(key("dev", "web-1"), uses("web", &[(1, "reg/web@x", true)])));
        let listing = cache.listing("c1");
        assert_eq!(listing.len(), 2);
        let one = &listing[&d(1).hex()];
        assert_eq!(
            one.images,
            BTreeSet::from(["reg/web@x".to_owned(), "web:1".to_owned()])
        );
        assert_eq!(one.row, None);
        assert_eq!(
            one.running,
            BTreeMap::from([(w("dev", "web"), 1), (w("prod", "web"), 1)])
        );
        let two = &listing[&d(2).hex()];
        assert_eq!(two.images, BTreeSet::from(["sidecar".to_owned()]));
        assert_eq!(two.running, BTreeMap::from([(w("prod", "web"), 2)]));
    }

    #[test]
    fn unchanged_pods_are_no_change_and_deletions_forget() {
        let mut cache = PodCache::default();
        let pod = uses("db", &[(3, "pg", false)]);
        assert!(cache.apply(key("n", "db-0"), pod.clone()));
        assert!(!cache.apply(key("n", "db-0"), pod));
        assert_eq!(
            cache.listing("c1")[&d(3).hex()].running,
            BTreeMap::from([(w("n", "db"), 0)])
        );
        assert!(cache.apply(key("n", "db-0"), uses("db", &[(3, "pg", true)])));
        assert!(cache.apply(key("n", "db-0"), None));
        assert!(!cache.apply(key("n", "db-0"), None));
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.listing("c1"), Listing::new());
    }

    #[test]
    fn replace_swaps_one_namespace_or_all() {
        let mut cache = PodCache::default();
        cache.apply(key("a", "p"), uses("p", &[(1, "i", true)]));
        cache.apply(key("b", "p"), uses("p", &[(2, "i", true)]));
        cache.replace(Some("a"), [(key("a", "q"), uses("q", &[(3, "i", true)]))]);
        let digests: Vec<String> = cache.listing("c1").into_keys().collect();
        assert_eq!(digests, vec![d(2).hex(), d(3).hex()]);
        cache.replace(
            None,
            [
                (key("c", "r"), uses("r", &[(4, "i", true)])),
                (key("c", "s"), None),
            ],
        );
        let digests: Vec<String> = cache.listing("c1").into_keys().collect();
        assert_eq!(digests, vec![d(4).hex()]);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn strings_are_shared_and_swept_when_unused() {
        let mut cache = PodCache::default();
        for i in 0..3000 {
            cache.apply(
                key("n", &format!("p{i}")),
                uses(&format!("w{i}"), &[(1, "img", true)]),
            );
        }
        // One namespace, one image, 3 000 workloads.
        assert_eq!(cache.strings.len(), 3002);
        for i in 0..3000 {
            cache.apply(key("n", &format!("p{i}")), None);
        }
        for _ in 0..MIN_SWEEP {
            cache.apply(key("n", "last"), uses("w", &[(1, "img", true)]));
        }
        assert_eq!(cache.strings.len(), 3);
        let first = cache.pods.values().next().unwrap();
        let (ns, _) = cache.pods.keys().next().unwrap();
        assert!(Arc::ptr_eq(
            cache.strings.get("img").unwrap(),
            &first.containers[0].image
        ));
        assert!(Arc::ptr_eq(cache.strings.get("n").unwrap(), ns));
    }
}
