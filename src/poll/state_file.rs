//! The state file: the last known result of every digest, so a restart serves complete
//! metrics at once and staleness clocks keep running.
//!
//! Writes go to a temporary file in the same directory, are synced, and are renamed over the old
//! file, so a crash at any moment leaves either the old or the new file, never a torn one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::aliyun::scan::ScanTask;
use crate::config::DEFAULT_ACCOUNT;
use crate::poll::discovered::{Discovered, ImageFacts, Workload, source_name};
use crate::poll::store::{Known, Snapshot, TargetState, unix_now};

/// Identifies our files, so a foreign JSON file is not mistaken for one.
pub const FORMAT: &str = "sas-image-scan-exporter/state";
/// Bumped on incompatible changes; other versions are ignored.
pub const VERSION: u32 = 1;
/// A state file larger than this is not ours (10 000 digests take about 5 MiB).
const MAX_STATE_BYTES: u64 = 256 << 20;

#[derive(Serialize, Deserialize)]
struct StateFile {
    format: String,
    version: u32,
    written_at: f64,
    targets: Vec<Saved>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    /// Files written before accounts existed hold the one account `default`.
    #[serde(default = "default_account")]
    account: String,
    digest: String,
    /// True when a poll succeeded at least once; `task` is then the latest task or none.
    fetched: bool,
    task: Option<ScanTask>,
    last_success: Option<f64>,
    up: Option<bool>,
    last_error: Option<String>,
    /// What discovery knew of the digest, so a restart has the discovered targets at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    discovered: Option<SavedDiscovery>,
}

#[derive(Serialize, Deserialize)]
struct SavedDiscovery {
    sources: Vec<String>,
    /// The labels the sources give, without `account` and `digest`.
    labels: BTreeMap<String, String>,
    image: Option<SavedImage>,
    #[serde(default)]
    running: Vec<SavedRunning>,
    keep_for_seconds: f64,
    leaves_at: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct SavedImage {
    sca_status: String,
    last_scan_ms: Option<i64>,
    vulnerabilities: Option<u64>,
    baseline_risks: Option<u64>,
    security_alerts: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct SavedRunning {
    cluster: String,
    namespace: String,
    workload: String,
    containers: u32,
}

impl SavedDiscovery {
    fn of(d: &Discovered) -> Self {
        SavedDiscovery {
            sources: d.sources.iter().map(|s| (*s).to_owned()).collect(),
            labels: d
                .labels
                .iter()
                .skip(2)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            image: d.image.as_ref().map(|i| SavedImage {
                sca_status: i.sca_status.clone(),
                last_scan_ms: i.last_scan_ms,
                vulnerabilities: i.vulnerabilities,
                baseline_risks: i.baseline_risks,
                security_alerts: i.security_alerts,
            }),
            running: d
                .running
                .iter()
                .map(|(w, n)| SavedRunning {
                    cluster: w.cluster.clone(),
                    namespace: w.namespace.clone(),
                    workload: w.workload.clone(),
                    containers: *n,
                })
                .collect(),
            keep_for_seconds: d.keep_for.as_secs_f64(),
            leaves_at: d.leaves_at,
        }
    }

    /// Back into the shared form; labels are rebuilt in the order every label set has.
    fn restore(self, account: &Arc<str>, digest: &Arc<str>) -> Discovered {
        let mut labels: Vec<(Arc<str>, Arc<str>)> = vec![
            (Arc::from("account"), Arc::clone(account)),
            (Arc::from("digest"), Arc::clone(digest)),
        ];
        labels.extend(
            self.labels
                .into_iter()
                .filter(|(k, _)| k != "account" && k != "digest")
                .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str()))),
        );
        Discovered {
            sources: self.sources.iter().filter_map(|s| source_name(s)).collect(),
            labels: labels.into(),
            image: self.image.map(|i| ImageFacts {
                sca_status: i.sca_status,
                last_scan_ms: i.last_scan_ms,
                vulnerabilities: i.vulnerabilities,
                baseline_risks: i.baseline_risks,
                security_alerts: i.security_alerts,
            }),
            running: self
                .running
                .into_iter()
                .map(|r| {
                    let w = Workload {
                        cluster: r.cluster,
                        namespace: r.namespace,
                        workload: r.workload,
                    };
                    (w, r.containers)
                })
                .collect(),
            keep_for: Duration::try_from_secs_f64(self.keep_for_seconds).unwrap_or_default(),
            leaves_at: self.leaves_at,
        }
    }
}

