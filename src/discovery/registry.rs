//! The registry: every source's last complete listing, merged per account into the discovered
//! set each scheduler holds, with `keep_for` for digests no source lists any more and change
//! detection from one `sas_images` listing to the next.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{UnixSeconds, unix_now};
use crate::config::DiscoveryConfig;
use crate::discovery::listing::{ImageFacts, Listing, SourceKey, SourceOutcome, Workload};
use crate::poll::discovered::{Discovered, SOURCE_NAMES, SharedDiscovered};
use crate::poll::scheduler::Scheduler;
use crate::poll::store::{Interner, TargetState};
use crate::targets::Shard;
use crate::telemetry::{ExporterMetrics, SourceHealth, SourceRow};

/// One configured source and what it last reported.
struct SourceState {
    config: DiscoveryConfig,
    /// The last complete listing; `None` until the first.
    listing: Option<Arc<Listing>>,
    health: SourceHealth,
    /// The last failure logged, so a source that keeps failing the same way logs once.
    last_error: Option<String>,
    /// The state file brought back digests of its account when it started.
    restored: bool,
}

/// One account's discovered set as last handed to its scheduler.
#[derive(Default)]
struct Published {
    digests: BTreeMap<Arc<str>, SharedDiscovered>,
    /// The soonest `leaves_at` among the lingering digests.
    leaves_first: Option<UnixSeconds>,
}

impl Published {
    fn get(&self, digest: &str) -> Option<&SharedDiscovered> {
        self.digests.get(digest)
    }

    fn insert(&mut self, digest: Arc<str>, d: SharedDiscovered) {
        if let Some(t) = d.leaves_at {
            self.leaves_first = Some(self.leaves_first.map_or(t, |f| f.min(t)));
        }
        self.digests.insert(digest, d);
    }
}

/// Every source's state and every account's published set.
pub(crate) struct Registry {
    sources: BTreeMap<SourceKey, SourceState>,
    published: HashMap<Arc<str>, Published>,
    schedulers: BTreeMap<Arc<str>, Scheduler>,
    shard: Shard,
    metrics: Arc<ExporterMetrics>,
}

impl Registry {
    /// A registry that starts from what the state file knew of discovered digests, so the
    /// first listing after a restart only triggers polls for rows that really changed.
    pub(crate) fn new(
        restored: &HashMap<(String, String), TargetState>,
        shard: Shard,
        metrics: Arc<ExporterMetrics>,
    ) -> Self {
        let now = unix_now();
        let mut published: HashMap<Arc<str>, Published> = HashMap::new();
        for state in restored.values() {
            let Some(d) = &state.discovered else { continue };
            if !shard.owns(&state.digest) {
                continue;
            }
            // What the sources listed before the restart is their last complete result: it
            // stays as it was (listed, or lingering until its saved time) until each source of
            // the account has listed again.
            if d.leaves_at.is_some_and(|t| t <= now) {
                continue;
            }
            published
                .entry(Arc::clone(&state.account))
                .or_default()
                .insert(Arc::clone(&state.digest), Arc::clone(d));
        }
        Registry {
            sources: BTreeMap::new(),
            published,
            schedulers: BTreeMap::new(),
            shard,
            metrics,
        }
    }

    /// The running accounts' schedulers; accounts that left take their discovered sets along.
    pub(crate) fn set_schedulers(&mut self, schedulers: BTreeMap<Arc<str>, Scheduler>) {
        self.published.retain(|a, _| schedulers.contains_key(a));
        self.schedulers = schedulers;
    }

    /// Every account with a running scheduler.
    pub(crate) fn accounts(&self) -> Vec<Arc<str>> {
        self.schedulers.keys().cloned().collect()
    }

    /// The scheduler of `account`, if it runs.
    pub(crate) fn scheduler(&self, account: &str) -> Option<&Scheduler> {
        self.schedulers.get(account)
    }

    /// The configured sources by key.
    pub(crate) fn configs(&self) -> impl Iterator<Item = (SourceKey, &DiscoveryConfig)> {
        self.sources.iter().map(|(k, s)| (*k, &s.config))
    }

