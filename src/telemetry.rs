//! The exporter's own instruments: API requests, errors and durations, target files and config
//! reloads, kept in a prometheus-client registry that the scheduler and reloads update.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::aliyun::client::TRANSPORT_CODES;
use crate::aliyun::credentials::ProviderHandle;
use crate::clock::unix_now;
use crate::config::Site;
use crate::targets::FileStatus;

/// Distinct API error codes kept as label values; later ones are counted as `other`.
pub const MAX_ERROR_CODES: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ActionLabels {
    account: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct FileLabels {
    file: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ErrorLabels {
    account: String,
    action: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct TriggerLabels {
    account: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
    account: String,
}

/// Why a digest is polled: the `reason` label of `sas_exporter_refresh_triggers_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Trigger {
    /// Never polled since it became a target.
    New,
    /// Its `sas_images` row changed since the previous listing.
    Changed,
    /// Its latest task is still running (`active_interval`).
    Active,
    /// The regular refresh (`interval`).
    Interval,
    /// Its previous poll failed.
    Retry,
}

impl Trigger {
    /// Every reason, for forgetting an account's series.
    pub(crate) const ALL: [Trigger; 5] = [
        Trigger::New,
        Trigger::Changed,
        Trigger::Active,
        Trigger::Interval,
        Trigger::Retry,
    ];

    /// The `reason` label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trigger::New => "new",
            Trigger::Changed => "changed",
            Trigger::Active => "active",
            Trigger::Interval => "interval",
            Trigger::Retry => "retry",
        }
    }
}

/// A discovery source's health, as `/metrics` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct SourceHealth {
    /// Whether the last listing or watch succeeded; `None` before the first ended.
    pub(crate) up: Option<bool>,
    /// End of the last complete listing.
    pub(crate) last_success: Option<f64>,
    /// Digests the source names now.
    pub(crate) targets: usize,
}

/// A discovery source as the status page lists it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SourceRow {
    /// The `source` label value.
    pub(crate) source: &'static str,
    /// The account it discovers for.
    pub(crate) account: String,
    /// Its state.
    pub(crate) health: SourceHealth,
    /// Why its last listing failed, while it fails.
    pub(crate) error: Option<String>,
    /// True until its first listing ended, unless the state file already brought back what
    /// the account's sources had found: readiness waits for it.
    pub(crate) pending: bool,
}

fn duration_histogram() -> Histogram {
    Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
}

/// The exporter's own counters and gauges, updated by the scheduler and the reload logic.
#[derive(Debug)]
pub struct ExporterMetrics {
    requests: Family<ActionLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<ActionLabels, Histogram, fn() -> Histogram>,
    reload_ok: Gauge,
    reload_ts: Gauge<f64, std::sync::atomic::AtomicU64>,
    target_files: Family<FileLabels, Gauge>,
    /// The target files whose last read failed, for the status page.
    file_problems: Mutex<Vec<FileStatus>>,
    state_write_ok: Gauge,
    state_write_ts: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The state-file series exist only when a state file is configured.
    state_file_configured: bool,
    codes_seen: Mutex<HashSet<String>>,
    triggers: Family<TriggerLabels, Counter>,
    discovery_up: Family<SourceLabels, Gauge>,
    discovery_success: Family<SourceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    discovery_targets: Family<SourceLabels, Gauge>,
    /// Every configured discovery source, for the status page.
    sources: Mutex<Vec<SourceRow>>,
}

impl Default for ExporterMetrics {
    fn default() -> Self {
        ExporterMetrics {
            requests: Family::default(),
            errors: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            reload_ok: Gauge::default(),
            reload_ts: Gauge::default(),
            target_files: Family::default(),
            file_problems: Mutex::new(Vec::new()),
            state_write_ok: Gauge::default(),
            state_write_ts: Gauge::default(),
            state_file_configured: false,
            codes_seen: Mutex::new(HashSet::new()),
            triggers: Family::default(),
            discovery_up: Family::default(),
            discovery_success: Family::default(),
            discovery_targets: Family::default(),
            sources: Mutex::new(Vec::new()),
        }
    }
}

impl ExporterMetrics {
    /// Own metrics; the state-file series only when `state_file` is configured.
    pub fn new(state_file: bool) -> Self {
        let m = ExporterMetrics {
            state_file_configured: state_file,
            ..ExporterMetrics::default()
        };
        m.state_write_ok.set(1);
        m
    }

