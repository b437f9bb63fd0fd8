//! The `Criteria` and `LogicalExp` parameters of the listing operations: parsed from the JSON
//! array the SDK sends, and matched against rows fuzzily, as the real service may match them: a
//! row matches a criterion when its field contains the value.

use std::borrow::Cow;

use serde_json::Value;

use crate::error::Rejection;

/// One `{"name", "value"}` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Criterion {
    name: String,
    value: String,
}

/// The criteria of one request and how they combine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Criteria {
    items: Vec<Criterion>,
    /// `LogicalExp=OR`: one matching criterion is enough.
    any: bool,
}

impl Criteria {
    /// Parses `Criteria` (absent or blank: none) and `LogicalExp` (absent: `AND`). Each entry's
    /// own `logicalExp` is accepted and not used: the top-level parameter decides, which is what
    /// the SDK's callers rely on.
    pub(crate) fn parse(
        criteria: Option<&str>,
        logical_exp: Option<&str>,
    ) -> Result<Criteria, Rejection> {
        let any = match logical_exp.map(str::trim) {
            None | Some("") => false,
            Some(e) if e.eq_ignore_ascii_case("AND") => false,
            Some(e) if e.eq_ignore_ascii_case("OR") => true,
            Some(_) => return Err(invalid("LogicalExp", "expected AND or OR")),
        };
        let items = match criteria.map(str::trim) {
            None | Some("") => Vec::new(),
            Some(text) => parse_items(text)?,
        };
        Ok(Criteria { items, any })
    }

    /// Whether a row matches; `field` gives the row's value for a Criteria name. A criterion with
    /// an empty value constrains nothing.
    pub(crate) fn matches<'r>(&self, field: impl Fn(&str) -> Option<Cow<'r, str>>) -> bool {
        let one = |c: &Criterion| {
            c.value.is_empty() || field(&c.name).is_some_and(|v| v.contains(c.value.as_str()))
        };
        if self.items.is_empty() {
            true
        } else if self.any {
            self.items.iter().any(one)
        } else {
            self.items.iter().all(one)
        }
    }
}

fn parse_items(text: &str) -> Result<Vec<Criterion>, Rejection> {
    let Ok(Value::Array(entries)) = serde_json::from_str::<Value>(text) else {
        return Err(invalid("Criteria", "expected a JSON array"));
    };
    entries
        .into_iter()
        .map(|entry| {
            let name = entry.get("name").and_then(Value::as_str);
            let value = match entry.get("value") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            match (name, value) {
                (Some(name), Some(value)) if !name.is_empty() => Ok(Criterion {
                    name: name.to_owned(),
                    value,
                }),
                _ => Err(invalid(
                    "Criteria",
                    "each entry needs a string \"name\" and a \"value\"",
                )),
            }
        })
        .collect()
}

/// The service's answer to a parameter it cannot use.
pub(crate) fn invalid(parameter: &str, why: &str) -> Rejection {
    Rejection::new(
        400,
        "InvalidParameter",
        format!("The specified parameter \"{parameter}\" is not valid: {why}."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<Cow<'a, str>> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| Cow::Borrowed(*v))
        }
    }

    fn code(r: Result<Criteria, Rejection>) -> &'static str {
        r.err().map_or("ok", |r| r.code)
    }

    #[test]
    fn criteria_are_and_ed_unless_or_is_asked_and_match_fuzzily() {
        let row = [("repoNamespace", "payments-2"), ("tag", "1.4.2")];
        let both = r#"[{"name":"repoNamespace","value":"payments","logicalExp":"AND"},
            {"name":"tag","value":"1.4"}]"#;
        let and = Criteria::parse(Some(both), None).unwrap_or_default();
        assert!(and.matches(fields(&row)));
        let miss = r#"[{"name":"repoNamespace","value":"payments"},{"name":"tag","value":"2.0"}]"#;
        let and = Criteria::parse(Some(miss), Some("AND")).unwrap_or_default();
        assert!(!and.matches(fields(&row)));
        let or = Criteria::parse(Some(miss), Some("or")).unwrap_or_default();
        assert!(or.matches(fields(&row)));
        let absent = r#"[{"name":"regionId","value":"cn"}]"#;
        assert!(
            !Criteria::parse(Some(absent), None)
                .unwrap_or_default()
                .matches(fields(&row))
        );
        let number = r#"[{"name":"tag","value":4}]"#;
        assert!(
            Criteria::parse(Some(number), None)
                .unwrap_or_default()
                .matches(fields(&row))
        );
        assert_eq!(
            Criteria::parse(Some(" "), None).ok(),
            Some(Criteria::default())
        );
    }

    #[test]
    fn malformed_criteria_are_parameter_errors() {
        for bad in [
            "not json",
            r#"{"name":"tag","value":"x"}"#,
            r#"[{"name":"tag"}]"#,
            r#"[{"value":"x"}]"#,
            r#"[{"name":"","value":"x"}]"#,
            r#"["tag"]"#,
        ] {
            assert_eq!(
                code(Criteria::parse(Some(bad), None)),
                "InvalidParameter",
                "{bad}"
            );
        }
        assert_eq!(code(Criteria::parse(None, Some("XOR"))), "InvalidParameter");
    }
}
