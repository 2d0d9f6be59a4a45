//! An operator under test: the real binary as a child process, watching one namespace (or the
//! whole cluster), trusting one fake provider's CA, with its log captured at trace level to a
//! file. Dropping it kills the process and scans its log for secrets (see `secrecy`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fake_provider::FakeProvider;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use consent_token_operator::api::crd::ConsentToken;

pub struct Operator {
    /// Its identity in the leader-election Lease (`operator` in the test namespace).
    pub identity: String,
    child: Child,
    log: PathBuf,
    /// How far its wall clock is set off the machine's (`Launch::clock_offset`).
    clock_offset: jiff::SignedDuration,
    pub metrics_addr: String,
    _dir: tempfile::TempDir,
}

/// How to start an operator under test.
#[derive(Clone)]
pub struct Launch {
    pub kubeconfig: PathBuf,
    /// The namespaces to watch (comma-separated); `None`: the whole cluster.
    pub namespace: Option<String>,
    pub lease_namespace: String,
    pub ca_pem: String,
    pub args: Vec<String>,
    /// The fake provider listens on loopback, which the operator only calls when its admin
    /// allows it: on, unless a test checks that it is refused.
    pub allow_loopback: bool,
    /// `--allowed-provider-ports`: the fakes listen on ports the system picks, so any (`*`),
    /// unless a test is about the port rule.
    pub provider_ports: String,
    /// The fakes hand out tokens of seconds, far below the default minimum (90 s).
    pub min_token_lifetime: String,
    /// `--min-refresh-request-interval`: tests ask for refreshes seconds after a fetch, where the
    /// default (30 s) would hold each back; the tests of that rule and of tenants set it back.
    pub refresh_request_interval: String,
    /// Extra `/etc/hosts` lines (address, name) that only this operator sees: it runs in a
    /// mount namespace of its own with its own copy of the file.
    pub hosts: Vec<(String, String)>,
    /// Short, so takeovers are quick to test.
    pub lease_duration: String,
    /// Seconds its wall clock is set ahead of the machine's (negative: behind), with
    /// libfaketime; its monotonic clock is left alone. Its log's times are then its own; see
    /// [`Operator::log_times`].
    pub clock_offset: Option<i64>,
    /// Environment variables of its own (what the chart sets from Secrets).
    pub env: Vec<(String, String)>,
}

/// Debian's libfaketime (the thread-safe build): `scripts/control-plane` installs it.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

impl Launch {
    /// As cluster admin, for `namespace`, with the Lease there too.
    pub fn new(namespace: &str, ca_pem: &str) -> Self {
        Self {
            kubeconfig: super::kubeconfig().to_path_buf(),
            namespace: Some(namespace.to_owned()),
            lease_namespace: namespace.to_owned(),
            ca_pem: ca_pem.to_owned(),
            args: Vec::new(),
            allow_loopback: true,
            provider_ports: "*".to_owned(),
            min_token_lifetime: "2s".to_owned(),
            refresh_request_interval: "1s".to_owned(),
            hosts: Vec::new(),
            lease_duration: "6s".to_owned(),
            clock_offset: None,
            env: Vec::new(),
        }
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }
}

impl Operator {
    /// Starts the operator binary as cluster admin for `namespace` (its Lease there too) and
    /// waits until it reports ready.
    pub async fn start(namespace: &str, ca_pem: &str, extra_args: &[&str]) -> Operator {
        Self::launch(Launch::new(namespace, ca_pem).args(extra_args)).await
    }

    /// Starts the operator as `launch` says and waits until it reports ready.
    pub async fn launch(launch: Launch) -> Operator {
        let operator = Self::spawn(launch);
        super::eventually("the operator to be ready", Duration::from_secs(30), || async {
            (operator.readyz().await == Some(200)).then_some(())
        })
        .await;
        operator
    }