/// Why a state file was not used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was written by a newer exporter; it is kept, never overwritten.
    #[error("{path}: state file version {version} is newer than the supported {VERSION}")]
    Newer {
        /// The file.
        path: PathBuf,
        /// The version it declares.
        version: u32,
    },
    /// The file is not a readable state file of ours.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Writes the snapshot atomically.
pub fn write(path: &Path, snapshot: &Snapshot) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let file = StateFile {
        format: FORMAT.to_owned(),
        version: VERSION,
        written_at: unix_now(),
        targets: snapshot
            .targets
            .iter()
            .filter(|t| t.polled() || t.discovered.is_some())
            .map(|t| Saved {
                account: t.account.to_string(),
                digest: t.digest.to_string(),
                fetched: t.data.is_fetched(),
                task: t.data.task().cloned(),
                last_success: t.last_success,
                up: t.up,
                last_error: t.last_error.clone(),
                discovered: t.discovered.as_deref().map(SavedDiscovery::of),
            })
            .collect(),
    };
    let json = serde_json::to_vec(&file).map_err(|e| StateError::Invalid {
        path: path.to_owned(),
        message: format!("cannot encode: {e}"),
    })?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // A half-written temporary file is of no use to anyone; do not leave it behind.
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    // Make the rename itself durable.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Moves a newer exporter's state file to `<name>.v<N>.bak`, so this older one does not
/// overwrite it; returns where it went.
pub fn set_aside(path: &Path, version: u32) -> Result<PathBuf, StateError> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".v{version}.bak"));
    let aside = PathBuf::from(name);
    std::fs::rename(path, &aside).map_err(|source| StateError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(aside)
}

/// Reads a state file into states by (account, digest); labels are left empty, since the config
/// owns them, unless discovery named the digest: then they are the discovered ones. A missing file is `Ok` and empty.
pub fn read(path: &Path) -> Result<HashMap<(String, String), TargetState>, StateError> {
    let invalid = |message: String| StateError::Invalid {
        path: path.to_owned(),
        message,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    if meta.len() > MAX_STATE_BYTES {
        return Err(invalid(format!(
            "{} bytes is too large for a state file",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|source| StateError::Io {
        path: path.to_owned(),
        source,
    })?;
    // Check the header first, so a foreign file says "foreign" rather than a parse error.
    #[derive(Deserialize)]
    struct Header {
        format: Option<String>,
        version: Option<u32>,
    }
    let header: Header = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("not a state file (corrupt or truncated JSON): {e}")))?;
    if header.format.as_deref() != Some(FORMAT) {
        return Err(invalid(format!(
            "not a state file of this exporter (format {:?})",
            header.format
        )));
    }
    if let Some(version) = header.version
        && version > VERSION
    {
        return Err(StateError::Newer {
            path: path.to_owned(),
            version,
        });
    }
    if header.version != Some(VERSION) {
        return Err(invalid(format!(
            "state file version {:?} is not the supported {VERSION}",
            header.version
        )));
    }
    let file: StateFile =
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("malformed: {e}")))?;
    Ok(file
        .targets
        .into_iter()
        .map(|s| {
            let account: Arc<str> = Arc::from(s.account.as_str());
            let digest: Arc<str> = Arc::from(s.digest.as_str());
            let discovered = s.discovered.map(|d| Arc::new(d.restore(&account, &digest)));
            let state = TargetState {
                labels: discovered
                    .as_ref()
                    .map_or_else(|| Arc::from([]), |d| Arc::clone(&d.labels)),
                account,
                digest,
                data: if s.fetched {
                    Known::from_answer(s.task)
                } else {
                    Known::NotPolled
                },
                last_success: s.last_success,
                up: s.up,
                last_error: s.last_error,
                refresh: Duration::ZERO,
                added_at: unix_now(),
                configured: false,
                discovered,
            };
            ((s.account, s.digest), state)
        })
        .collect())
}

