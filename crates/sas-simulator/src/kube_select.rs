//! Label selectors as the Kubernetes API server reads `labelSelector`: comma-separated
//! requirements, each `key`, `!key`, `key=value`, `key==value`, `key!=value`,
//! `key in (a,b)` or `key notin (a,b)`, all of which must hold.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed selector; the empty selector matches every object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Selector(Vec<Requirement>);

impl Selector {
    /// Parses `text`, or says why it is not a selector (the API server answers that with 400).
    pub(crate) fn parse(text: &str) -> Result<Selector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text)? {
            let part = part.trim();
            if part.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(format!("found '', expected: identifier in {text:?}"));
            }
            requirements.push(requirement(part)?);
        }
        Ok(Selector(requirements))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        let get = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::Absent(k) => get(k).is_none(),
            Requirement::In(k, values) => get(k).is_some_and(|v| values.iter().any(|x| x == v)),
            Requirement::NotIn(k, values) => !get(k).is_some_and(|v| values.iter().any(|x| x == v)),
        })
    }
}

/// Splits at the commas outside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced ')' in {text:?}"))?;
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("found '', expected: ')' in {text:?}"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::Absent(key_of(key.trim())?));
    }
    // `!=` before `==` and `=`, so that `a!=b` is not read as the key `a!`.
    for (op, negate) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = part.split_once(op) {
            let key = key_of(key.trim())?;
            let value = value_of(value.trim())?;
            return Ok(if negate {
                Requirement::NotIn(key, vec![value])
            } else {
                Requirement::In(key, vec![value])
            });
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words[..] {
        let rest = rest.trim_start();
        for (op, negate) in [("notin", true), ("in", false)] {
            let Some(set) = rest.strip_prefix(op) else {
                continue;
            };
            let set = set.trim();
            let inner = set
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| format!("expected a parenthesised set after {op} in {part:?}"))?;
            let values = inner
                .split(',')
                .map(|v| value_of(v.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            let key = key_of(key)?;
            return Ok(if negate {
                Requirement::NotIn(key, values)
            } else {
                Requirement::In(key, values)
            });
        }
        return Err(format!("unable to parse requirement: {part:?}"));
    }
    Ok(Requirement::Exists(key_of(part)?))
}

/// A label key: an optional DNS prefix and `/`, then a name of letters, digits, `-`, `_`, `.`.
fn key_of(key: &str) -> Result<String, String> {
    let name = key.rsplit_once('/').map_or(key, |(_, n)| n);
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_owned())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn value_of(value: &str) -> Result<String, String> {
    let ok = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    impl Selector {
        fn matches_labels(&self, labels: &BTreeMap<&str, &str>) -> bool {
            self.matches(&serde_json::json!({"metadata": {"labels": labels}}))
        }
    }

    fn labels<'a>(pairs: &[(&'a str, &'a str)]) -> BTreeMap<&'a str, &'a str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn every_operator() {
        let web = labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("example.com/team", "pay"),
        ]);
        let db = labels(&[("app", "db")]);
        let cases: &[(&str, bool, bool)] = &[
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app!=web", false, true),
            ("tier!=back", true, true),
            ("tier", true, false),
            ("!tier", false, true),
            ("app in (web, cache)", true, false),
            ("app notin (web,cache)", false, true),
            ("app in (db),!tier", false, true),
            (" app = web , tier in (front) ", true, false),
            ("example.com/team=pay", true, false),
        ];
        for &(text, on_web, on_db) in cases {
            let s = Selector::parse(text).unwrap();
            assert_eq!(s.matches_labels(&web), on_web, "{text} on web");
            assert_eq!(s.matches_labels(&db), on_db, "{text} on db");
        }
        let none = serde_json::json!({"metadata": {}});
        assert!(Selector::parse("!app").unwrap().matches(&none));
        assert!(!Selector::parse("app").unwrap().matches(&none));
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for bad in [
            "app in (a",
            "a,,b",
            "app in a",
            "a b",
            "app=(x)",
            ")",
            "=x",
            "a=b c",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }
}
