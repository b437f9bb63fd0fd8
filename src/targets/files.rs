//! Target files: `target_files` globs merged with the inline `targets`, then the shard filter.
//!
//! Target files are re-read on reload and when they change on disk. A file that stops parsing
//! keeps contributing the targets it last had, so one bad commit to a generated list does not drop
//! its digests from monitoring; the failure is logged and exported as a metric.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::{Config, Problem, Target, merge_targets, parse_targets};
use crate::targets::shard::Shard;

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
    fingerprints: BTreeMap<PathBuf, Option<(SystemTime, u64)>>,
    status: Vec<FileStatus>,
}

/// Expands `target_files` globs; relative patterns are relative to the config file's directory.
pub fn expand_globs(globs: &[String], base: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for pattern in globs {
        let full = if Path::new(pattern).is_absolute() {
            pattern.clone()
        } else {
            base.join(pattern).to_string_lossy().into_owned()
        };
        match glob::glob(&full) {
            Ok(paths) => {
                for p in paths {
                    match p {
                        Ok(p) if p.is_file() => files.push(p),
                        Ok(_) => {}
                        Err(e) => problems.push(format!("target_files {pattern:?}: {e}")),
                    }
                }
            }
            Err(e) => problems.push(format!("target_files {pattern:?} is not a valid glob: {e}")),
        }
    }
    files.sort();
    files.dedup();
    (files, problems)
}

fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
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
        let (files, mut problems) = expand_globs(&config.target_files, base);
        let mut all = config.targets.clone();
        let mut status = Vec::with_capacity(files.len());
        let mut fingerprints = BTreeMap::new();
        let mut last_good = HashMap::new();
        let accounts: Vec<String> = config.accounts.iter().map(|a| a.name.clone()).collect();
        for path in files {
            fingerprints.insert(path.clone(), fingerprint(&path));
            let shown = path.display().to_string();
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {shown}: {e}"))
                .and_then(|text| {
                    parse_targets(&text, &shown, env, &accounts).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(targets) => {
                    all.extend(targets.iter().cloned());
                    last_good.insert(path.clone(), targets);
                    status.push(FileStatus { path, error: None });
                }
                Err(e) => {
                    let kept = self.last_good.get(&path).cloned().unwrap_or_default();
                    tracing::error!(
                        file = %shown,
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

    /// True when the set of files or any file's modification time or size changed.
    pub fn changed(&self, config: &Config, base: &Path) -> bool {
        let (files, _) = expand_globs(&config.target_files, base);
        files.len() != self.fingerprints.len()
            || files
                .iter()
                .any(|f| self.fingerprints.get(f) != Some(&fingerprint(f)))
    }

    /// Each file's last read outcome.
    pub fn status(&self) -> &[FileStatus] {
        &self.status
    }
}
