//! Discovery: sources that find the digests to watch (Security Center's image and container
//! listings, Kubernetes pods), the registry that merges their listings with `keep_for`, and the
//! change detection that tells the schedulers which digests to poll now.

pub(crate) mod kubernetes;
pub mod kubernetes_probe;
#[cfg(test)]
mod kubernetes_tests;
pub(crate) mod listing;
pub(crate) mod pod_cache;
pub(crate) mod pod_watch;
pub(crate) mod pods;
pub(crate) mod registry;
pub(crate) mod sas;
pub(crate) mod sources;
