//! Helm, as the project builds it, for tests of the chart.

use std::process::Command;

pub const CHART: &str = "charts/consent-token-operator";
pub const RELEASE: &str = "cto";
/// `cto.fullname` for release `cto`: release name plus chart name.
pub const FULLNAME: &str = "cto-consent-token-operator";

/// The path of a program `scripts/control-plane build` made (`helm`, `ctr`, ...).
pub fn control_plane_bin(name: &str) -> std::path::PathBuf {
    let script = super::repo_root().join("scripts/control-plane");
    let path = Command::new(script).args(["bin", name]).output().expect("find a built program");
    String::from_utf8(path.stdout).unwrap().trim().into()
}

/// Helm from the repository's root, where the chart's path is relative to.
fn helm_command(args: &[&str]) -> Command {
    let mut command = Command::new(control_plane_bin("helm"));
    command.args(args).current_dir(super::repo_root());
    command
}

pub fn helm_output(args: &[&str]) -> std::process::Output {
    helm_command(args).output().expect("run helm")
}

/// Runs helm against this test binary's control plane (install, upgrade); panics on failure.
pub fn helm_in_cluster(args: &[&str]) -> String {
    let output = helm_command(args).env("KUBECONFIG", super::kubeconfig()).output().expect("run helm");
    assert!(
        output.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub fn helm(args: &[&str]) -> String {
    let output = helm_output(args);
    assert!(output.status.success(), "helm {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The chart rendered for release `cto` in `namespace` with `--set` values.
pub fn render(namespace: &str, sets: &[&str]) -> String {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", namespace, "--kube-version", "1.37.2"];
    for set in sets {
        args.extend(["--set", set]);
    }
    helm(&args)
}

/// Applies a manifest with kubectl; `dry_run` asks the API server to validate without storing.
pub fn apply(manifest: &str, dry_run: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, manifest).unwrap();
    let mut args = vec!["apply", "--server-side", "--field-manager=consent-tests", "-f", path.to_str().unwrap()];
    if dry_run {
        args.push("--dry-run=server");
    }
    super::kubectl(&args);
}

/// The chart's RBAC (and the rest of the release) applied for one watched `namespace`, and a
/// kubeconfig in `dir` as the release's ServiceAccount: an operator run with it has exactly the
/// chart's permissions.
pub async fn as_chart_in(namespace: &str, dir: &std::path::Path) -> std::path::PathBuf {
    apply(&render(namespace, &[&format!("watchNamespaces={{{namespace}}}")]), false);
    super::kubeconfig_as(namespace, FULLNAME, dir).await
}

/// Only the documents of `manifest` of these kinds (for example the RBAC of a release, without
/// its Deployment, where no node runs pods).
pub fn only_kinds(manifest: &str, kinds: &[&str]) -> String {
    manifest
        .split("\n---")
        .filter(|doc| kinds.iter().any(|kind| doc.contains(&format!("\nkind: {kind}\n"))))
        .collect::<Vec<_>>()
        .join("\n---")
}

/// The one document of `manifest` of this kind and name.
pub fn document(manifest: &str, kind: &str, name: &str) -> String {
    let found: Vec<&str> = manifest
        .split("\n---")
        .filter(|doc| doc.contains(&format!("\nkind: {kind}\n")) && doc.contains(&format!("\n  name: {name}\n")))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} named {name} in the rendered chart");
    found[0].to_owned()
}

/// `helm template` that is expected to fail; returns what helm said.
pub fn render_refused(sets: &[&str]) -> String {
    let mut args = vec!["template", RELEASE, CHART, "--kube-version", "1.37.2"];
    for set in sets {
        args.extend(["--set", set]);
    }
    let output = helm_output(&args);
    assert!(!output.status.success(), "helm accepted {sets:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}
