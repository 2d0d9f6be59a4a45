//! The promise to users ends at a running pod that mounts the target Secret: here, on a real node
//! (scripts/node: containerd, runc, kubelet, kube-scheduler), the chart runs the project's own
//! image (scripts/image), and workload pods read the token from their mounted files.
//!
//! It starts where a user starts: the README's quick start is run as written (hosts pointed at
//! the fake provider), then `deploy/examples/` is applied with the operator in its own namespace,
//! the example pod reads its mounted token, and the invalid example is refused with the message
//! its comment quotes.
//!
//! Two replicas on one node with `hostNetwork` cannot share a port, so they are two releases of
//! the chart with one Lease (`lease.name`), each with its own `metrics.port`: the same two pods,
//! probes, leader election and handover as one release with `replicaCount: 2` on two nodes.
//!
//! A second test installs the way a release is installed (issue 32): the release's artifacts
//! (`make release-build`) published to a registry on loopback with TLS, signed and verified, and
//! the chart installed from that registry with the node pulling the image by digest. The node
//! holds one installation at a time: each test takes its turn (`NODE_TURN`) and uninstalls what
//! it installed, CRDs included.
//!
//! The figures (time from Secret write to file, least lifetime left in a mounted file, handover)
//! are written to stderr past the test harness's capture, so `make test` shows them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use consent_token_operator::api::crd::ConsentToken;
use fake_provider::{Endpoint, FakeProvider};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use sha2::{Digest, Sha256};
use support::chart::{CHART, helm_in_cluster};
use support::operator::free_port;
use support::{admin_client, eventually, kubectl, node, repo_root};
use tokio::sync::Mutex;

/// MX / FDX tokens live five minutes; the test watches at least two lifetimes.
const LIFETIME: u64 = 300;
/// Built by `make image` (scripts/image operator).
const IMAGE: &str = "target/image/consent-token-operator.tar";
/// The chart's default `lease.duration`: a handover must take no longer.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const NAME: &str = "consent-token-operator";
/// Where the README installs the chart, and its release name there.
const OPERATOR_NS: &str = "consent-token-operator";
const RELEASE_A: &str = "consent-token-operator";
/// The second release, in the same namespace, with the same Lease.
const RELEASE_B: &str = "b";
/// The release's artifacts for linux/amd64, built by `make test` (`make release-build`).
const RELEASE_ARTIFACTS: &str = "target/release-test";
/// Where the release test installs the chart from the registry.
const RELEASE_NS: &str = "consent-release";

/// One installation on the node at a time: both tests' operators watch every namespace and
/// install the CRDs.
static NODE_TURN: Mutex<()> = Mutex::const_new(());

/// Every version of the watched target Secrets: when it was seen, fingerprint, expiry.
#[derive(Default)]
struct SecretHistory {
    versions: HashMap<String, Vec<(Timestamp, String, Timestamp)>>,
}

