//! Shared support for integration tests: a real control plane (etcd, kube-apiserver,
//! kube-controller-manager) per test binary, a namespace per test, and clients that act as
//! a given ServiceAccount.
//!
//! The control plane is `scripts/control-plane up`, started on first use. Its stdin is a pipe
//! held by this process, so when the test binary exits for any reason (including a panic or
//! SIGKILL) the pipe closes and the script stops every component and removes its directory.
//! Set `CONSENT_TEST_KUBECONFIG` to run against an already running control plane instead.
#![allow(dead_code)]
// each test binary uses a different part of this module
// Test support: a failed setup step is a failed test, so it may panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod chart;
pub mod connect_proxy;
pub mod faults;
pub mod node;
pub mod operator;
pub mod proxy;
pub mod registry;
pub mod secrecy;
pub mod slow_admission;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct ControlPlane {
    kubeconfig: PathBuf,
    // Never dropped: the pipe to its stdin closes when this process exits, which stops it.
    process: Option<Mutex<Started>>,
}

struct Started {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();

/// Set before the control plane starts (by `node::node`): pods get ServiceAccount tokens.
static SERVICE_ACCOUNT_ADMISSION: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn start_control_plane() -> ControlPlane {
    if let Ok(path) = std::env::var("CONSENT_TEST_KUBECONFIG") {
        return ControlPlane { kubeconfig: path.into(), process: None };
    }
    let mut command = Command::new(repo_root().join("scripts/control-plane"));
    command.arg("up");
    if SERVICE_ACCOUNT_ADMISSION.load(std::sync::atomic::Ordering::SeqCst) {
        command.arg("--service-accounts");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start scripts/control-plane up");
    let mut stdout = BufReader::new(child.stdout.take().expect("control-plane stdout"));
    let stdin = child.stdin.take().expect("control-plane stdin");
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read control-plane output");
    let kubeconfig = line
        .strip_prefix("ready ")
        .map(|p| PathBuf::from(p.trim()))
        .unwrap_or_else(|| panic!("control plane did not start (said {line:?}); see its log above"));
    ControlPlane { kubeconfig, process: Some(Mutex::new(Started { _child: child, stdin, stdout })) }
}

/// A fault in this test binary's own control plane: `stop` or `start` of `etcd` or
/// `kube-apiserver` (SIGKILL; started again on the same port with the same data, `start
/// kube-apiserver` returning once it is ready). Blocks until done.
pub fn control_plane_fault(verb: &str, component: &str) {
    let plane = CONTROL_PLANE.get_or_init(start_control_plane);
    let process =
        plane.process.as_ref().expect("faults need the test binary's own control plane (not CONSENT_TEST_KUBECONFIG)");
    let mut started = process.lock().unwrap();
    writeln!(started.stdin, "{verb} {component}").expect("ask the control plane");
    started.stdin.flush().unwrap();
    let mut line = String::new();
    started.stdout.read_line(&mut line).expect("read the control plane's answer");
    assert_eq!(line.trim(), format!("done {verb} {component}"), "control plane fault");
}

/// Path of the admin kubeconfig of this test binary's control plane, starting it if needed.
pub fn kubeconfig() -> &'static Path {
    &CONTROL_PLANE.get_or_init(start_control_plane).kubeconfig
}

async fn admin_config() -> Config {
    let kubeconfig = Kubeconfig::read_from(kubeconfig()).expect("read kubeconfig");
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("kubeconfig is usable")
}

/// A client with cluster-admin rights. Each test builds its own: a client is bound to the
/// Tokio runtime it was created on, and every `#[tokio::test]` has its own runtime.
pub async fn admin_client() -> Client {
    Client::try_from(admin_config().await).expect("admin client")
}

/// A client that authenticates with a fresh token of the given ServiceAccount (TokenRequest),
/// so it has exactly the permissions RBAC grants that ServiceAccount.
pub async fn client_as(namespace: &str, service_account: &str) -> Client {
    let token = service_account_token(namespace, service_account).await;
    let mut config = admin_config().await;
    config.auth_info = kube::config::AuthInfo { token: Some(token.into()), ..Default::default() };
    Client::try_from(config).expect("service account client")
}

/// Writes a kubeconfig for this control plane that authenticates as the ServiceAccount.
pub async fn kubeconfig_as(namespace: &str, service_account: &str, dir: &Path) -> PathBuf {
    let token = service_account_token(namespace, service_account).await;
    let admin = Kubeconfig::read_from(kubeconfig()).expect("read kubeconfig");
    let cluster = admin.clusters[0].cluster.clone().expect("cluster");
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: sa\n  context: {{cluster: local, user: sa}}\ncurrent-context: sa\n",
        cluster.server.expect("server"),
        cluster.certificate_authority.expect("CA path"),
    );
    let path = dir.join(format!("{service_account}.kubeconfig"));
    std::fs::write(&path, yaml).expect("write kubeconfig");
    path
}

/// Mints a token for a ServiceAccount, creating the ServiceAccount if it does not exist.
pub async fn service_account_token(namespace: &str, service_account: &str) -> String {
    let admin = admin_client().await;
    let accounts: Api<ServiceAccount> = Api::namespaced(admin, namespace);
    let account = ServiceAccount {
        metadata: kube::api::ObjectMeta { name: Some(service_account.into()), ..Default::default() },
        ..Default::default()
    };
    accounts
        .patch(service_account, &PatchParams::apply("consent-tests").force(), &Patch::Apply(&account))
        .await
        .expect("apply service account");
    let request = TokenRequest {
        spec: Some(TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() }),
        ..Default::default()
    };
    let response =
        accounts.create_token_request(service_account, &PostParams::default(), &request).await.expect("TokenRequest");
    response.status.and_then(|s| s.token).expect("TokenRequest returned a token")
}

/// A namespace of its own for one test, named `{prefix}-{random}`.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{:08x}", rand::random::<u32>());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
        ..Default::default()
    };
    namespaces.create(&PostParams::default(), &ns).await.expect("create namespace");
    name
}

/// Deletes a namespace (kube-controller-manager empties and removes it in the background).
pub async fn delete_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(name, &DeleteParams::default()).await;
}

/// Applies the committed CRDs with `kubectl apply --server-side`, as a user would, and waits
/// until the API server serves them.
pub fn install_crds() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let crds = repo_root().join("crds");
        kubectl(&["apply", "--server-side", "--field-manager=consent-tests", "-f", crds.to_str().unwrap()]);
        let wait = [
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/consenttokens.consent.dev",
            "crd/consentproviders.consent.dev",
            "crd/clusterconsentproviders.consent.dev",
        ];
        // `kubectl wait` fails at once ("accessor error: <nil>") when it reads a CRD before the
        // API server has given it any condition: ask again.
        for _ in 0..20 {
            if kubectl_output(&wait).status.success() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        kubectl(&wait);
        // Established comes a moment before the API server serves the new resource.
        for _ in 0..100 {
            if kubectl_output(&["get", "consenttokens,consentproviders,clusterconsentproviders", "--all-namespaces"])
                .status
                .success()
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("consenttokens were not served 10s after the CRD was established");
    });
}

/// Runs kubectl against this test binary's control plane; panics with its output on failure.
pub fn kubectl(args: &[&str]) -> String {
    let output = kubectl_output(args);
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs kubectl and returns its whole output, whether it succeeded or not.
pub fn kubectl_output(args: &[&str]) -> std::process::Output {
    Command::new("kubectl").args(args).env("KUBECONFIG", kubeconfig()).output().expect("run kubectl")
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout` saying what
/// was awaited. Time bounds here are generous upper limits, not performance claims.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