    /// A new source, with nothing listed yet.
    pub(crate) fn add(&mut self, key: SourceKey, config: DiscoveryConfig) {
        let name = config.source_name();
        let restored = self
            .published
            .get(config.account.as_str())
            .is_some_and(|set| set.digests.values().any(|d| d.sources.contains(&name)));
        let account = config.account.clone();
        let state = SourceState {
            config,
            listing: None,
            health: SourceHealth::default(),
            last_error: None,
            restored,
        };
        self.sources.insert(key, state);
        self.metrics
            .discovery_health(name, &account, self.health_of(name, &account));
        self.show_sources();
    }

    /// A source's labels or `keep_for` changed; what it listed stays.
    pub(crate) fn update(&mut self, key: SourceKey, config: DiscoveryConfig) {
        if let Some(s) = self.sources.get_mut(&key) {
            s.config = config;
        }
    }

    /// A source left the configuration: its digests linger for their `keep_for`.
    pub(crate) fn remove(&mut self, key: SourceKey) {
        if let Some(s) = self.sources.remove(&key) {
            let name = s.config.source_name();
            let still = self
                .sources
                .values()
                .any(|o| o.config.source_name() == name && o.config.account == s.config.account);
            if still {
                let health = self.health_of(name, &s.config.account);
                self.metrics
                    .discovery_health(name, &s.config.account, health);
            } else {
                self.metrics.forget_source(name, &s.config.account);
            }
            self.show_sources();
        }
    }

    /// Hands the sources' states to the status page and the readiness check; called after a
    /// listing's digests reached their scheduler, so readiness never sees a source listed
    /// before its digests are targets.
    pub(crate) fn show_sources(&self) {
        let rows = self
            .sources
            .values()
            .map(|s| SourceRow {
                source: s.config.source_name(),
                account: s.config.account.clone(),
                health: s.health,
                error: s.last_error.clone(),
                pending: s.health.up.is_none() && !s.restored,
            })
            .collect();
        self.metrics.set_sources(rows);
    }

    /// Records a source's outcome; returns its account when the account's set must be
    /// published again.
    pub(crate) fn report(&mut self, key: SourceKey, outcome: SourceOutcome) -> Option<String> {
        let now = unix_now();
        let source = self.sources.get_mut(&key)?;
        let name = source.config.source_name();
        let account = source.config.account.clone();
        let publish = match outcome {
            SourceOutcome::Complete(listing) => {
                if source.last_error.take().is_some() {
                    tracing::info!(source = name, %account, digests = listing.len(), "discovery source works again");
                }
                source.health = SourceHealth {
                    up: Some(true),
                    last_success: Some(now),
                    targets: listing.len(),
                };
                // The common case: nothing changed since the previous listing, so the merged set
                // is the one already published and there is nothing to merge again.
                if source.listing.as_deref() == Some(&listing) {
                    None
                } else {
                    source.listing = Some(Arc::new(listing));
                    Some(account.clone())
                }
            }
            SourceOutcome::Failed(why) => {
                if source.last_error.as_deref() != Some(why.as_str()) {
                    tracing::warn!(source = name, %account, error = %why, "discovery source failed; its last complete listing stays in force");
                    source.last_error = Some(why);
                }
                source.health.up = Some(false);
                None
            }
        };
        let health = self.health_of(name, &account);
        self.metrics.discovery_health(name, &account, health);
        publish
    }

    /// The health of every source of one kind in one account, as their one series shows it.
    fn health_of(&self, name: &'static str, account: &str) -> SourceHealth {
        self.sources
            .values()
            .filter(|s| s.config.source_name() == name && s.config.account == account)
            .map(|s| s.health)
            .reduce(combine)
            .unwrap_or_default()
    }

    /// Every account with a lingering digest whose time is up, to publish again.
    pub(crate) fn expired(&self, now: UnixSeconds) -> Vec<Arc<str>> {
        // Checked every second: the soonest departure per account, not a walk of every digest.
        self.published
            .iter()
            .filter(|(_, set)| set.leaves_first.is_some_and(|t| t <= now))
            .map(|(a, _)| Arc::clone(a))
            .collect()
    }

