//! Reading a marked YAML node tree, collecting every problem with its location.

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode, MarkedSequenceNode};
use marked_yaml::{LoadError, LoaderOptions, Node, Span};

use super::env::{Env, expand};
use super::problem::{ConfigError, Location, Problem};
use super::types::DEFAULT_ACCOUNT;

/// The sections a config file may have.
pub(super) const TOP_KEYS: &[&str] = &[
    "accounts",
    "sas",
    "credentials",
    "polling",
    "targets",
    "target_files",
    "discovery",
    "state_file",
];

/// The outcome of reading one value, so cross-field checks can skip values already reported.
pub(super) enum Field<T> {
    /// Not written, null, or (for keys read with [`Decoder::optional`]) an empty string.
    Absent,
    /// Written but wrong; the problem is already reported.
    Invalid,
    /// A valid value and where it was written.
    Set(T, Span),
}

impl<T> Field<T> {
    /// The value, or `default` when it is absent or invalid.
    pub(super) fn or(self, default: T) -> T {
        self.ok().unwrap_or(default)
    }

    /// The value, if it is valid.
    pub(super) fn ok(self) -> Option<T> {
        match self {
            Field::Set(v, _) => Some(v),
            _ => None,
        }
    }

    /// The effective value, or `None` when it was invalid (and already reported).
    pub(super) fn resolved(&self, default: T) -> Option<T>
    where
        T: Copy,
    {
        match self {
            Field::Absent => Some(default),
            Field::Invalid => None,
            Field::Set(v, _) => Some(*v),
        }
    }

    /// Where a valid value was written.
    pub(super) fn present(&self) -> Option<Span> {
        match self {
            Field::Set(_, span) => Some(*span),
            _ => None,
        }
    }

    /// Whether the value was written but is wrong (and already reported).
    pub(super) fn invalid(&self) -> bool {
        matches!(self, Field::Invalid)
    }

    /// Whether the operator wrote a value, valid or not.
    pub(super) fn given(&self) -> bool {
        !matches!(self, Field::Absent)
    }
}

/// What the top level of a file must be.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FileKind {
    /// A config file: a mapping of sections.
    Config,
    /// A target file: a list shaped like `targets`.
    Targets,
}

/// Line and column of a span's start, `(0, 0)` for a blank one.
pub(super) fn position(span: &Span) -> (usize, usize) {
    span.start().map_or((0, 0), |m| (m.line(), m.column()))
}

/// Walks one file, collecting every problem instead of stopping at the first.
pub(super) struct Decoder<'a> {
    file: &'a str,
    env: Env<'a>,
    /// Everything found wrong so far.
    pub(super) problems: Vec<Problem>,
    /// Whether the file itself holds a secret, so its permissions matter.
    pub(super) literal_secret: bool,
    /// The configured account names, which a target's `account` must be one of.
    pub(super) accounts: Vec<String>,
}

impl<'a> Decoder<'a> {
    /// A decoder for `file` (only used to label problems), expanding `${VAR}` with `env`.
    pub(super) fn new(file: &'a str, env: Env<'a>) -> Self {
        Decoder {
            file,
            env,
            problems: Vec::new(),
            literal_secret: false,
            accounts: vec![DEFAULT_ACCOUNT.to_owned()],
        }
    }

    /// Where `span` starts in this file.
    pub(super) fn location(&self, span: &Span) -> Location {
        let (line, column) = position(span);
        Location {
            file: self.file.to_owned(),
            line,
            column,
        }
    }

    /// Records one problem at `span`.
    pub(super) fn report(&mut self, span: &Span, message: String) {
        let location = self.location(span);
        self.problems.push(Problem { location, message });
    }

