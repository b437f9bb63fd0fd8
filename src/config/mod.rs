//! The YAML configuration file.
//!
//! The file is walked as a marked node tree rather than deserialised with serde, because serde
//! stops at the first error while an operator running `--config.check` wants every problem, each
//! with its file, line and column, in one go.
//!
//! `types` is what a valid file becomes and `load` the entry points. The walk is split into the
//! node reader with its located problems (`decoder`), the document's sections (`document`) and
//! the `credentials` section with its cross-field rules (`credentials`). Single values are checked
//! by `values` and `${VAR}` expansion lives in `env`; endpoint overrides are parsed into the API
//! layer's `Endpoint`.

mod accounts;
mod credentials;
mod decoder;
mod discovery;
mod document;
mod env;
mod load;
mod merge;
mod problem;
mod sources;
mod types;
mod values;

pub use crate::aliyun::endpoint::{Endpoint, EndpointError, PlainHttp};
pub use load::{config_dir, parse_targets};
pub use merge::{dedupe_targets, merge_targets};
pub use problem::{ConfigError, Location, Problem};
pub use sources::{
    CONTAINER_FILTERS, DEFAULT_CLUSTER, DEFAULT_KEEP_FOR, DEFAULT_PAGE_SIZE, DiscoveryConfig,
    Filter, IMAGE_FILTERS, KubernetesConfig, ListingConfig, Scanned, SourceKind, criteria_name,
};
pub use types::{
    AccountConfig, Config, CredentialsConfig, DEFAULT_ACCOUNT, OidcConfig, PollingConfig,
    SasConfig, SignatureVersion, Site, Target, endpoint_host_for_region,
};
pub use values::{RESERVED_LABELS, normalize_digest};