    /// Merges the account's sources and hands the result to its scheduler.
    pub(crate) fn publish(&mut self, account: &str) {
        let Some((key, scheduler)) = self
            .schedulers
            .get_key_value(account)
            .map(|(k, s)| (Arc::clone(k), s.clone()))
        else {
            return;
        };
        let previous = self.published.remove(account).unwrap_or_default();
        let (next, changed) = self.merge(&key, &previous, unix_now());
        let found: Vec<(Arc<str>, SharedDiscovered)> = next
            .digests
            .iter()
            .map(|(d, x)| (Arc::clone(d), Arc::clone(x)))
            .collect();
        self.published.insert(key, next);
        scheduler.discover(found, &changed);
    }

    /// The account's discovered set from its sources' listings and what lingers, with the
    /// digests whose `sas_images` row changed since `previous`.
    fn merge(
        &self,
        account: &Arc<str>,
        previous: &Published,
        now: UnixSeconds,
    ) -> (Published, HashSet<String>) {
        let mut found: BTreeMap<&str, Merged<'_>> = BTreeMap::new();
        for s in self.sources.values() {
            if *s.config.account != **account {
                continue;
            }
            let Some(listing) = &s.listing else { continue };
            for (digest, finding) in listing.iter() {
                if !self.shard.owns(digest) {
                    continue;
                }
                let m = found.entry(digest.as_str()).or_default();
                m.sources |= source_bit(s.config.source_name());
                if let Some(first) = finding.images.iter().next() {
                    m.image_name = Some(m.image_name.map_or(first.as_str(), |n| n.min(first)));
                }
                if m.image.is_none() {
                    m.image = finding.row.as_ref();
                }
                for (w, n) in &finding.running {
                    // Two sources seeing the same cluster count the same containers: take the
                    // larger count, not the sum.
                    let c = m.running.entry(w).or_insert(0);
                    *c = (*c).max(*n);
                }
                m.keep_for = m.keep_for.max(s.config.keep_for);
                for (k, v) in &s.config.labels {
                    m.labels.entry(k.as_str()).or_insert(v.as_str());
                }
            }
        }
        let mut interner = Interner::default();
        let account_label = interner.get("account");
        let digest_label = interner.get("digest");
        let mut next = Published::default();
        let mut changed = HashSet::new();
        for (digest, m) in found {
            let before = previous.get(digest);
            let mut labels: BTreeMap<&str, &str> = m.labels.clone();
            if let Some(name) = m.image_name {
                labels.entry("image").or_insert(name);
            }
            let keep_for = before.map_or(m.keep_for, |b| b.keep_for.max(m.keep_for));
            // Most digests are as they were: keep their shared facts without building anything.
            if let Some(b) = before
                && unchanged(b, &m, account, digest, &labels, keep_for)
            {
                next.insert(Arc::clone(&b.labels[1].1), Arc::clone(b));
                continue;
            }
            let digest_arc: Arc<str> = before
                .map(|b| Arc::clone(&b.labels[1].1))
                .unwrap_or_else(|| Arc::from(digest));
            let mut label_set = vec![
                (Arc::clone(&account_label), Arc::clone(account)),
                (Arc::clone(&digest_label), Arc::clone(&digest_arc)),
            ];
            label_set.extend(
                labels
                    .iter()
                    .map(|(k, v)| (interner.get(k), interner.get(v))),
            );
            let d = Discovered {
                sources: source_names(m.sources),
                labels: match before {
                    Some(b) if same_labels(&b.labels, &label_set) => Arc::clone(&b.labels),
                    _ => label_set.into(),
                },
                image: m.image.cloned(),
                running: m.running.into_iter().map(|(w, n)| (w.clone(), n)).collect(),
                keep_for,
                leaves_at: None,
            };
            // A row that differs from the previous one, or the first row of a digest that was
            // already a target (listed by another source, or configured): due now.
            let row_changed = match (&d.image, before) {
                (Some(new), Some(b)) => b.image.as_ref().is_none_or(|old| new.scan_changed(old)),
                _ => false,
            };
            if row_changed {
                changed.insert(digest.to_owned());
            }
            let shared = match before {
                Some(b) if **b == d => Arc::clone(b),
                _ => Arc::new(d),
            };
            next.insert(digest_arc, shared);
        }
        // Until every source of the account has listed once (after a restart, or a reload that
        // added one), what was known before is the last complete result: it stays as it is.
        let all_listed = self
            .sources
            .values()
            .filter(|s| *s.config.account == **account)
            .all(|s| s.listing.is_some());
        for (digest, d) in &previous.digests {
            if next.digests.contains_key(digest) {
                continue;
            }
            if d.leaves_at.is_none() && !all_listed {
                if self.shard.owns(digest) {
                    next.insert(Arc::clone(digest), Arc::clone(d));
                }
                continue;
            }
            let leaves_at = d.leaves_at.unwrap_or(now + d.keep_for.as_secs_f64());
            if leaves_at <= now || !self.shard.owns(digest) {
                continue;
            }
            let shared = if d.leaves_at.is_some() {
                Arc::clone(d)
            } else {
                // No longer listed: it keeps its labels and scan facts, but runs nowhere.
                Arc::new(Discovered {
                    sources: Vec::new(),
                    running: Vec::new(),
                    leaves_at: Some(leaves_at),
                    ..Discovered::clone(d)
                })
            };
            next.insert(Arc::clone(digest), shared);
        }
        (next, changed)
    }
}

