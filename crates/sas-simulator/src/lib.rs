//! An in-process simulator of Security Center's `DescribeImageLatestScanTask` and of its two
//! listings, `DescribeImageInstances` and `DescribeContainerInstances`, served over loopback
//! HTTP. It checks requests the way the real service does (signature V1 and V3, AccessKey,
//! timestamp window, nonce reuse), answers from a scenario, injects faults, and counts what it saw.
//! The exporter's tests and its `--demo` mode run the real exporter against it.
//!
//! Two companions simulate where credentials come from: [`StsSimulator`] (`AssumeRole`,
//! `AssumeRoleWithOIDC`) and [`MetadataSimulator`] (ECS instance metadata and a credentials URI).
//! Both can register what they hand out with a [`Simulator`], so a client can use the credentials
//! end to end. All three share one loopback server.
//!
//! [`KubeSimulator`] is a fake Kubernetes API server for pods (list and watch), for the
//! exporter's `kubernetes` discovery source.
//!
//! The crate verifies signatures with its own implementation of the service side, independent of
//! any client's signer, so a client bug cannot hide behind the same bug in the checker.

#![warn(missing_docs)]

mod auth;
mod bodies;
mod clock;
mod criteria;
mod error;
mod fault;
mod instances;
mod issuer;
mod keys;
mod kube;
mod kube_http;
mod kube_pod;
mod kube_select;
mod kube_state;
mod listing;
#[cfg(test)]
mod listing_tests;
mod log;
mod metadata;
mod operation;
mod response;
mod scenario;
mod server;
mod service;
mod signature;
mod simulator;
mod state;
mod sts;

use std::time::Duration;

pub use clock::Clock;
pub use fault::{Fault, FaultAction, FaultScope};
pub use instances::{ContainerInstance, ImageInstance};
pub use keys::SimKey;
pub use kube::KubeSimulator;
pub use kube_pod::{ContainerState, PodBuilder};
pub use log::{DEFAULT_LOG_CAPACITY, LogEntry, RecordedRequest};
pub use metadata::{MetadataRequest, MetadataSimulator};
pub use scenario::{DigestReply, Scenario, synthetic_task};
pub use simulator::Simulator;
pub use sts::{StsRequest, StsSimulator};

/// The simulator's default AccessKey ID (also used by `--demo`).
pub const SIM_ACCESS_KEY_ID: &str = "LTAIsimulator0000demo";
/// The simulator's default AccessKey secret. Not a real secret: it only opens the simulator.
pub const SIM_ACCESS_KEY_SECRET: &str = "simulator-secret-not-for-production";
/// How far a request's timestamp may be from the simulator's clock, as the real service allows.
pub const TIMESTAMP_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The scan-task operation the simulator serves.
pub const ACTION: &str = "DescribeImageLatestScanTask";
/// The image listing the simulator serves.
pub const IMAGES_ACTION: &str = "DescribeImageInstances";
/// The container listing the simulator serves.
pub const CONTAINERS_ACTION: &str = "DescribeContainerInstances";
/// The `PageSize` the listings use when a request leaves it out.
pub const DEFAULT_PAGE_SIZE: u32 = listing::DEFAULT_PAGE_SIZE;
/// The Security Center API version every request must name.
pub const API_VERSION: &str = "2018-12-03";