fn default_account() -> String {
    DEFAULT_ACCOUNT.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliyun::scan::ScanStatus;
    use crate::config::{Location, Target};

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sas-state-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join(name)
    }

    fn snapshot() -> Snapshot {
        let mut targets = Vec::new();
        for (i, c) in ['a', 'b', 'c'].into_iter().enumerate() {
            let t = Target {
                digest: c.to_string().repeat(64),
                account: "prod".into(),
                labels: BTreeMap::new(),
                location: Location {
                    file: "x".into(),
                    line: 1,
                    column: 1,
                },
            };
            let mut s = TargetState::new(&t, std::time::Duration::from_secs(60));
            if i < 2 {
                s.up = Some(i == 0);
                s.last_success = Some(1000.0 + i as f64);
                s.data = Known::from_answer((i == 0).then(|| ScanTask {
                    status: ScanStatus::Timeout,
                    raw_status: "TIMOUT".into(),
                    modified: chrono::DateTime::from_timestamp(1_700_000_000, 0),
                    modified_raw: None,
                    start_time_ms: Some(1),
                    finish_time_ms: Some(2),
                    finish: Some(3),
                    source: Some("openapi".into()),
                    task_type: None,
                    name: None,
                    task_id: Some("t".into()),
                    id: Some(9),
                    target_type: None,
                }));
                s.last_error = (i == 1).then(|| "NoPermission (HTTP 403)".into());
            }
            targets.push(Arc::new(s));
        }
        Snapshot::new(5, targets)
    }

    #[test]
    fn round_trip_keeps_everything_known() {
        let path = temp("state.json");
        let snap = snapshot();
        write(&path, &snap).expect("write");
        let back = read(&path).expect("read");
        assert_eq!(back.len(), 2, "the never-polled target is not saved");
        for t in snap.targets.iter().filter(|t| t.polled()) {
            let r = &back[&(t.account.to_string(), t.digest.to_string())];
            assert_eq!(r.account, t.account);
            assert_eq!(r.data, t.data);
            assert_eq!(r.last_success, t.last_success);
            assert_eq!(r.up, t.up);
            assert_eq!(r.last_error, t.last_error);
        }
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[test]
    fn missing_corrupt_truncated_and_foreign_files() {
        let path = temp("state.json");
        assert!(read(&path).expect("missing is fine").is_empty());
        write(&path, &snapshot()).expect("write");
        let full = std::fs::read(&path).expect("bytes");
        std::fs::write(&path, &full[..full.len() / 2]).expect("truncate");
        let e = read(&path).expect_err("truncated").to_string();
        assert!(
            e.contains("not a state file (corrupt or truncated JSON)"),
            "{e}"
        );
        std::fs::write(&path, b"\x00\xffgarbage").expect("garbage");
        assert!(read(&path).is_err());
        std::fs::write(
            &path,
            br#"{"format":"other-tool","version":1,"targets":[]}"#,
        )
        .expect("foreign");
        let e = read(&path).expect_err("foreign").to_string();
        assert!(
            e.ends_with("not a state file of this exporter (format Some(\"other-tool\"))"),
            "{e}"
        );
        std::fs::write(
            &path,
            format!(r#"{{"format":"{FORMAT}","version":99,"targets":[]}}"#),
        )
        .expect("future");
        let e = read(&path).expect_err("version");
        assert!(matches!(e, StateError::Newer { version: 99, .. }), "{e}");
        assert!(
            e.to_string()
                .ends_with("state file version 99 is newer than the supported 1"),
            "{e}"
        );
    }

    #[test]
    fn the_same_digest_in_two_accounts_is_two_entries_and_old_files_mean_default() {
        let path = temp("state.json");
        let target = |account: &str| Target {
            digest: "d".repeat(64),
            account: account.into(),
            labels: BTreeMap::new(),
            location: Location {
                file: "x".into(),
                line: 1,
                column: 1,
            },
        };
        let states: Vec<Arc<TargetState>> = ["intl", "prod"]
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut s = TargetState::new(&target(a), std::time::Duration::from_secs(60));
                s.up = Some(true);
                s.last_success = Some(100.0 + i as f64);
                s.data = Known::NoTask;
                Arc::new(s)
            })
            .collect();
        write(&path, &Snapshot::new(1, states)).expect("write");
        let back = read(&path).expect("read");
        let d = "d".repeat(64);
        assert_eq!(
            back[&("intl".to_owned(), d.clone())].last_success,
            Some(100.0)
        );
        assert_eq!(
            back[&("prod".to_owned(), d.clone())].last_success,
            Some(101.0)
        );
        // A file written before accounts existed: every entry belongs to `default`.
        let old = format!(
            r#"{{"format":"{FORMAT}","version":1,"written_at":1.0,"targets":[{{"digest":"{d}","fetched":true,"task":null,"last_success":5.0,"up":true,"last_error":null}}]}}"#
        );
        std::fs::write(&path, old).expect("old file");
        let back = read(&path).expect("old format reads");
        assert_eq!(back[&("default".to_owned(), d)].data, Known::NoTask);
    }
}
