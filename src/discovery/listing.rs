//! What a source reports: its complete listing, digest by digest, or why it has none now.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::mpsc;

pub(crate) use crate::poll::discovered::{ImageFacts, Workload};

/// What one source knows about one digest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Finding {
    /// Every image name the source saw for the digest (the `image` label is the smallest).
    pub(crate) images: BTreeSet<String>,
    /// The `sas_images` row's scan facts (only that source sets them).
    pub(crate) row: Option<ImageFacts>,
    /// Running containers per workload (only `sas_containers` and `kubernetes` set them).
    pub(crate) running: BTreeMap<Workload, u32>,
}

/// A source's complete listing: bare lower-case hex digest → what it knows about it.
pub(crate) type Listing = BTreeMap<String, Finding>;

/// The outcome of one listing or one change of a watch.
#[derive(Debug)]
pub(crate) enum SourceOutcome {
    /// A complete listing (for a watch: the set while it is in sync).
    Complete(Listing),
    /// The source cannot list now; the previous complete listing stays in force.
    Failed(String),
}

/// Identifies a running source among the configured ones (its index in the `discovery` list of
/// the config it was started from, and a generation that a reload increases).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SourceKey(pub(crate) u64);

/// How a source hands its outcomes to the registry that merges them.
#[derive(Clone, Debug)]
pub(crate) struct Reporter {
    key: SourceKey,
    tx: mpsc::UnboundedSender<(SourceKey, SourceOutcome)>,
}

impl Reporter {
    /// A reporter for the source `key`, sending into `tx`.
    pub(crate) fn new(
        key: SourceKey,
        tx: mpsc::UnboundedSender<(SourceKey, SourceOutcome)>,
    ) -> Self {
        Reporter { key, tx }
    }

    /// A complete listing.
    pub(crate) fn complete(&self, listing: Listing) {
        // The registry only goes away at shutdown, when nothing reported matters any more.
        let _ = self.tx.send((self.key, SourceOutcome::Complete(listing)));
    }

    /// The source cannot list now, and why (for the log).
    pub(crate) fn failed(&self, why: impl std::fmt::Display) {
        let _ = self
            .tx
            .send((self.key, SourceOutcome::Failed(why.to_string())));
    }
}
