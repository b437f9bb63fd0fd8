//! Expands `target_files` globs by walking the directories, following symlinks but visiting each
//! real directory and file once, and naming what cannot be read instead of skipping it.
//!
//! `glob::glob` follows a directory symlink that points back up again and again (until the path
//! is too long), so under `**` every file would be read dozens of times; and it lists dangling
//! symlinks as if they were files. Here `glob::Pattern` only matches names.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use glob::{MatchOptions, Pattern};

/// What the globs matched.
#[derive(Debug, Default)]
pub struct Listing {
    /// Readable files, each real file once (under the first path that reached it), sorted.
    pub files: Vec<PathBuf>,
    /// Matches that cannot be read: dangling or looping symlinks, directory symlink loops.
    pub broken: Vec<(PathBuf, String)>,
    /// Patterns that are not valid globs, directories that cannot be listed.
    pub problems: Vec<String>,
}

// As `glob::glob` matches: `*` stays within one path component, dot files are matched.
const OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

fn is_glob(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

/// Expands `target_files` globs; relative patterns are relative to the config file's directory.
pub fn expand_globs(globs: &[String], base: &Path) -> Listing {
    let mut listing = Listing::default();
    let mut seen_files = HashSet::new();
    for pattern in globs {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        // The literal leading directories are where the walk starts; the rest is matched.
        let mut start = PathBuf::new();
        let mut rest: Vec<String> = Vec::new();
        for c in full.components() {
            let text = c.as_os_str().to_string_lossy();
            if rest.is_empty() && !is_glob(&text) {
                start.push(c);
            } else if !matches!(c, Component::CurDir) {
                rest.push(text.into_owned());
            }
        }
        if rest.is_empty() {
            // No wildcard: the pattern names one file.
            let name = start.file_name().map(|n| n.to_string_lossy().into_owned());
            match (start.parent(), name) {
                (Some(parent), Some(name)) => {
                    rest.push(name);
                    start = parent.to_path_buf();
                }
                _ => continue,
            }
        }
        let matcher = match Pattern::new(&rest.join("/")) {
            Ok(m) => m,
            Err(e) => {
                listing
                    .problems
                    .push(format!("target_files {pattern:?} is not a valid glob: {e}"));
                continue;
            }
        };
        let max_depth = if rest.iter().any(|c| c.contains("**")) {
            usize::MAX
        } else {
            rest.len()
        };
        walk(&start, &matcher, max_depth, &mut listing, &mut seen_files);
    }
    listing.files.sort();
    listing.broken.sort();
    listing.broken.dedup();
    listing
}

fn walk(
    start: &Path,
    matcher: &Pattern,
    max_depth: usize,
    listing: &mut Listing,
    seen_files: &mut HashSet<PathBuf>,
) {
    let dir = if start.as_os_str().is_empty() {
        Path::new(".")
    } else {
        start
    };
    let Ok(root) = fs::canonicalize(dir) else {
        // A missing directory matches nothing, as with any glob.
        return;
    };
    let mut visited = HashSet::from([root]);
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                listing
                    .problems
                    .push(format!("cannot list {}: {e}", dir.display()));
                continue;
            }
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let path = dir.join(entry.file_name());
            let relative = path.strip_prefix(start).unwrap_or(&path);
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    if matcher.matches_path_with(relative, OPTIONS) {
                        listing.broken.push((path.clone(), unreadable(&path, &e)));
                    }
                    continue;
                }
            };
            if meta.is_dir() {
                if depth + 1 >= max_depth {
                    continue;
                }
                let Ok(real) = fs::canonicalize(&path) else {
                    continue;
                };
                if visited.insert(real.clone()) {
                    stack.push((path, depth + 1));
                } else if is_link && fs::canonicalize(&dir).is_ok_and(|d| d.starts_with(&real)) {
                    listing.broken.push((
                        path,
                        format!(
                            "directory symlink loop (points back to {}); its files are read once",
                            real.display()
                        ),
                    ));
                }
            } else if meta.is_file()
                && matcher.matches_path_with(relative, OPTIONS)
                && seen_files.insert(fs::canonicalize(&path).unwrap_or_else(|_| path.clone()))
            {
                listing.files.push(path);
            }
        }
    }
}

fn unreadable(path: &Path, e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ELOOP) {
        return "symlink loop (the link resolves to itself)".to_owned();
    }
    match fs::read_link(path) {
        Ok(target) if e.kind() == io::ErrorKind::NotFound => {
            format!(
                "dangling symlink (points to {}, which does not exist)",
                target.display()
            )
        }
        _ => format!("cannot read: {e}"),
    }
}