    /// Registers every series, so the registry encodes their current values at each scrape.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "sas_exporter_api_requests",
            "HTTP requests sent to the Security Center API, retries included",
            self.requests.clone(),
        );
        registry.register(
            "sas_exporter_api_request_errors",
            "Failed Security Center API requests by error code (the API's Code, or timeout, connect, http_5xx, invalid_response)",
            self.errors.clone(),
        );
        registry.register(
            "sas_exporter_api_request_duration_seconds",
            "Duration of Security Center API requests",
            self.durations.clone(),
        );
        registry.register(
            "sas_exporter_config_last_reload_successful",
            "Whether the last configuration load succeeded",
            self.reload_ok.clone(),
        );
        registry.register(
            "sas_exporter_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully",
            self.reload_ts.clone(),
        );
        registry.register(
            "sas_exporter_target_file_last_load_successful",
            "Whether the last read of each target file succeeded (a failed file keeps its previous targets)",
            self.target_files.clone(),
        );
        registry.register(
            "sas_exporter_refresh_triggers",
            "Polls of DescribeImageLatestScanTask by why the digest was due: new, changed (its sas_images row changed), active, interval, retry",
            self.triggers.clone(),
        );
        registry.register(
            "sas_exporter_discovery_up",
            "1 if the last listing or watch of this discovery source succeeded, else 0 (its previous complete result stays in force)",
            self.discovery_up.clone(),
        );
        registry.register(
            "sas_exporter_discovery_last_success_timestamp_seconds",
            "End of the source's last complete listing (kubernetes: last time the watch was in sync), Unix seconds",
            self.discovery_success.clone(),
        );
        registry.register(
            "sas_exporter_discovery_targets",
            "Digests this discovery source currently names",
            self.discovery_targets.clone(),
        );
        if self.state_file_configured {
            registry.register(
                "sas_exporter_state_file_last_write_successful",
                "Whether the last write of the state file succeeded (1 until the first write)",
                self.state_write_ok.clone(),
            );
            registry.register(
                "sas_exporter_state_file_last_write_success_timestamp_seconds",
                "When the state file was last written successfully (0 before the first write)",
                self.state_write_ts.clone(),
            );
        }
    }

    /// Records the outcome of a state-file write.
    pub fn state_file_written(&self, ok: bool) {
        self.state_write_ok.set(i64::from(ok));
        if ok {
            self.state_write_ts.set(unix_now());
        }
    }

    /// Counts one HTTP request sent to an account's API and how long it took.
    pub fn observe_request(&self, account: &str, action: &str, seconds: f64) {
        let labels = ActionLabels {
            account: account.to_owned(),
            action: action.to_owned(),
        };
        self.requests.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(seconds);
    }

    /// Counts one failed request under its error code (API codes beyond the cap become `other`).
    pub fn observe_error(&self, account: &str, action: &str, code: &str) {
        let code = self.bounded_code(code);
        self.errors
            .get_or_create(&ErrorLabels {
                account: account.to_owned(),
                action: action.to_owned(),
                code,
            })
            .inc();
    }

    /// Drops an account's API series: it left the configuration, so its counters would only
    /// linger as stale series.
    pub(crate) fn forget_account(&self, account: &str, actions: &[&str]) {
        let codes: Vec<String> = self
            .codes_seen
            .lock()
            .iter()
            .cloned()
            .chain(
                TRANSPORT_CODES
                    .iter()
                    .chain(&["other"])
                    .map(|c| (*c).to_owned()),
            )
            .collect();
        for trigger in Trigger::ALL {
            self.triggers.remove(&TriggerLabels {
                account: account.to_owned(),
                reason: trigger.as_str(),
            });
        }
        for action in actions {
            let labels = ActionLabels {
                account: account.to_owned(),
                action: (*action).to_owned(),
            };
            self.requests.remove(&labels);
            self.durations.remove(&labels);
            for code in &codes {
                self.errors.remove(&ErrorLabels {
                    account: account.to_owned(),
                    action: (*action).to_owned(),
                    code: code.clone(),
                });
            }
        }
    }

    /// Counts one poll under the reason it was due.
    pub(crate) fn refresh_triggered(&self, account: &str, trigger: Trigger) {
        self.triggers
            .get_or_create(&TriggerLabels {
                account: account.to_owned(),
                reason: trigger.as_str(),
            })
            .inc();
    }

    /// Sets a discovery source's series.
    pub(crate) fn discovery_health(&self, source: &'static str, account: &str, h: SourceHealth) {
        let labels = SourceLabels {
            source,
            account: account.to_owned(),
        };
        if let Some(up) = h.up {
            self.discovery_up.get_or_create(&labels).set(i64::from(up));
        }
        if let Some(ts) = h.last_success {
            self.discovery_success.get_or_create(&labels).set(ts);
        }
        self.discovery_targets
            .get_or_create(&labels)
            .set(i64::try_from(h.targets).unwrap_or(i64::MAX));
    }

    /// Replaces the list of discovery sources the status page shows.
    pub(crate) fn set_sources(&self, rows: Vec<SourceRow>) {
        *self.sources.lock() = rows;
    }

    /// The discovery sources with their state, in configuration order.
    pub(crate) fn sources(&self) -> Vec<SourceRow> {
        self.sources.lock().clone()
    }

    /// Drops a discovery source's series: it left the configuration.
    pub(crate) fn forget_source(&self, source: &'static str, account: &str) {
        let labels = SourceLabels {
            source,
            account: account.to_owned(),
        };
        self.discovery_up.remove(&labels);
        self.discovery_success.remove(&labels);
        self.discovery_targets.remove(&labels);
    }

    fn bounded_code(&self, code: &str) -> String {
        if TRANSPORT_CODES.contains(&code) {
            return code.to_owned();
        }
        let mut seen = self.codes_seen.lock();
        if seen.contains(code) {
            code.to_owned()
        } else if seen.len() < MAX_ERROR_CODES {
            seen.insert(code.to_owned());
            code.to_owned()
        } else {
            "other".to_owned()
        }
    }

    /// Records the outcome of the last read of each target file (files no longer matched vanish).
    pub fn target_files(&self, files: &[FileStatus]) {
        *self.file_problems.lock() = files
            .iter()
            .filter(|f| f.error.is_some())
            .cloned()
            .collect();
        self.target_files.clear();
        for f in files {
            self.target_files
                .get_or_create(&FileLabels {
                    file: f.path.display().to_string(),
                })
                .set(i64::from(f.error.is_none()));
        }
    }

    /// The target files whose last read failed, with what was wrong.
    pub fn target_file_problems(&self) -> Vec<FileStatus> {
        self.file_problems.lock().clone()
    }

    /// Records the outcome of a configuration (re)load.
    pub fn config_loaded(&self, ok: bool) {
        self.reload_ok.set(i64::from(ok));
        if ok {
            self.reload_ts.set(unix_now());
        }
    }
}