/// Two sources of one kind and account (say, two Kubernetes clusters) show as one series: up
/// only when both are, the older success, the digests of both.
fn combine(a: SourceHealth, b: SourceHealth) -> SourceHealth {
    SourceHealth {
        up: match (a.up, b.up) {
            (Some(x), Some(y)) => Some(x && y),
            (x, None) | (None, x) => x,
        },
        last_success: match (a.last_success, b.last_success) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, None) | (None, x) => x,
        },
        targets: a.targets + b.targets,
    }
}

/// The bit of a source name in [`Merged::sources`].
fn source_bit(name: &str) -> u8 {
    SOURCE_NAMES
        .iter()
        .position(|n| *n == name)
        .map_or(0, |i| 1 << i)
}

/// The names of the bits set, in `SOURCE_NAMES` order (which is sorted).
fn source_names(bits: u8) -> Vec<&'static str> {
    SOURCE_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// True when the merged facts of a digest are exactly those `before` holds (still listed,
/// same sources, labels, row, running containers and `keep_for`); the largest `keep_for`
/// among every source that had the digest counts, not only those that list it now.
fn unchanged(
    before: &Discovered,
    m: &Merged<'_>,
    account: &str,
    digest: &str,
    labels: &BTreeMap<&str, &str>,
    keep_for: Duration,
) -> bool {
    let want_labels = [("account", account), ("digest", digest)]
        .into_iter()
        .chain(labels.iter().map(|(k, v)| (*k, *v)));
    before.leaves_at.is_none()
        && before.keep_for == keep_for
        && before.image.as_ref() == m.image
        && before.sources.iter().copied().eq(source_names(m.sources))
        && before
            .running
            .iter()
            .map(|(w, n)| (w, *n))
            .eq(m.running.iter().map(|(w, n)| (*w, *n)))
        && before
            .labels
            .iter()
            .map(|(k, v)| (&**k, &**v))
            .eq(want_labels)
}

fn same_labels(a: &[(Arc<str>, Arc<str>)], b: &[(Arc<str>, Arc<str>)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((k1, v1), (k2, v2))| k1 == k2 && v1 == v2)
}

/// One digest's facts while the listings are merged, borrowed from them.
#[derive(Default)]
struct Merged<'a> {
    /// Bit `i` set: `SOURCE_NAMES[i]` lists the digest (no allocation per digest).
    sources: u8,
    /// The smallest image name any source gave the digest: the `image` label.
    image_name: Option<&'a str>,
    image: Option<&'a ImageFacts>,
    running: BTreeMap<&'a Workload, u32>,
    keep_for: Duration,
    labels: BTreeMap<&'a str, &'a str>,
}
