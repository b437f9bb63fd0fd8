//! The one check for secret-bearing files that their group or others can read, shared by the
//! config file and every credentials file.

use std::path::Path;

/// Logs `message` at warn with the file and its mode when the file is readable by group or others.
pub(crate) fn warn_if_readable(path: &Path, message: &'static str) {
    if let Some(mode) = group_or_other_readable(path) {
        tracing::warn!(file = %path.display(), mode = format!("{mode:o}"), "{message}");
    }
}

#[cfg(unix)]
fn group_or_other_readable(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn group_or_other_readable(_path: &Path) -> Option<u32> {
    None
}