    /// Starts the operator as `launch` says without waiting for it.
    pub fn spawn(launch: Launch) -> Operator {
        super::secrecy::start_recording();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &launch.ca_pem).expect("write CA");
        let log = dir.path().join("operator.log");
        let port = free_port();
        let metrics_addr = format!("127.0.0.1:{port}");
        let identity = format!("operator-{port}");
        let binary = env!("CARGO_BIN_EXE_consent-token-operator");
        let mut command = if launch.hosts.is_empty() {
            Command::new(binary)
        } else {
            // Its own mount namespace with its own /etc/hosts: the system resolver of this
            // process alone sees the extra names.
            let hosts = dir.path().join("hosts");
            let mut text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            for (address, name) in &launch.hosts {
                text.push_str(&format!("\n{address} {name}\n"));
            }
            std::fs::write(&hosts, text).expect("write hosts");
            let mut command = Command::new("unshare");
            command.args(["--mount", "--", "sh", "-c", r#"mount --bind "$0" /etc/hosts && exec "$@""#]);
            command.arg(&hosts).arg(binary);
            command
        };
        if let Some(namespace) = &launch.namespace {
            command.args(["--watch-namespaces", namespace]);
        }
        command.args(["--min-token-lifetime", &launch.min_token_lifetime]);
        command.args(["--min-refresh-request-interval", &launch.refresh_request_interval]);
        command.args(["--allowed-provider-ports", &launch.provider_ports]);
        if launch.allow_loopback {
            command.args(["--allowed-private-networks", "127.0.0.0/8,::1/128"]);
        }
        if let Some(offset) = launch.clock_offset {
            assert!(
                std::path::Path::new(LIBFAKETIME).exists(),
                "{LIBFAKETIME} missing: scripts/control-plane installs it"
            );
            command.env("LD_PRELOAD", LIBFAKETIME).env("FAKETIME", format!("{offset:+}"));
            command.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        // Leader election stays on, with a Lease of the test's own and a short duration.
        let child = command
            // The dual-stack address of the chart; the tests reach it over IPv4 (and IPv6, readyz_over_ipv6).
            .args(["--metrics-addr", &format!("[::]:{port}"), "--identity", &identity, "--log-level", "trace"])
            .args(["--lease-namespace", &launch.lease_namespace, "--lease-name", "operator"])
            .args(["--lease-duration", &launch.lease_duration])
            .arg("--extra-ca-bundle")
            .arg(&ca)
            .args(&launch.args)
            .env("KUBECONFIG", &launch.kubeconfig)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::options().append(true).open(&log).expect("log file"))
            .spawn()
            .expect("start the operator");
        let clock_offset = jiff::SignedDuration::from_secs(launch.clock_offset.unwrap_or_default());
        Operator { identity, child, log, clock_offset, metrics_addr, _dir: dir }
    }

    /// `/readyz`'s status code, if the operator answers.
    pub async fn readyz(&self) -> Option<u16> {
        http_get(&format!("http://{}/readyz", self.metrics_addr)).await.map(|(status, _)| status)
    }

    /// `/readyz` asked over IPv6 loopback: the default bind address takes both families.
    pub async fn readyz_over_ipv6(&self) -> Option<u16> {
        let port = self.metrics_addr.rsplit(':').next().unwrap_or_default();
        http_get(&format!("http://[::1]:{port}/readyz")).await.map(|(status, _)| status)
    }

    /// Waits until this operator holds the test namespace's Lease.
    pub async fn wait_until_leader(&self, namespace: &str) {
        let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
            kube::Api::namespaced(super::admin_client().await, namespace);
        super::eventually(&format!("{} to lead", self.identity), Duration::from_secs(30), || async {
            let holder = leases.get("operator").await.ok()?.spec?.holder_identity?;
            (holder == self.identity).then_some(())
        })
        .await;
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        http_get(&format!("http://{}/metrics", self.metrics_addr)).await.map(|(_, body)| body).unwrap_or_default()
    }

    /// Whether the process is still running (it was not restarted or stopped).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// When the log says `message` (the timestamps of the matching lines, on the machine's
    /// clock), in order.
    pub fn log_times(&self, message: &str) -> Vec<jiff::Timestamp> {
        self.logs().lines().filter(|line| line.contains(message)).filter_map(|line| self.log_time(line)).collect()
    }

    /// When a line of its log was written, on the machine's clock (its own may be set off).
    pub fn log_time(&self, line: &str) -> Option<jiff::Timestamp> {
        let own: jiff::Timestamp = line.split_whitespace().next()?.parse().ok()?;
        own.checked_sub(self.clock_offset).ok()
    }

    /// Reconciles this process has finished (its reconcile-duration histogram's count): the
    /// proof that it looked at objects, before asserting what it did not do.
    pub async fn reconciles(&self) -> u64 {
        reconciles_in(&self.metrics().await)
    }

    /// ConsentTokens due and waiting for a worker (`consent_token_reconciles_queued`).
    pub async fn queued(&self) -> f64 {
        let metrics = self.metrics().await;
        metrics.lines().find_map(|l| l.strip_prefix("consent_token_reconciles_queued ")?.parse().ok()).unwrap_or(0.0)
    }

    /// Waits until this process has finished more than `than` reconciles.
    pub async fn wait_for_reconciles(&self, than: u64) -> u64 {
        super::eventually(&format!("{} to reconcile", self.identity), Duration::from_secs(30), || async {
            let done = self.reconciles().await;
            (done > than).then_some(done)
        })
        .await
    }

    /// Stops the process as the kubelet does on a pod's deletion or rollout (SIGTERM) and
    /// waits until it has exited (at most 30 s, a pod's default grace period); returns whether
    /// it exited with success.
    pub async fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.expect("run kill");
        assert!(sent.success(), "SIGTERM to {}", self.identity);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            assert!(std::time::Instant::now() < deadline, "{} did not exit 30 s after SIGTERM", self.identity);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        let logs = self.logs();
        if std::thread::panicking() {
            eprintln!("--- operator log ---\n{logs}");
            return;
        }
        let needles = super::secrecy::needles();
        super::secrecy::assert_none(&super::secrecy::findings(
            &format!("the log of {}", self.identity),
            &logs,
            &needles,
        ));
    }
}