    /// `value` if nothing was reported, else every problem in file order.
    pub(super) fn finish<T>(mut self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            // Stable, so problems found at one spot keep the order they were found in.
            self.problems
                .sort_by_key(|p| (p.location.line, p.location.column));
            Err(ConfigError::Invalid(self.problems))
        }
    }

    /// Parses the YAML; `None` after reporting a syntax problem.
    pub(super) fn load(&mut self, text: &str, kind: FileKind) -> Option<Node> {
        let options = LoaderOptions::default()
            .prevent_coercion(true)
            .error_on_duplicate_keys(true);
        let options = match kind {
            FileKind::Config => options.toplevel_mapping(),
            FileKind::Targets => options.toplevel_sequence(),
        };
        let empty = || match kind {
            FileKind::Config => Node::from(MarkedMappingNode::new_empty(Span::new_blank())),
            FileKind::Targets => Node::from(MarkedSequenceNode::new_empty(Span::new_blank())),
        };
        let (span, message) = match marked_yaml::parse_yaml_with_options(0, text, options) {
            // An empty stream comes back as an empty mapping whatever the requested top level.
            Ok(Node::Mapping(m)) if kind == FileKind::Targets && m.is_empty() => {
                return Some(empty());
            }
            Ok(node) => return Some(node),
            Err(LoadError::TopLevelMustBeMapping(_) | LoadError::TopLevelMustBeSequence(_))
                if is_blank_document(text) =>
            {
                return Some(empty());
            }
            Err(LoadError::TopLevelMustBeMapping(m)) => (
                Span::new_start(m),
                format!(
                    "the top level must be a mapping with keys such as {}",
                    TOP_KEYS.join(", ")
                ),
            ),
            Err(LoadError::TopLevelMustBeSequence(m)) => (
                Span::new_start(m),
                "a target file must hold a YAML list of targets (\"- digest: ...\")".to_owned(),
            ),
            Err(LoadError::UnexpectedAnchor(m)) => (
                Span::new_start(m),
                "YAML anchors and aliases are not supported; write the value out".to_owned(),
            ),
            Err(LoadError::UnexpectedTag(m)) => (
                Span::new_start(m),
                "YAML tags (such as !!str) are not supported; quote the value instead".to_owned(),
            ),
            Err(LoadError::MappingKeyMustBeScalar(m)) => (
                Span::new_start(m),
                "mapping keys must be plain strings".to_owned(),
            ),
            Err(LoadError::ScanError(m, e)) => {
                (Span::new_start(m), format!("invalid YAML: {}", e.info()))
            }
            Err(LoadError::DuplicateKey(dup)) => {
                let first = self.location(dup.prev_key.span());
                (
                    *dup.key.span(),
                    format!(
                        "duplicate key \"{}\" (first at line {})",
                        dup.key.as_str(),
                        first.line
                    ),
                )
            }
        };
        self.report(&span, message);
        None
    }

    /// Reports every key not in `known`, naming the section and the keys it accepts.
    pub(super) fn check_keys(&mut self, m: &MarkedMappingNode, path: &str, known: &[&str]) {
        for key in m.keys() {
            if !known.contains(&key.as_str()) {
                let place = if path.is_empty() {
                    "at the top level".to_owned()
                } else {
                    format!("in {path}")
                };
                self.report(
                    key.span(),
                    format!(
                        "unknown key {:?} {place} (expected one of: {})",
                        key.as_str(),
                        known.join(", ")
                    ),
                );
            }
        }
    }

    /// A section that must be a mapping; `None` when absent, null or (reported) of the wrong kind.
    pub(super) fn section<'n>(
        &mut self,
        root: &'n MarkedMappingNode,
        key: &str,
    ) -> Option<&'n MarkedMappingNode> {
        match self.mapping(root.get_node(key)?, key) {
            Field::Set(m, _) => Some(m),
            _ => None,
        }
    }

    /// A node that must be a mapping; null is `Absent`.
    pub(super) fn mapping<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
    ) -> Field<&'n MarkedMappingNode> {
        match node {
            Node::Mapping(m) => Field::Set(m, *m.span()),
            Node::Scalar(s) if is_null(s) => Field::Absent,
            other => self.wrong_kind(other, path, "a mapping"),
        }
    }

    /// A node that must be a list; null is `Absent`.
    pub(super) fn sequence<'n>(&mut self, node: &'n Node, path: &str) -> Field<&'n [Node]> {
        match node {
            Node::Sequence(s) => Field::Set(s.as_slice(), *s.span()),
            Node::Scalar(s) if is_null(s) => Field::Absent,
            other => self.wrong_kind(other, path, "a list"),
        }
    }

    /// A scalar's text after `${VAR}` expansion.
    pub(super) fn text(&mut self, node: &Node, path: &str) -> Field<String> {
        match node {
            Node::Scalar(s) if is_null(s) => Field::Absent,
            Node::Scalar(s) => match expand(s.as_str(), self.env) {
                Ok(text) => Field::Set(text, *s.span()),
                Err(errors) => {
                    for e in errors {
                        self.report(s.span(), format!("{path}: {e}"));
                    }
                    Field::Invalid
                }
            },
            other => self.wrong_kind(other, path, "a single value"),
        }
    }

    /// The value under `key` in `m`, converted by `parse`, whose `Err` says what was expected.
    pub(super) fn value<T>(
        &mut self,
        m: &MarkedMappingNode,
        key: &str,
        section: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Field<T> {
        let Some(node) = m.get_node(key) else {
            return Field::Absent;
        };
        let path = join(section, key);
        match self.text(node, &path) {
            Field::Set(text, span) => match parse(&text) {
                Ok(v) => Field::Set(v, span),
                Err(why) => {
                    self.report(&span, format!("{path}: {why}"));
                    Field::Invalid
                }
            },
            Field::Absent => Field::Absent,
            Field::Invalid => Field::Invalid,
        }
    }

    /// Like [`Decoder::value`], but an empty string (say `${VAR}` set to "") means "not set".
    pub(super) fn optional<T>(
        &mut self,
        m: &MarkedMappingNode,
        key: &str,
        section: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Field<T> {
        let non_empty = |s: &str| {
            if s.is_empty() {
                Ok(None)
            } else {
                parse(s).map(Some)
            }
        };
        match self.value(m, key, section, non_empty) {
            Field::Set(Some(v), span) => Field::Set(v, span),
            Field::Set(None, _) | Field::Absent => Field::Absent,
            Field::Invalid => Field::Invalid,
        }
    }

    fn wrong_kind<T>(&mut self, node: &Node, path: &str, expected: &str) -> Field<T> {
        let got = match node {
            Node::Scalar(_) => "a single value",
            Node::Mapping(_) => "a mapping",
            Node::Sequence(_) => "a list",
        };
        self.report(
            node.span(),
            format!("{path}: expected {expected}, got {got}"),
        );
        Field::Invalid
    }
}

/// The key node and value of `key` in `m`, for problems that point at the key.
pub(super) fn entry<'n>(
    m: &'n MarkedMappingNode,
    key: &str,
) -> Option<(&'n MarkedScalarNode, &'n Node)> {
    m.iter().find(|(k, _)| k.as_str() == key)
}

/// The dotted path of `key` inside `path`, as problems name it.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// YAML's null: an empty, `~` or `null` plain scalar (quoted ones are strings).
pub(super) fn is_null(s: &MarkedScalarNode) -> bool {
    s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

/// Whether text the loader refused as a top level is really an empty document (comments, `---`, null).
fn is_blank_document(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        let line = line
            .strip_prefix("---")
            .or_else(|| line.strip_prefix("..."))
            .unwrap_or(line)
            .trim_start();
        line.is_empty() || line.starts_with('#') || matches!(line, "~" | "null" | "Null" | "NULL")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_documents() {
        assert!(is_blank_document(""));
        assert!(is_blank_document("# only\n   # comments\n"));
        assert!(is_blank_document("---\n...\n"));
        assert!(is_blank_document("--- # c\n~\n"));
        assert!(!is_blank_document("foo\n"));
        assert!(!is_blank_document("--- foo\n"));
    }
}
