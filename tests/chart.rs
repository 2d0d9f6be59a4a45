//! The Helm chart and the plain manifests: they lint, render, pass server-side dry-run in both
//! modes, and their RBAC lets the operator work exactly where it is granted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

use consent_token_operator::crd::ClusterConsentProvider;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use support::operator::Operator;

use support::chart::{CHART, FULLNAME, RELEASE, apply, helm, helm_output, only_kinds, render};

#[tokio::test]
async fn chart_lints_renders_and_passes_server_side_dry_run_in_both_modes() {
    support::install_crds();
    helm(&["lint", "--strict", CHART]);
    let client = support::admin_client().await;
    let release_ns = support::namespace(&client, "cto-system").await;
    let watched_a = support::namespace(&client, "team-a").await;
    let watched_b = support::namespace(&client, "team-b").await;

    let cluster_wide = render(&release_ns, &["networkPolicy.enabled=true", "podDisruptionBudget.enabled=true"]);
    assert_eq!(cluster_wide.matches("\nkind: ClusterRole\n").count(), 1);
    assert_eq!(cluster_wide.matches("\nkind: Role\n").count(), 1, "only the leader-election Role");
    apply(&cluster_wide, true);

    let list = format!("watchNamespaces={{{watched_a},{watched_b}}}");
    let scoped = render(&release_ns, &[&list]);
    // Cluster-wide, a namespace-scoped install reads only the cluster-scoped providers and
    // namespace labels (and writes provider status): never a Secret or a ConsentToken.
    assert_eq!(scoped.matches("\nkind: ClusterRole\n").count(), 1);
    let cluster_role = only_kinds(&scoped, &["ClusterRole"]);
    assert!(cluster_role.contains("clusterconsentproviders") && cluster_role.contains("namespaces"));
    assert!(!cluster_role.contains("secrets") && !cluster_role.contains("\"consenttokens\""), "{cluster_role}");
    assert_eq!(
        scoped.matches("\nkind: RoleBinding").count(),
        4,
        "one per watched namespace, one for the Lease, one for provider credentials in the release namespace"
    );
    apply(&scoped, true);

    // Monitoring objects need the Prometheus Operator's CRDs to dry-run; they must render.
    let monitoring =
        render(&release_ns, &["metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true"]);
    assert!(monitoring.contains("kind: ServiceMonitor") && monitoring.contains("alert: ConsentTokenExpired"));

    // Values that make no sense are refused by values.schema.json, saying which.
    let wrong = helm_output(&["template", RELEASE, CHART, "--set", "concurrency=0"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("/concurrency"));
    let typo = helm_output(&["template", RELEASE, CHART, "--set", "watchNamespace=a"]);
    assert!(!typo.status.success(), "a misspelt value is refused, not ignored");

    // The plain manifests too. They create their own namespace, which a dry run does not
    // store, so it is created first for real.
    let plain = std::fs::read_to_string(support::repo_root().join("deploy/consent-token-operator.yaml")).unwrap();
    let _ = support::kubectl_output(&["create", "namespace", "consent-token-operator"]);
    apply(&plain, true);
}

#[tokio::test]
async fn hardened_defaults_are_rendered() {
    let rendered = render("cto", &[]);
    for needle in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "- ALL",
        "type: RuntimeDefault",
        "path: /healthz",
        "path: /readyz",
        "memory: 128Mi",
    ] {
        assert!(rendered.contains(needle), "missing {needle:?}");
    }
}

#[tokio::test]
async fn the_operator_with_the_charts_rbac_works_where_granted_and_is_refused_elsewhere() {
    support::install_crds();
    let admin = support::admin_client().await;
    let release_ns = support::namespace(&admin, "cto-rbac").await;
    let granted = support::namespace(&admin, "granted").await;
    let other = support::namespace(&admin, "other").await;
    apply(&render(&release_ns, &[&format!("watchNamespaces={{{granted}}}")]), false);

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = support::kubeconfig_as(&release_ns, FULLNAME, dir.path()).await;
    let as_operator = support::client_as(&release_ns, FULLNAME).await;

    // Refused outside the granted namespace, and cluster-wide.
    for api in [Api::<Secret>::namespaced(as_operator.clone(), &other), Api::<Secret>::all(as_operator.clone())] {
        let err = api.list(&ListParams::default()).await.expect_err("refused");
        assert!(matches!(err, kube::Error::Api(ref s) if s.code == 403), "{err}");
    }

    // Works in the granted namespace, end to end, with leader election in its own namespace.
    let fake = fake_provider::FakeProvider::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    fake.add_fdx_client("mx-client", "mx-secret-value");
    let operator = Operator::start_as(&kubeconfig, &granted, &release_ns, fake.ca_pem(), &[]).await;
    let mut env = support::operator::TestEnv::from_parts(admin.clone(), granted.clone(), fake, operator);
    env.put_secret("mx-credentials", &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")]).await;
    env.create_token(
        "mx",
        serde_json::json!({"fdx": {"baseUrl": env.fake.base_url(), "customerId": "c",
            "credentialsSecretRef": {"name": "mx-credentials"}}}),
    )
    .await;
    env.wait_for_ready("mx", "True", "TokenValid").await;

    // A ClusterConsentProvider with its credentials in the release namespace works under the
    // same RBAC: the provider-credentials Role, the cluster-scoped reads, its status written.
    env.namespace = release_ns.clone();
    env.put_secret("shared-mx", &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")]).await;
    env.namespace = granted.clone();
    let name = format!("shared-{}", &release_ns[9..]);
    let providers: Api<ClusterConsentProvider> = Api::all(admin.clone());
    let provider: ClusterConsentProvider = serde_json::from_value(serde_json::json!({
        "apiVersion": "consent.dev/v1alpha1", "kind": "ClusterConsentProvider", "metadata": {"name": name},
        "spec": {"fdx": {"baseUrl": env.fake.base_url(), "credentialsSecretRef": {"name": "shared-mx"}},
                 "allowedNamespaces": {"names": [granted]}}
    }))
    .unwrap();
    providers.create(&Default::default(), &provider).await.unwrap();
    env.create_token(
        "via-cluster-provider",
        serde_json::json!({"providerRef": {"kind": "ClusterConsentProvider", "name": name}, "customerId": "c2"}),
    )
    .await;
    env.wait_for_ready("via-cluster-provider", "True", "TokenValid").await;
    support::eventually("the cluster provider's status", Duration::from_secs(30), || async {
        let status = providers.get(&name).await.ok()?.status?;
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == "CredentialsValid" && status.consent_tokens == 1).then_some(())
    })
    .await;
    providers.delete(&name, &Default::default()).await.unwrap();

    // Pointed at a namespace it was not granted, the same identity never gets ready.
    // It tried (and was refused: its log says so) before we look at its readiness.
    let refused = Operator::spawn(&kubeconfig, &other, &release_ns, env.fake.ca_pem(), &["--leader-election", "false"]);
    support::eventually("the refused operator to be refused", Duration::from_secs(30), || async {
        let logs = refused.logs();
        (logs.contains("403") || logs.to_lowercase().contains("forbidden")).then_some(())
    })
    .await;
    assert_eq!(refused.readyz().await, Some(503), "answers, and is not ready");
}
