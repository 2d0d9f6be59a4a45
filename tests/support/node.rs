//! A real node for this test binary's control plane: `scripts/node up` (containerd, runc,
//! kubelet, kube-scheduler on this machine), started on first use and stopped, with the host
//! changes it made undone, when the test binary exits (its stdin pipe closes).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::Api;

pub struct Node {
    pub name: String,
    pub containerd_socket: PathBuf,
    /// The kubelet's `podLogsDir`: container logs are read here (asking the API server for them
    /// would make it dial the node's interface address; test traffic stays on loopback).
    pub pod_logs: PathBuf,
    _child: Child,
    _stdin: ChildStdin,
}

static NODE: OnceLock<Node> = OnceLock::new();

/// The node, started with a control plane whose pods get ServiceAccount tokens. Must be called
/// before anything else in the test binary starts the control plane.
pub fn node() -> &'static Node {
    NODE.get_or_init(|| {
        super::SERVICE_ACCOUNT_ADMISSION.store(true, Ordering::SeqCst);
        let kubeconfig = super::kubeconfig();
        let mut child = Command::new(super::repo_root().join("scripts/node"))
            .args(["up", "--kubeconfig"])
            .arg(kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scripts/node up");
        let stdin = child.stdin.take().expect("node stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("node stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read scripts/node output");
        let fields: Vec<&str> = line.split_whitespace().collect();
        let ["ready", name, socket, logs] = fields.as_slice() else {
            panic!("the node did not start (said {line:?}); see its log above");
        };
        Node {
            name: name.to_string(),
            containerd_socket: socket.into(),
            pod_logs: logs.into(),
            _child: child,
            _stdin: stdin,
        }
    })
}

/// Prints the last lines of every container of a namespace if the test fails while it is held.
pub struct LogsOnFailure<'a> {
    node: &'a Node,
    namespace: String,
}

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (file, text) in self.node.namespace_logs(&self.namespace) {
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- {} (last 40 lines) ---", file.display());
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files.sort();
    files
}

impl Node {
    /// Every container log file of the pods of a namespace, with its text.
    pub fn namespace_logs(&self, namespace: &str) -> Vec<(PathBuf, String)> {
        let mut logs = Vec::new();
        for pod in std::fs::read_dir(&self.pod_logs).into_iter().flatten().flatten() {
            if pod.file_name().to_string_lossy().starts_with(&format!("{namespace}_")) {
                for file in walk(&pod.path()) {
                    let text = std::fs::read_to_string(&file).unwrap_or_default();
                    logs.push((file, text));
                }
            }
        }
        logs
    }

    /// While held, a failing test prints the namespace's container logs.
    pub fn logs_on_failure(&self, namespace: &str) -> LogsOnFailure<'_> {
        LogsOnFailure { node: self, namespace: namespace.to_string() }
    }

    /// Loads an OCI archive (scripts/image) into the node's containerd as `base_name:TAG`.
    pub fn import_image(&self, archive: &Path, base_name: &str) {
        let ctr = super::chart::control_plane_bin("ctr");
        let output = Command::new(ctr)
            .arg("--address")
            .arg(&self.containerd_socket)
            .args(["-n", "k8s.io", "images", "import", "--base-name", base_name])
            .arg(archive)
            .output()
            .expect("run ctr");
        assert!(output.status.success(), "ctr images import failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Waits until the kubelet has registered the node and reports it Ready.
    pub async fn wait_ready(&self) {
        let nodes: Api<NodeObject> = Api::all(super::admin_client().await);
        super::eventually("the node to be Ready", Duration::from_secs(120), || async {
            let node = nodes.get(&self.name).await.ok()?;
            let ready = node.status?.conditions?.into_iter().find(|c| c.type_ == "Ready")?;
            (ready.status == "True").then_some(())
        })
        .await;
    }

    /// The lines a container wrote so far, each with the time the runtime received it (the CRI
    /// log format), across its restarts: `{namespace}_{pod}_{uid}/{container}/{restart}.log`.
    pub fn container_lines(&self, namespace: &str, pod: &str, container: &str) -> Vec<(jiff::Timestamp, String)> {
        let pod_dir = format!("{namespace}_{pod}_");
        let name = |path: Option<&Path>| path.and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned());
        let mut lines = Vec::new();
        for (file, text) in self.namespace_logs(namespace) {
            let container_dir = file.parent();
            if name(container_dir).as_deref() != Some(container)
                || !name(container_dir.and_then(Path::parent)).is_some_and(|p| p.starts_with(&pod_dir))
            {
                continue;
            }
            // `2026-11-26T13:00:00.123456789Z stdout F message`
            lines.extend(text.lines().filter_map(|line| {
                let mut parts = line.splitn(4, ' ');
                let time = parts.next()?.parse().ok()?;
                Some((time, parts.nth(2)?.to_string()))
            }));
        }
        lines
    }
}
