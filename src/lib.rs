//! sas-image-scan-exporter: a Prometheus exporter for the container-image scan tasks of Alibaba
//! Cloud Security Center (`DescribeImageLatestScanTask`).
//!
//! # Layers
//!
//! Each layer uses only the layers below it; `main.rs` only parses flags and wires.
//!
//! | layer | modules | what it holds |
//! |---|---|---|
//! | assembly | [`app`] | builds a running exporter from a config: the accounts, each with its provider, client and scheduler, and the discovery sources; reloads |
//! | serving | `server` | accept loop, connection shedding, routes, TLS and basic auth, status page |
//! | exposition | `exposition` | block-wise text and OpenMetrics encoding on its own thread, gzip segments, per-account and process metrics |
//! | discovery | `discovery` | the `sas_images`, `sas_containers` and `kubernetes` sources, the registry that merges their listings with `keep_for` and tells the schedulers what changed |
//! | polling | `poll` | one scheduler per account, token bucket, snapshot store of per-account parts, state file |
//! | instruments | `telemetry` | the exporter's own counters and the account list `/metrics` shows |
//! | inputs | [`config`], [`targets`] | the YAML config with its accounts, target files, shards |
//! | API access | `aliyun` | signing, transport, Security Center client, response parsers, listing pages and paging, credentials |
//! | foundations | [`clock`], `backoff`, `fsperm`, `shutdown`, [`logging`], [`memory`] | small leaves every layer may use |
//!
//! The data flow: the config names accounts, targets and discovery sources; the sources' listings
//! (made through the account's scheduler, so they share its token bucket) are merged into each
//! scheduler's discovered set; each account's scheduler polls its due digests (new, changed,
//! active or at `interval`) through its token bucket and client; results go into the store, which publishes an
//! immutable snapshot of every account's part; a scrape has the encoder thread re-render only the
//! blocks of targets that changed, and the server sends the result.
//!
//! Internals are `pub(crate)`; what tests, benchmarks and fuzz targets need is re-exported below.

#![warn(missing_docs)]

pub(crate) mod aliyun;
pub mod app;
pub(crate) mod backoff;
pub mod clock;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub(crate) mod discovery;
pub(crate) mod exposition;
pub(crate) mod fsperm;
pub mod logging;
pub mod memory;
pub(crate) mod poll;
pub(crate) mod server;
pub(crate) mod shutdown;
pub mod targets;
pub(crate) mod telemetry;

// What the binary, the integration tests, the benchmarks and the fuzz targets use, re-exported on
// purpose; everything else stays inside the crate.
pub use aliyun::client::{
    ACTION, API_VERSION, ApiError, ClientBuildError, ClientOptions, ErrorClass, SasClient,
};
pub use aliyun::credentials::{
    Credentials, CredentialsError, CredentialsProvider, FailureKind, ProviderStatus, Resolver,
    Source, StaticProvider, provider_from_config,
};
pub use aliyun::scan::{
    DroppedField, MAX_LABEL_BYTES, ParseError, ScanResult, ScanState, ScanStatus, ScanTask,
    TRUNCATED_MARKER, cap_label, parse_api_time, parse_response,
};
pub use aliyun::transport::MAX_BODY_BYTES;
pub use clock::{UnixSeconds, unix_now};
pub use discovery::kubernetes_probe::{CacheSample, KubernetesProbe, ProbeOutcome};
pub use poll::state_file::{StateError, read as read_state_file};
pub use server::listener::{bind, parse_listen_address};

/// Request signing (V1 and V3) and its canonical strings, for the signature tests and fuzzing.
pub mod signing {
    pub use crate::aliyun::signing::{
        EMPTY_BODY_SHA256, RpcCall, SignatureVersion, SignedRequest, V3_ALGORITHM, canonical_query,
        format_timestamp, new_nonce, percent_encode, sha256_hex, sign, v1_signature,
        v1_string_to_sign, v3_canonical_request, v3_signature, v3_string_to_sign,
    };
}

/// The two listings (`DescribeImageInstances`, `DescribeContainerInstances`): their queries,
/// rows and paging, for the listing tests.
pub mod listing {
    pub use crate::aliyun::client::{CONTAINERS_ACTION, IMAGES_ACTION};
    pub use crate::aliyun::listing::{Criterion, ListQuery, Page, ScannedFilter};
    pub use crate::aliyun::paging::{ListError, Listed, MAX_PAGES, list_all};
    pub use crate::aliyun::rows::{ContainerRow, ImageRow, RowProblem};
}

/// The Alibaba Cloud CLI profile readers, for the credentials tests.
pub mod profiles {
    pub use crate::aliyun::credentials::profile::{cli_config_path, from_cli_config, from_ini};
}

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
