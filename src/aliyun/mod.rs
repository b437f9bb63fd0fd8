//! The bottom layer: everything that talks to Alibaba Cloud. Request signing, the shared HTTP
//! transport, the Security Center client with its response parser, and the credential providers.
//! Nothing here knows about polling schedules, metrics or the HTTP server.

pub(crate) mod client;
pub(crate) mod credentials;
pub(crate) mod endpoint;
pub(crate) mod lenient;
pub(crate) mod listing;
pub(crate) mod paging;
pub(crate) mod rows;
pub(crate) mod scan;
pub(crate) mod signing;
pub(crate) mod transport;