/// A loopback port nothing listens on now.
/// The reconciles finished, as one scrape of `/metrics` counts them.
pub fn reconciles_in(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("consent_token_reconcile_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_default()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A tiny plain-http GET for the operator's own endpoints.
async fn http_get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// A test environment before its operator starts: see [`TestEnv::setup`].
pub struct Setup {
    pub client: Client,
    pub namespace: String,
    /// The namespaces made from `more`, in order.
    pub other_namespaces: Vec<String>,
    pub fake: FakeProvider,
}

impl Setup {
    /// The usual launch: cluster admin, this namespace watched with the Lease in it, trusting the
    /// fake provider's CA.
    pub fn launch_defaults(&self) -> Launch {
        Launch::new(&self.namespace, self.fake.ca_pem())
    }

    /// Starts the operator as `launch` says and waits until it leads (in its Lease namespace).
    pub async fn launch(self, launch: Launch) -> TestEnv {
        let lease_namespace = launch.lease_namespace.clone();
        let operator = Operator::launch(launch).await;
        operator.wait_until_leader(&lease_namespace).await;
        let Setup { client, namespace, other_namespaces, fake } = self;
        TestEnv { client, namespace, fake, operator, other_namespaces }
    }
}

/// Everything one operator test uses: a namespace, a fake provider, an operator.
pub struct TestEnv {
    pub client: Client,
    /// The namespace the helpers below work in (a test may point it elsewhere).
    pub namespace: String,
    pub fake: FakeProvider,
    pub operator: Operator,
    /// More namespaces whose Events and statuses the secrecy scan reads.
    pub other_namespaces: Vec<String>,
}

impl TestEnv {
    /// The usual environment: a namespace, a fake provider, an operator watching the namespace
    /// with its Lease there, leading.
    pub async fn start(prefix: &str) -> TestEnv {
        Self::start_with(prefix, &[]).await
    }

    /// The usual environment, the operator started with `operator_args`.
    pub async fn start_with(prefix: &str, operator_args: &[&str]) -> TestEnv {
        let setup = Self::setup(prefix, &[]).await;
        let launch = setup.launch_defaults().args(operator_args);
        setup.launch(launch).await
    }

    /// Everything but the operator: the CRDs, an admin client, a namespace from `prefix` and
    /// one from each of `more` (in order), a fake provider. A test prepares what the operator
    /// must find at its start, then calls [`Setup::launch`] with the launch it needs.
    pub async fn setup(prefix: &str, more: &[&str]) -> Setup {
        super::install_crds();
        let client = super::admin_client().await;
        let namespace = super::namespace(&client, prefix).await;
        let mut other_namespaces = Vec::new();
        for prefix in more {
            other_namespaces.push(super::namespace(&client, prefix).await);
        }
        let fake = FakeProvider::start("127.0.0.1:0".parse().unwrap()).await.expect("fake provider");
        Setup { client, namespace, other_namespaces, fake }
    }

    /// Waits until the fake provider has answered `count` requests to `endpoint` in all.
    pub async fn wait_for_requests(&self, endpoint: fake_provider::Endpoint, count: u64) {
        super::eventually(&format!("{count} requests to {endpoint:?}"), Duration::from_secs(30), || async {
            (self.fake.requests(endpoint) >= count).then_some(())
        })
        .await;
    }

    pub fn tokens(&self) -> Api<ConsentToken> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates or replaces a credentials Secret with these string values, marked for use with
    /// the fake provider (`consent.dev/allowed-hosts: localhost`).
    pub async fn put_secret(&self, name: &str, values: &[(&str, &str)]) -> Secret {
        self.put_secret_annotated(name, values, &[("consent.dev/allowed-hosts", "localhost")]).await
    }

    /// Creates or replaces a Secret with these string values and annotations.
    pub async fn put_secret_annotated(
        &self,
        name: &str,
        values: &[(&str, &str)],
        annotations: &[(&str, &str)],
    ) -> Secret {
        for (key, value) in values {
            if key.contains("secret") {
                super::secrecy::remember(value);
            }
        }
        let annotations = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let secret = Secret {
            metadata: ObjectMeta { name: Some(name.into()), annotations: Some(annotations), ..Default::default() },
            data: Some(
                values
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        };
        self.secrets()
            .patch(name, &PatchParams::apply("consent-tests").force(), &Patch::Apply(&secret))
            .await
            .expect("apply secret")
    }

    /// Creates a ConsentToken from the JSON of its spec.
    pub async fn create_token(&self, name: &str, spec: serde_json::Value) -> ConsentToken {
        remember_customer(&spec);
        let ct: ConsentToken = serde_json::from_value(serde_json::json!({
            "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("ConsentToken JSON");
        self.tokens().create(&PostParams::default(), &ct).await.expect("create ConsentToken")
    }

    /// Creates many ConsentTokens from whole objects (JSON with metadata and spec), 16 at a
    /// time; returns how many the API server took.
    pub async fn create_tokens(&self, objects: Vec<serde_json::Value>) -> usize {
        use futures::StreamExt;
        for object in &objects {
            remember_customer(&object["spec"]);
        }
        let tokens = self.tokens();
        futures::stream::iter(objects)
            .map(|object| {
                let tokens = tokens.clone();
                async move {
                    let ct: ConsentToken = serde_json::from_value(object).expect("ConsentToken JSON");
                    tokens.create(&PostParams::default(), &ct).await.is_ok()
                }
            })
            .buffer_unordered(16)
            .filter(|created| std::future::ready(*created))
            .count()
            .await
    }

    /// An MX / FDX ConsentToken against the fake, with its credentials Secret.
    pub async fn fdx_token(&self, name: &str, customer_id: &str) -> ConsentToken {
        self.fake.add_fdx_client("mx-client", "mx-secret-value");
        self.put_secret("mx-credentials", &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")]).await;
        self.create_token(
            name,
            serde_json::json!({"fdx": {"baseUrl": self.fake.base_url(), "customerId": customer_id,
                                       "credentialsSecretRef": {"name": "mx-credentials"}}}),
        )
        .await
    }

    /// A OneTrust ConsentToken for the example collection point against the fake, with its
    /// client registered there and its credentials in Secret `ot`.
    pub async fn onetrust_token(&self, name: &str, client_secret: &str) -> ConsentToken {
        self.fake.add_onetrust_client("ot-client", client_secret);
        self.put_secret("ot", &[("client_id", "ot-client"), ("client_secret", client_secret)]).await;
        self.create_token(
            name,
            serde_json::json!({"oneTrust": {"hostname": self.fake.host(),
                "collectionPoint": {"guid": "123e4567-e89b-12d3-a456-426614174000"},
                "credentialsSecretRef": {"name": "ot"}}}),
        )
        .await
    }

    /// Waits until `name`'s Ready condition has `status` and `reason`; returns the object.
    pub async fn wait_for_ready(&self, name: &str, status: &str, reason: &str) -> ConsentToken {
        let tokens = self.tokens();
        super::eventually(&format!("{name} Ready={status} reason={reason}"), Duration::from_secs(60), || async {
            let ct = tokens.get(name).await.ok()?;
            let ready = ct.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
            (ready.status == status && ready.reason == reason).then_some(ct.clone())
        })
        .await
    }

    /// The token in the target Secret under `key`.
    pub async fn token_in_secret(&self, secret: &str, key: &str) -> Option<String> {
        let secret = self.secrets().get_opt(secret).await.ok()??;
        let bytes = secret.data?.remove(key)?;
        String::from_utf8(bytes.0).ok()
    }

    /// What the target Secret of ConsentToken `name` records about its token (the live times,
    /// which the status shows only while a refresh fails), if it holds one.
    pub async fn on_secret(&self, name: &str) -> Option<OnSecret> {
        let ct = self.tokens().get(name).await.ok()?;
        let secret = self.secrets().get_opt(&ct.target_secret_name()).await.ok()??;
        OnSecret::of(&secret.metadata)
    }

    /// [`OnSecret`] of every ConsentToken of the namespace that has a token, by ConsentToken name
    /// (from each Secret's owner), in one list.
    pub async fn all_on_secrets(&self) -> BTreeMap<String, OnSecret> {
        let params = kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=consent-token-operator");
        let Ok(list) = self.secrets().list_metadata(&params).await else { return BTreeMap::new() };
        list.items
            .iter()
            .filter_map(|s| {
                let owner = s.metadata.owner_references.as_ref()?.iter().find(|o| o.kind == "ConsentToken")?;
                Some((owner.name.clone(), OnSecret::of(&s.metadata)?))
            })
            .collect()
    }

    /// Sets the refresh annotation to a new value; returns the value.
    pub async fn request_refresh(&self, name: &str) -> String {
        let value = jiff::Timestamp::now().to_string();
        let patch = serde_json::json!({"metadata": {"annotations": {"consent.dev/refresh-requested-at": value}}});
        self.tokens().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("annotate");
        value
    }

    /// Requests a refresh and waits until the operator has acted on that request and reported
    /// it (`status.refreshRequestedAt`): the proof it looked, before asserting what it did not do.
    pub async fn refresh_and_wait_handled(&self, name: &str) -> ConsentToken {
        let value = self.request_refresh(name).await;
        super::eventually(&format!("{name}'s refresh request handled"), Duration::from_secs(30), || async {
            let ct = self.tokens().get(name).await.ok()?;
            (ct.status.as_ref()?.refresh_requested_at.as_deref() == Some(value.as_str())).then_some(ct)
        })
        .await
    }
}

/// The token facts a target Secret's annotations carry, written with the token.
#[derive(Debug, Clone, PartialEq)]
pub struct OnSecret {
    pub fingerprint: String,
    pub refreshed_at: jiff::Timestamp,
    pub expires_at: Option<jiff::Timestamp>,
    pub next_refresh_at: jiff::Timestamp,
}

impl OnSecret {
    pub fn of(meta: &ObjectMeta) -> Option<Self> {
        let annotations = meta.annotations.as_ref()?;
        let time = |name: &str| annotations.get(name)?.parse::<jiff::Timestamp>().ok();
        Some(Self {
            fingerprint: annotations.get("consent.dev/token-fingerprint")?.clone(),
            refreshed_at: time("consent.dev/refreshed-at")?,
            expires_at: time("consent.dev/expires-at"),
            next_refresh_at: time("consent.dev/next-refresh-at")?,
        })
    }
}

/// The message of a ConsentToken's Ready condition ("" without one).
pub fn ready_message(ct: &ConsentToken) -> String {
    let conditions = ct.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.message.clone()).unwrap_or_default()
}

pub fn claims(token: &str) -> serde_json::Value {
    jsonwebtoken::dangerous::insecure_decode_claims(token).expect("a JWT")
}

impl Drop for TestEnv {
    /// The secrecy scan of what the namespaces show (Events, statuses) and of the operator's
    /// metrics; its log is scanned when the operator is dropped, right after this.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let mut namespaces = vec![self.namespace.clone()];
        namespaces.extend(self.other_namespaces.iter().cloned());
        let metrics_addr = self.operator.metrics_addr.clone();
        // A kube client belongs to the runtime it was made on, which is the test's; this runs
        // outside it, on a runtime of its own.
        let findings = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(scan_namespaces(namespaces, metrics_addr))
        })
        .join()
        .unwrap_or_default();
        super::secrecy::assert_none(&findings);
    }
}

async fn scan_namespaces(namespaces: Vec<String>, metrics_addr: String) -> Vec<String> {
    let client = super::admin_client().await;
    let list = kube::api::ListParams::default();
    let needles = super::secrecy::needles();
    let mut found = Vec::new();
    for namespace in namespaces {
        let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &namespace)
            .list(&list)
            .await
            .map(|l| serde_json::to_string(&l.items).unwrap_or_default())
            .unwrap_or_default();
        let statuses = Api::<ConsentToken>::namespaced(client.clone(), &namespace)
            .list(&list)
            .await
            .map(|l| {
                serde_json::to_string(&l.items.iter().map(|ct| &ct.status).collect::<Vec<_>>()).unwrap_or_default()
            })
            .unwrap_or_default();
        found.extend(super::secrecy::findings(&format!("the Events of {namespace}"), &events, &needles));
        found.extend(super::secrecy::findings(&format!("the statuses in {namespace}"), &statuses, &needles));
    }
    let metrics = http_get(&format!("http://{metrics_addr}/metrics")).await.map(|(_, body)| body).unwrap_or_default();
    found.extend(super::secrecy::findings("the metrics", &metrics, &needles));
    found
}

/// A spec's customer id is personal data: the secrecy checks look for it in every output.
fn remember_customer(spec: &serde_json::Value) {
    for pointer in ["/fdx/customerId", "/customerId"] {
        if let Some(customer) = spec.pointer(pointer).and_then(|c| c.as_str()) {
            super::secrecy::remember(customer);
        }
    }
}
