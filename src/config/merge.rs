//! Merging target lists from several files. A target is an (account, digest) pair: the same
//! digest in two accounts is two targets.

use std::collections::HashMap;

use super::problem::Problem;
use super::types::{DEFAULT_ACCOUNT, Target};

/// Merges target lists from several files: identical duplicates collapse, conflicting ones are problems.
pub fn dedupe_targets(targets: Vec<Target>) -> Result<Vec<Target>, Vec<Problem>> {
    let (kept, problems) = merge_targets(targets);
    if problems.is_empty() {
        Ok(kept)
    } else {
        Err(problems)
    }
}

/// Merges target lists: identical duplicates collapse, and of conflicting ones the first is kept
/// and each later one is reported (a reload must go on with what is consistent).
pub fn merge_targets(targets: Vec<Target>) -> (Vec<Target>, Vec<Problem>) {
    let mut first: HashMap<(String, String), usize> = HashMap::new();
    let mut kept: Vec<Target> = Vec::with_capacity(targets.len());
    let mut problems = Vec::new();
    for t in targets {
        let key = (t.account.clone(), t.digest.clone());
        match first.get(&key) {
            Some(&i) => {
                let earlier = &kept[i];
                if earlier.labels != t.labels {
                    let at = if earlier.location.file == t.location.file {
                        format!("line {}", earlier.location.line)
                    } else {
                        format!("{}:{}", earlier.location.file, earlier.location.line)
                    };
                    problems.push(Problem {
                        location: t.location.clone(),
                        message: format!(
                            "duplicate digest {}{} with different labels (first at {at}); give both entries the same labels or remove one",
                            t.digest,
                            in_account(&t.account)
                        ),
                    });
                }
            }
            None => {
                first.insert(key, kept.len());
                kept.push(t);
            }
        }
    }
    (kept, problems)
}

/// " in account NAME", except for the one account of a configuration without `accounts:`.
fn in_account(account: &str) -> String {
    if account == DEFAULT_ACCOUNT {
        String::new()
    } else {
        format!(" in account {account}")
    }
}
