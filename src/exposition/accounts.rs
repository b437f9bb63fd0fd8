//! The per-account series: `sas_exporter_account_info` and the credentials provider's refresh
//! counters and expiry, each labelled with the account.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::aliyun::credentials::ProviderStatus;
use crate::telemetry::AccountsHandle;

/// Which counter of a provider a series reports.
type Count = fn(&ProviderStatus) -> u64;

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
        let counters: [(&str, &str, Count); 2] = [
            (
                "sas_exporter_credentials_refreshes",
                "Successful credential fetches (the first one included)",
                |s| s.refreshes,
            ),
            (
                "sas_exporter_credentials_refresh_errors",
                "Failed credential fetches",
                |s| s.refresh_errors,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (account, provider, status) in &statuses {
                let labels = [("account", &**account), ("provider", *provider)];
                family
                    .encode_family(&labels.as_slice())?
                    .encode_counter::<NoLabelSet, _, u64>(&value(status), None)?;
            }
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
