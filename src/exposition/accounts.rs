//! The per-account series: `sas_exporter_account_info` and the credentials provider's refresh
//! counters and expiry, each labelled with the account.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::telemetry::AccountsHandle;

/// Encodes the per-account series from the current account list at every scrape.
#[derive(Debug)]
pub(crate) struct AccountsCollector(pub(crate) AccountsHandle);

impl Collector for AccountsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let accounts = self.0.load_full();
        let mut info = encoder.encode_descriptor(
            "sas_exporter_account_info",
            "Describes each configured account; account_id is empty until STS GetCallerIdentity answered",
            None,
            MetricType::Gauge,
        )?;
        for a in accounts.iter() {
            let id = a.account_id.load_full();
            let site = **a.site.load();
            let labels = [
                ("account", &*a.name),
                ("account_id", id.as_deref().map_or("", String::as_str)),
                ("site", site.as_str()),
            ];
            info.encode_family(&labels.as_slice())?.encode_gauge(&1)?;
        }
        let statuses: Vec<_> = accounts
            .iter()
            .map(|a| {
                let provider = Arc::clone(&a.provider.load());
                (Arc::clone(&a.name), provider.name(), provider.status())
            })
            .collect();
        let mut refreshes = encoder.encode_descriptor(
            "sas_exporter_credentials_refreshes",
            "Successful credential fetches (the first one included)",
            None,
            MetricType::Counter,
        )?;
        for (account, provider, status) in &statuses {
            let labels = [("account", &**account), ("provider", *provider)];
            refreshes
                .encode_family(&labels.as_slice())?
                .encode_counter::<NoLabelSet, _, u64>(&status.refreshes, None)?;
        }
        let mut errors = encoder.encode_descriptor(
            "sas_exporter_credentials_refresh_errors",
            "Failed credential fetches",
            None,
            MetricType::Counter,
        )?;
        for (account, provider, status) in &statuses {
            let labels = [("account", &**account), ("provider", *provider)];
            errors
                .encode_family(&labels.as_slice())?
                .encode_counter::<NoLabelSet, _, u64>(&status.refresh_errors, None)?;
        }
        if statuses.iter().any(|(_, _, s)| s.expiration.is_some()) {
            let mut expiry = encoder.encode_descriptor(
                "sas_exporter_credentials_expiry_timestamp_seconds",
                "When the temporary credentials in use expire, Unix seconds",
                None,
                MetricType::Gauge,
            )?;
            for (account, provider, status) in &statuses {
                if let Some(at) = status.expiration {
                    let labels = [("account", &**account), ("provider", *provider)];
                    expiry
                        .encode_family(&labels.as_slice())?
                        .encode_gauge(&at.timestamp())?;
                }
            }
        }
        Ok(())
    }
}
