//! Where the digest list comes from: inline `targets`, `target_files` globs, and the shard filter.

pub(crate) mod files;
pub(crate) mod shard;

pub use files::{Assembled, FileStatus, TargetFiles, expand_globs};
pub use shard::{Shard, hostname};
