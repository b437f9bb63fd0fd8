//! The `discovery` section: the sources that find digests to watch, each validated with its
//! location.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use marked_yaml::Node;
use marked_yaml::types::MarkedMappingNode;

use super::decoder::{Decoder, Field, join};
use super::problem::Location;
use super::values::duration_in;

/// What keys a source of each kind accepts.
const COMMON_KEYS: &[&str] = &["source", "account", "labels", "keep_for"];
const LISTING_KEYS: &[&str] = &["refresh", "page_size", "filters"];
const KUBERNETES_KEYS: &[&str] = &["kubeconfig", "cluster", "namespaces", "label_selector"];

/// The Criteria names `DescribeImageInstances` understands, in snake_case as the config writes
/// them.
pub const IMAGE_FILTERS: &[&str] = &[
    "instance_id",
    "repo_name",
    "repo_namespace",
    "region_id",
    "tag",
    "digest",
    "repo_id",
    "vul_status",
    "risk_status",
    "registry_type",
];

/// The Criteria names `DescribeContainerInstances` understands, in snake_case.
pub const CONTAINER_FILTERS: &[&str] = &[
    "cluster_id",
    "cluster_name",
    "region_id",
    "instance_id",
    "image",
    "image_repo_name",
    "image_repo_namespace",
    "image_repo_tag",
    "image_digest",
    "cluster_type",
    "host_ip",
    "pod",
    "pod_ip",
    "container_id",
    "vul_status",
    "alarm_status",
    "risk_status",
    "risk_level",
    "container_scope",
    "namespace",
    "app_name",
];

const MIN_REFRESH: Duration = Duration::from_secs(10);
const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_REFRESH: Duration = Duration::from_secs(60);
/// Rows per page when `page_size` is not written: more than the API's default of 20, and a
/// size the service is known to accept.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 500;
/// How long a digest no source lists any more keeps its series, unless `keep_for` says.
pub const DEFAULT_KEEP_FOR: Duration = Duration::from_secs(3600);
const MAX_KEEP_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// The `cluster` label of the `kubernetes` source when none is configured.
pub const DEFAULT_CLUSTER: &str = "kubernetes";

/// One discovery source as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscoveryConfig {
    /// The account whose Security Center is asked about the digests this source finds.
    pub account: String,
    /// What the source reads, with its own settings.
    pub kind: SourceKind,
    /// Added to every digest this source finds.
    pub labels: BTreeMap<String, String>,
    /// How long a digest this source no longer lists keeps its series.
    pub keep_for: Duration,
    /// Where the source was written.
    pub location: Location,
}

impl DiscoveryConfig {
    /// The `source` label value.
    pub fn source_name(&self) -> &'static str {
        self.kind.name()
    }
}

/// The kinds of source, each with its settings.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    /// Every image Security Center knows (`DescribeImageInstances`).
    SasImages {
        /// Paging, refresh and filters.
        listing: ListingConfig,
        /// The `Scanned` parameter.
        scanned: Scanned,
    },
    /// Containers running in clusters connected to Security Center (`DescribeContainerInstances`).
    SasContainers {
        /// Paging, refresh and filters.
        listing: ListingConfig,
    },
    /// Pods of a Kubernetes cluster, watched with the Kubernetes API.
    Kubernetes(KubernetesConfig),
}

impl SourceKind {
    /// The `source` label value.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::SasImages { .. } => "sas_images",
            SourceKind::SasContainers { .. } => "sas_containers",
            SourceKind::Kubernetes(_) => "kubernetes",
        }
    }
}

/// How a Security Center listing is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingConfig {
    /// How often the whole list is read.
    pub refresh: Duration,
    /// Rows asked for per page.
    pub page_size: u32,
    /// AND-ed filters, sent as `Criteria` and checked again on every row.
    pub filters: Vec<Filter>,
}

/// One filter: a Criteria name (camelCase, as the API spells it) and the value it must equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The Criteria name, e.g. `repoNamespace`.
    pub name: String,
    /// The value the row's field must equal.
    pub value: String,
}

/// Which images a `sas_images` listing returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scanned {
    /// All images (no `Scanned` parameter).
    #[default]
    Any,
    /// Scanned images only.
    Scanned,
    /// Unscanned images only.
    Unscanned,
}

