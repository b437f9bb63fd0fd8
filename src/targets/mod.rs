//! Where the digest list comes from: inline `targets`, `target_files` globs, and the shard filter.

pub(crate) mod files;
pub(crate) mod shard;
pub(crate) mod walk;

pub use files::{Assembled, FileStatus, TargetFiles};
pub use shard::{Shard, hostname};
pub use walk::{Listing, expand_globs};
