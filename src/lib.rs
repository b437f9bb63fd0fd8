//! sas-image-scan-exporter: a Prometheus exporter for the container-image scan tasks of Alibaba
//! Cloud Security Center (`DescribeImageLatestScanTask`).

pub mod client;
pub mod clock;
pub mod config;
pub mod credentials;
#[cfg(feature = "demo")]
pub mod demo;
pub mod exporter;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod persist;
pub mod process;
pub mod scan;
pub mod scheduler;
pub mod shutdown;
pub mod signing;
pub mod state;
pub mod status_page;
pub mod targets;
pub mod webconfig;

/// Version, git revision and compiler, for --version and sas_exporter_build_info.
pub mod build_info {
    /// Crate version from Cargo.toml.
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");
    /// Short git commit the binary was built from, or "unknown".
    pub const REVISION: &str = env!("SAS_GIT_REVISION");
    /// `rustc --version` of the compiler that built the binary, or "unknown".
    pub const RUSTC_VERSION: &str = env!("SAS_RUSTC_VERSION");
    /// What `--version` prints after the program name.
    pub const LONG_VERSION: &str = concat!(
        env!("CARGO_PKG_VERSION"),
        " (revision ",
        env!("SAS_GIT_REVISION"),
        ", ",
        env!("SAS_RUSTC_VERSION"),
        ")"
    );
}
