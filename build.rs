//! Records the git revision and compiler version for `--version` and `sas_exporter_build_info`
//! (`SAS_GIT_REVISION`, `SAS_RUSTC_VERSION`). Either is "unknown" rather than failing the build,
//! since builds from a source tarball or without git installed are legitimate.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let git_dir = manifest_dir.join(".git");

    // Without any rerun-if-changed line cargo reruns this script on every change to the
    // package; with them, only when one of the listed paths changes.
    println!("cargo:rerun-if-changed=build.rs");
    // HEAD changes on checkout; refs (loose or packed) change on commit.
    for path in ["HEAD", "refs", "packed-refs"] {
        let path = git_dir.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }

    // Container builds have no .git; the Dockerfile passes the revision in instead.
    println!("cargo:rerun-if-env-changed=SAS_GIT_REVISION");
    let revision = env::var("SAS_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git_revision(&manifest_dir, &git_dir))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SAS_GIT_REVISION={revision}");

    let rustc_version = rustc_version().unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SAS_RUSTC_VERSION={rustc_version}");
}

fn git_revision(manifest_dir: &Path, git_dir: &Path) -> Option<String> {
    // Checked first so a crate copied into some other repository does not report that
    // repository's commit (git would search parent directories).
    if !git_dir.exists() {
        return None;
    }
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(manifest_dir)
        .output()
        .ok()?;
    single_line(output)
}

fn rustc_version() -> Option<String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc).arg("--version").output().ok()?;
    single_line(output)
}

/// The trimmed stdout of a successful command, if it is one non-empty line.
fn single_line(output: std::process::Output) -> Option<String> {
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty() && !text.contains('\n')).then(|| text.to_owned())
}