impl fmt::Display for Scanned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scanned::Any => "any",
            Scanned::Scanned => "scanned",
            Scanned::Unscanned => "unscanned",
        })
    }
}

/// How the `kubernetes` source reaches its cluster and which pods it reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// A kubeconfig file; `None` means the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// The `cluster` label value.
    pub cluster: String,
    /// The namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// A label selector on pods; `None` means every pod.
    pub label_selector: Option<String>,
}

/// `cluster_id` → `clusterId`.
pub fn criteria_name(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_scanned(s: &str) -> Result<Scanned, String> {
    match s {
        "any" => Ok(Scanned::Any),
        "scanned" => Ok(Scanned::Scanned),
        "unscanned" => Ok(Scanned::Unscanned),
        _ => Err(format!(
            "expected one of any, scanned, unscanned, got {s:?}"
        )),
    }
}

/// A Kubernetes namespace name: a DNS-1123 label.
fn parse_namespace(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "expected a namespace name (lower-case letters, digits and '-', at most 63), got {s:?}"
        ))
    }
}

/// A label value Prometheus and the status page show: printable, not too long.
fn parse_cluster(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "expected a cluster name of 1 to 128 printable characters, got {s:?}"
        ))
    }
}

/// A label selector as `kubectl -l` takes it. The API server checks the grammar fully; this
/// catches what is certainly wrong before the watch starts.
fn parse_selector(s: &str) -> Result<String, String> {
    let balanced = s.matches('(').count() == s.matches(')').count();
    if s.len() > 4096 || s.chars().any(char::is_control) || !balanced || s.contains(",,") {
        Err(format!(
            "expected a Kubernetes label selector such as app=web,tier!=cache, got {s:?}"
        ))
    } else {
        Ok(s.trim().to_owned())
    }
}

