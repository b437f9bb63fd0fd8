//! Target files: `target_files` globs merged with the inline `targets`, then the shard filter.
//!
//! Target files are re-read on reload and when they change on disk. A file that stops parsing
//! keeps contributing the targets it last had, so one bad commit to a generated list does not drop
//! its digests from monitoring; the failure is logged and exported as a metric. The same holds for
//! a file that is momentarily empty (being rewritten) and for a symlink that leads nowhere.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::config::{Config, Problem, Target, merge_targets, parse_targets};
use crate::targets::shard::Shard;
use crate::targets::walk::expand_globs;

/// The state of one target file, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStatus {
    /// The file.
    pub path: PathBuf,
    /// `None` when its last read succeeded, else what was wrong.
    pub error: Option<String>,
}

/// The result of assembling the target list.
#[derive(Debug, Default)]
pub struct Assembled {
    /// The merged targets this instance polls (after the shard filter).
    pub targets: Vec<Target>,
    /// All configured targets before the shard filter.
    pub total_before_shard: usize,
    /// Problems that did not stop the load (broken files, conflicting duplicates).
    pub problems: Vec<String>,
}

/// Reads target files and remembers the last good content of each.
#[derive(Debug, Default)]
pub struct TargetFiles {
    last_good: HashMap<PathBuf, Vec<Target>>,
    fingerprints: BTreeMap<PathBuf, Fingerprint>,
    status: Vec<FileStatus>,
}

/// What a file's content was when last read: its length and a CRC-32 of its bytes. Content, not
/// metadata: `cp -p` and some config tools replace a file keeping its size and mtime.
type Fingerprint = Option<(usize, u32)>;

fn fingerprint_of(bytes: &[u8]) -> Fingerprint {
    Some((bytes.len(), crc32fast::hash(bytes)))
}

fn fingerprint(path: &Path) -> Fingerprint {
    fingerprint_of(&std::fs::read(path).ok()?)
}

/// Nothing but whitespace and comments: what a file being rewritten in place looks like for a
/// moment. Read as "no targets", it would drop every digest the file had.
fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    })
}

impl TargetFiles {
    /// Reads every target file and merges them with the inline targets; files that fail keep
    /// their previous targets.
    pub fn assemble(
        &mut self,
        config: &Config,
        base: &Path,
        shard: Shard,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Assembled {
        let listing = expand_globs(&config.target_files, base);
        let mut problems = listing.problems;
        let mut all = config.targets.clone();
        let mut status = Vec::with_capacity(listing.files.len() + listing.broken.len());
        let mut fingerprints = BTreeMap::new();
        let mut last_good = HashMap::new();
        let accounts: Vec<String> = config.accounts.iter().map(|a| a.name.clone()).collect();
        let reads = listing.files.into_iter().map(|path| {
            let shown = path.display().to_string();
            let bytes = std::fs::read(&path);
            fingerprints.insert(
                path.clone(),
                bytes.as_ref().ok().and_then(|b| fingerprint_of(b)),
            );
            let parsed = bytes
                .map_err(|e| format!("cannot read {shown}: {e}"))
                .and_then(|b| {
                    String::from_utf8(b).map_err(|_| format!("{shown} is not valid UTF-8"))
                })
                .and_then(|text| {
                    if is_blank(&text) {
                        return Err(format!(
                            "{shown} is empty; a file meant to hold no targets must say [] (until then its previous targets are kept)"
                        ));
                    }
                    parse_targets(&text, &shown, env, &accounts).map_err(|e| e.to_string())
                });
            (path, parsed)
        });
        let broken = listing.broken.into_iter().map(|(path, why)| {
            let e = format!("{}: {why}", path.display());
            (path, Err(e))
        });
        let mut outcomes: Vec<(PathBuf, Result<Vec<Target>, String>)> = reads.collect();
        for (path, e) in broken {
            fingerprints.insert(path.clone(), None);
            outcomes.push((path, e));
        }
        for (path, parsed) in outcomes {
            match parsed {
                Ok(targets) => {
                    all.extend(targets.iter().cloned());
                    last_good.insert(path.clone(), targets);
                    status.push(FileStatus { path, error: None });
                }
                Err(e) => {
                    let kept = self.last_good.get(&path).cloned().unwrap_or_default();
                    tracing::error!(
                        file = %path.display(),
                        error = %e,
                        kept_targets = kept.len(),
                        "target file rejected; keeping its previous targets"
                    );
                    problems.push(e.clone());
                    all.extend(kept.iter().cloned());
                    last_good.insert(path.clone(), kept);
                    status.push(FileStatus {
                        path,
                        error: Some(e),
                    });
                }
            }
        }
        // A file's previous targets may name an account that a reload removed.
        all.retain(|t| accounts.contains(&t.account));
        let (merged, conflicts) = merge_targets(all);
        // A conflict marks the file of the later entry, so the file metric and the status page
        // show it, not only the log.
        for conflict in &conflicts {
            if let Some(file) = status.iter_mut().find(|f| {
                f.error.is_none() && f.path.display().to_string() == conflict.location.file
            }) {
                file.error = Some(conflict.to_string());
            }
        }
        problems.extend(conflicts.iter().map(Problem::to_string));
        self.last_good = last_good;
        self.fingerprints = fingerprints;
        self.status = status;
        let total_before_shard = merged.len();
        let targets = merged
            .into_iter()
            .filter(|t| shard.owns(&t.digest))
            .collect();
        Assembled {
            targets,
            total_before_shard,
            problems,
        }
    }

    /// True when the set of files (readable or broken) or any file's content changed.
    pub fn changed(&self, config: &Config, base: &Path) -> bool {
        let listing = expand_globs(&config.target_files, base);
        listing.files.len() + listing.broken.len() != self.fingerprints.len()
            || listing
                .broken
                .iter()
                .any(|(b, _)| self.fingerprints.get(b) != Some(&None))
            || listing
                .files
                .iter()
                .any(|f| self.fingerprints.get(f) != Some(&fingerprint(f)))
    }

    /// Each file's last read outcome.
    pub fn status(&self) -> &[FileStatus] {
        &self.status
    }
}