/// What `sha256sum /token/token | cut -c1-16` prints in the workload pods.
fn fingerprint(token: &[u8]) -> String {
    Sha256::digest(token).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn expiry(token: &str) -> Timestamp {
    let exp = support::operator::claims(token)["exp"].as_i64().expect("exp claim");
    Timestamp::from_second(exp).expect("exp in range")
}

fn report(line: &str) {
    // Past the harness's capture of print!/eprint!: figures belong in make test's output.
    let _ = writeln!(std::io::stderr().lock(), "[node] {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_pods_on_a_real_node_keep_every_mounted_token_valid_through_handover_and_upgrade() {
    let image = repo_root().join(IMAGE);
    assert!(image.exists(), "{IMAGE} is missing: `make image` builds it (scripts/image operator {IMAGE})");
    let _turn = NODE_TURN.lock().await;
    let node = node::node();
    node.import_image(&image, "localhost/consent-token-operator");
    node.wait_ready().await;
    let client = admin_client().await;
    // The operator in its own namespace, as the README installs it; the examples in a workload
    // namespace; the quick start in the kubeconfig's namespace, `default`.
    let ns = support::namespace(&client, "node").await;
    let namespaces = [OPERATOR_NS, ns.as_str(), "default", "team-web"];
    let _logs_on_failure = namespaces.map(|n| node.logs_on_failure(n));

    // The fake provider on the host, as the demo runs it; pods reach it on 127.0.0.1. What it
    // issues and the examples' secrets and customer ids are scanned for in the pods' logs.
    support::secrecy::start_recording();
    for secret in ["demo-mx-secret", "demo-onetrust-secret", "fN7SsIMfJvJJcNjKBmB6Kg", "Qm9iLWN1c3RvbWVyLTQy"] {
        support::secrecy::remember(secret);
    }
    let fake = FakeProvider::start("127.0.0.1:0".parse().unwrap()).await.expect("fake provider");
    fake.set_fdx_lifetime(LIFETIME);
    fake.add_fdx_client("demo-mx-client", "demo-mx-secret");
    fake.add_onetrust_client("demo-onetrust-client", "demo-onetrust-secret");
    let port = fake.addr().port();
    // What the node needs beyond the README's commands: the provider's test CA, in the
    // namespace the quick start installs into (its `--create-namespace` then finds it).
    kubectl(&["create", "namespace", OPERATOR_NS]);
    let ca: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "fake-provider-ca"}, "data": {"ca.pem": fake.ca_pem()}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), OPERATOR_NS)
        .create(&PostParams::default(), &ca)
        .await
        .expect("CA ConfigMap");

    // The README's quick start, as written: the chart installed as release RELEASE_A, a marked
    // credentials Secret, one ConsentToken, the token-reader pod.
    let api_port = api_server_port();
    let said = run_quick_start(node, port, &api_port);
    report("the README's quick start ran as written (hosts pointed at the fake provider)");
    token_reader_reads_a_valid_token(node, "default", "the quick start's token-reader", Duration::from_secs(60)).await;
    assert!(said.contains("expires at"), "`kubectl logs token-reader` in the quick start printed the expiry:\n{said}");

    // A second release sharing the Lease: the same two pods, probes and handover as one release
    // with `replicaCount: 2` on two nodes.
    install(OPERATOR_NS, RELEASE_B, free_port(), &api_port, port);
    let pods = operator_pods(&client).await;
    assert_eq!(pods.len(), 2, "one pod per release: {pods:?}");
    let leader = eventually("one replica to lead", Duration::from_secs(60), || async {
        let holder = lease_holder(&client).await?;
        pods.contains(&holder).then_some(holder)
    })
    .await;
    report(&format!("both replicas Ready from the image localhost/{NAME}:dev; {leader} leads"));

    // The examples, where users put them (the operator in its own namespace), pointed at the fake
    // provider exactly as `make demo` points them.
    apply_examples(&ns, port);
    let tokens: Api<ConsentToken> = Api::all(client.clone());
    let ready = eventually("every example ConsentToken to be Ready", Duration::from_secs(120), || async {
        let list = tokens.list(&ListParams::default()).await.ok()?.items;
        let is_ready = |t: &ConsentToken| {
            t.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        // The quick start's, and the examples' four (MX twice, OneTrust, the cluster provider's).
        (list.len() >= 5 && list.iter().all(is_ready)).then_some(list.len())
    })
    .await;
    report(&format!(
        "{ready} ConsentTokens Ready (the quick start's; the examples' MX, OneTrust, ClusterConsentProvider's)"
    ));
    token_reader_reads_a_valid_token(node, &ns, "deploy/examples/token-reader-pod.yaml", Duration::from_secs(120))
        .await;
    check_invalid_example_refused(&ns);

    // Every version of the two MX targets, as it is written.
    let history = std::sync::Arc::new(Mutex::new(SecretHistory::default()));
    let sampler = tokio::spawn(sample_secrets(client.clone(), ns.clone(), history.clone()));

    // Workload pods: two mount customer-alice (a volume, and a subPath of it), one customer-bob.
    for (pod, secret, sub_path) in [
        ("alice-volume", "customer-alice", false),
        ("alice-subpath", "customer-alice", true),
        ("bob-volume", "customer-bob", false),
    ] {
        create_reader(&client, &ns, pod, secret, sub_path).await;
    }
    let started = eventually("the workload pods to read their files", Duration::from_secs(120), || async {
        let all = ["alice-volume", "alice-subpath", "bob-volume"];
        all.iter().all(|pod| !node.container_lines(&ns, pod, "reader").is_empty()).then(Timestamp::now)
    })
    .await;

    // The leader goes (as on a node drain): the standby leads within the Lease's duration.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let deleted = Timestamp::now();
    Api::<Pod>::namespaced(client.clone(), OPERATOR_NS)
        .delete(&leader, &DeleteParams::default())
        .await
        .expect("delete leader");
    // The standby, or the leader's replacement if it is quicker (the leader releases the Lease).
    let new_leader = eventually("another replica to lead", Duration::from_secs(60), || async {
        let holder = lease_holder(&client).await?;
        (!holder.is_empty() && holder != leader).then_some(holder)
    })
    .await;
    let handover = Timestamp::now().duration_since(deleted);
    report(&format!("handover: {new_leader} led {:.1} s after {leader} was deleted", handover.as_secs_f64()));
    assert!(handover <= SignedDuration::try_from(LEASE_DURATION).unwrap(), "handover took {handover:?}");
    wait_for_two_ready_pods(&client).await;

    // A changed value rolls each release's pod in turn, the leading one first: the other
    // release's pod leads meanwhile, and the tokens keep being renewed.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let leading_release = if new_leader.starts_with(&format!("{RELEASE_B}-")) { RELEASE_B } else { RELEASE_A };
    let other_release = if leading_release == RELEASE_A { RELEASE_B } else { RELEASE_A };
    for release in [leading_release, other_release] {
        let before = operator_pods(&client).await;
        helm_in_cluster(&[
            "upgrade",
            release,
            CHART,
            "--namespace",
            OPERATOR_NS,
            "--reuse-values",
            "--set",
            "log.level=debug",
            "--wait",
            "--timeout",
            "5m",
        ]);
        let after = wait_for_two_ready_pods(&client).await;
        let rolled: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
        assert_eq!(rolled.len(), 1, "helm upgrade of {release} replaced its pod: before {before:?}, after {after:?}");
        assert!(rolled[0].starts_with(&format!("{release}-")), "the upgraded release's pod rolled: {rolled:?}");
        let holder = lease_holder(&client).await.unwrap_or_default();
        report(&format!("helm upgrade of release {release} rolled its pod to {}; {holder} leads", rolled[0]));
    }

    // Two lifetimes of the tokens, and a minute more for the last one to reach the files.
    let end = started + SignedDuration::from_secs(2 * LIFETIME as i64 + 60);
    while Timestamp::now() < end {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    sampler.abort();
    let history = history.lock().await;

    let alice = &history.versions["customer-alice"];
    let bob = &history.versions["customer-bob"];
    for (name, versions) in [("customer-alice", alice), ("customer-bob", bob)] {
        // The Secret itself never held an expired token, through the handover and the upgrade.
        for pair in versions.windows(2) {
            assert!(pair[1].0 < pair[0].2, "{name} held a token past its expiry until {}", pair[1].0);
        }
        assert!(versions.len() >= 3, "{name} was renewed at least twice in two lifetimes: {} versions", versions.len());
    }
    let volume = mounted_view(&node.container_lines(&ns, "alice-volume", "reader"), alice, "alice-volume");
    let bob_view = mounted_view(&node.container_lines(&ns, "bob-volume", "reader"), bob, "bob-volume");
    for view in [&volume, &bob_view] {
        report(&view.summary());
        assert!(view.least_left > SignedDuration::ZERO, "{}: a mounted token was read expired", view.pod);
        assert!(view.updates.len() >= 2, "{}: the file followed at least two renewals", view.pod);
    }

    // subPath: the documented difference. The file keeps the token of the pod's start, which
    // then expires in the pod.
    let sub_lines = node.container_lines(&ns, "alice-subpath", "reader");
    let seen: std::collections::BTreeSet<&str> = sub_lines.iter().map(|(_, fp)| fp.as_str()).collect();
    assert_eq!(seen.len(), 1, "a subPath mount never follows the Secret: {seen:?}");
    let first = alice.iter().find(|v| seen.contains(v.1.as_str())).expect("the subPath token was one the Secret held");
    let last_read = sub_lines.last().expect("lines").0;
    assert!(last_read > first.2, "the subPath file held its first token past its expiry");
    report(&format!(
        "subPath mount: never updated; its token expired {:.0} s before the test's last read of it",
        last_read.duration_since(first.2).as_secs_f64()
    ));

    // No replica ever failed a liveness probe or restarted; readiness failed only before a pod
    // was first Ready (while its watches synced).
    check_probes(&client).await;
    assert!(fake.requests(Endpoint::FdxToken) >= 6, "the MX tokens were renewed from the pods");

    // Nothing secret in what the pods wrote (the operators log at debug after the upgrade).
    let needles = support::secrecy::needles();
    let mut findings = Vec::new();
    for (file, text) in namespaces.iter().flat_map(|n| node.namespace_logs(n)) {
        findings.extend(support::secrecy::findings(&file.display().to_string(), &text, &needles));
    }
    support::secrecy::assert_none(&findings);
    uninstall(&[(OPERATOR_NS, RELEASE_A), (OPERATOR_NS, RELEASE_B)]);
}

/// The takeover of docs/guides/migrate.md on the real node: a Secret the old tool wrote, mounted
/// by a pod that reads it every 100 ms, offered by its owner to a ConsentToken. The operator runs
/// on the host (what is under test is the kubelet's view of one write, not the chart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_secret_is_taken_over_without_its_pod_ever_reading_a_missing_or_empty_token() {
    let _turn = NODE_TURN.lock().await;
    let node = node::node();
    node.wait_ready().await;
    let env = support::operator::TestEnv::start("node-adopt").await;
    let ns = env.namespace.clone();
    let _logs_on_failure = node.logs_on_failure(&ns);
    let client = env.client.clone();

    // The old tool's Secret (a CronJob's), and a pod reading it.
    let old_token = "eyJhbGciOiJIUzI1NiJ9.eyJvbGQiOiJjcm9uam9iIn0.b2xkLWNyb25qb2Itc2lnbmF0dXJl";
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "payments-consent"},
        "stringData": {"token": old_token, "endpoint": "https://consent.bank.example/receipts"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.unwrap();
    // Ten reads a second; a missing or empty file is said, not skipped.
    let script = "B=/bin/busybox; while :; do if [ -s /token/token ]; then $B sha256sum /token/token | $B cut -c1-16; \
                  else echo MISSING-OR-EMPTY; fi; $B usleep 100000; done";
    let mount = serde_json::json!({"name": "token", "mountPath": "/token", "readOnly": true});
    create_pod_reading(&client, &ns, "payments-app", "payments-consent", script, mount).await;
    let old = fingerprint(old_token.as_bytes());
    eventually("the pod to read the old tool's token", Duration::from_secs(120), || async {
        node.container_lines(&ns, "payments-app", "reader").iter().any(|(_, fp)| *fp == old).then_some(())
    })
    .await;

    // The ConsentToken alone may not take it; offered by the Secret's owner, it does.
    env.fake.add_fdx_client("mx-client", "mx-secret-value");
    env.put_secret("mx-credentials", &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")]).await;
    env.create_token(
        "payments",
        serde_json::json!({"fdx": {"baseUrl": env.fake.base_url(), "customerId": "node-adopt-customer",
            "credentialsSecretRef": {"name": "mx-credentials"}}, "target": {"secretName": "payments-consent"}}),
    )
    .await;
    env.wait_for_ready("payments", "False", "TargetConflict").await;
    let offered = Timestamp::now();
    kubectl(&["annotate", "secret", "payments-consent", "-n", &ns, "consent.dev/adopt-by=payments"]);
    env.wait_for_ready("payments", "True", "TokenValid").await;
    let new_token = env.token_in_secret("payments-consent", "token").await.expect("the new token");
    let new = fingerprint(new_token.as_bytes());
    // Until the pod has read the new token for two seconds (20 reads): it stays.
    let seen = eventually("the pod to read the new token", Duration::from_secs(180), || async {
        let lines = node.container_lines(&ns, "payments-app", "reader");
        let reads: Vec<Timestamp> = lines.iter().filter(|(_, fp)| *fp == new).map(|(at, _)| *at).collect();
        (reads.len() >= 20).then(|| reads[0])
    })
    .await;

    let lines = node.container_lines(&ns, "payments-app", "reader");
    let other: Vec<&(Timestamp, String)> = lines.iter().filter(|(_, fp)| *fp != old && *fp != new).collect();
    assert!(other.is_empty(), "the pod read something else than the two tokens: {:?}", &other[..other.len().min(5)]);
    let old_reads = lines.iter().filter(|(_, fp)| *fp == old).count();
    let new_reads = lines.iter().filter(|(_, fp)| *fp == new).count();
    report(&format!(
        "takeover on the node: {} reads at 100 ms, {old_reads} of the old token, {new_reads} of the new, none missing \
         or empty; the pod read the new token {:.1} s after the owner's offer",
        lines.len(),
        seen.duration_since(offered).as_secs_f64()
    ));
    Api::<Pod>::namespaced(client, &ns).delete("payments-app", &DeleteParams::default()).await.unwrap();
    // The operator stops (and its secrecy scan runs) before the CRDs go, as the next test expects.
    drop(env);
    uninstall(&[]);
}

/// Leaves the node as the next test expects it: no release, no CRDs (and so no ConsentTokens).
fn uninstall(releases: &[(&str, &str)]) {
    for (ns, release) in releases {
        helm_in_cluster(&["uninstall", release, "--namespace", ns, "--wait", "--timeout", "2m"]);
    }
    // `crds.keep`: helm leaves them.
    kubectl(&[
        "delete",
        "crd",
        "consenttokens.consent.dev",
        "consentproviders.consent.dev",
        "clusterconsentproviders.consent.dev",
        "--wait",
    ]);
}

struct MountedView {
    pod: &'static str,
    least_left: SignedDuration,
    /// Secret write to file, for each renewal the pod saw.
    updates: Vec<SignedDuration>,
    reads: usize,
}

impl MountedView {
    fn summary(&self) -> String {
        let secs: Vec<String> = self.updates.iter().map(|d| format!("{:.1}", d.as_secs_f64())).collect();
        format!(
            "{}: {} reads; least lifetime left in the file {:.1} s; Secret write to file [{}] s",
            self.pod,
            self.reads,
            self.least_left.as_secs_f64(),
            secs.join(", ")
        )
    }
}

/// Each read of the file against the Secret's versions: how much life the token in the file had
/// left, and how long after each Secret write the file first held the new token.
fn mounted_view(
    lines: &[(Timestamp, String)],
    versions: &[(Timestamp, String, Timestamp)],
    pod: &'static str,
) -> MountedView {
    let expiry_of: HashMap<&str, Timestamp> = versions.iter().map(|(_, fp, exp)| (fp.as_str(), *exp)).collect();
    let mut least_left = SignedDuration::MAX;
    let mut first_read: HashMap<&str, Timestamp> = HashMap::new();
    for (time, fp) in lines {
        let exp = expiry_of.get(fp.as_str()).unwrap_or_else(|| panic!("{pod} read a token the Secret never held"));
        least_left = least_left.min(exp.duration_since(*time));
        first_read.entry(fp.as_str()).or_insert(*time);
    }
    let pod_start = lines.first().map(|l| l.0).unwrap_or_default();
    let updates = versions
        .iter()
        .filter(|(written, _, _)| *written > pod_start)
        .filter_map(|(written, fp, _)| Some(first_read.get(fp.as_str())?.duration_since(*written)))
        .collect();
    MountedView { pod, least_left, updates, reads: lines.len() }
}

async fn sample_secrets(client: Client, ns: String, history: std::sync::Arc<Mutex<SecretHistory>>) {
    use futures::StreamExt;
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    let mut stream = watcher(secrets, watcher::Config::default()).applied_objects().boxed();
    while let Some(Ok(secret)) = stream.next().await {
        let name = secret.metadata.name.clone().unwrap_or_default();
        if name != "customer-alice" && name != "customer-bob" {
            continue;
        }
        let Some(token) = secret.data.as_ref().and_then(|d| d.get("token")) else { continue };
        let fp = fingerprint(&token.0);
        let exp = expiry(&String::from_utf8_lossy(&token.0));
        let mut history = history.lock().await;
        let versions = history.versions.entry(name).or_default();
        if versions.last().map(|v| &v.1) != Some(&fp) {
            versions.push((Timestamp::now(), fp, exp));
        }
    }
}

async fn create_reader(client: &Client, ns: &str, name: &str, secret: &str, sub_path: bool) {
    // busybox from Debian, FROM scratch; one line a second: the fingerprint of the file's token.
    let script = "B=/bin/busybox; while :; do $B sha256sum /token/token | $B cut -c1-16; $B sleep 1; done";
    let mount = if sub_path {
        serde_json::json!({"name": "token", "mountPath": "/token/token", "subPath": "token", "readOnly": true})
    } else {
        serde_json::json!({"name": "token", "mountPath": "/token", "readOnly": true})
    };
    create_pod_reading(client, ns, name, secret, script, mount).await;
}

/// A pod on the node running `script` (busybox) with Secret `secret` mounted as `mount` says.
async fn create_pod_reading(
    client: &Client,
    ns: &str,
    name: &str,
    secret: &str,
    script: &str,
    mount: serde_json::Value,
) {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "hostNetwork": true,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "reader", "image": "localhost/busybox:latest", "imagePullPolicy": "Never",
                "command": ["/bin/busybox", "sh", "-c", script],
                "volumeMounts": [mount],
                "securityContext": {"runAsUser": 65532, "runAsNonRoot": true, "readOnlyRootFilesystem": true,
                                    "allowPrivilegeEscalation": false}
            }],
            "volumes": [{"name": "token", "secret": {"secretName": secret}}]
        }
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), ns).create(&PostParams::default(), &pod).await.expect("create reader pod");
}