impl Decoder<'_> {
    /// The `discovery` list.
    pub(super) fn discovery(&mut self, node: &Node) -> Vec<DiscoveryConfig> {
        let path = "discovery";
        let items = match self.sequence(node, path) {
            Field::Set(items, _) => items,
            _ => return Vec::new(),
        };
        let mut sources = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let m = match self.mapping(item, &p) {
                Field::Set(m, _) => m,
                Field::Absent => {
                    self.report(
                        item.span(),
                        format!("{p}: expected a mapping with a source, got an empty entry"),
                    );
                    continue;
                }
                Field::Invalid => continue,
            };
            if let Some(source) = self.source(m, &p) {
                if let Some(first) = sources.iter().find(|s: &&DiscoveryConfig| {
                    s.kind == source.kind && s.account == source.account
                }) {
                    self.problems.push(super::problem::Problem {
                        location: source.location.clone(),
                        message: format!(
                            "{p}: the same {} source for account {:?} is already configured at {}",
                            source.source_name(),
                            source.account,
                            first.location
                        ),
                    });
                    continue;
                }
                sources.push(source);
            }
        }
        sources
    }

    fn source(&mut self, m: &MarkedMappingNode, p: &str) -> Option<DiscoveryConfig> {
        let kind = match self.value(m, "source", p, |s| Ok(s.to_owned())) {
            Field::Set(kind, at) => Some((kind, at)),
            Field::Absent => {
                let at = m.keys().next().map_or(*m.span(), |k| *k.span());
                self.report(
                    &at,
                    format!("{p}: source is required (sas_images, sas_containers or kubernetes)"),
                );
                return None;
            }
            Field::Invalid => return None,
        }?;
        let (name, at) = kind;
        let specific: &[&str] = match name.as_str() {
            "sas_images" => &["refresh", "page_size", "filters", "scanned"],
            "sas_containers" => LISTING_KEYS,
            "kubernetes" => KUBERNETES_KEYS,
            other => {
                self.report(
                    &at,
                    format!(
                        "{p}.source: unknown source {other:?} (expected sas_images, sas_containers or kubernetes)"
                    ),
                );
                return None;
            }
        };
        let known: Vec<&str> = COMMON_KEYS.iter().chain(specific).copied().collect();
        self.check_keys(m, p, &known);
        let location = self.location(&at);
        let account = self.target_account(m, p);
        let labels = match m.get_node("labels") {
            Some(node) => self.labels(node, &join(p, "labels")),
            None => BTreeMap::new(),
        };
        let keep_for = self
            .value(m, "keep_for", p, duration_in(Duration::ZERO, MAX_KEEP_FOR))
            .or(DEFAULT_KEEP_FOR);
        let kind = match name.as_str() {
            "sas_images" => {
                let listing = self.listing(m, p, IMAGE_FILTERS);
                let scanned = self.value(m, "scanned", p, parse_scanned).or(Scanned::Any);
                SourceKind::SasImages { listing, scanned }
            }
            "sas_containers" => SourceKind::SasContainers {
                listing: self.listing(m, p, CONTAINER_FILTERS),
            },
            _ => SourceKind::Kubernetes(self.kubernetes(m, p)),
        };
        Some(DiscoveryConfig {
            account: account?,
            kind,
            labels,
            keep_for,
            location,
        })
    }

    fn listing(&mut self, m: &MarkedMappingNode, p: &str, allowed: &[&str]) -> ListingConfig {
        let refresh = self
            .value(m, "refresh", p, duration_in(MIN_REFRESH, MAX_REFRESH))
            .or(DEFAULT_REFRESH);
        let page_size = self
            .value(
                m,
                "page_size",
                p,
                super::values::integer_in(1, MAX_PAGE_SIZE),
            )
            .or(DEFAULT_PAGE_SIZE);
        let mut filters = Vec::new();
        if let Some(node) = m.get_node("filters") {
            let fp = join(p, "filters");
            if let Field::Set(f, _) = self.mapping(node, &fp) {
                for (key, value) in f.iter() {
                    let name = key.as_str();
                    if !allowed.contains(&name) {
                        self.report(
                            key.span(),
                            format!(
                                "{fp}: unknown filter {name:?} (expected one of: {})",
                                allowed.join(", ")
                            ),
                        );
                        continue;
                    }
                    match self.text(value, &join(&fp, name)) {
                        Field::Set(v, _) if !v.is_empty() => filters.push(Filter {
                            name: criteria_name(name),
                            value: v,
                        }),
                        Field::Set(_, span) => self.report(
                            &span,
                            format!("{fp}.{name}: a filter value must not be empty"),
                        ),
                        Field::Absent => self.report(
                            value.span(),
                            format!("{fp}.{name}: a filter value must not be empty"),
                        ),
                        Field::Invalid => {}
                    }
                }
            }
        }
        ListingConfig {
            refresh,
            page_size,
            filters,
        }
    }

    fn kubernetes(&mut self, m: &MarkedMappingNode, p: &str) -> KubernetesConfig {
        let kubeconfig = self
            .optional(m, "kubeconfig", p, |s| Ok(PathBuf::from(s)))
            .ok();
        let cluster = self
            .value(m, "cluster", p, parse_cluster)
            .or(DEFAULT_CLUSTER.to_owned());
        let mut namespaces = Vec::new();
        if let Some(node) = m.get_node("namespaces") {
            let np = join(p, "namespaces");
            if let Field::Set(items, _) = self.sequence(node, &np) {
                for (i, item) in items.iter().enumerate() {
                    let ip = format!("{np}[{i}]");
                    if let Field::Set(text, span) = self.text(item, &ip) {
                        match parse_namespace(&text) {
                            Ok(ns) if namespaces.contains(&ns) => self
                                .report(&span, format!("{ip}: namespace {ns:?} is listed twice")),
                            Ok(ns) => namespaces.push(ns),
                            Err(why) => self.report(&span, format!("{ip}: {why}")),
                        }
                    }
                }
            }
        }
        let label_selector = self.optional(m, "label_selector", p, parse_selector).ok();
        KubernetesConfig {
            kubeconfig,
            cluster,
            namespaces,
            label_selector,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_names() {
        assert_eq!(criteria_name("cluster_id"), "clusterId");
        assert_eq!(criteria_name("image_repo_namespace"), "imageRepoNamespace");
        assert_eq!(criteria_name("tag"), "tag");
    }

    #[test]
    fn namespaces_and_selectors() {
        assert!(parse_namespace("prod-2").is_ok());
        for bad in ["", "Prod", "-a", "a-", "a_b", &"x".repeat(64)] {
            assert!(parse_namespace(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_selector(" app=web ").as_deref(), Ok("app=web"));
        assert!(parse_selector("env in (a,b").is_err());
        assert!(parse_selector("a,,b").is_err());
    }
}
