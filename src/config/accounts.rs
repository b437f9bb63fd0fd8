//! The `accounts` section (each account's name, `sas`, `credentials` and request limits) and the
//! `account` key that ties a target to one of them.

use std::collections::HashMap;

use marked_yaml::types::MarkedMappingNode;
use marked_yaml::{Node, Span};

use super::decoder::{Decoder, Field, entry, join};
use super::problem::Location;
use super::types::{AccountConfig, PollingConfig};
use super::values::{integer_in, parse_rate};

const ACCOUNT_KEYS: &[&str] = &[
    "name",
    "sas",
    "credentials",
    "requests_per_second",
    "concurrency",
];

/// The longest account name, so the label stays short and the rule fits in one message.
const MAX_NAME_LEN: usize = 63;

/// An account name is a label value that also appears in logs and file names: lower-case
/// letters, digits, `_` and `-`, starting with a letter or digit.
pub(super) fn parse_account_name(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok && s.len() <= MAX_NAME_LEN {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "expected an account name matching [a-z0-9][a-z0-9_-]{{0,62}}, got {s:?}"
        ))
    }
}

impl Decoder<'_> {
    /// The `accounts` list; every account gets `polling`'s limits unless it sets its own.
    pub(super) fn accounts(&mut self, node: &Node, polling: &PollingConfig) -> Vec<AccountConfig> {
        let path = "accounts";
        let items = match self.sequence(node, path) {
            Field::Set(items, _) if !items.is_empty() => items,
            Field::Invalid => return Vec::new(),
            _ => {
                self.report(
                    node.span(),
                    "accounts: must list at least one account (or remove it to use the top-level sas and credentials sections)".to_owned(),
                );
                return Vec::new();
            }
        };
        let mut seen: HashMap<String, Location> = HashMap::new();
        let mut accounts = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            if let Some(account) = self.account(item, &p, polling, &mut seen) {
                accounts.push(account);
            }
        }
        accounts
    }

    fn account(
        &mut self,
        node: &Node,
        p: &str,
        polling: &PollingConfig,
        seen: &mut HashMap<String, Location>,
    ) -> Option<AccountConfig> {
        let m = match self.mapping(node, p) {
            Field::Set(m, _) => m,
            Field::Absent => {
                self.report(
                    node.span(),
                    format!("{p}: expected a mapping with a name, got an empty entry"),
                );
                return None;
            }
            Field::Invalid => return None,
        };
        self.check_keys(m, p, ACCOUNT_KEYS);
        let name = match self.value(m, "name", p, parse_account_name) {
            Field::Set(name, at) => {
                let here = self.location(&at);
                match seen.get(&name) {
                    Some(first) => {
                        self.report(
                            &at,
                            format!("{p}.name: duplicate account name {name:?}; it is first defined at {first}"),
                        );
                        None
                    }
                    None => {
                        seen.insert(name.clone(), here);
                        Some(name)
                    }
                }
            }
            Field::Absent => {
                let at = m.keys().next().map_or(*m.span(), |k| *k.span());
                self.report(
                    &at,
                    format!("{p}: name is required (it becomes the account label)"),
                );
                None
            }
            Field::Invalid => None,
        };
        let empty = MarkedMappingNode::new_empty(Span::new_blank());
        let sas_path = join(p, "sas");
        let sas_node = match m.get_node("sas") {
            Some(node) => match self.mapping(node, &sas_path) {
                Field::Set(s, _) => s,
                _ => &empty,
            },
            None => &empty,
        };
        let sas = self.sas(sas_node, &sas_path);
        let credentials = entry(m, "credentials")
            .and_then(|(key, node)| self.credentials(key.span(), node, &join(p, "credentials")));
        let requests_per_second = self
            .value(m, "requests_per_second", p, parse_rate)
            .or(polling.requests_per_second);
        let concurrency = self
            .value(m, "concurrency", p, integer_in(1usize, 1024))
            .or(polling.concurrency);
        Some(AccountConfig {
            name: name?,
            sas,
            credentials,
            requests_per_second,
            concurrency,
        })
    }

    /// A target's `account`: required with several accounts, and one of those configured.
    pub(super) fn target_account(&mut self, m: &MarkedMappingNode, path: &str) -> Option<String> {
        match self.value(m, "account", path, |s| Ok(s.to_owned())) {
            Field::Set(name, at) => {
                if self.accounts.contains(&name) {
                    Some(name)
                } else {
                    self.report(
                        &at,
                        format!(
                            "{path}.account: unknown account {name:?} (configured: {})",
                            self.accounts.join(", ")
                        ),
                    );
                    None
                }
            }
            Field::Absent => match self.accounts.as_slice() {
                [only] => Some(only.clone()),
                several => {
                    let at = m.keys().next().map_or(*m.span(), |k| *k.span());
                    self.report(
                        &at,
                        format!(
                            "{path}: account is required when several accounts are configured ({})",
                            several.join(", ")
                        ),
                    );
                    None
                }
            },
            Field::Invalid => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        for ok in ["prod", "a", "0", "intl-2", "b_u", &"x".repeat(63)] {
            assert_eq!(parse_account_name(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in ["", "Prod", "-a", "_a", "a.b", "a b", "ü", &"x".repeat(64)] {
            assert!(parse_account_name(bad).is_err(), "{bad:?}");
        }
    }
}
