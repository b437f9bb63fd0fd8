//! The `discovery` section: the sources that find digests to watch, each validated with its
//! location.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use marked_yaml::Node;
use marked_yaml::types::MarkedMappingNode;

use super::decoder::{Decoder, Field, join};
use super::sources::{
    CONTAINER_FILTERS, DEFAULT_CLUSTER, DEFAULT_KEEP_FOR, DEFAULT_PAGE_SIZE, DEFAULT_REFRESH,
    DiscoveryConfig, Filter, IMAGE_FILTERS, KubernetesConfig, ListingConfig, MAX_KEEP_FOR,
    MAX_PAGE_SIZE, MAX_REFRESH, MIN_REFRESH, Scanned, SourceKind, criteria_name,
};
use super::values::duration_in;

/// What keys a source of each kind accepts.
const COMMON_KEYS: &[&str] = &["source", "account", "labels", "keep_for"];
const LISTING_KEYS: &[&str] = &["refresh", "page_size", "filters"];
const KUBERNETES_KEYS: &[&str] = &["kubeconfig", "cluster", "namespaces", "label_selector"];

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
