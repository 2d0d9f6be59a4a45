//! An operator under test: the real binary as a child process, watching one namespace, trusting
//! one fake provider's CA, with its log captured to a file. Dropping it kills the process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fake_provider::FakeProvider;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use consent_token_operator::crd::ConsentToken;

pub struct Operator {
    /// Its identity in the leader-election Lease (`operator` in the test namespace).
    pub identity: String,
    child: Child,
    log: PathBuf,
    pub metrics_addr: String,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Starts the operator binary as cluster admin for `namespace` (its Lease there too) and
    /// waits until it reports ready.
    pub async fn start(namespace: &str, ca_pem: &str, extra_args: &[&str]) -> Operator {
        Self::start_as(super::kubeconfig(), namespace, namespace, ca_pem, extra_args).await
    }

    /// Starts the operator binary with the identity of `kubeconfig`, watching `namespace`, with
    /// its Lease in `lease_namespace`, and waits until it reports ready.
    pub async fn start_as(
        kubeconfig: &std::path::Path,
        namespace: &str,
        lease_namespace: &str,
        ca_pem: &str,
        extra_args: &[&str],
    ) -> Operator {
        let operator = Self::spawn(kubeconfig, namespace, lease_namespace, ca_pem, extra_args);
        super::eventually("the operator to be ready", Duration::from_secs(30), || async {
            (operator.readyz().await == Some(200)).then_some(())
        })
        .await;
        operator
    }

    /// Starts the operator binary without waiting for it.
    pub fn spawn(
        kubeconfig: &std::path::Path,
        namespace: &str,
        lease_namespace: &str,
        ca_pem: &str,
        extra_args: &[&str],
    ) -> Operator {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem).expect("write CA");
        let log = dir.path().join("operator.log");
        let port = free_port();
        let metrics_addr = format!("127.0.0.1:{port}");
        let identity = format!("operator-{port}");
        // Leader election stays on, with a Lease of the test's own and a short duration.
        let child = Command::new(env!("CARGO_BIN_EXE_consent-token-operator"))
            .args(["--namespaces", namespace, "--metrics-addr", &metrics_addr, "--identity", &identity])
            .args(["--lease-namespace", lease_namespace, "--lease-name", "operator", "--lease-duration", "6s"])
            .arg("--extra-ca-bundle")
            .arg(&ca)
            .args(extra_args)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::options().append(true).open(&log).expect("log file"))
            .spawn()
            .expect("start the operator");
        Operator { identity, child, log, metrics_addr, _dir: dir }
    }

    /// `/readyz`'s status code, if the operator answers.
    pub async fn readyz(&self) -> Option<u16> {
        http_get(&format!("http://{}/readyz", self.metrics_addr)).await.map(|(status, _)| status)
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

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- operator log ---\n{}", self.logs());
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A tiny plain-http GET for the operator's own endpoints.
async fn http_get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Everything one operator test uses: a namespace, a fake provider, an operator.
pub struct TestEnv {
    pub client: Client,
    pub namespace: String,
    pub fake: FakeProvider,
    pub operator: Operator,
}

impl TestEnv {
    pub async fn start(prefix: &str) -> TestEnv {
        Self::start_with(prefix, &[]).await
    }

    pub async fn start_with(prefix: &str, operator_args: &[&str]) -> TestEnv {
        super::install_crds();
        let client = super::admin_client().await;
        let namespace = super::namespace(&client, prefix).await;
        let fake = FakeProvider::start("127.0.0.1:0".parse().unwrap()).await.expect("fake provider");
        let operator = Operator::start(&namespace, fake.ca_pem(), operator_args).await;
        operator.wait_until_leader(&namespace).await;
        TestEnv { client, namespace, fake, operator }
    }

    pub fn tokens(&self) -> Api<ConsentToken> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates or replaces a Secret with these string values.
    pub async fn put_secret(&self, name: &str, values: &[(&str, &str)]) -> Secret {
        let secret = Secret {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            data: Some(values.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect::<BTreeMap<_, _>>()),
            ..Default::default()
        };
        self.secrets()
            .patch(name, &PatchParams::apply("consent-tests").force(), &Patch::Apply(&secret))
            .await
            .expect("apply secret")
    }

    /// Creates a ConsentToken from the JSON of its spec.
    pub async fn create_token(&self, name: &str, spec: serde_json::Value) -> ConsentToken {
        let ct: ConsentToken = serde_json::from_value(serde_json::json!({
            "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("ConsentToken JSON");
        self.tokens().create(&PostParams::default(), &ct).await.expect("create ConsentToken")
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

    /// Sets the force-refresh annotation to a new value.
    pub async fn request_refresh(&self, name: &str) {
        let value = jiff::Timestamp::now().to_string();
        let patch = serde_json::json!({"metadata": {"annotations": {"consent.dev/refresh-requested-at": value}}});
        self.tokens().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("annotate");
    }
}

/// Decodes a JWT's claims without verification, for assertions.
pub fn claims(token: &str) -> serde_json::Value {
    jsonwebtoken::dangerous::insecure_decode_claims(token).expect("a JWT")
}
