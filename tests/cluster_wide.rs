//! The cluster-wide mode for real: the operator with no namespace list, authenticated as the
//! chart's ServiceAccount under the chart's rendered ClusterRole, serving several namespaces
//! (credentials watch included). A test binary of its own: a cluster-wide operator must not
//! meet other tests' objects on a shared control plane.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

use fake_provider::Endpoint;
use support::chart::{FULLNAME, apply, only_kinds, render};
use support::operator::{Launch, TestEnv};

#[tokio::test]
async fn cluster_wide_under_the_charts_cluster_role_across_namespaces() {
    let setup = TestEnv::setup("cto-cluster", &["team-a", "team-b"]).await;
    let release_ns = setup.namespace.clone();
    let [team_a, team_b] = [0, 1].map(|i| setup.other_namespaces[i].clone());

    // The chart's defaults: cluster-wide. Its RBAC applied for real (no node runs the Deployment).
    let rendered = render(&release_ns, &[]);
    // The operator's ClusterRole, and the two that extend the built-in view and edit roles.
    assert_eq!(rendered.matches("\nkind: ClusterRole\n").count(), 3);
    apply(
        &only_kinds(&rendered, &["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]),
        false,
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = support::kubeconfig_as(&release_ns, FULLNAME, dir.path()).await;

    let launch = Launch { kubeconfig, namespace: None, ..setup.launch_defaults() };
    let mut env = setup.launch(launch).await;

    for (namespace, customer) in [(&team_a, "cluster-wide-customer-a"), (&team_b, "cluster-wide-customer-b")] {
        env.namespace = namespace.clone();
        env.fdx_token("mx", customer).await;
    }
    for namespace in [&team_a, &team_b] {
        env.namespace = namespace.clone();
        env.wait_for_ready("mx", "True", "TokenValid").await;
    }
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 2);

    // Credentials rotated in one namespace are noticed by the cluster-wide metadata watch.
    env.namespace = team_b.clone();
    let before = env.token_in_secret("mx", "token").await.unwrap();
    env.fake.add_fdx_client("mx-client", "mx-secret-rotated");
    let rotated =
        env.put_secret("mx-credentials", &[("client_id", "mx-client"), ("client_secret", "mx-secret-rotated")]).await;
    let version = rotated.metadata.resource_version.unwrap();
    support::eventually("team-b's token fetched with the rotated credentials", Duration::from_secs(30), || async {
        let ct = env.tokens().get("mx").await.ok()?;
        (ct.status?.credentials_version.as_deref() == Some(version.as_str())).then_some(())
    })
    .await;
    assert_ne!(env.token_in_secret("mx", "token").await.unwrap(), before);
    // team-a's credentials did not change: its token was not fetched again.
    env.namespace = team_a.clone();
    let team_a_status = env.tokens().get("mx").await.unwrap().status.unwrap();
    assert_eq!(team_a_status.consecutive_failures, 0);
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 3);
}
