//! The container image and the Kubernetes manifests: the linters of scripts/lint-deploy.sh, one
//! test per step, plus checks that need only the exporter itself (the deploy configs pass
//! `--config.check`, the placeholder credentials file parses, the Docker build context holds every
//! file the build reads).
//!
//! Outside tools follow the project's rule: missing, a test prints a notice and passes, except
//! under CI=true, where it fails. `require_tool` covers the tools that answer `--version`; the
//! script applies the same rule to the rest (kubectl with kustomize v4+, a python with PyYAML).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::require_tool;
use sas_image_scan_exporter::{Source, profiles as profile};
use secrecy::ExposeSecret;

const BIN: &str = env!("CARGO_BIN_EXE_sas-image-scan-exporter");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/lint-deploy.sh STEP` when every tool in `tools` is there; fails on any finding.
fn lint_step(step: &str, tools: &[&str]) {
    // Not short-circuiting: each missing tool gets its notice (or, under CI=true, the failure).
    let missing = tools.iter().filter(|t| !require_tool(t)).count();
    if missing > 0 {
        return;
    }
    let out = Command::new("bash")
        .arg(root().join("scripts/lint-deploy.sh"))
        .arg(step)
        .current_dir(root())
        .output()
        .expect("run scripts/lint-deploy.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Shown with --nocapture, and with the failure.
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "scripts/lint-deploy.sh {step} failed:\n{text}"
    );
}

#[test]
fn dockerfile_passes_hadolint() {
    lint_step("hadolint", &["hadolint"]);
}

#[test]
fn dockerfile_passes_checkov() {
    lint_step("checkov-dockerfile", &["checkov"]);
}

#[test]
fn rendered_manifests_validate() {
    lint_step("validate", &["kubernetes-validate", "promtool"]);
}

#[test]
fn manifests_pass_checkov() {
    lint_step("checkov-manifests", &["checkov"]);
}

#[test]
fn prometheusrule_is_generated_from_alerts() {
    // Needs only bash, sed and diff; tolerates a missing prometheus/alerts.yml (with a notice).
    lint_step("prometheusrule", &[]);
}

fn config_check(config: &Path) {
    let out = Command::new(BIN)
        .args(["--config.check", "--config.file"])
        .arg(config)
        .output()
        .expect("run the exporter");
    assert!(
        out.status.success(),
        "{}: --config.check failed:\n{}{}",
        config.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.starts_with("config OK") && !summary.contains(" 0 targets"),
        "{}: the target file was not loaded: {summary}",
        config.display()
    );
}

/// The configs the pods load, with the target file they glob, pass the exporter's own check, in
/// the layout of the pods' mounts (config/ and targets.d/ side by side).
#[test]
fn deploy_configs_pass_config_check() {
    let kube = root().join("deploy/kubernetes");
    // The base keeps that layout in the repository.
    config_check(&kube.join("base/config/config.yml"));

    // The sharded and discovery overlays' configs, mounted beside the same targets.
    let dir = std::env::temp_dir().join(format!("sas-deploy-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("config")).expect("mkdir");
    std::fs::create_dir_all(dir.join("targets.d")).expect("mkdir");
    std::fs::copy(
        kube.join("overlays/sharded/config.yml"),
        dir.join("config/config.yml"),
    )
    .expect("copy the sharded config");
    std::fs::copy(
        kube.join("base/targets.d/targets.yml"),
        dir.join("targets.d/targets.yml"),
    )
    .expect("copy the targets");
    config_check(&dir.join("config/config.yml"));
    // The discovery overlay's config, in the same place.
    std::fs::copy(
        kube.join("overlays/kubernetes-discovery/config.yml"),
        dir.join("config/config.yml"),
    )
    .expect("copy the discovery config");
    config_check(&dir.join("config/config.yml"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Secret's placeholder is a valid INI credentials file for the default chain (and a
/// placeholder, not a key).
#[test]
fn placeholder_credentials_file_parses() {
    let path = root().join("deploy/kubernetes/base/credentials.ini");
    let source = profile::from_ini(&path, "default")
        .expect("valid INI credentials file")
        .expect("has a [default] section");
    match source {
        Source::Static(provider, creds) => {
            assert_eq!(provider, "credentials_file");
            assert_eq!(creds.access_key_id, "REPLACE_WITH_ACCESS_KEY_ID");
            assert_eq!(
                creds.access_key_secret.expose_secret(),
                "REPLACE_WITH_ACCESS_KEY_SECRET"
            );
        }
        other => panic!("expected access keys, got {other:?}"),
    }
}

/// .dockerignore lets only named paths into the build context. Every file the build reads must be
/// among them, or the image build (which CI does not run) breaks.
#[test]
fn docker_build_context_has_what_the_build_reads() {
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|p| p.trim_end_matches('/'))
        .collect();
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        ".dockerignore should exclude everything by default"
    );
    let inside = |rel: &str| {
        let rel = rel.trim_start_matches("./");
        allowed
            .iter()
            .any(|a| rel == *a || rel.starts_with(&format!("{a}/")))
    };
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "src/main.rs",
        "src/lib.rs",
        // A workspace member: cargo cannot load the workspace without it.
        "crates/sas-simulator/Cargo.toml",
        "crates/sas-simulator/src/lib.rs",
    ] {
        assert!(inside(f), "{f} is not in the Docker build context");
    }

    // Target paths in Cargo.toml: explicit ones, and the inferred files of benches, examples and
    // tests declared by name only (cargo fails on a declared target whose file is missing).
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    // (in a target section, the directory a name-only target's file is inferred in)
    let mut section: Option<Option<&str>> = None;
    let (mut name, mut path): (Option<String>, Option<String>) = (None, None);
    for line in manifest.lines().map(str::trim).chain(["[end]"]) {
        if line.starts_with('[') {
            match (section, path.take(), name.take()) {
                (Some(_), Some(p), _) => {
                    assert!(
                        inside(&p),
                        "Cargo.toml names {p}, outside the build context"
                    )
                }
                (Some(Some(d)), None, Some(n)) => {
                    let p = format!("{d}/{n}.rs");
                    assert!(
                        inside(&p) && root().join(&p).exists(),
                        "Cargo.toml declares {p}, which must exist inside the build context"
                    );
                }
                _ => {}
            }
            section = match line {
                "[[bench]]" => Some(Some("benches")),
                "[[example]]" => Some(Some("examples")),
                "[[test]]" => Some(Some("tests")),
                "[[bin]]" | "[lib]" => Some(None),
                _ => None,
            };
            continue;
        }
        let value = |key: &str| {
            line.strip_prefix(key)
                .map(str::trim_start)
                .and_then(|v| v.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_owned())
        };
        if section.is_some() {
            name = name.or_else(|| value("name"));
            path = path.or_else(|| value("path"));
        }
    }

    // Files the sources embed.
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for mac in ["include_str!(\"", "include_bytes!(\""] {
                for (at, _) in text.match_indices(mac) {
                    let rest = &text[at + mac.len()..];
                    let arg = &rest[..rest.find('"').unwrap_or(0)];
                    let target = path.parent().expect("parent").join(arg);
                    let target = normalize(&target);
                    let rel = target.strip_prefix(root()).unwrap_or_else(|_| {
                        panic!("{}: {arg} is outside the crate", path.display())
                    });
                    assert!(
                        inside(&rel.to_string_lossy()),
                        "{} embeds {}, which .dockerignore keeps out of the build context",
                        path.display(),
                        rel.display()
                    );
                }
            }
        }
    }
}

/// Resolves `.` and `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
