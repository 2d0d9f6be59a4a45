//! Stamps the source revision into the binaries (`consent_token_build_info`, `kubectl consent
//! version`): `SOURCE_REVISION` when a release build sets it, else git's HEAD, else "unknown" (a
//! build from a source archive).
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_REVISION");
    let revision = std::env::var("SOURCE_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(git_head)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CONSENT_TOKEN_REVISION={revision}");
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// HEAD's commit, and the files whose change means a new one (HEAD, the branch it names, packed
/// refs): only those that exist, since a missing one would rerun this script on every build.
fn git_head() -> Option<String> {
    let git_dir = git(&["rev-parse", "--absolute-git-dir"])?;
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for file in watched {
        let path = Path::new(&git_dir).join(file);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    // Not marked "-dirty" for uncommitted changes: this script does not rerun when a file is
    // edited, so such a mark would go stale.
    git(&["rev-parse", "--short=12", "HEAD"])
}
