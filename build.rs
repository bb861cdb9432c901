//! Sets `TOCSIN_GIT_HASH` (read with `option_env!` by `tocsin::GIT_HASH`, printed by
//! `tocsin --version`): `git rev-parse --short=12 HEAD`, or "unknown" without git or `.git`
//! (a source tarball, a Docker build context). A `TOCSIN_GIT_HASH` set in the build's
//! environment wins, so a build without `.git` can still say what it was built from.
//! Dependency-free: one or two short `git` processes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Rebuild when HEAD moves: HEAD itself (a branch switch), the ref it points to (a commit) and
/// packed-refs. Asked of git, so it holds in a worktree, whose HEAD is not `./.git/HEAD`. Only
/// existing paths: cargo reruns the script on every build for a path that does not exist.
fn watch_head() {
    let mut paths: Vec<PathBuf> = Vec::new();
    if let Some(p) = git(&["rev-parse", "--git-path", "HEAD"]) {
        paths.push(p.into());
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", &r])
    {
        paths.push(p.into());
    }
    if let Some(p) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        paths.push(p.into());
    }
    for p in paths.iter().filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TOCSIN_GIT_HASH");
    let hash = match std::env::var("TOCSIN_GIT_HASH") {
        Ok(h) if !h.trim().is_empty() => h.trim().to_string(),
        // only this package's own repository: a tarball unpacked inside another one is "unknown"
        _ if !Path::new(".git").exists() => "unknown".to_string(),
        _ => {
            watch_head();
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
        }
    };
    println!("cargo:rustc-env=TOCSIN_GIT_HASH={hash}");
}