/// What the test node needs beyond a chart install's defaults: one replica per release (one
/// node, host ports), the host's network, the API server on loopback, the fake provider's CA,
/// loopback address and port, and an update strategy that frees the port before the new pod starts.
fn node_values(port: u16, api_port: &str, provider_port: u16) -> serde_json::Value {
    serde_json::json!({
        "replicaCount": 1,
        "hostNetwork": true,
        "metrics": {"port": port},
        // No Service IPs on this node: the API server on loopback, as the node reaches it.
        "extraEnv": [{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                     {"name": "KUBERNETES_SERVICE_PORT", "value": api_port}],
        "extraCABundle": {"configMapName": "fake-provider-ca", "key": "ca.pem"},
        "allowedPrivateNetworks": ["127.0.0.0/8"],
        "allowedProviderPorts": [provider_port],
        // The new pod cannot start beside the old one on the same host port.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
    })
}

/// The second release: the image of `make image`, and no CRDs (the first release has them).
fn install(ns: &str, release: &str, port: u16, api_port: &str, provider_port: u16) {
    let mut values = node_values(port, api_port, provider_port);
    values["image"] =
        serde_json::json!({"repository": format!("localhost/{NAME}"), "tag": "dev", "pullPolicy": "Never"});
    values["crds"] = serde_json::json!({"enabled": false});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.json");
    std::fs::write(&file, values.to_string()).unwrap();
    helm_in_cluster(&[
        "install",
        release,
        CHART,
        "--namespace",
        ns,
        "--values",
        file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "5m",
    ]);
}

/// The `sh` blocks of the README's "Quick start", in order. (Its `console` block, building and
/// loading the image, is this test's `make image` and `ctr images import`.)
fn quick_start_commands() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme.find("\n## Quick start").expect("the README has a Quick start");
    let section = &readme[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |end| end + 1)];
    let mut blocks = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in section.lines() {
        match (&mut block, line.trim_end()) {
            (None, "```sh") => block = Some(Vec::new()),
            (Some(lines), "```") => {
                blocks.push(lines.join("\n"));
                block = None;
            }
            (Some(lines), _) => lines.push(line),
            (None, _) => {}
        }
    }
    assert!(blocks.len() >= 4, "the quick start's sh blocks: {blocks:?}");
    blocks.join("\n")
}

