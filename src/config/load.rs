//! The entry points: a config file or text, and target files.

use std::path::{Path, PathBuf};

use marked_yaml::Node;

use super::decoder::{Decoder, FileKind};
use super::problem::ConfigError;
use super::types::{Config, Target};

impl Config {
    /// Reads and validates a config file, expanding `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let env = |name: &str| std::env::var(name).ok();
        let parsed = parse_config(&text, &shown, &env)?;
        if parsed.literal_secret {
            crate::fsperm::warn_if_readable(
                path,
                "the config file holds a literal access_key_secret and is readable by group or others; use access_key_secret_file or restrict its permissions",
            );
        }
        Ok(parsed.config)
    }

    /// Validates config text; `file` only labels problems and `env` makes expansion testable.
    pub fn parse(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        parse_config(text, file, env).map(|parsed| parsed.config)
    }
}

/// The directory relative `target_files` globs are read from: the config file's own.
pub fn config_dir(config_path: &Path) -> PathBuf {
    config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// Parses a target file (a YAML list shaped like `targets`), de-duplicated within the file. Each
/// entry's `account` must be one of `accounts` (and may be left out when there is only one).
pub fn parse_targets(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    accounts: &[String],
) -> Result<Vec<Target>, ConfigError> {
    let mut d = Decoder::new(file, env);
    d.accounts = accounts.to_vec();
    let targets = match d.load(text, FileKind::Targets) {
        Some(root) => {
            let targets = d.targets(&root, "targets");
            d.dedupe(targets)
        }
        None => Vec::new(),
    };
    d.finish(targets)
}

/// A valid config, and whether its file holds a secret in clear.
struct Parsed {
    config: Config,
    literal_secret: bool,
}

fn parse_config(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, ConfigError> {
    let mut d = Decoder::new(file, env);
    let config = match d.load(text, FileKind::Config) {
        Some(Node::Mapping(root)) => d.config(&root),
        // The loader guarantees a mapping here; anything else was already reported.
        _ => Config::default(),
    };
    let literal_secret = d.literal_secret;
    d.finish(Parsed {
        config,
        literal_secret,
    })
}
