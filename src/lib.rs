//! sas-image-scan-exporter: a Prometheus exporter for the container-image scan tasks of Alibaba
//! Cloud Security Center (`DescribeImageLatestScanTask`).

pub mod client;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod scan;
pub mod signing;
pub mod simulator;