/// Runs the README's quick start as written against this node, with the provider's hosts pointed
/// at the fake provider (as `make demo` points the examples). Where the node differs from a
/// cluster: `helm` gets [`node_values`] after the README's own flags, and the released chart is
/// this tree's with the image of `make image` (the registry is
/// [`the_release_installs_from_a_registry_signed_with_its_sbom_and_pulled_by_digest`]'s part); `kubectl logs` reads the
/// node's log files (the API server would dial the kubelet on an address it does not listen on);
/// `deploy/examples/token-reader-pod.yaml` is [`for_the_node`]. Returns what the commands printed.
fn run_quick_start(node: &node::Node, port: u16, api_port: &str) -> String {
    let commands = pointed_at_the_fake_provider(&quick_start_commands(), port);
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("node-values.json");
    std::fs::write(&values, node_values(free_port(), api_port, port).to_string()).unwrap();
    // The repository as the README's commands see it, from its root.
    let work = dir.path().join("repo");
    std::fs::create_dir_all(work.join("deploy/examples")).unwrap();
    std::os::unix::fs::symlink(repo_root().join("charts"), work.join("charts")).unwrap();
    let pod = std::fs::read_to_string(repo_root().join("deploy/examples/token-reader-pod.yaml")).unwrap();
    std::fs::write(work.join("deploy/examples/token-reader-pod.yaml"), for_the_node(&pod)).unwrap();
    let preamble = r#"set -euxo pipefail
helm() {
  # The released chart is this tree's chart, and its image the one of `make image`
  # (the release test installs from a registry).
  local args=() a
  for a in "$@"; do
    case "$a" in
      oci://ghcr.io/consent-dev/charts/consent-token-operator) args+=(charts/consent-token-operator) ;;
      *) args+=("$a") ;;
    esac
  done
  "$NODE_HELM" "${args[@]}" --values "$NODE_VALUES" --set image.repository=localhost/consent-token-operator --set image.tag=dev
}
kubectl() {
  if [ "$1" != logs ]; then command kubectl "$@"; return; fi
  # As `kubectl logs` would: what the container wrote so far (give its first line a moment).
  for _ in $(seq 50); do [ -s "$(ls "$NODE_POD_LOGS"/default_"$2"_*/*/*.log 2>/dev/null | head -1)" ] && break; sleep 0.1; done
  cat "$NODE_POD_LOGS"/default_"$2"_*/*/*.log | cut -d' ' -f4-
}
"#;
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{preamble}{commands}"))
        .current_dir(&work)
        .env("KUBECONFIG", support::kubeconfig())
        .env("NODE_HELM", support::chart::control_plane_bin("helm"))
        .env("NODE_VALUES", &values)
        .env("NODE_POD_LOGS", &node.pod_logs)
        .env("MX_CLIENT_ID", "demo-mx-client")
        .env("MX_CLIENT_SECRET", "demo-mx-secret")
        .output()
        .expect("run bash");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the README's quick start failed:\n{said}");
    said
}

/// An example pod as this node runs it: its busybox from the node's images (one binary, no
/// `sh` on the PATH), and the host's network (the node has no pod network).
fn for_the_node(pod: &str) -> String {
    let mut pod: serde_json::Value = serde_yaml::from_str(pod).expect("the example pod is YAML");
    pod["spec"]["hostNetwork"] = true.into();
    for container in pod["spec"]["containers"].as_array_mut().expect("containers") {
        container["image"] = "localhost/busybox:latest".into();
        container["imagePullPolicy"] = "Never".into();
        let command = container["command"].as_array_mut().expect("command");
        if command[0] == "sh" {
            command.insert(0, "/bin/busybox".into());
        }
    }
    serde_json::to_string(&pod).unwrap()
}

/// The token-reader pod of `namespace` prints its token's expiry within `within`, and each line it
/// printed names an expiry still ahead at the time it was printed.
async fn token_reader_reads_a_valid_token(node: &node::Node, namespace: &str, pod: &str, within: Duration) {
    let lines = eventually(&format!("{pod} to print its token's expiry"), within, || async {
        let lines = node.container_lines(namespace, "token-reader", "reader");
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    for (at, line) in &lines {
        let expiry = line.split("expires at ").nth(1).unwrap_or_else(|| panic!("{pod} printed {line:?}"));
        let expiry: Timestamp = expiry.trim().parse().unwrap_or_else(|e| panic!("{pod} printed {line:?}: {e}"));
        assert!(expiry > *at, "{pod} read a token that had expired at {expiry} when it read it at {at}");
    }
    report(&format!("{pod}: {:?}", lines.last().map(|l| &l.1)));
}

/// The invalid example is refused with the message its comment quotes.
fn check_invalid_example_refused(ns: &str) {
    let path = repo_root().join("deploy/examples/invalid-consenttoken.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let comment: String = text.lines().take_while(|l| l.starts_with('#')).collect::<Vec<_>>().join(" ");
    let quoted = comment.split('"').nth(1).expect("the comment quotes the refusal");
    let output = support::kubectl_output(&["apply", "--namespace", ns, "-f", path.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the invalid example was refused");
    assert!(said.contains(quoted), "refused with the message its comment quotes ({quoted:?}): {said}");
    report(&format!("the invalid example was refused: {quoted:?}"));
}

/// `text` (an example, the quick start's commands) with the providers' hosts pointed at the fake
/// provider, as `scripts/demo` points them: the MX base URL and the OneTrust host become
/// `localhost:PORT`, and every `consent.dev/allowed-hosts` marking (an annotation line, or the
/// `kubectl annotate` argument) allows `localhost`.
fn pointed_at_the_fake_provider(text: &str, port: u16) -> String {
    let text = text
        .replace("https://consent.bank.example", &format!("https://localhost:{port}"))
        .replace("app-eu.onetrust.com", &format!("localhost:{port}"))
        .replace("consent.dev/allowed-hosts=consent.bank.example", "consent.dev/allowed-hosts=localhost");
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.find("consent.dev/allowed-hosts:") {
            Some(at) => format!("{}consent.dev/allowed-hosts: localhost", &line[..at]),
            None => line.to_owned(),
        })
        .collect();
    lines.join("\n")
}

fn apply_examples(ns: &str, port: u16) {
    for example in [
        "mx-credentials",
        "mx-customer-tokens",
        "onetrust-credentials",
        "onetrust-collection-point",
        "onetrust-cluster-provider",
        "token-reader-pod",
    ] {
        let text = std::fs::read_to_string(repo_root().join(format!("deploy/examples/{example}.yaml"))).unwrap();
        let text = pointed_at_the_fake_provider(&text, port);
        let text = if example == "token-reader-pod" { for_the_node(&text) } else { text };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("example.yaml");
        std::fs::write(&file, text).unwrap();
        // The cluster provider's example names the namespace of each object itself (the
        // operator's, team-web); the others go where the user applies them.
        if example == "onetrust-cluster-provider" {
            kubectl(&["apply", "-f", file.to_str().unwrap()]);
        } else {
            kubectl(&["apply", "--namespace", ns, "-f", file.to_str().unwrap()]);
        }
    }
}

fn api_server_port() -> String {
    let kubeconfig = kube::config::Kubeconfig::read_from(support::kubeconfig()).expect("read kubeconfig");
    let server = kubeconfig.clusters[0].cluster.as_ref().and_then(|c| c.server.clone()).expect("server in kubeconfig");
    server.rsplit(':').next().unwrap().to_string()
}

async fn lease_holder(client: &Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), OPERATOR_NS).get(NAME).await.ok()?.spec?.holder_identity
}

fn selector() -> ListParams {
    ListParams::default().labels(&format!("app.kubernetes.io/name={NAME}"))
}

async fn operator_pods(client: &Client) -> Vec<String> {
    let pods = Api::<Pod>::namespaced(client.clone(), OPERATOR_NS).list(&selector()).await.expect("list pods");
    pods.items.into_iter().filter_map(|p| p.metadata.name).collect()
}

/// Waits until exactly two operator pods exist (none terminating) and both are Ready.
async fn wait_for_two_ready_pods(client: &Client) -> Vec<String> {
    let api = Api::<Pod>::namespaced(client.clone(), OPERATOR_NS);
    eventually("two Ready operator pods", Duration::from_secs(180), || async {
        let pods = api.list(&selector()).await.ok()?.items;
        let ready = |p: &Pod| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        (pods.len() == 2 && pods.iter().all(ready)).then(|| pods.into_iter().filter_map(|p| p.metadata.name).collect())
    })
    .await
}

async fn check_probes(client: &Client) {
    let pods = Api::<Pod>::namespaced(client.clone(), OPERATOR_NS).list(&selector()).await.expect("list pods");
    let mut became_ready: HashMap<String, Timestamp> = HashMap::new();
    for pod in &pods.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref().expect("pod status");
        for container in status.container_statuses.iter().flatten() {
            assert_eq!(container.restart_count, 0, "{name} restarted");
        }
        let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready");
        if let Some(at) = ready.and_then(|c| c.last_transition_time.as_ref()) {
            became_ready.insert(name, at.0);
        }
    }
    let events =
        Api::<Event>::namespaced(client.clone(), OPERATOR_NS).list(&ListParams::default()).await.expect("events");
    let mut readiness = 0;
    for event in events.items.iter().filter(|e| e.reason.as_deref() == Some("Unhealthy")) {
        let message = event.message.clone().unwrap_or_default();
        assert!(!message.starts_with("Liveness"), "a replica failed its liveness probe: {message}");
        // A readiness failure is the pod saying it is not ready yet; after its first Ready it
        // would mean a replica dropped out. (Pods gone since are not listed.)
        let pod = event.involved_object.name.clone().unwrap_or_default();
        if let (Some(ready), Some(last)) = (became_ready.get(&pod), event.last_timestamp.as_ref()) {
            assert!(last.0 <= *ready, "{pod} failed readiness after it was Ready: {message}");
        }
        readiness += event.count.unwrap_or(1);
    }
    report(&format!("probes: no liveness failure, no restart; {readiness} readiness failures, all before first Ready"));
}

/// A program of `scripts/control-plane build` (cosign, kubectl-krew) with `args`; (success, stdout, stderr).
fn run_tool(program: &std::path::Path, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> (bool, String, String) {
    let output = std::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_installs_from_a_registry_signed_with_its_sbom_and_pulled_by_digest() {
    let artifacts = repo_root().join(RELEASE_ARTIFACTS);
    assert!(
        artifacts.join("image.digest").exists(),
        "{RELEASE_ARTIFACTS} is missing: `make test` builds it (make release-build OUT={RELEASE_ARTIFACTS} PLATFORMS=\"amd64 arm64\" RELEASE_PROFILE=dev)"
    );
    let _turn = NODE_TURN.lock().await;
    let node = node::node();
    // `make image`'s image before the release's pull: the two are one image (same binary, same
    // config digest), and once containerd's CRI has an image from a pull, a later `ctr images
    // import` of it under another name is not seen by the kubelet (the other test's pods then
    // fail with ImagePullBackOff on localhost/...:dev).
    node.import_image(&repo_root().join(IMAGE), "localhost/consent-token-operator");
    node.wait_ready().await;
    let client = admin_client().await;
    let version = env!("CARGO_PKG_VERSION");
    let chart_yaml = std::fs::read_to_string(repo_root().join(CHART).join("Chart.yaml")).unwrap();
    let chart_version = chart_yaml.lines().find_map(|l| l.strip_prefix("version: ")).expect("chart version").trim();

    // The release's artifacts, published as `make release-publish` does, with a key pair (the
    // workflow signs keyless) to a registry the machine trusts only through the test CA.
    let registry = support::registry::Registry::start().await;
    let out = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("cp").arg("-r").arg(&artifacts).arg(out.path()).status().unwrap();
    assert!(copied.success());
    let out = out.path().join("release-test");
    let cosign = support::chart::control_plane_bin("cosign");
    let keys = tempfile::tempdir().unwrap();
    let no_password = std::ffi::OsStr::new("");
    let generated = std::process::Command::new(&cosign)
        .arg("generate-key-pair")
        .env("COSIGN_PASSWORD", no_password)
        .current_dir(keys.path())
        .output()
        .unwrap();
    assert!(generated.status.success(), "cosign generate-key-pair: {}", String::from_utf8_lossy(&generated.stderr));
    let publish = std::process::Command::new(repo_root().join("scripts/release"))
        .arg("publish")
        .arg(&out)
        .arg(&registry.host)
        .env("COSIGN_KEY", keys.path().join("cosign.key"))
        .env("COSIGN_PASSWORD", no_password)
        .env("REGISTRY_CA", &registry.ca_file)
        .output()
        .unwrap();
    assert!(publish.status.success(), "scripts/release publish: {}", String::from_utf8_lossy(&publish.stderr));
    let digest = std::fs::read_to_string(out.join("image.digest")).unwrap().trim().to_string();
    let image = format!("{}/{NAME}", registry.host);
    report(&format!("published {image}:{version}@{digest} and oci://{}/charts/{NAME}:{chart_version}", registry.host));

    // The registry serves an image index with each platform built.
    let raw = run_tool(
        std::path::Path::new("skopeo"),
        &[
            "inspect",
            "--raw",
            "--cert-dir",
            registry.cert_dir.to_str().unwrap(),
            &format!("docker://{image}:{version}"),
        ],
        &[],
    );
    assert!(raw.0, "skopeo inspect: {}", raw.2);
    let index: serde_json::Value = serde_json::from_str(&raw.1).unwrap();
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json", "{index}");
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap())
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "the platforms make test builds");
    report(&format!("skopeo inspect: an image index over {platforms:?}"));

    // The signature and the SBOM attestation verify with the public key...
    let pub_key = keys.path().join("cosign.pub");
    let tls = [("SSL_CERT_FILE", registry.ca_file.as_os_str())];
    let by_digest = format!("{image}@{digest}");
    let verify = |reference: &str| {
        run_tool(&cosign, &["verify", "--key", pub_key.to_str().unwrap(), "--insecure-ignore-tlog", reference], &tls)
    };
    let (ok, said, err) = verify(&by_digest);
    assert!(ok && said.contains(&digest), "cosign verify of the release: {err}");
    let (ok, said, err) = run_tool(
        &cosign,
        &[
            "verify-attestation",
            "--key",
            pub_key.to_str().unwrap(),
            "--insecure-ignore-tlog",
            "--type",
            "cyclonedx",
            &by_digest,
        ],
        &tls,
    );
    assert!(ok, "cosign verify-attestation: {err}");
    let envelope: serde_json::Value = serde_json::from_str(said.lines().next().unwrap()).unwrap();
    let statement = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        envelope["payload"].as_str().expect("an in-toto payload"),
    )
    .unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&statement).unwrap();
    assert_eq!(statement["predicate"]["metadata"]["component"]["name"], NAME, "the SBOM describes the operator");
    assert_eq!(statement["predicate"]["metadata"]["component"]["version"], version);
    // ...and fail for an image pushed under the release's tag by someone without the key.
    let pause = support::chart::control_plane_bin("pause.tar");
    let (ok, _, err) = run_tool(
        std::path::Path::new("skopeo"),
        &[
            "copy",
            "--dest-cert-dir",
            registry.cert_dir.to_str().unwrap(),
            &format!("oci-archive:{}", pause.display()),
            &format!("docker://{image}:{version}"),
        ],
        &[],
    );
    assert!(ok, "push the tampered image: {err}");
    let (ok, _, err) = verify(&format!("{image}:{version}"));
    assert!(!ok && err.contains("no signatures found"), "cosign verify of a tampered tag must fail: {err}");
    report("cosign verify: the release verifies (signature and CycloneDX attestation); the tampered tag does not");

    // The chart from the registry, on the node, with its default image: the release's, by digest
    // (the tampered tag is not what runs).
    registry.trust_from_containerd(&node.containerd_socket.parent().unwrap().join("certs.d"));
    let _logs_on_failure = [RELEASE_NS].map(|n| node.logs_on_failure(n));
    let fake = FakeProvider::start("127.0.0.1:0".parse().unwrap()).await.expect("fake provider");
    fake.add_fdx_client("demo-mx-client", "demo-mx-secret");
    let port = fake.addr().port();
    kubectl(&["create", "namespace", RELEASE_NS]);
    kubectl(&[
        "create",
        "configmap",
        "fake-provider-ca",
        "-n",
        RELEASE_NS,
        "--from-literal",
        &format!("ca.pem={}", fake.ca_pem()),
    ]);
    let values = tempfile::tempdir().unwrap();
    let values_file = values.path().join("values.json");
    std::fs::write(&values_file, node_values(free_port(), &api_server_port(), port).to_string()).unwrap();
    helm_in_cluster(&[
        "install",
        NAME,
        &format!("oci://{}/charts/{NAME}", registry.host),
        "--version",
        chart_version,
        "--ca-file",
        registry.ca_file.to_str().unwrap(),
        "--namespace",
        RELEASE_NS,
        "--values",
        values_file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "5m",
    ]);
    // `--wait` counts a Deployment of one replica with `maxUnavailable: 1` as ready at once.
    let pods = Api::<Pod>::namespaced(client.clone(), RELEASE_NS);
    let pod = eventually("the operator pod to be Ready", Duration::from_secs(180), || async {
        let list = pods.list(&selector()).await.ok()?.items;
        list.into_iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    })
    .await;
    let spec_image = pod.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default();
    assert_eq!(
        spec_image,
        format!("{image}:{version}@{digest}"),
        "the chart's default image is the release's, by digest"
    );
    let image_id = pod.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0].image_id.clone();
    report(&format!("helm install oci://…: pod Ready, running {spec_image} (containerd: {image_id})"));

    // A ConsentToken of the examples, Ready from this installation.
    let ns = support::namespace(&client, "release").await;
    for example in ["mx-credentials", "mx-customer-tokens"] {
        let text = std::fs::read_to_string(repo_root().join(format!("deploy/examples/{example}.yaml"))).unwrap();
        let file = values.path().join(format!("{example}.yaml"));
        std::fs::write(&file, pointed_at_the_fake_provider(&text, port)).unwrap();
        kubectl(&["apply", "--namespace", &ns, "-f", file.to_str().unwrap()]);
    }
    let tokens: Api<ConsentToken> = Api::namespaced(client.clone(), &ns);
    let ready = eventually("the examples' ConsentTokens to be Ready", Duration::from_secs(120), || async {
        let list = tokens.list(&ListParams::default()).await.ok()?.items;
        let is_ready = |t: &ConsentToken| {
            t.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        (!list.is_empty() && list.iter().all(is_ready)).then_some(list.len())
    })
    .await;
    report(&format!("{ready} ConsentTokens Ready from the installation out of the registry"));

    // The plugin from its krew manifest and archive, as `kubectl krew install` does it.
    let krew_root = tempfile::tempdir().unwrap();
    let krew = support::chart::control_plane_bin("kubectl-krew");
    let path = format!("{}:{}", krew.parent().unwrap().display(), std::env::var("PATH").unwrap());
    let archive = out.join(format!("kubectl-consent_v{version}_linux_amd64.tar.gz"));
    let install = std::process::Command::new("kubectl")
        .args(["krew", "install"])
        .arg(format!("--manifest={}", out.join("consent.yaml").display()))
        .arg(format!("--archive={}", archive.display()))
        .env("KREW_ROOT", krew_root.path())
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(install.status.success(), "kubectl krew install: {}", String::from_utf8_lossy(&install.stderr));
    let path = format!("{}:{path}", krew_root.path().join("bin").display());
    let said = std::process::Command::new("kubectl")
        .args(["consent", "version", "--operator-namespace", RELEASE_NS])
        .env("PATH", &path)
        .env("KUBECONFIG", support::kubeconfig())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&said.stdout).into_owned();
    assert!(said.starts_with(&format!("kubectl-consent {version} ")), "kubectl consent version: {said:?}");
    // The operator's line: the released image's build, as its leader wrote it on its Lease.
    assert!(said.contains(&format!("\noperator {version} (revision ")), "kubectl consent version: {said:?}");
    report(&format!("kubectl krew install --manifest --archive; kubectl consent version: {}", said.trim()));

    uninstall(&[(RELEASE_NS, NAME)]);
}
