//! The HTTP side: the accept loop with its connection limits, the routes, TLS and basic auth from
//! the web config, and the HTML status page.

pub(crate) mod body;
pub(crate) mod conns;
pub(crate) mod handshake;
pub(crate) mod listener;
pub(crate) mod routes;
pub(crate) mod status_page;
pub(crate) mod webconfig;
