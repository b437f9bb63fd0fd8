//! Background polling: the scheduler that decides which digest is due, the token bucket in front
//! of the API, the store that publishes immutable snapshots, and the state file that carries them
//! across restarts.

pub(crate) mod discovered;
pub(crate) mod limiter;
pub(crate) mod membership;
pub(crate) mod request;
pub(crate) mod scheduler;
pub(crate) mod state_file;
pub(crate) mod store;
pub(crate) mod timing;
