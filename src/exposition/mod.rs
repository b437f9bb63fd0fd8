//! What `/metrics` serves: the per-digest series of the published snapshot and the exporter's own
//! series, in the Prometheus text and OpenMetrics formats, plain or gzip, plus process metrics.

pub(crate) mod accounts;
pub(crate) mod blocks;
pub(crate) mod encode;
pub(crate) mod negotiate;
pub(crate) mod process;
#[cfg(test)]
mod reference;
pub(crate) mod render;
#[cfg(test)]
mod tests;