/// What `/metrics` shows of one account beyond its targets: its site, the account ID that STS
/// reported, and the credentials provider in use (for the refresh counters and expiry).
#[derive(Debug)]
pub(crate) struct AccountStatus {
    /// The `account` label value.
    pub(crate) name: Arc<str>,
    /// The Security Center site of the account; a reload may move the account.
    pub(crate) site: ArcSwap<Site>,
    /// The provider in use, swapped when a reload changes the account's credentials.
    pub(crate) provider: ProviderHandle,
    /// The account ID from STS `GetCallerIdentity`; `None` until it answered.
    pub(crate) account_id: ArcSwapOption<String>,
}

impl AccountStatus {
    /// An account whose ID is not known yet.
    pub(crate) fn new(name: Arc<str>, site: Site, provider: ProviderHandle) -> Self {
        AccountStatus {
            name,
            site: ArcSwap::from_pointee(site),
            provider,
            account_id: ArcSwapOption::empty(),
        }
    }
}

/// Every configured account, swapped whole when a reload adds or removes one.
pub(crate) type AccountsHandle = Arc<ArcSwap<Vec<Arc<AccountStatus>>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_capped() {
        let m = ExporterMetrics::default();
        for i in 0..MAX_ERROR_CODES {
            assert_eq!(m.bounded_code(&format!("Code{i}")), format!("Code{i}"));
        }
        assert_eq!(m.bounded_code("Code0"), "Code0");
        assert_eq!(m.bounded_code("OneTooMany"), "other");
        assert_eq!(m.bounded_code("timeout"), "timeout");
    }
}
